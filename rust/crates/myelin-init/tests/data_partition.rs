//! The data partition duty on a real loop device: a blank device is formatted and mounted, a
//! second boot keeps the data, a read-only mount is made read-write, a corrupted filesystem is
//! formatted again. Needs root (loop devices, mounts); runs in a private mount namespace of its
//! own thread, so nothing leaks into the host's mount table.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use myelin_init::boot::{DATA_UUID, data_partition};
use myelin_init::config::Config;
use myelin_init::log::Level;
use myelin_init::sys::{LinuxSys, Sys};

struct Loop {
    dev: String,
    mnt: PathBuf,
}

impl Drop for Loop {
    fn drop(&mut self) {
        // SAFETY: umount2 of a path in our private namespace.
        let c = std::ffi::CString::new(self.mnt.to_string_lossy().as_bytes()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn setup(dir: &Path, mb: u64) -> Option<Loop> {
    let img = dir.join("data.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(mb << 20).unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mnt = dir.join("data");
    Some(Loop { dev, mnt })
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

fn spec(dev: &str, mnt: &Path, fstype: &str) -> myelin_init::config::DataSpec {
    let toml = format!(
        "[boot.data]\ndevice = \"{dev}\"\nmountpoint = \"{}\"\nfstype = \"{fstype}\"\noptions = \"nodev\"\n",
        mnt.display()
    );
    Config::parse(&toml, Path::new("t.toml"))
        .unwrap()
        .boot
        .data
        .unwrap()
}

fn mounted_rw(mnt: &Path) -> Option<bool> {
    let text = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    myelin_init::sys::parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.target == mnt.to_str().unwrap())
        .map(|m| !m.readonly)
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the data partition test needs root (loop devices)");
        return false;
    }
    true
}

#[test]
fn ext4_first_boot_later_boots_read_only_and_corruption() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("data-ext4")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let lo = setup(tmp.path(), 64).expect("loop device");
    private_mount_namespace();
    let d = spec(&lo.dev, &lo.mnt, "ext4");
    let mut log: Vec<String> = Vec::new();
    let mut logf = |l: Level, m: &str| log.push(format!("{}: {m}", l.name()));
    let mut sys = LinuxSys::new(&mut logf, None);

    // First boot of a fresh image: nothing on the device.
    assert_eq!(data_partition(&d, &mut sys), (true, true));
    assert_eq!(mounted_rw(&lo.mnt), Some(true));
    let uuid = Command::new("blkid")
        .args(["-s", "UUID", "-o", "value", &lo.dev])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&uuid.stdout).trim(), DATA_UUID);
    fs::write(lo.mnt.join("keep"), "precious").unwrap();
    sys.umount(lo.mnt.to_str().unwrap(), false).unwrap();

    // Next boot: mounted as is, data kept.
    assert_eq!(data_partition(&d, &mut sys), (true, false));
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
    // Already mounted read-write: nothing to do.
    assert_eq!(data_partition(&d, &mut sys), (true, false));
    sys.umount(lo.mnt.to_str().unwrap(), false).unwrap();

    // Something mounted it read-only: made read-write, still not formatted.
    sys.mount(
        &lo.dev,
        lo.mnt.to_str().unwrap(),
        "ext4",
        myelin_init::sys::MountFlags::RDONLY,
        "",
    )
    .unwrap();
    assert_eq!(mounted_rw(&lo.mnt), Some(false));
    assert_eq!(data_partition(&d, &mut sys), (true, false));
    assert_eq!(mounted_rw(&lo.mnt), Some(true));
    assert_eq!(fs::read_to_string(lo.mnt.join("keep")).unwrap(), "precious");
    sys.umount(lo.mnt.to_str().unwrap(), false).unwrap();

    // Corrupted superblock: formatted again, the old data is gone.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&lo.dev).unwrap();
        f.write_all_at(&[0xa5; 4096], 0).unwrap();
        f.sync_all().unwrap();
    }
    assert_eq!(data_partition(&d, &mut sys), (true, true));
    assert!(!lo.mnt.join("keep").exists());
    assert!(
        log.iter().any(|l| l.starts_with("warning: formatting ")),
        "{log:?}"
    );
}

#[test]
fn f2fs_when_the_kernel_has_it() {
    if !can_run() {
        return;
    }
    let has_f2fs = fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("f2fs");
    let tmp = tempfile::Builder::new()
        .prefix("data-f2fs")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let lo = setup(tmp.path(), 64).expect("loop device");
    private_mount_namespace();
    let d = spec(&lo.dev, &lo.mnt, "f2fs");
    let mut log: Vec<String> = Vec::new();
    let mut logf = |l: Level, m: &str| log.push(format!("{}: {m}", l.name()));
    let mut sys = LinuxSys::new(&mut logf, None);
    let r = data_partition(&d, &mut sys);
    if has_f2fs {
        assert_eq!(r, (true, true), "{log:?}");
        assert_eq!(mounted_rw(&lo.mnt), Some(true));
    } else {
        // Without the driver, mount fails with ENODEV: formatting could not help and must not
        // happen.
        eprintln!(
            "note: this kernel has no f2fs; checking that an unsupported filesystem is not formatted"
        );
        assert_eq!(r, (false, false), "{log:?}");
        assert!(log.iter().all(|l| !l.contains("formatting")), "{log:?}");
        let magic = fs::read(&lo.dev).map(|b| b[1024..1028].to_vec()).unwrap();
        assert_eq!(magic, [0, 0, 0, 0], "device untouched");
    }
}
