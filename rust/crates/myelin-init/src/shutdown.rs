//! What PID 1 does once every service has stopped: the end of every shutdown, requested or
//! not.
//!
//! 1. `sync`; core dumps off (`|/bin/false`), so dying processes do not write them now.
//! 2. SIGTERM to every process left; they are reaped as they go, and whatever is still there
//!    after `kill_wait` gets SIGKILL.
//! 3. The time file is touched (the next boot's clock floor) and a fresh RNG seed is saved.
//! 4. Filesystems are unmounted in reverse mount order (pseudo filesystems and / excepted); one
//!    that is busy is remounted read-only instead.
//! 5. `sync`, stdin/stdout/stderr closed (a stuck serial console must not block), and
//!    `reboot(2)` with the requested command: RESTART, or RESTART2 with the first line of
//!    `/run/reboot-param` (fwup writes `0 tryboot` there on the Raspberry Pi), HALT, POWER_OFF.
//!    `hang` skips this and leaves PID 1 running.

use std::path::PathBuf;
use std::time::Duration;

use crate::log::Level;
use crate::sys::{MountFlags, RebootCmd, Sys};

/// How a shutdown ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reboot; with an explicit argument, or `None` to read the reboot-param file.
    Reboot(Option<String>),
    /// Power off.
    Poweroff,
    /// Halt.
    Halt,
    /// Stay up with every service stopped.
    Hang,
}

impl Action {
    /// The action busybox's `reboot`/`halt`/`poweroff` ask for with this signal.
    pub fn from_signal(sig: i32) -> Option<Action> {
        match sig {
            libc::SIGTERM | libc::SIGINT => Some(Action::Reboot(None)),
            libc::SIGUSR1 | libc::SIGPWR => Some(Action::Halt),
            libc::SIGUSR2 => Some(Action::Poweroff),
            _ => None,
        }
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Reboot(_) => "reboot",
            Action::Poweroff => "poweroff",
            Action::Halt => "halt",
            Action::Hang => "hang",
        }
    }
}

impl From<crate::config::FatalAction> for Action {
    fn from(a: crate::config::FatalAction) -> Action {
        use crate::config::FatalAction as F;
        match a {
            F::Reboot => Action::Reboot(None),
            F::Poweroff => Action::Poweroff,
            F::Halt => Action::Halt,
            F::Hang => Action::Hang,
        }
    }
}

/// Reads the reboot argument file: its first line, trimmed; `None` if absent or empty.
pub fn reboot_param(sys: &mut dyn Sys, path: &str) -> Option<String> {
    let data = sys.read_file(path).ok()?;
    let text = String::from_utf8_lossy(&data);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.chars().take(255).collect())
}

/// The final sequence's settings.
#[derive(Clone, Debug)]
pub struct Finish {
    /// How it ends.
    pub action: Action,
    /// File holding the reboot argument.
    pub reboot_param: PathBuf,
    /// TERM → KILL delay.
    pub kill_wait: Duration,
    /// Unmount filesystems.
    pub unmount: bool,
    /// Touched for the next boot's clock floor.
    pub time_file: Option<PathBuf>,
    /// RNG seed file.
    pub rng_seed: Option<PathBuf>,
    /// Turn core dumps off before killing (real systems; not allowed in a container).
    pub disable_core_dumps: bool,
}

/// The reboot(2) command an action leads to; `None` for [`Action::Hang`].
pub fn reboot_cmd(action: &Action, sys: &mut dyn Sys, param_file: &str) -> Option<RebootCmd> {
    match action {
        Action::Reboot(Some(a)) if !a.is_empty() => Some(RebootCmd::Restart2(a.clone())),
        Action::Reboot(_) => Some(match reboot_param(sys, param_file) {
            Some(a) => RebootCmd::Restart2(a),
            None => RebootCmd::Restart,
        }),
        Action::Poweroff => Some(RebootCmd::PowerOff),
        Action::Halt => Some(RebootCmd::Halt),
        Action::Hang => None,
    }
}

const KEEP_FSTYPES: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "configfs",
    "bpf",
    "mqueue",
];

/// Runs the final sequence. Returns only for `hang` or if reboot(2) failed.
pub fn finish(f: &Finish, sys: &mut dyn Sys) {
    let cmd = reboot_cmd(&f.action, sys, &f.reboot_param.to_string_lossy());
    sys.sync();
    if f.disable_core_dumps {
        let _ = sys.write_file("/proc/sys/kernel/core_pattern", b"|/bin/false");
    }
    if let Err(e) = sys.kill_all(libc::SIGTERM) {
        if e.raw_os_error() != Some(libc::ESRCH) {
            sys.log(Level::Warning, &format!("kill(-1, SIGTERM): {e}"));
        }
    }
    if !sys.reap_all(f.kill_wait) {
        sys.log(Level::Warning, "processes left after SIGTERM: SIGKILL");
        let _ = sys.kill_all(libc::SIGKILL);
        sys.reap_all(Duration::from_secs(1));
    }
    if let Some(t) = &f.time_file {
        if let Err(e) = sys.replace_file(&t.to_string_lossy(), b"", 0o644) {
            sys.log(
                Level::Warning,
                &format!("cannot save the time to {}: {e}", t.display()),
            );
        }
    }
    if let Some(p) = &f.rng_seed {
        crate::rng_seed::save(sys, &p.to_string_lossy());
    }
    if f.unmount {
        unmount_all(sys);
    }
    sys.sync();
    match &cmd {
        None => {
            sys.log(Level::Crit, "all services stopped; hanging as configured");
        }
        Some(c) => {
            sys.log(
                Level::Notice,
                &format!("{}: reboot(2) {c}", f.action.name()),
            );
            sys.close_stdio();
            let e = sys.reboot(c);
            sys.log(Level::Emerg, &format!("reboot(2) {c} failed: {e}"));
        }
    }
}

/// Reboots at once, skipping the clean sequence: sync what is in flight, then reboot(2)
/// RESTART. Returns only if reboot(2) failed.
pub fn immediate(sys: &mut dyn Sys) {
    sys.sync();
    let cmd = RebootCmd::Restart;
    sys.log(Level::Notice, &format!("immediate reboot: reboot(2) {cmd}"));
    sys.close_stdio();
    let e = sys.reboot(&cmd);
    sys.log(Level::Emerg, &format!("reboot(2) {cmd} failed: {e}"));
}

fn unmount_all(sys: &mut dyn Sys) {
    let mounts = sys.mounts().unwrap_or_default();
    for m in mounts.iter().rev() {
        let t = m.target.as_str();
        let special = t == "/"
            || KEEP_FSTYPES.contains(&m.fstype.as_str())
            || ["/proc/", "/sys/", "/dev/"]
                .iter()
                .any(|p| t.starts_with(p))
            || t == "/dev";
        if special {
            continue;
        }
        if let Err(e) = sys.umount(t, false) {
            if m.readonly {
                continue;
            }
            match sys.mount(
                &m.source,
                t,
                &m.fstype,
                MountFlags::REMOUNT.with(MountFlags::RDONLY),
                "",
            ) {
                Ok(()) => sys.log(
                    Level::Warning,
                    &format!("{t} busy ({e}), remounted read-only"),
                ),
                Err(e2) => sys.log(
                    Level::Err,
                    &format!("cannot unmount {t} ({e}) nor make it read-only ({e2})"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::MountEntry;
    use crate::sys::fake::FakeSys;

    fn plan(action: Action) -> Finish {
        Finish {
            action,
            reboot_param: "/run/reboot-param".into(),
            kill_wait: Duration::from_secs(1),
            unmount: true,
            time_file: Some("/data/myelin/time".into()),
            rng_seed: Some("/data/myelin/seed".into()),
            disable_core_dumps: true,
        }
    }

    fn mounted(s: &mut FakeSys, src: &str, target: &str, fstype: &str) {
        s.mount_table.push(MountEntry {
            root: "/".into(),
            source: src.into(),
            target: target.into(),
            fstype: fstype.into(),
            readonly: false,
        });
    }

    #[test]
    fn signals_map_like_busybox() {
        assert_eq!(
            Action::from_signal(libc::SIGTERM),
            Some(Action::Reboot(None))
        );
        assert_eq!(Action::from_signal(libc::SIGUSR1), Some(Action::Halt));
        assert_eq!(Action::from_signal(libc::SIGPWR), Some(Action::Halt));
        assert_eq!(Action::from_signal(libc::SIGUSR2), Some(Action::Poweroff));
        // Ctrl-Alt-Del, once the kernel is told to signal PID 1 instead of rebooting.
        assert_eq!(
            Action::from_signal(libc::SIGINT),
            Some(Action::Reboot(None))
        );
        assert_eq!(Action::from_signal(libc::SIGHUP), None);
    }

    #[test]
    fn golden_tryboot_reboot() {
        let mut s = FakeSys::default();
        s.file("/run/reboot-param", "0 tryboot\nignored\n");
        for (src, t, f) in [
            ("/dev/root", "/", "squashfs"),
            ("proc", "/proc", "proc"),
            ("devtmpfs", "/dev", "devtmpfs"),
            ("tmpfs", "/run", "tmpfs"),
            ("/dev/mmcblk0p1", "/boot", "vfat"),
            ("/dev/mmcblk0p4", "/data", "ext4"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        ] {
            mounted(&mut s, src, t, f);
        }
        s.stubborn = true;
        finish(&plan(Action::Reboot(None)), &mut s);
        assert_eq!(
            s.take(),
            [
                "sync",
                "write /proc/sys/kernel/core_pattern \"|/bin/false\"",
                "kill -1 15",
                "reap_all 1000ms",
                "log warning: processes left after SIGTERM: SIGKILL",
                "kill -1 9",
                "reap_all 1000ms",
                "replace /data/myelin/time 0 bytes mode 644",
                "random 64",
                "replace /data/myelin/seed 65 bytes mode 600",
                "umount /data",
                "umount /boot",
                "umount /run",
                "sync",
                "log notice: reboot: reboot(2) RESTART2 \"0 tryboot\"",
                "close stdio",
                "reboot RESTART2 \"0 tryboot\"",
                "log emerg: reboot(2) RESTART2 \"0 tryboot\" failed: Operation not permitted (os error 1)",
            ]
        );
    }

    #[test]
    fn golden_immediate_reboot_touches_no_filesystem() {
        // A factory reset has just erased /data's first blocks under the mounted filesystem:
        // killing, saving the seed or unmounting could write them back.
        let mut s = FakeSys::default();
        mounted(&mut s, "/dev/mmcblk0p4", "/data", "ext4");
        s.file("/run/reboot-param", "0 tryboot\n");
        immediate(&mut s);
        assert_eq!(
            s.take(),
            [
                "sync",
                "log notice: immediate reboot: reboot(2) RESTART",
                "close stdio",
                "reboot RESTART",
                "log emerg: reboot(2) RESTART failed: Operation not permitted (os error 1)",
            ]
        );
    }

    #[test]
    fn golden_poweroff_with_a_busy_filesystem() {
        let mut s = FakeSys::default();
        mounted(&mut s, "/dev/sda4", "/data", "ext4");
        mounted(&mut s, "/dev/sdb1", "/media", "ext4");
        s.busy.insert("/data".into());
        let mut f = plan(Action::Poweroff);
        f.time_file = None;
        f.rng_seed = None;
        f.disable_core_dumps = false;
        finish(&f, &mut s);
        assert_eq!(
            s.take(),
            [
                "sync",
                "kill -1 15",
                "reap_all 1000ms",
                "umount /media",
                "umount /data",
                "mount /dev/sda4 /data ext4 ro,remount \"\"",
                "log warning: /data busy (Device or resource busy (os error 16)), remounted read-only",
                "sync",
                "log notice: poweroff: reboot(2) POWER_OFF",
                "close stdio",
                "reboot POWER_OFF",
                "log emerg: reboot(2) POWER_OFF failed: Operation not permitted (os error 1)",
            ]
        );
    }

    #[test]
    fn hang_and_explicit_arguments() {
        let mut s = FakeSys::default();
        let mut f = plan(Action::Hang);
        f.unmount = false;
        f.time_file = None;
        f.rng_seed = None;
        finish(&f, &mut s);
        assert_eq!(
            s.take(),
            [
                "sync",
                "write /proc/sys/kernel/core_pattern \"|/bin/false\"",
                "kill -1 15",
                "reap_all 1000ms",
                "sync",
                "log crit: all services stopped; hanging as configured",
            ]
        );
        s.file("/run/reboot-param", "0 tryboot");
        assert_eq!(
            reboot_cmd(
                &Action::Reboot(Some("recovery".into())),
                &mut s,
                "/run/reboot-param"
            ),
            Some(RebootCmd::Restart2("recovery".into()))
        );
        assert_eq!(
            reboot_cmd(&Action::Halt, &mut s, "/run/reboot-param"),
            Some(RebootCmd::Halt)
        );
        s.file("/run/reboot-param", "  \n");
        assert_eq!(
            reboot_cmd(&Action::Reboot(None), &mut s, "/run/reboot-param"),
            Some(RebootCmd::Restart)
        );
        s.files.clear();
        assert_eq!(
            reboot_cmd(&Action::Reboot(None), &mut s, "/run/reboot-param"),
            Some(RebootCmd::Restart)
        );
    }
}
