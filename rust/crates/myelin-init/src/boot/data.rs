//! The data partition: mounted read-write, and never formatted while it may hold data.
//!
//! 1. Already mounted read-write: nothing to do. Mounted read-only: unmounted and done again.
//! 2. The start of the partition is read ([`super::fs_probe`]). It is formatted only when it
//!    holds no filesystem at all (every byte of its first 128 KiB the same): a fresh image's
//!    first boot, or after a factory reset wiped it (the reset is an explicit request, made with
//!    `myelin-update factory-reset`). ext4 gets a fixed UUID, so first boot does not wait for
//!    entropy.
//! 3. A superblock of the other filesystem type than configured (a wrong `fstype` in the
//!    U-Boot environment, say) is mounted as what it is, with a warning.
//! 4. If the mount fails or comes up read-only, the filesystem is checked: `e2fsck -p` (and,
//!    when it cannot even open the filesystem, `e2fsck -p` from each usual backup superblock
//!    location) or `fsck.f2fs -a`, then mounted again.
//! 5. When that fails too, or the partition cannot be read, the mount point becomes a tmpfs for
//!    this boot, the console and kmsg say so loudly, `myelinctl status` reports it
//!    (`tmpfs_fallback`), and the partition is left as it is.

use super::fs_probe::{PROBE_BYTES, Probe, probe};
use super::kernel_has;
use crate::config::{DataFs, DataSpec};
use crate::control::DataReport;
use crate::level::Level;
use crate::sys::{MountFlags, Sys, parse_mount_options};

/// Fixed UUID given to a freshly formatted ext4 data partition (a random one could block on
/// entropy during the first boot).
pub const DATA_UUID: &str = "6d79656c-696e-4d00-8000-646174610001";

/// Where the backup superblocks of an ext4 filesystem are, for each block size: (block, size).
const EXT4_BACKUPS: [(u32, u32); 3] = [(32768, 4096), (16384, 2048), (8193, 1024)];

/// How boot left the data partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataState {
    /// Mounted as it was.
    Mounted,
    /// It held no filesystem: formatted, then mounted.
    Formatted,
    /// Mounted after a filesystem check repaired it.
    Repaired,
    /// Unusable: a tmpfs is mounted in its place for this boot; the partition is untouched.
    TmpfsFallback,
}

impl DataState {
    /// The name `myelinctl status` shows.
    pub fn name(self) -> &'static str {
        match self {
            DataState::Mounted => "mounted",
            DataState::Formatted => "formatted",
            DataState::Repaired => "repaired",
            DataState::TmpfsFallback => "tmpfs_fallback",
        }
    }
}

/// What boot did with the data partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOutcome {
    /// The result.
    pub state: DataState,
    /// Block device.
    pub device: String,
    /// Filesystem mounted (`tmpfs` in the fallback).
    pub fstype: String,
    /// Mount point.
    pub mountpoint: String,
    /// Why it is not simply mounted.
    pub reason: Option<String>,
}

impl From<&DataOutcome> for DataReport {
    fn from(o: &DataOutcome) -> DataReport {
        DataReport {
            state: o.state.name().into(),
            device: o.device.clone(),
            fstype: o.fstype.clone(),
            mountpoint: o.mountpoint.clone(),
            reason: o.reason.clone(),
        }
    }
}

/// mkfs command line for a data partition.
pub fn mkfs_argv(device: &str, fs: DataFs) -> Vec<String> {
    let v: Vec<&str> = match fs {
        DataFs::Ext4 => vec![
            "mkfs.ext4",
            "-q",
            "-F",
            "-U",
            DATA_UUID,
            "-e",
            "remount-ro",
            device,
        ],
        DataFs::F2fs => vec!["mkfs.f2fs", "-q", "-f", device],
    };
    v.into_iter().map(String::from).collect()
}

/// The filesystem checks to try, in order, until one succeeds.
pub fn fsck_argvs(device: &str, fs: DataFs) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match fs {
        DataFs::Ext4 => {
            let mut v = vec![s(&["e2fsck", "-p", device])];
            for (block, size) in EXT4_BACKUPS {
                let (b, z) = (block.to_string(), size.to_string());
                v.push(s(&["e2fsck", "-p", "-b", &b, "-B", &z, device]));
            }
            v
        }
        DataFs::F2fs => vec![s(&["fsck.f2fs", "-a", device])],
    }
}

/// Errors after which nothing on the partition can help: no device, no driver, busy, not
/// allowed.
fn hopeless(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::ENXIO
                | libc::ENODEV
                | libc::EBUSY
                | libc::EACCES
                | libc::EPERM
                | libc::ENOTBLK
        )
    )
}

fn mounted_rw(sys: &mut dyn Sys, target: &str) -> Option<bool> {
    let m = sys.mounts().ok()?;
    m.iter()
        .rev()
        .find(|e| e.target == target)
        .map(|e| !e.readonly)
}

/// Mounts the partition read-write; `Err(why)` if it did not work (nothing left mounted).
fn mount_rw(sys: &mut dyn Sys, d: &DataSpec, fs: DataFs) -> Result<(), (String, bool)> {
    let (flags, opts) = parse_mount_options(&d.options).unwrap_or_default();
    match sys.mount(&d.device, &d.mountpoint, fs.as_str(), flags, &opts) {
        Ok(()) if mounted_rw(sys, &d.mountpoint) != Some(false) => Ok(()),
        Ok(()) => {
            let _ = sys.umount(&d.mountpoint, false);
            Err(("it comes up read-only".into(), false))
        }
        Err(e) => Err((format!("mount: {e}"), hopeless(&e))),
    }
}

fn outcome(d: &DataSpec, fs: DataFs, state: DataState, reason: Option<String>) -> DataOutcome {
    DataOutcome {
        state,
        device: d.device.clone(),
        fstype: fs.as_str().into(),
        mountpoint: d.mountpoint.clone(),
        reason,
    }
}

/// Mounts the data partition per the rules of this module.
pub fn data_partition(d: &DataSpec, sys: &mut dyn Sys) -> DataOutcome {
    if let Err(e) = sys.mkdir(&d.mountpoint, 0o755) {
        sys.log(Level::Err, &format!("cannot create {}: {e}", d.mountpoint));
    }
    match mounted_rw(sys, &d.mountpoint) {
        Some(true) => return outcome(d, d.fstype, DataState::Mounted, None),
        Some(false) => {
            sys.log(
                Level::Warning,
                &format!("{} is mounted read-only; remounting", d.mountpoint),
            );
            let _ = sys.umount(&d.mountpoint, false);
        }
        None => {}
    }
    let mut fs = d.fstype;
    let mut reason = None;
    match sys.read_prefix(&d.device, PROBE_BYTES) {
        Err(e) if hopeless(&e) => {
            return fallback(sys, d, format!("cannot open {}: {e}", d.device));
        }
        Err(e) => sys.log(
            Level::Err,
            &format!(
                "cannot read the start of {}: {e}; it will not be formatted",
                d.device
            ),
        ),
        Ok(start) => match probe(&start) {
            Probe::Blank => return first_format(sys, d),
            Probe::Ext4 => fs = DataFs::Ext4,
            Probe::F2fs => fs = DataFs::F2fs,
            Probe::Unknown => sys.log(
                Level::Warning,
                &format!(
                    "{} holds no {} superblock this boot recognises; it will not be formatted",
                    d.device,
                    d.fstype.as_str()
                ),
            ),
        },
    }
    if fs != d.fstype {
        let why = format!(
            "configured as {} but it holds {}: mounted as {}",
            d.fstype.as_str(),
            fs.as_str(),
            fs.as_str()
        );
        sys.log(Level::Warning, &format!("{}: {why}", d.device));
        reason = Some(why);
    }
    let first = match mount_rw(sys, d, fs) {
        Ok(()) => return outcome(d, fs, DataState::Mounted, reason),
        Err((why, true)) => return fallback(sys, d, format!("{}: {why}", d.device)),
        Err((why, false)) => why,
    };
    sys.log(
        Level::Err,
        &format!("cannot use {} ({first}): checking it", d.device),
    );
    match check(sys, &d.device, fs) {
        Ok(how) => match mount_rw(sys, d, fs) {
            Ok(()) => {
                let why = format!("{first}; repaired by {how}");
                sys.log(Level::Warning, &format!("{} {}", d.device, why));
                outcome(d, fs, DataState::Repaired, Some(why))
            }
            Err((again, _)) => fallback(
                sys,
                d,
                format!("{}: {first}; {how} ran, then {again}", d.device),
            ),
        },
        Err(failed) => fallback(sys, d, format!("{}: {first}; {failed}", d.device)),
    }
}

/// The filesystem checks that ran and did not fix the partition, each with how it ended.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join(", "))]
struct CheckFailed(Vec<String>);

/// Runs the filesystem checks until one succeeds; `Ok(what fixed it)`.
fn check(sys: &mut dyn Sys, device: &str, fs: DataFs) -> Result<String, CheckFailed> {
    let mut failed = Vec::new();
    for argv in fsck_argvs(device, fs) {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let shown = args.join(" ");
        match sys.run(&args) {
            // e2fsck: 0 clean, 1 fixed, 2 fixed (reboot advised, for a mounted root), 3 both.
            // fsck.f2fs: 0.
            Ok(code) if code < 4 && (fs == DataFs::Ext4 || code == 0) => return Ok(shown),
            // e2fsck 8: it could not open the filesystem; the next line tries a backup
            // superblock. Anything else (4: errors left) needs more than preening.
            Ok(8) if fs == DataFs::Ext4 => failed.push(format!("{shown}: exit 8")),
            Ok(code) => {
                failed.push(format!("{shown}: exit {code}"));
                break;
            }
            Err(e) => {
                failed.push(format!("cannot run {}: {e}", args[0]));
                break;
            }
        }
    }
    Err(CheckFailed(failed))
}

/// First boot or factory reset: the partition holds nothing, so it is formatted.
fn first_format(sys: &mut dyn Sys, d: &DataSpec) -> DataOutcome {
    let fs = d.fstype;
    if !d.format {
        return fallback(
            sys,
            d,
            format!("{} holds no filesystem and formatting is off", d.device),
        );
    }
    // Without the driver, formatting could not help (and mount(2) will say so clearly).
    if !kernel_has(sys, fs.as_str(), true) {
        return fallback(
            sys,
            d,
            format!(
                "{} holds no filesystem and this kernel has no {}",
                d.device,
                fs.as_str()
            ),
        );
    }
    sys.log(
        Level::Notice,
        &format!(
            "{} holds no filesystem (first boot or factory reset): formatting it as {}",
            d.device,
            fs.as_str()
        ),
    );
    let argv = mkfs_argv(&d.device, fs);
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    match sys.run(&args) {
        Ok(0) => {}
        Ok(code) => return fallback(sys, d, format!("{} failed with exit code {code}", argv[0])),
        Err(e) => return fallback(sys, d, format!("cannot run {}: {e}", argv[0])),
    }
    match mount_rw(sys, d, fs) {
        Ok(()) => outcome(
            d,
            fs,
            DataState::Formatted,
            Some("held no filesystem".into()),
        ),
        Err((why, _)) => fallback(sys, d, format!("{} after formatting: {why}", d.device)),
    }
}

/// The partition cannot be used: a tmpfs in its place, a loud message, the partition untouched.
fn fallback(sys: &mut dyn Sys, d: &DataSpec, why: String) -> DataOutcome {
    sys.log(Level::Crit, &format!("DATA PARTITION UNUSABLE: {why}"));
    sys.log(
        Level::Crit,
        &format!(
            "{} is a tmpfs for this boot: nothing written there survives a reboot. {} was left as it is; only a factory reset formats it",
            d.mountpoint, d.device
        ),
    );
    let mut reason = why;
    if let Err(e) = sys.mount(
        "tmpfs",
        &d.mountpoint,
        "tmpfs",
        MountFlags(libc::MS_NOSUID | libc::MS_NODEV),
        "mode=0755,size=25%",
    ) {
        sys.log(Level::Crit, &format!("and tmpfs on {}: {e}", d.mountpoint));
        reason.push_str(&format!(" (and tmpfs: {e})"));
    }
    DataOutcome {
        state: DataState::TmpfsFallback,
        device: d.device.clone(),
        fstype: "tmpfs".into(),
        mountpoint: d.mountpoint.clone(),
        reason: Some(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sys::MountEntry;
    use crate::sys::fake::FakeSys;
    use std::path::Path;

    fn data(extra: &str) -> DataSpec {
        Config::parse(
            &format!("[boot.data]\ndevice = \"/dev/sda4\"\n{extra}"),
            Path::new("t.toml"),
        )
        .unwrap()
        .boot
        .data
        .unwrap()
    }

    fn ext4() -> Vec<u8> {
        let mut b = vec![0; PROBE_BYTES];
        b[1080..1082].copy_from_slice(&[0x53, 0xef]);
        b[4096..4100].copy_from_slice(b"desc");
        b
    }

    fn disk(content: Vec<u8>) -> FakeSys {
        let mut s = FakeSys::default();
        s.bytes("/dev/sda4", content);
        s.file("/proc/filesystems", "\text4\n\tf2fs\n");
        s
    }

    fn mounted(readonly: bool) -> MountEntry {
        MountEntry {
            source: "/dev/sda4".into(),
            target: "/data".into(),
            root: "/".into(),
            fstype: "ext4".into(),
            readonly,
        }
    }

    fn no_mkfs(trace: &[String]) -> bool {
        trace.iter().all(|l| !l.contains("mkfs"))
    }

    #[test]
    fn a_filesystem_is_mounted_as_it_is() {
        let mut s = disk(ext4());
        let o = data_partition(&data(""), &mut s);
        assert_eq!(
            s.take(),
            ["mkdir /data 755", "mount /dev/sda4 /data ext4 - \"\""]
        );
        assert_eq!((o.state, o.reason), (DataState::Mounted, None));
    }

    #[test]
    fn a_failed_mount_is_checked_then_mounted_never_formatted() {
        let mut s = disk(ext4());
        s.fail_mount.insert("/data".into(), vec![libc::EUCLEAN]);
        s.run_exit.insert("e2fsck".into(), vec![1]);
        let o = data_partition(&data(""), &mut s);
        assert_eq!(
            s.take(),
            [
                "mkdir /data 755",
                "mount /dev/sda4 /data ext4 - \"\"",
                "log err: cannot use /dev/sda4 (mount: Structure needs cleaning (os error 117)): checking it",
                "run e2fsck -p /dev/sda4",
                "mount /dev/sda4 /data ext4 - \"\"",
                "log warning: /dev/sda4 mount: Structure needs cleaning (os error 117); repaired by e2fsck -p /dev/sda4",
            ]
        );
        assert_eq!(o.state, DataState::Repaired);
    }

    #[test]
    fn a_damaged_superblock_is_repaired_from_a_backup() {
        // Two bytes of the primary superblock gone: not blank, so never formatted.
        let mut start = ext4();
        start[1080..1082].copy_from_slice(&[0, 0]);
        let mut s = disk(start);
        s.fail_mount.insert("/data".into(), vec![libc::EINVAL]);
        // e2fsck -p cannot open it, nor from the 4 KiB and 2 KiB backups; the 1 KiB one works.
        s.run_exit.insert("e2fsck".into(), vec![8, 8, 8, 1]);
        let o = data_partition(&data(""), &mut s);
        let t = s.take();
        assert!(no_mkfs(&t), "{t:#?}");
        assert_eq!(
            t[1],
            "log warning: /dev/sda4 holds no ext4 superblock this boot recognises; it will not be formatted"
        );
        assert_eq!(
            t.iter()
                .filter(|l| l.starts_with("run "))
                .collect::<Vec<_>>(),
            [
                "run e2fsck -p /dev/sda4",
                "run e2fsck -p -b 32768 -B 4096 /dev/sda4",
                "run e2fsck -p -b 16384 -B 2048 /dev/sda4",
                "run e2fsck -p -b 8193 -B 1024 /dev/sda4",
            ]
        );
        assert_eq!(o.state, DataState::Repaired);
        assert!(
            o.reason
                .unwrap()
                .ends_with("repaired by e2fsck -p -b 8193 -B 1024 /dev/sda4")
        );
    }

    #[test]
    fn what_cannot_be_repaired_is_left_alone_under_a_tmpfs() {
        let mut s = disk(ext4());
        // Still unmountable after the check (a bad mount option, say).
        s.fail_mount
            .insert("/data".into(), vec![libc::EINVAL, libc::EINVAL]);
        let o = data_partition(&data("options = \"nodev,bogus=1\""), &mut s);
        let t = s.take();
        assert!(no_mkfs(&t), "{t:#?}");
        assert_eq!(
            t[t.len() - 3..],
            [
                "log crit: DATA PARTITION UNUSABLE: /dev/sda4: mount: Invalid argument (os error 22); e2fsck -p /dev/sda4 ran, then mount: Invalid argument (os error 22)",
                "log crit: /data is a tmpfs for this boot: nothing written there survives a reboot. /dev/sda4 was left as it is; only a factory reset formats it",
                "mount tmpfs /data tmpfs nosuid,nodev \"mode=0755,size=25%\"",
            ]
        );
        assert_eq!(
            (o.state, o.fstype.as_str()),
            (DataState::TmpfsFallback, "tmpfs")
        );
        // e2fsck leaving errors (exit 4) is not preened further: fallback too.
        let mut s = disk(ext4());
        s.fail_mount.insert("/data".into(), vec![libc::EUCLEAN]);
        s.run_exit.insert("e2fsck".into(), vec![4]);
        let o = data_partition(&data(""), &mut s);
        let t = s.take();
        assert_eq!(
            t.iter().filter(|l| l.starts_with("run ")).count(),
            1,
            "{t:#?}"
        );
        assert!(o.reason.unwrap().ends_with("e2fsck -p /dev/sda4: exit 4"));
    }

    #[test]
    fn an_unreadable_start_is_not_formatted() {
        let mut s = disk(vec![0xff; PROBE_BYTES]);
        s.read_error.insert("/dev/sda4".into(), libc::EIO);
        s.fail_mount
            .insert("/data".into(), vec![libc::EIO, libc::EIO]);
        s.run_exit.insert("e2fsck".into(), vec![8]);
        let o = data_partition(&data(""), &mut s);
        let t = s.take();
        assert!(no_mkfs(&t), "{t:#?}");
        assert_eq!(
            t[1],
            "log err: cannot read the start of /dev/sda4: Input/output error (os error 5); it will not be formatted"
        );
        assert_eq!(o.state, DataState::TmpfsFallback);
        // A device that is not there at all: no check either.
        let mut s = FakeSys::default();
        let o = data_partition(&data(""), &mut s);
        let t = s.take();
        assert!(t.iter().all(|l| !l.starts_with("run ")), "{t:#?}");
        assert_eq!(
            o.reason.as_deref(),
            Some("cannot open /dev/sda4: No such file or directory (os error 2)")
        );
    }

    #[test]
    fn the_filesystem_found_wins_over_a_wrong_fstype() {
        let mut s = disk(ext4());
        let o = data_partition(&data("fstype = \"f2fs\""), &mut s);
        assert_eq!(
            s.take(),
            [
                "mkdir /data 755",
                "log warning: /dev/sda4: configured as f2fs but it holds ext4: mounted as ext4",
                "mount /dev/sda4 /data ext4 - \"\"",
            ]
        );
        assert_eq!((o.state, o.fstype.as_str()), (DataState::Mounted, "ext4"));
        assert!(o.reason.is_some());
    }

    #[test]
    fn only_a_blank_start_is_formatted() {
        let mut s = disk(vec![0; PROBE_BYTES]);
        let o = data_partition(&data("fstype = \"f2fs\""), &mut s);
        assert_eq!(
            s.take(),
            [
                "mkdir /data 755",
                "log notice: /dev/sda4 holds no filesystem (first boot or factory reset): formatting it as f2fs",
                "run mkfs.f2fs -q -f /dev/sda4",
                "mount /dev/sda4 /data f2fs - \"\"",
            ]
        );
        assert_eq!(o.state, DataState::Formatted);
        // Formatting off, or no driver for the filesystem: nothing is written.
        for (extra, fs) in [("format = false", "\text4\n"), ("", "nodev\tproc\n")] {
            let mut s = disk(vec![0; PROBE_BYTES]);
            s.file("/proc/filesystems", fs);
            let o = data_partition(&data(extra), &mut s);
            assert!(no_mkfs(&s.take()));
            assert_eq!(o.state, DataState::TmpfsFallback);
        }
        // mkfs failing: fallback, said why.
        let mut s = disk(vec![0; PROBE_BYTES]);
        s.run_exit.insert("mkfs.ext4".into(), vec![1]);
        let o = data_partition(&data(""), &mut s);
        assert_eq!(
            o.reason.as_deref(),
            Some("mkfs.ext4 failed with exit code 1")
        );
    }

    #[test]
    fn read_only_mounts_are_remounted_or_checked() {
        // Mounted read-only by someone else: unmounted and mounted again.
        let mut s = disk(ext4());
        s.mount_table.push(mounted(true));
        let o = data_partition(&data(""), &mut s);
        assert_eq!(
            s.take(),
            [
                "mkdir /data 755",
                "log warning: /data is mounted read-only; remounting",
                "umount /data",
                "mount /dev/sda4 /data ext4 - \"\""
            ]
        );
        assert_eq!(o.state, DataState::Mounted);
        // Comes up read-only (errors=remount-ro): checked, never formatted.
        let mut s = disk(ext4());
        s.mount_readonly.insert("/data".into());
        let o = data_partition(&data(""), &mut s);
        let t = s.take();
        assert!(no_mkfs(&t), "{t:#?}");
        assert!(t.contains(&"run e2fsck -p /dev/sda4".to_string()), "{t:#?}");
        assert_eq!(o.state, DataState::TmpfsFallback);
        // Already mounted read-write: nothing to do.
        let mut s = disk(ext4());
        s.mount_table.push(mounted(false));
        assert_eq!(data_partition(&data(""), &mut s).state, DataState::Mounted);
        assert_eq!(s.take(), ["mkdir /data 755"]);
    }
}
