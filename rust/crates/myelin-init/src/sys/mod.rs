//! The edge between PID 1's boot and shutdown logic and the kernel: every side effect goes
//! through [`Sys`], so the sequences in [`crate::boot`] and [`crate::shutdown`] can be checked
//! against golden traces of the calls they make (see the test-only `fake::FakeSys`), and
//! [`LinuxSys`] does the real thing.

#[cfg(test)]
pub mod fake;
mod linux;

use std::fmt;
use std::io;
use std::time::Duration;

pub use linux::LinuxSys;

use crate::config::RLimit;
use crate::level::Level;
pub use crate::mount_options::{MountFlags, parse_mount_options};
pub use crate::mountinfo::{MountEntry, parse_mountinfo};

/// What `reboot(2)` is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebootCmd {
    /// LINUX_REBOOT_CMD_RESTART.
    Restart,
    /// LINUX_REBOOT_CMD_RESTART2 with an argument (RPi: `0 tryboot`).
    Restart2(String),
    /// LINUX_REBOOT_CMD_HALT.
    Halt,
    /// LINUX_REBOOT_CMD_POWER_OFF.
    PowerOff,
}

impl fmt::Display for RebootCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebootCmd::Restart => f.write_str("RESTART"),
            RebootCmd::Restart2(a) => write!(f, "RESTART2 \"{a}\""),
            RebootCmd::Halt => f.write_str("HALT"),
            RebootCmd::PowerOff => f.write_str("POWER_OFF"),
        }
    }
}

/// Every side effect the boot and shutdown sequences need.
pub trait Sys {
    /// Writes a message to PID 1's log (console and kmsg).
    fn log(&mut self, level: Level, msg: &str);
    /// Boot enters the phase `name` (for the boot timeline); the previous one ends here.
    fn phase(&mut self, _name: &str) {}
    /// mount(2).
    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// umount2(2), optionally lazy (MNT_DETACH).
    fn umount(&mut self, target: &str, detach: bool) -> io::Result<()>;
    /// The current mount table.
    fn mounts(&mut self) -> io::Result<Vec<MountEntry>>;
    /// Creates a directory and its parents.
    fn mkdir(&mut self, path: &str, mode: u32) -> io::Result<()>;
    /// Makes `path` a directory owned by root with exactly `mode`, whatever was there: an
    /// existing directory gets its owner and mode set, anything else (a symbolic link, a file)
    /// is replaced. For directories where a lock or socket must not be planted by others.
    fn secure_dir(&mut self, path: &str, mode: u32) -> io::Result<()>;
    /// Creates a symbolic link `link` pointing at `target`.
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()>;
    /// Whether a path exists (without following a final symlink).
    fn exists(&mut self, path: &str) -> bool;
    /// Reads a whole file.
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>>;
    /// Reads at most the first `len` bytes of a file or block device.
    fn read_prefix(&mut self, path: &str, len: usize) -> io::Result<Vec<u8>>;
    /// Lists a directory, sorted.
    fn read_dir(&mut self, path: &str) -> io::Result<Vec<String>>;
    /// Writes a file in place (for /proc and /sys knobs).
    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()>;
    /// Replaces a file atomically and durably (temp file, fsync, rename, fsync directory).
    fn replace_file(&mut self, path: &str, data: &[u8], mode: u32) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&mut self, path: &str) -> io::Result<()>;
    /// Modification time (seconds since the epoch).
    fn mtime(&mut self, path: &str) -> io::Result<i64>;
    /// `major:minor` of the device holding `path`.
    fn device_of(&mut self, path: &str) -> io::Result<(u32, u32)>;
    /// sethostname(2).
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// Wall-clock time, seconds since the epoch.
    fn realtime(&mut self) -> i64;
    /// clock_settime(CLOCK_REALTIME).
    fn set_realtime(&mut self, secs: i64) -> io::Result<()>;
    /// setrlimit(2) by resource name.
    fn set_rlimit(&mut self, resource: &str, limit: RLimit) -> io::Result<()>;
    /// Sets IFF_UP on an interface.
    fn interface_up(&mut self, name: &str) -> io::Result<()>;
    /// Reopens stdin, stdout and stderr on a terminal.
    fn console(&mut self, path: &str) -> io::Result<()>;
    /// Runs a program to completion; its exit code.
    fn run(&mut self, argv: &[&str]) -> io::Result<i32>;
    /// Gives bytes to the kernel's RNG, credited or not.
    fn add_entropy(&mut self, data: &[u8], credit: bool) -> io::Result<()>;
    /// `n` random bytes and whether they may be credited (the pool was initialised).
    fn random(&mut self, n: usize) -> io::Result<(Vec<u8>, bool)>;
    /// Disables (`false`) or enables the kernel's immediate reboot on Ctrl-Alt-Del.
    fn ctrl_alt_del(&mut self, immediate: bool) -> io::Result<()>;
    /// kill(-1, sig): every process but PID 1.
    fn kill_all(&mut self, sig: i32) -> io::Result<()>;
    /// Reaps children until none is left (`true`) or `timeout` passes (`false`).
    fn reap_all(&mut self, timeout: Duration) -> bool;
    /// sync(2).
    fn sync(&mut self);
    /// Closes stdin, stdout and stderr (a hung console must not block reboot).
    fn close_stdio(&mut self);
    /// reboot(2); returns only on failure.
    fn reboot(&mut self, cmd: &RebootCmd) -> io::Error;
}
