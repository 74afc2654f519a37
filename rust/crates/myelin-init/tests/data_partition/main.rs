//! The data partition duty on real loop devices and the real kernel: a blank device is
//! formatted and kept on later boots; a damaged superblock is repaired by fsck with the file on
//! it kept; a wrong fstype from the environment, a bad mount option and a disk returning EIO
//! leave the data intact (never formatted). Needs root (loop devices, mounts, /dev/fuse): run as
//! anyone else, it fails, unless `MYELIN_TEST_OPT_OUT` names `data_partition`. Each test runs
//! in a private mount namespace of its own thread, so nothing leaks into the host's mount table.

#![allow(clippy::unwrap_used)]

mod faulty_disk;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use myelin_init::boot::{DATA_UUID, DataState, data_from_env, data_partition};
use myelin_init::config::{Config, DataSpec};
use myelin_init::level::Level;
use myelin_init::sys::{LinuxSys, MountFlags, Sys};

/// Whether the test may run: root, or else a failure unless opted out.
fn root_or_opted_out() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let opted_out = std::env::var("MYELIN_TEST_OPT_OUT")
        .is_ok_and(|v| v.split(',').any(|n| n.trim() == "data_partition"));
    assert!(
        opted_out,
        "the data partition tests need root (loop devices, mounts); \
         MYELIN_TEST_OPT_OUT=data_partition opts out where root is impossible"
    );
    eprintln!("data_partition: opted out with MYELIN_TEST_OPT_OUT");
    false
}

/// A loop device on an image file; detached (and its mount point unmounted) when dropped.
struct Loop {
    dev: String,
    mnt: PathBuf,
}

impl Drop for Loop {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.mnt.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: umount2 of a path in this thread's private namespace.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse image: blank, or ext4 (4 KiB blocks) holding `/keep` = "precious". 192 MiB, so the
/// ext4 has two block groups and so a backup superblock (at block 32768), as any real data
/// partition has.
fn image(dir: &Path, ext4_with_file: bool) -> PathBuf {
    let img = dir.join("data.img");
    fs::File::create(&img).unwrap().set_len(192 << 20).unwrap();
    if ext4_with_file {
        let src = dir.join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("keep"), "precious").unwrap();
        let (img_s, src_s) = (img.to_str().unwrap(), src.to_str().unwrap());
        run("mkfs.ext4", &["-q", "-F", "-b", "4096", "-d", src_s, img_s]);
    }
    img
}

fn attach(backing: &Path, mnt: PathBuf) -> Loop {
    let dev = run("losetup", &["-f", "--show", backing.to_str().unwrap()])
        .trim()
        .to_string();
    Loop { dev, mnt }
}

fn private_mount_namespace() {
    // SAFETY: unshare/mount syscalls with valid arguments; affects this thread only.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let root = std::ffi::CString::new("/").unwrap();
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
    }
}

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn spec(dev: &str, mnt: &Path, fstype: &str, options: &str) -> DataSpec {
    let toml = format!(
        "[boot.data]\ndevice = \"{dev}\"\nmountpoint = \"{}\"\nfstype = \"{fstype}\"\noptions = \"{options}\"\n",
        mnt.display()
    );
    Config::parse(&toml, Path::new("t.toml"))
        .unwrap()
        .boot
        .data
        .unwrap()
}

fn mount_of(mnt: &Path) -> Option<(String, bool)> {
    let text = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    myelin_init::sys::parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.target == mnt.to_str().unwrap())
        .map(|m| (m.fstype, !m.readonly))
}

fn uuid(dev: &str) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-s", "UUID", "-o", "value", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `/keep` read from the filesystem without mounting it.
fn keep_on(dev: &Path) -> String {
    let out = Command::new("debugfs")
        .args(["-R", "cat /keep"])
        .arg(dev)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the data partition duty with PID 1's real system calls, collecting its log.
fn boot_data(d: &DataSpec) -> (myelin_init::boot::DataOutcome, Vec<String>) {
    let mut log: Vec<String> = Vec::new();
    let mut logf = |l: Level, m: &str| log.push(format!("{}: {m}", l.name()));
    let o = data_partition(d, &mut LinuxSys::new(&mut logf, None));
    (o, log)
}

fn umount(mnt: &Path) {
    let mut nolog = |_: Level, _: &str| {};
    LinuxSys::new(&mut nolog, None)
        .umount(mnt.to_str().unwrap(), false)
        .unwrap();
}

fn formatted(log: &[String]) -> bool {
    log.iter().any(|l| l.contains("formatting it"))
}

#[test]
fn a_blank_partition_is_formatted_once_and_kept_after() {
    if !root_or_opted_out() {
        return;
    }
    let tmp = scratch("data-blank");
    let lo = attach(&image(tmp.path(), false), tmp.path().join("data"));
    private_mount_namespace();
    let d = spec(&lo.dev, &lo.mnt, "ext4", "nodev");

    // First boot of a fresh image: nothing on the device.
    let (o, log) = boot_data(&d);
    assert_eq!(o.state, DataState::Formatted, "{log:?}");
    assert_eq!(mount_of(&lo.mnt), Some(("ext4".into(), true)));
    assert_eq!(uuid(&lo.dev), DATA_UUID);
    fs::write(lo.mnt.join("keep"), "precious").unwrap();
    umount(&lo.mnt);

    // Next boot: mounted as is, data kept; already mounted: nothing to do.
    let (o, log) = boot_data(&d);
    assert_eq!(o.state, DataState::Mounted, "{log:?}");
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
    assert_eq!(boot_data(&d).0.state, DataState::Mounted);
    umount(&lo.mnt);

    // Something mounted it read-only: made read-write, not formatted.
    let mut nolog = |_: Level, _: &str| {};
    LinuxSys::new(&mut nolog, None)
        .mount(
            &lo.dev,
            lo.mnt.to_str().unwrap(),
            "ext4",
            MountFlags::RDONLY,
            "",
        )
        .unwrap();
    let (o, log) = boot_data(&d);
    assert_eq!(o.state, DataState::Mounted, "{log:?}");
    assert_eq!(mount_of(&lo.mnt), Some(("ext4".into(), true)));
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
    assert!(!formatted(&log), "{log:?}");
}

#[test]
fn a_damaged_superblock_is_repaired_and_the_file_kept() {
    if !root_or_opted_out() {
        return;
    }
    let tmp = scratch("data-damaged");
    let img = image(tmp.path(), true);
    let before = uuid(img.to_str().unwrap());
    // Two bytes of the superblock: its magic. The old rule formatted this.
    {
        let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0, 0], 1080).unwrap();
    }
    let lo = attach(&img, tmp.path().join("data"));
    private_mount_namespace();
    let (o, log) = boot_data(&spec(&lo.dev, &lo.mnt, "ext4", "nodev"));
    assert_eq!(o.state, DataState::Repaired, "{log:?}");
    assert!(!formatted(&log), "{log:?}");
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
    assert_eq!(uuid(&lo.dev), before, "the same filesystem");
}

#[test]
fn a_wrong_fstype_from_the_environment_mounts_what_is_there() {
    if !root_or_opted_out() {
        return;
    }
    let tmp = scratch("data-fstype");
    let img = image(tmp.path(), true);
    let lo = attach(&img, tmp.path().join("data"));
    private_mount_namespace();
    // The environment of the running slot says f2fs; the partition holds ext4.
    let configured = spec("/dev/rootdisk0p4", &lo.mnt, "ext4", "nodev");
    let vars: myelin_ubootenv::Vars = [
        ("nerves_fw_active", "a"),
        ("a.nerves_fw_application_part0_devpath", lo.dev.as_str()),
        ("a.nerves_fw_application_part0_fstype", "f2fs"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let d = data_from_env(&configured, Some(&vars), None);
    assert_eq!(d.fstype.as_str(), "f2fs");
    let (o, log) = boot_data(&d);
    assert_eq!(
        (o.state, o.fstype.as_str()),
        (DataState::Mounted, "ext4"),
        "{log:?}"
    );
    assert!(
        o.reason
            .unwrap()
            .contains("configured as f2fs but it holds ext4")
    );
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
}

#[test]
fn a_bad_mount_option_leaves_the_partition_alone() {
    if !root_or_opted_out() {
        return;
    }
    let tmp = scratch("data-option");
    let img = image(tmp.path(), true);
    let before = uuid(img.to_str().unwrap());
    let lo = attach(&img, tmp.path().join("data"));
    private_mount_namespace();
    let (o, log) = boot_data(&spec(&lo.dev, &lo.mnt, "ext4", "nodev,no_such_option=1"));
    assert_eq!(o.state, DataState::TmpfsFallback, "{log:?}");
    assert!(!formatted(&log), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("crit: DATA PARTITION UNUSABLE")),
        "{log:?}"
    );
    assert_eq!(mount_of(&lo.mnt).map(|m| m.0), Some("tmpfs".into()));
    assert_eq!(keep_on(Path::new(&lo.dev)), "precious");
    assert_eq!(uuid(&lo.dev), before);
}

#[test]
fn a_disk_returning_eio_is_never_formatted() {
    if !root_or_opted_out() {
        return;
    }
    let tmp = scratch("data-eio");
    let img = image(tmp.path(), true);
    let before = uuid(img.to_str().unwrap());
    private_mount_namespace();
    let disk = faulty_disk::FaultyDisk::mount(&img, &tmp.path().join("fuse"));
    // The first 4 KiB (the superblock) unreadable, as a failing SD card's sector would be.
    disk.fail_reads(Some(0..4096));
    {
        let lo = attach(&disk.path, tmp.path().join("data"));
        let (o, log) = boot_data(&spec(&lo.dev, &lo.mnt, "ext4", "nodev"));
        assert_eq!(o.state, DataState::TmpfsFallback, "{log:?}");
        assert!(!formatted(&log), "{log:?}");
        assert!(
            log.iter().any(|l| l.contains("Input/output error")),
            "the kernel's EIO reached PID 1: {log:?}"
        );
    }
    disk.fail_reads(None);
    drop(disk);
    // The sector readable again: the filesystem and its file are as they were.
    assert_eq!(keep_on(&img), "precious");
    assert_eq!(uuid(img.to_str().unwrap()), before);
}

#[test]
fn f2fs_without_the_driver_is_left_untouched() {
    if !root_or_opted_out() {
        return;
    }
    let has_f2fs = fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("f2fs");
    let tmp = scratch("data-f2fs");
    let img = image(tmp.path(), false);
    let lo = attach(&img, tmp.path().join("data"));
    private_mount_namespace();
    let (o, log) = boot_data(&spec(&lo.dev, &lo.mnt, "f2fs", "nodev"));
    if has_f2fs {
        assert_eq!(o.state, DataState::Formatted, "{log:?}");
        assert_eq!(mount_of(&lo.mnt), Some(("f2fs".into(), true)));
    } else {
        // Without the driver, formatting could not help and must not happen.
        assert_eq!(o.state, DataState::TmpfsFallback, "{log:?}");
        assert!(!formatted(&log), "{log:?}");
        assert!(
            fs::read(&img).unwrap().iter().all(|&b| b == 0),
            "device untouched"
        );
    }
}
