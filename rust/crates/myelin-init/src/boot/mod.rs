//! PID 1's boot duties, before any service starts. Each can be turned off in `[boot]`; all of
//! them with `enabled = false` (containers and namespace tests, where devtmpfs cannot be
//! mounted). In order:
//!
//! 1. Pseudo filesystems, each unless already mounted: `proc` on /proc, `sysfs` on /sys
//!    (nosuid,nodev,noexec), `cgroup2` on /sys/fs/cgroup when the kernel has it (one cgroup per
//!    service, see [`crate::tracking`]), `devtmpfs` on /dev (nosuid,noexec), `devpts` on
//!    /dev/pts (gid=5,mode=620), `tmpfs` on /dev/shm (mode 1777). Ctrl-Alt-Del is then turned
//!    into a SIGINT to PID 1 (a clean reboot) instead of an immediate one.
//! 2. `/dev/rootdisk0[pN]` links ([`crate::rootdisk`]).
//! 3. The console: stdin, stdout and stderr reopened on `/dev/<console>`; then, on an image built
//!    without firmware public keys, the DEVELOPMENT IMAGE banner ([`development`]).
//! 4. Resource limits, inherited by every service.
//! 5. `tmpfs` on /tmp (mode 1777, 10 % of RAM) and /run (mode 755, 5 %), noexec,nosuid,nodev;
//!    /run/lock (where the U-Boot environment's lock lives) is made root's, mode 0755, whatever
//!    was there, so no other user can plant or hold that lock.
//! 6. Clock floor: a clock before the build time is set to the build time.
//! 7. Loopback up (the kernel then adds 127.0.0.1/8 and ::1).
//! 8. Hostname: the pattern applied to the serial number ([`crate::serial_number`],
//!    [`crate::hostname`]); without a pattern, the first line of /etc/hostname.
//! 9. Extra mounts, best effort (the mount point is created).
//! 10. The data partition ([`data`]): formatted only when it holds no filesystem at all (a fresh
//!     image's first boot, a factory reset), otherwise checked and repaired if it cannot be
//!     mounted, and never formatted: when nothing helps, /data is a tmpfs for this boot, loudly.
//! 11. The saved-time floor (`time_file`'s mtime, written at every shutdown).
//! 12. The RNG seed ([`crate::rng_seed`]).
//! 13. The previous boot's pstore records (console, panic report) moved to `pstore_archive`
//!     ([`pstore`]); `pstore` is mounted on /sys/fs/pstore with the other pseudo filesystems.
//!
//! Failures are logged and boot goes on: a device with a broken /data still runs its services
//! and can be reached.

pub mod data;
pub mod development;
pub mod fs_probe;
pub mod pstore;

use crate::config::{BootConfig, DataFs, DataSpec};
use crate::fw_env::EnvSource;
use crate::level::Level;
use crate::sys::{MountEntry, MountFlags, Sys, parse_mount_options};

pub use data::{DATA_UUID, DataOutcome, DataState, data_partition};

/// What boot found out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// Hostname set.
    pub hostname: Option<String>,
    /// Serial number and its source.
    pub serial: Option<(String, String)>,
    /// Disk holding root.
    pub rootdisk: Option<String>,
    /// What happened to the data partition (`None`: none configured).
    pub data: Option<DataOutcome>,
    /// The previous boot's pstore records, when `pstore_archive` is set.
    pub pstore: Option<pstore::Collected>,
}

fn mounted(mounts: &[MountEntry], target: &str) -> bool {
    mounts.iter().any(|m| m.target == target)
}

fn mount_once(
    sys: &mut dyn Sys,
    mounts: &[MountEntry],
    src: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) {
    if mounted(mounts, target) {
        return;
    }
    if let Err(e) = sys.mkdir(target, 0o755) {
        sys.log(Level::Warning, &format!("cannot create {target}: {e}"));
    }
    if let Err(e) = sys.mount(src, target, fstype, flags, data) {
        sys.log(
            Level::Err,
            &format!("cannot mount {fstype} on {target}: {e}"),
        );
    }
}

/// Runs the boot duties.
pub fn run(
    cfg: &BootConfig,
    sys: &mut dyn Sys,
    env: &mut dyn EnvSource,
    build_time: i64,
) -> BootReport {
    let mut env = CachedEnv {
        inner: env,
        vars: None,
    };
    let env = &mut env;
    let mut report = BootReport::default();
    if !cfg.enabled {
        return report;
    }
    let nosuid_noexec = MountFlags(libc::MS_NOSUID | libc::MS_NOEXEC);
    sys.phase("pseudo filesystems");
    if cfg.pseudo_fs {
        let m = sys.mounts().unwrap_or_default();
        mount_once(sys, &m, "proc", "/proc", "proc", MountFlags::PSEUDO, "");
        let m = sys.mounts().unwrap_or_default();
        mount_once(sys, &m, "sysfs", "/sys", "sysfs", MountFlags::PSEUDO, "");
        if kernel_has(sys, "cgroup2", false) {
            let m = sys.mounts().unwrap_or_default();
            mount_once(
                sys,
                &m,
                "cgroup2",
                "/sys/fs/cgroup",
                "cgroup2",
                MountFlags::PSEUDO,
                "",
            );
        }
        if kernel_has(sys, "pstore", false) {
            mount_once(
                sys,
                &m,
                "pstore",
                pstore::PSTORE_MOUNT,
                "pstore",
                MountFlags::PSEUDO,
                "",
            );
        }
        mount_once(
            sys,
            &m,
            "devtmpfs",
            "/dev",
            "devtmpfs",
            nosuid_noexec,
            "mode=0755",
        );
        mount_once(
            sys,
            &m,
            "devpts",
            "/dev/pts",
            "devpts",
            nosuid_noexec,
            "gid=5,mode=620,ptmxmode=666",
        );
        mount_once(
            sys,
            &m,
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MountFlags(libc::MS_NOSUID | libc::MS_NODEV),
            "mode=1777",
        );
        if let Err(e) = sys.ctrl_alt_del(false) {
            sys.log(
                Level::Info,
                &format!("Ctrl-Alt-Del stays an immediate reboot: {e}"),
            );
        }
    }
    sys.phase("root disk links");
    if cfg.rootdisk_links {
        match crate::rootdisk::create_links(sys) {
            Ok(d) => report.rootdisk = d,
            Err(e) => sys.log(Level::Warning, &format!("no /dev/rootdisk0 links: {e}")),
        }
    }
    if let Some(c) = &cfg.console {
        let path = if c.starts_with('/') {
            c.clone()
        } else {
            format!("/dev/{c}")
        };
        if let Err(e) = sys.console(&path) {
            sys.log(Level::Err, &format!("cannot use console {path}: {e}"));
        }
    }
    development::announce(sys);
    for (res, lim) in &cfg.rlimits {
        if let Err(e) = sys.set_rlimit(res, *lim) {
            sys.log(Level::Warning, &format!("cannot set rlimit {res}: {e}"));
        }
    }
    sys.phase("tmpfs, clock floor, loopback");
    if cfg.tmpfs {
        let m = sys.mounts().unwrap_or_default();
        mount_once(
            sys,
            &m,
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::PSEUDO,
            "mode=1777,size=10%",
        );
        mount_once(
            sys,
            &m,
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::PSEUDO,
            "mode=0755,size=5%",
        );
        // /var/lock points here (Buildroot's layout); the fresh tmpfs hid the skeleton's copy,
        // and fw_printenv's lock and the KV daemon's watch on it need the directory. Root's
        // alone: a lock file another user could create first would be theirs to hold.
        if let Err(e) = sys.secure_dir("/run/lock", 0o755) {
            sys.log(Level::Warning, &format!("cannot create /run/lock: {e}"));
        }
    }
    if cfg.clock_floor {
        let from_file = cfg
            .build_time_file
            .as_ref()
            .and_then(|p| sys.read_file(&p.to_string_lossy()).ok())
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<i64>().ok())
            .unwrap_or(0);
        clock_floor(sys, build_time.max(from_file), "the build time");
    }
    if cfg.loopback {
        if let Err(e) = sys.interface_up("lo") {
            sys.log(Level::Warning, &format!("cannot bring lo up: {e}"));
        }
    }
    sys.phase("hostname");
    hostname(cfg, sys, env, &mut report);
    sys.phase("mounts");
    for m in &cfg.mount {
        let (flags, data) = parse_mount_options(&m.options).unwrap_or_default();
        let _ = sys.mkdir(&m.target, 0o755);
        if let Err(e) = sys.mount(&m.source, &m.target, &m.fstype, flags, &data) {
            sys.log(
                Level::Warning,
                &format!("cannot mount {} on {}: {e}", m.source, m.target),
            );
        }
    }
    sys.phase("data partition");
    if let Some(d) = &cfg.data {
        let d = if d.from_uboot_env {
            let cmdline = sys.read_file("/proc/cmdline").unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            data_from_env(d, env.vars().as_ref(), running_slot(&cmdline))
        } else {
            d.clone()
        };
        report.data = Some(data_partition(&d, sys));
    }
    if let Some(t) = &cfg.time_file {
        if let Ok(mtime) = sys.mtime(&t.to_string_lossy()) {
            clock_floor(sys, mtime, "the last shutdown");
        }
    }
    sys.phase("clock from time file, rng seed");
    if let Some(p) = &cfg.rng_seed {
        crate::rng_seed::restore(sys, &p.to_string_lossy());
    }
    if let Some(archive) = &cfg.pstore_archive {
        sys.phase("previous boot's pstore records");
        report.pstore = Some(pstore::collect(
            sys,
            pstore::PSTORE_MOUNT,
            &archive.to_string_lossy(),
        ));
    }
    report
}

/// Caches the environment: boot reads it at most once.
struct CachedEnv<'a> {
    inner: &'a mut dyn EnvSource,
    vars: Option<Option<myelin_ubootenv::Vars>>,
}

impl EnvSource for CachedEnv<'_> {
    fn vars(&mut self) -> Option<myelin_ubootenv::Vars> {
        if self.vars.is_none() {
            self.vars = Some(self.inner.vars());
        }
        self.vars.clone().flatten()
    }
}

/// The slot the bootloader booted, as it says on the kernel command line (`myelin.slot=a|b`:
/// GRUB's grub.cfg, the Raspberry Pis' cmdline-a/b.txt, the BeagleBone's U-Boot script).
pub fn running_slot(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("myelin.slot="))
        .filter(|s| matches!(*s, "a" | "b"))
}

/// The data partition as the U-Boot environment describes it for the running firmware:
/// `<slot>.nerves_fw_application_part0_devpath`, `_fstype` and `_target` of the `running` slot,
/// else of the active one (`nerves_fw_active`), else of slot a then b. What is missing or
/// invalid there keeps the configured value.
///
/// The running slot comes first because the active one is not always it: on the trial boot of
/// a Nerves device migrating to Myelin, `nerves_fw_active` still names the Nerves slot (Nerves
/// picks the slot its next upgrade overwrites by that key), whose keys describe Nerves' own
/// mount (`/root`), not the firmware that runs.
pub fn data_from_env(
    d: &DataSpec,
    vars: Option<&myelin_ubootenv::Vars>,
    running: Option<&str>,
) -> DataSpec {
    let mut out = d.clone();
    let Some(vars) = vars else { return out };
    let active = vars
        .get("nerves_fw_active")
        .map(String::as_str)
        .filter(|s| matches!(*s, "a" | "b"));
    let slots: Vec<&str> = match running.or(active) {
        Some(s) => vec![s],
        None => vec!["a", "b"],
    };
    let get = |key: &str| {
        slots.iter().find_map(|s| {
            vars.get(&format!("{s}.nerves_fw_application_part0_{key}"))
                .filter(|v| !v.is_empty())
        })
    };
    if let Some(dev) = get("devpath").filter(|v| v.starts_with('/')) {
        out.device = dev.clone();
    }
    match get("fstype").map(String::as_str) {
        Some("ext4") => out.fstype = DataFs::Ext4,
        Some("f2fs") => out.fstype = DataFs::F2fs,
        _ => {}
    }
    if let Some(t) = get("target").filter(|v| v.starts_with('/')) {
        out.mountpoint = t.clone();
    }
    out
}

/// Whether the kernel knows a filesystem type (a line of /proc/filesystems); `unknown` if that
/// cannot be read.
pub fn kernel_has(sys: &mut dyn Sys, fstype: &str, unknown: bool) -> bool {
    match sys.read_file("/proc/filesystems") {
        Ok(b) => String::from_utf8_lossy(&b)
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fstype)),
        Err(_) => unknown,
    }
}

fn clock_floor(sys: &mut dyn Sys, floor: i64, what: &str) {
    let now = sys.realtime();
    if now < floor {
        match sys.set_realtime(floor) {
            Ok(()) => sys.log(
                Level::Notice,
                &format!("clock was {now}, set to {floor} ({what})"),
            ),
            Err(e) => sys.log(
                Level::Warning,
                &format!("cannot set the clock to {what}: {e}"),
            ),
        }
    }
}

fn hostname(cfg: &BootConfig, sys: &mut dyn Sys, env: &mut dyn EnvSource, report: &mut BootReport) {
    let name = match &cfg.hostname {
        Some(pattern) => {
            let (serial, source) =
                crate::serial_number::find(&cfg.serial_sources, &cfg.uboot_serial_keys, sys, env)
                    .unwrap_or_else(|| (crate::hostname::DEFAULT_SERIAL.to_string(), "default"));
            report.serial = Some((serial.clone(), source.to_string()));
            crate::hostname::format(pattern, &serial)
        }
        None => sys
            .read_file("/etc/hostname")
            .ok()
            .and_then(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
            .filter(|h| !h.is_empty()),
    };
    if let Some(n) = name {
        match sys.set_hostname(&n) {
            Ok(()) => report.hostname = Some(n),
            Err(e) => sys.log(Level::Warning, &format!("cannot set hostname {n}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fw_env::NoEnv;
    use crate::sys::fake::FakeSys;
    use std::path::Path;

    fn boot(toml: &str) -> BootConfig {
        Config::parse(toml, Path::new("t.toml")).unwrap().boot
    }

    fn board() -> FakeSys {
        let mut s = FakeSys {
            now: 1000,
            root_dev: (179, 2),
            ..Default::default()
        };
        s.file("/sys/block/mmcblk0/dev", "179:0\n");
        for n in 1..=4 {
            s.file(
                &format!("/sys/block/mmcblk0/mmcblk0p{n}/partition"),
                &format!("{n}\n"),
            );
            s.file(
                &format!("/sys/block/mmcblk0/mmcblk0p{n}/dev"),
                &format!("179:{n}\n"),
            );
        }
        s.file("/proc/cpuinfo", "Serial\t\t: 100000001234abcd\n");
        s.file(
            "/proc/filesystems",
            "nodev\tsysfs\nnodev\tcgroup2\n\text4\n",
        );
        s
    }

    const PRODUCTION: &str = r#"
[boot]
console = "ttyS0"
hostname = "myelin-%-.4s"
rlimits = { core = "0:unlimited", nofile = 4096 }
time_file = "/data/myelin/time"
rng_seed = "/data/myelin/seed"
[[boot.mount]]
source = "/dev/rootdisk0p1"
target = "/boot"
fstype = "vfat"
options = "ro,nodev,noexec,nosuid"
[boot.data]
device = "/dev/rootdisk0p4"
"#;

    #[test]
    fn golden_first_boot_of_a_fresh_image() {
        let cfg = boot(PRODUCTION);
        let mut s = board();
        // The `complete` task wiped the start of /data.
        s.bytes("/dev/rootdisk0p4", vec![0xff; fs_probe::PROBE_BYTES]);
        s.mtimes.insert("/data/myelin/time".into(), 1_800_000_000);
        let r = run(&cfg, &mut s, &mut NoEnv, 1_700_000_000);
        assert_eq!(
            s.take(),
            [
                "mkdir /proc 755",
                "mount proc /proc proc nosuid,nodev,noexec \"\"",
                "mkdir /sys 755",
                "mount sysfs /sys sysfs nosuid,nodev,noexec \"\"",
                "mkdir /sys/fs/cgroup 755",
                "mount cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec \"\"",
                "mkdir /dev 755",
                "mount devtmpfs /dev devtmpfs nosuid,noexec \"mode=0755\"",
                "mkdir /dev/pts 755",
                "mount devpts /dev/pts devpts nosuid,noexec \"gid=5,mode=620,ptmxmode=666\"",
                "mkdir /dev/shm 755",
                "mount tmpfs /dev/shm tmpfs nosuid,nodev \"mode=1777\"",
                "ctrl_alt_del immediate=false",
                "symlink /dev/rootdisk0 -> /dev/mmcblk0",
                "symlink /dev/rootdisk0p1 -> /dev/mmcblk0p1",
                "symlink /dev/rootdisk0p2 -> /dev/mmcblk0p2",
                "symlink /dev/rootdisk0p3 -> /dev/mmcblk0p3",
                "symlink /dev/rootdisk0p4 -> /dev/mmcblk0p4",
                "console /dev/ttyS0",
                "setrlimit core Some(0) None",
                "setrlimit nofile Some(4096) Some(4096)",
                "mkdir /tmp 755",
                "mount tmpfs /tmp tmpfs nosuid,nodev,noexec \"mode=1777,size=10%\"",
                "mkdir /run 755",
                "mount tmpfs /run tmpfs nosuid,nodev,noexec \"mode=0755,size=5%\"",
                "secure_dir /run/lock 755 root",
                "settime 1700000000",
                "log notice: clock was 1000, set to 1700000000 (the build time)",
                "ifup lo",
                "sethostname myelin-abcd",
                "mkdir /boot 755",
                "mount /dev/rootdisk0p1 /boot vfat ro,nosuid,nodev,noexec \"\"",
                "mkdir /data 755",
                "log notice: /dev/rootdisk0p4 holds no filesystem (first boot or factory reset): formatting it as ext4",
                "run mkfs.ext4 -q -F -U 6d79656c-696e-4d00-8000-646174610001 -e remount-ro /dev/rootdisk0p4",
                "mount /dev/rootdisk0p4 /data ext4 - \"\"",
                "settime 1800000000",
                "log notice: clock was 1700000000, set to 1800000000 (the last shutdown)",
                "log info: no RNG seed at /data/myelin/seed yet",
                "random 64",
                "replace /data/myelin/seed 65 bytes mode 600",
            ]
        );
        assert_eq!(r.hostname.as_deref(), Some("myelin-abcd"));
        assert_eq!(
            r.serial,
            Some(("100000001234abcd".into(), "cpuinfo".into()))
        );
        assert_eq!(r.rootdisk.as_deref(), Some("mmcblk0"));
        let data = r.data.unwrap();
        assert_eq!(data.state, DataState::Formatted);
        assert_eq!(
            (data.device.as_str(), data.fstype.as_str()),
            ("/dev/rootdisk0p4", "ext4")
        );
    }

    #[test]
    fn golden_later_boot_skips_what_is_mounted() {
        let cfg = boot(
            "[boot]\nrootdisk_links = false\nloopback = false\n[boot.data]\ndevice = \"/dev/vda4\"\nfstype = \"f2fs\"\noptions = \"nodev\"\n",
        );
        let mut s = board();
        s.now = 2_000_000_000;
        for (src, t, f) in [
            ("proc", "/proc", "proc"),
            ("sysfs", "/sys", "sysfs"),
            ("devtmpfs", "/dev", "devtmpfs"),
        ] {
            s.mount_table.push(MountEntry {
                source: src.into(),
                target: t.into(),
                root: "/".into(),
                fstype: f.into(),
                readonly: false,
            });
        }
        s.file("/etc/hostname", "bench-unit\n");
        s.bytes("/dev/vda4", f2fs_start());
        let r = run(&cfg, &mut s, &mut NoEnv, 1_700_000_000);
        assert_eq!(
            s.take(),
            [
                "mkdir /sys/fs/cgroup 755",
                "mount cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec \"\"",
                "mkdir /dev/pts 755",
                "mount devpts /dev/pts devpts nosuid,noexec \"gid=5,mode=620,ptmxmode=666\"",
                "mkdir /dev/shm 755",
                "mount tmpfs /dev/shm tmpfs nosuid,nodev \"mode=1777\"",
                "ctrl_alt_del immediate=false",
                "mkdir /tmp 755",
                "mount tmpfs /tmp tmpfs nosuid,nodev,noexec \"mode=1777,size=10%\"",
                "mkdir /run 755",
                "mount tmpfs /run tmpfs nosuid,nodev,noexec \"mode=0755,size=5%\"",
                "secure_dir /run/lock 755 root",
                "sethostname bench-unit",
                "mkdir /data 755",
                "mount /dev/vda4 /data f2fs nodev \"\"",
            ]
        );
        assert_eq!(r.data.unwrap().state, DataState::Mounted);
    }

    #[test]
    fn disabled_boot_does_nothing() {
        let cfg = boot("[boot]\nenabled = false\nhostname = \"x-%s\"\n");
        let mut s = board();
        assert_eq!(run(&cfg, &mut s, &mut NoEnv, 1), BootReport::default());
        assert!(s.take().is_empty());
    }

    fn f2fs_start() -> Vec<u8> {
        let mut b = vec![0; fs_probe::PROBE_BYTES];
        b[1024..1028].copy_from_slice(&[0x10, 0x20, 0xf5, 0xf2]);
        b
    }

    #[test]
    fn running_slot_is_read_from_the_command_line() {
        let grub = "root=PARTUUID=04030201-03 rootfstype=squashfs ro myelin.slot=b";
        assert_eq!(running_slot(grub), Some("b"));
        assert_eq!(running_slot("myelin.slot=a\n"), Some("a"));
        assert_eq!(running_slot("root=/dev/mmcblk0p5 quiet"), None);
        assert_eq!(running_slot("myelin.slot=c xmyelin.slot=a"), None);
    }

    #[test]
    fn data_partition_from_the_uboot_environment() {
        let d = boot("[boot.data]\ndevice = \"/dev/sda4\"\nfrom_uboot_env = true\n")
            .data
            .unwrap();
        let vars = |pairs: &[(&str, &str)]| -> myelin_ubootenv::Vars {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let v = vars(&[
            ("nerves_fw_active", "b"),
            ("a.nerves_fw_application_part0_devpath", "/dev/wrong"),
            ("b.nerves_fw_application_part0_devpath", "/dev/rootdisk0p7"),
            ("b.nerves_fw_application_part0_fstype", "f2fs"),
            ("b.nerves_fw_application_part0_target", "/root"),
        ]);
        let r = data_from_env(&d, Some(&v), None);
        assert_eq!(
            (r.device.as_str(), r.fstype, r.mountpoint.as_str()),
            ("/dev/rootdisk0p7", DataFs::F2fs, "/root")
        );
        // The trial boot of a migrated Nerves device: the active slot is still Nerves' (a,
        // mounted on /root), the running one is Myelin's (b, /data). The running slot wins.
        let v = vars(&[
            ("nerves_fw_active", "a"),
            ("a.nerves_fw_application_part0_devpath", "/dev/rootdisk0p4"),
            ("a.nerves_fw_application_part0_target", "/root"),
            ("b.nerves_fw_application_part0_devpath", "/dev/rootdisk0p4"),
            ("b.nerves_fw_application_part0_target", "/data"),
        ]);
        assert_eq!(data_from_env(&d, Some(&v), None).mountpoint, "/root");
        assert_eq!(data_from_env(&d, Some(&v), Some("b")).mountpoint, "/data");
        // No active slot: a, then b. Nonsense values keep the configuration's.
        let v = vars(&[
            ("b.nerves_fw_application_part0_devpath", "/dev/mmcblk0p4"),
            ("a.nerves_fw_application_part0_fstype", "btrfs"),
        ]);
        let r = data_from_env(&d, Some(&v), None);
        assert_eq!(
            (r.device.as_str(), r.fstype, r.mountpoint.as_str()),
            ("/dev/mmcblk0p4", DataFs::Ext4, "/data")
        );
        assert_eq!(data_from_env(&d, None, Some("a")), d);

        struct Env(myelin_ubootenv::Vars, usize);
        impl EnvSource for Env {
            fn vars(&mut self) -> Option<myelin_ubootenv::Vars> {
                self.1 += 1;
                Some(self.0.clone())
            }
        }
        // Through boot: the serial number and the partition come from one read.
        let cfg = boot(
            "[boot]\npseudo_fs = false\nrootdisk_links = false\ntmpfs = false\nclock_floor = false\nloopback = false\n\
             hostname = \"m-%s\"\n[boot.data]\ndevice = \"/dev/sda4\"\nfrom_uboot_env = true\n",
        );
        let mut env = Env(
            vars(&[
                ("serial_number", "SN9"),
                ("a.nerves_fw_application_part0_devpath", "/dev/vda4"),
            ]),
            0,
        );
        let mut s = FakeSys::default();
        let mut ext4 = vec![0; fs_probe::PROBE_BYTES];
        ext4[1080..1082].copy_from_slice(&[0x53, 0xef]);
        s.bytes("/dev/vda4", ext4);
        run(&cfg, &mut s, &mut env, 0);
        assert_eq!(env.1, 1);
        assert_eq!(
            s.take(),
            [
                "sethostname m-sn9",
                "mkdir /data 755",
                "mount /dev/vda4 /data ext4 - \"\""
            ]
        );
    }

    #[test]
    fn build_time_file_is_a_floor_too() {
        let cfg = boot(
            "[boot]\npseudo_fs = false\nrootdisk_links = false\ntmpfs = false\nloopback = false\n",
        );
        let mut s = FakeSys {
            now: 100,
            ..Default::default()
        };
        s.file("/etc/myelin/build-time", "1900000000\n");
        run(&cfg, &mut s, &mut NoEnv, 1_700_000_000);
        assert_eq!(
            s.take(),
            [
                "settime 1900000000",
                "log notice: clock was 100, set to 1900000000 (the build time)"
            ]
        );
    }
}
