//! The edge between PID 1's boot and shutdown logic and the kernel: every side effect goes
//! through [`Sys`], so the sequences in [`crate::boot`] and [`crate::shutdown`] can be checked
//! against golden traces of the calls they make (see the test-only `fake::FakeSys`), and [`LinuxSys`] does
//! the real thing.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::RLimit;
use crate::log::Level;
use crate::watchdog::Watchdog;

/// mount(2) flags, named the way mount(8) names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags(pub libc::c_ulong);

const FLAG_NAMES: &[(&str, libc::c_ulong)] = &[
    ("ro", libc::MS_RDONLY),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("sync", libc::MS_SYNCHRONOUS),
    ("remount", libc::MS_REMOUNT),
    ("mand", libc::MS_MANDLOCK),
    ("dirsync", libc::MS_DIRSYNC),
    ("noatime", libc::MS_NOATIME),
    ("nodiratime", libc::MS_NODIRATIME),
    ("silent", libc::MS_SILENT),
    ("relatime", libc::MS_RELATIME),
    ("strictatime", libc::MS_STRICTATIME),
    ("lazytime", libc::MS_LAZYTIME),
];

impl MountFlags {
    /// No flag.
    pub const NONE: MountFlags = MountFlags(0);
    /// `nosuid,nodev,noexec`, the usual flags of pseudo filesystems.
    pub const PSEUDO: MountFlags = MountFlags(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    /// Read-only.
    pub const RDONLY: MountFlags = MountFlags(libc::MS_RDONLY);
    /// Remount.
    pub const REMOUNT: MountFlags = MountFlags(libc::MS_REMOUNT);

    /// Union of two flag sets.
    pub fn with(self, other: MountFlags) -> MountFlags {
        MountFlags(self.0 | other.0)
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Splits mount(8)-style options into flags and filesystem data (`mode=755,size=10%`).
pub fn parse_mount_options(opts: &str) -> Result<(MountFlags, String), String> {
    let mut flags: libc::c_ulong = 0;
    let mut data: Vec<&str> = Vec::new();
    let (mut ro, mut rw) = (false, false);
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "defaults" => {}
            "rw" => rw = true,
            "ro" => {
                ro = true;
                flags |= libc::MS_RDONLY;
            }
            "remount" => return Err("`remount` is not allowed here".into()),
            _ => match FLAG_NAMES.iter().find(|(n, _)| *n == o) {
                Some((_, b)) => flags |= b,
                None if o.starts_with("no")
                    && !o.contains('=')
                    && FLAG_NAMES.iter().any(|(n, _)| *n == &o[2..]) =>
                {
                    return Err(format!("mount option `{o}` is not supported"));
                }
                None => data.push(o),
            },
        }
    }
    if ro && rw {
        return Err("mount options `ro` and `rw` conflict".into());
    }
    Ok((MountFlags(flags), data.join(",")))
}

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

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount source (device or pseudo name).
    pub source: String,
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mounted read-only.
    pub readonly: bool,
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` (mount order: parents first).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let lf: Vec<&str> = left.split(' ').collect();
            let rf: Vec<&str> = right.split(' ').collect();
            if lf.len() < 6 || rf.len() < 2 {
                return None;
            }
            Some(MountEntry {
                source: unescape_mount(rf[1]),
                target: unescape_mount(lf[4]),
                fstype: rf[0].to_string(),
                readonly: lf[5].split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// Every side effect the boot and shutdown sequences need.
pub trait Sys {
    /// Writes a message to PID 1's log (console and kmsg).
    fn log(&mut self, level: Level, msg: &str);
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
    /// Creates a symbolic link `link` pointing at `target`.
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()>;
    /// Whether a path exists (without following a final symlink).
    fn exists(&mut self, path: &str) -> bool;
    /// Reads a whole file.
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>>;
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

/// The real [`Sys`] of a Linux PID 1.
pub struct LinuxSys<'a> {
    log: &'a mut dyn FnMut(Level, &str),
    watchdog: Option<&'a mut dyn Watchdog>,
}

impl<'a> LinuxSys<'a> {
    /// A `Sys` that logs through `log` and pets `watchdog` while waiting on programs.
    pub fn new(
        log: &'a mut dyn FnMut(Level, &str),
        watchdog: Option<&'a mut dyn Watchdog>,
    ) -> Self {
        LinuxSys { log, watchdog }
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn errno_result(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

// RNDADDENTROPY = _IOW('R', 0x03, int[2])
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;

impl Sys for LinuxSys<'_> {
    fn log(&mut self, level: Level, msg: &str) {
        (self.log)(level, msg);
    }

    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                f.as_ptr(),
                flags.0,
                if data.is_empty() {
                    std::ptr::null()
                } else {
                    d.as_ptr().cast()
                },
            )
        };
        errno_result(rc)
    }

    fn umount(&mut self, target: &str, detach: bool) -> io::Result<()> {
        let t = cstr(target)?;
        // SAFETY: valid C string.
        errno_result(unsafe {
            libc::umount2(t.as_ptr(), if detach { libc::MNT_DETACH } else { 0 })
        })
    }

    fn mounts(&mut self) -> io::Result<Vec<MountEntry>> {
        // thread-self: a thread may have its own mount namespace (tests do).
        let text = fs::read_to_string("/proc/thread-self/mountinfo")
            .or_else(|_| fs::read_to_string("/proc/self/mountinfo"))?;
        Ok(parse_mountinfo(&text))
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        if Path::new(path).is_dir() {
            return Ok(());
        }
        fs::create_dir_all(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn exists(&mut self, path: &str) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_dir(&mut self, path: &str) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.write_all(data)
    }

    fn replace_file(&mut self, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
        let p = Path::new(path);
        let dir = p.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            p.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, p)?;
        File::open(dir)?.sync_all()
    }

    fn remove_file(&mut self, path: &str) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn mtime(&mut self, path: &str) -> io::Result<i64> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs::metadata(path)?.mtime())
    }

    fn device_of(&mut self, path: &str) -> io::Result<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata(path)?.dev();
        Ok((libc::major(dev), libc::minor(dev)))
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }

    fn realtime(&mut self) -> i64 {
        crate::clock::unix_millis() / 1000
    }

    fn set_realtime(&mut self, secs: i64) -> io::Result<()> {
        let ts = nix::sys::time::TimeSpec::new(secs as _, 0);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(io::Error::from)
    }

    fn set_rlimit(&mut self, resource: &str, limit: RLimit) -> io::Result<()> {
        use nix::sys::resource::{Resource, setrlimit};
        let r = match resource {
            "as" => Resource::RLIMIT_AS,
            "core" => Resource::RLIMIT_CORE,
            "cpu" => Resource::RLIMIT_CPU,
            "data" => Resource::RLIMIT_DATA,
            "fsize" => Resource::RLIMIT_FSIZE,
            "locks" => Resource::RLIMIT_LOCKS,
            "memlock" => Resource::RLIMIT_MEMLOCK,
            "msgqueue" => Resource::RLIMIT_MSGQUEUE,
            "nice" => Resource::RLIMIT_NICE,
            "nofile" => Resource::RLIMIT_NOFILE,
            "nproc" => Resource::RLIMIT_NPROC,
            "rss" => Resource::RLIMIT_RSS,
            "rtprio" => Resource::RLIMIT_RTPRIO,
            "rttime" => Resource::RLIMIT_RTTIME,
            "sigpending" => Resource::RLIMIT_SIGPENDING,
            "stack" => Resource::RLIMIT_STACK,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unknown resource",
                ));
            }
        };
        let v = |x: Option<u64>| x.map(|n| n as libc::rlim_t).unwrap_or(libc::RLIM_INFINITY);
        setrlimit(r, v(limit.soft), v(limit.hard)).map_err(io::Error::from)
    }

    fn interface_up(&mut self, name: &str) -> io::Result<()> {
        // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name is NUL-terminated.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
                req.ifr_name[i] = b as libc::c_char;
            }
            let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
            if rc == 0 {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req);
            }
            let err = io::Error::last_os_error();
            libc::close(fd);
            if rc < 0 { Err(err) } else { Ok(()) }
        }
    }

    fn console(&mut self, path: &str) -> io::Result<()> {
        let f = crate::runtime::open_tty(Path::new(path))?;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn run(&mut self, argv: &[&str]) -> io::Result<i32> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        // PID 1 has no PATH of its own: look helpers up in the default one.
        let exe = crate::config::resolve_program(prog, crate::config::DEFAULT_PATH)
            .unwrap_or_else(|| prog.into());
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The helper inherits PID 1's blocked signal mask otherwise.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let set = nix::sys::signal::SigSet::empty();
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&set),
                    None,
                )
                .map_err(io::Error::from)
            });
        }
        let out = std::thread::scope(|s| {
            let h = s.spawn(|| cmd.output());
            // Keep the hardware watchdog happy while a long mkfs runs.
            while !h.is_finished() {
                if let Some(w) = self.watchdog.as_deref_mut() {
                    let _ = w.pet();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("helper thread panicked")))
        })?;
        let name = Path::new(prog)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(prog)
            .to_string();
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            if !line.trim().is_empty() {
                (self.log)(Level::Info, &format!("{name}: {line}"));
            }
        }
        Ok(out.status.code().unwrap_or(-1))
    }

    fn add_entropy(&mut self, data: &[u8], credit: bool) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open("/dev/urandom")?;
        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
        let mut buf = Vec::with_capacity(8 + data.len());
        let bits = if credit { data.len() * 8 } else { 0 } as i32;
        buf.extend_from_slice(&bits.to_ne_bytes());
        buf.extend_from_slice(&(data.len() as i32).to_ne_bytes());
        buf.extend_from_slice(data);
        buf.resize(8 + data.len().div_ceil(4) * 4, 0);
        // SAFETY: buf holds a complete rand_pool_info for the kernel to read.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY as _, buf.as_ptr()) };
        if rc == 0 {
            return Ok(());
        }
        // Without CAP_SYS_ADMIN the seed can still be mixed in, just not credited.
        (&f).write_all(data)?;
        if credit {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn random(&mut self, n: usize) -> io::Result<(Vec<u8>, bool)> {
        let mut buf = vec![0u8; n];
        let get = |buf: &mut [u8], flags: libc::c_uint| -> io::Result<()> {
            let mut done = 0;
            while done < buf.len() {
                // SAFETY: the pointer and length describe the unfilled part of buf.
                let r = unsafe {
                    libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, flags)
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                done += r as usize;
            }
            Ok(())
        };
        match get(&mut buf, libc::GRND_NONBLOCK) {
            Ok(()) => Ok((buf, true)),
            Err(_) => {
                const GRND_INSECURE: libc::c_uint = 0x0004;
                if get(&mut buf, GRND_INSECURE).is_err() {
                    File::open("/dev/urandom")?.read_exact(&mut buf)?;
                }
                Ok((buf, false))
            }
        }
    }

    fn ctrl_alt_del(&mut self, immediate: bool) -> io::Result<()> {
        nix::sys::reboot::set_cad_enabled(immediate).map_err(io::Error::from)
    }

    fn kill_all(&mut self, sig: i32) -> io::Result<()> {
        // SAFETY: kill(2) has no memory-safety preconditions.
        errno_result(unsafe { libc::kill(-1, sig) })
    }

    fn reap_all(&mut self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                return true;
            }
            if r > 0 {
                continue;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn sync(&mut self) {
        nix::unistd::sync();
    }

    fn close_stdio(&mut self) {
        for fd in 0..3 {
            // SAFETY: closing the standard descriptors; nothing else owns them.
            unsafe { libc::close(fd) };
        }
    }

    fn reboot(&mut self, cmd: &RebootCmd) -> io::Error {
        const MAGIC1: libc::c_long = 0xfee1_dead_u32 as libc::c_long;
        const MAGIC2: libc::c_long = 672_274_793;
        let (code, arg): (libc::c_int, Option<CString>) = match cmd {
            RebootCmd::Restart => (libc::LINUX_REBOOT_CMD_RESTART, None),
            RebootCmd::Restart2(a) => (
                libc::LINUX_REBOOT_CMD_RESTART2,
                CString::new(a.as_str()).ok(),
            ),
            RebootCmd::Halt => (libc::LINUX_REBOOT_CMD_HALT, None),
            RebootCmd::PowerOff => (libc::LINUX_REBOOT_CMD_POWER_OFF, None),
        };
        let argp = arg.as_ref().map(|c| c.as_ptr()).unwrap_or(std::ptr::null());
        // SAFETY: the raw reboot syscall with the documented magic numbers and a valid (or null)
        // argument string.
        unsafe { libc::syscall(libc::SYS_reboot, MAGIC1, MAGIC2, code as libc::c_long, argp) };
        io::Error::last_os_error()
    }
}

/// A recording [`Sys`] over an in-memory filesystem, for golden-trace tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Records every call as one line of text.
    #[derive(Default)]
    pub struct FakeSys {
        /// The trace.
        pub trace: Vec<String>,
        /// Files and their contents.
        pub files: BTreeMap<String, Vec<u8>>,
        /// Directories.
        pub dirs: BTreeSet<String>,
        /// Current mounts.
        pub mount_table: Vec<MountEntry>,
        /// mount targets whose next mount fails with this errno.
        pub fail_mount: BTreeMap<String, i32>,
        /// Targets that come up read-only when mounted.
        pub mount_readonly: BTreeSet<String>,
        /// Exit codes of `run`, by program.
        pub run_exit: BTreeMap<String, i32>,
        /// Clock.
        pub now: i64,
        /// mtimes.
        pub mtimes: BTreeMap<String, i64>,
        /// Device of "/".
        pub root_dev: (u32, u32),
        /// `random` pretends the pool is not initialised.
        pub rng_uninitialised: bool,
        /// Processes left that `reap_all` waits for before TERM/KILL.
        pub stubborn: bool,
        /// Targets whose umount fails with EBUSY.
        pub busy: BTreeSet<String>,
    }

    impl FakeSys {
        fn t(&mut self, s: String) {
            self.trace.push(s);
        }
        /// Adds a file.
        pub fn file(&mut self, path: &str, data: &str) {
            self.files.insert(path.into(), data.as_bytes().to_vec());
        }
        /// Takes the trace recorded so far.
        pub fn take(&mut self) -> Vec<String> {
            std::mem::take(&mut self.trace)
        }
    }

    fn nf() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    impl Sys for FakeSys {
        fn log(&mut self, level: Level, msg: &str) {
            self.t(format!("log {}: {msg}", level.name()));
        }
        fn mount(
            &mut self,
            source: &str,
            target: &str,
            fstype: &str,
            flags: MountFlags,
            data: &str,
        ) -> io::Result<()> {
            self.t(format!(
                "mount {source} {target} {fstype} {flags} \"{data}\""
            ));
            if let Some(e) = self.fail_mount.remove(target) {
                return Err(io::Error::from_raw_os_error(e));
            }
            if flags.0 & libc::MS_REMOUNT != 0 {
                return Ok(());
            }
            let readonly = flags.0 & libc::MS_RDONLY != 0 || self.mount_readonly.contains(target);
            self.mount_table.push(MountEntry {
                source: source.into(),
                target: target.into(),
                fstype: fstype.into(),
                readonly,
            });
            Ok(())
        }
        fn umount(&mut self, target: &str, detach: bool) -> io::Result<()> {
            self.t(format!(
                "umount {target}{}",
                if detach { " (detach)" } else { "" }
            ));
            if self.busy.contains(target) {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            match self.mount_table.iter().rposition(|m| m.target == target) {
                Some(i) => {
                    self.mount_table.remove(i);
                    Ok(())
                }
                None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
        }
        fn mounts(&mut self) -> io::Result<Vec<MountEntry>> {
            Ok(self.mount_table.clone())
        }
        fn mkdir(&mut self, path: &str, mode: u32) -> io::Result<()> {
            if !self.dirs.contains(path) {
                self.t(format!("mkdir {path} {mode:o}"));
                self.dirs.insert(path.into());
            }
            Ok(())
        }
        fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
            self.t(format!("symlink {link} -> {target}"));
            self.files.insert(link.into(), Vec::new());
            Ok(())
        }
        fn exists(&mut self, path: &str) -> bool {
            self.files.contains_key(path) || self.dirs.contains(path)
        }
        fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
            self.files.get(path).cloned().ok_or_else(nf)
        }
        fn read_dir(&mut self, path: &str) -> io::Result<Vec<String>> {
            let prefix = format!("{}/", path.trim_end_matches('/'));
            let mut v: BTreeSet<String> = BTreeSet::new();
            for k in self.files.keys().chain(self.dirs.iter()) {
                if let Some(rest) = k.strip_prefix(&prefix) {
                    if let Some(first) = rest.split('/').next() {
                        if !first.is_empty() {
                            v.insert(first.to_string());
                        }
                    }
                }
            }
            if v.is_empty() && !self.dirs.contains(path) {
                return Err(nf());
            }
            Ok(v.into_iter().collect())
        }
        fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
            self.t(format!(
                "write {path} \"{}\"",
                String::from_utf8_lossy(data)
            ));
            Ok(())
        }
        fn replace_file(&mut self, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
            self.t(format!("replace {path} {} bytes mode {mode:o}", data.len()));
            self.files.insert(path.into(), data.to_vec());
            Ok(())
        }
        fn remove_file(&mut self, path: &str) -> io::Result<()> {
            self.t(format!("remove {path}"));
            self.files.remove(path).map(|_| ()).ok_or_else(nf)
        }
        fn mtime(&mut self, path: &str) -> io::Result<i64> {
            self.mtimes.get(path).copied().ok_or_else(nf)
        }
        fn device_of(&mut self, _path: &str) -> io::Result<(u32, u32)> {
            Ok(self.root_dev)
        }
        fn set_hostname(&mut self, name: &str) -> io::Result<()> {
            self.t(format!("sethostname {name}"));
            Ok(())
        }
        fn realtime(&mut self) -> i64 {
            self.now
        }
        fn set_realtime(&mut self, secs: i64) -> io::Result<()> {
            self.t(format!("settime {secs}"));
            self.now = secs;
            Ok(())
        }
        fn set_rlimit(&mut self, resource: &str, limit: RLimit) -> io::Result<()> {
            self.t(format!(
                "setrlimit {resource} {:?} {:?}",
                limit.soft, limit.hard
            ));
            Ok(())
        }
        fn interface_up(&mut self, name: &str) -> io::Result<()> {
            self.t(format!("ifup {name}"));
            Ok(())
        }
        fn console(&mut self, path: &str) -> io::Result<()> {
            self.t(format!("console {path}"));
            Ok(())
        }
        fn run(&mut self, argv: &[&str]) -> io::Result<i32> {
            self.t(format!("run {}", argv.join(" ")));
            Ok(self.run_exit.get(argv[0]).copied().unwrap_or(0))
        }
        fn add_entropy(&mut self, data: &[u8], credit: bool) -> io::Result<()> {
            self.t(format!("add_entropy {} bytes credit={credit}", data.len()));
            Ok(())
        }
        fn random(&mut self, n: usize) -> io::Result<(Vec<u8>, bool)> {
            self.t(format!("random {n}"));
            Ok((vec![0x5a; n], !self.rng_uninitialised))
        }
        fn ctrl_alt_del(&mut self, immediate: bool) -> io::Result<()> {
            self.t(format!("ctrl_alt_del immediate={immediate}"));
            Ok(())
        }
        fn kill_all(&mut self, sig: i32) -> io::Result<()> {
            self.t(format!("kill -1 {sig}"));
            Ok(())
        }
        fn reap_all(&mut self, timeout: Duration) -> bool {
            self.t(format!("reap_all {}ms", timeout.as_millis()));
            let gone = !self.stubborn;
            self.stubborn = false;
            gone
        }
        fn sync(&mut self) {
            self.t("sync".into());
        }
        fn close_stdio(&mut self) {
            self.t("close stdio".into());
        }
        fn reboot(&mut self, cmd: &RebootCmd) -> io::Error {
            self.t(format!("reboot {cmd}"));
            io::Error::from_raw_os_error(libc::EPERM)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options() {
        let (f, d) = parse_mount_options("nodev,noexec,nosuid,mode=755,size=10%").unwrap();
        assert_eq!(f, MountFlags::PSEUDO);
        assert_eq!(d, "mode=755,size=10%");
        assert_eq!(f.to_string(), "nosuid,nodev,noexec");
        let (f, d) = parse_mount_options("rw,defaults").unwrap();
        assert_eq!((f, d.as_str()), (MountFlags::NONE, ""));
        assert_eq!(parse_mount_options("ro").unwrap().0, MountFlags::RDONLY);
        assert!(parse_mount_options("ro,rw").is_err());
        assert!(parse_mount_options("remount").is_err());
        assert!(parse_mount_options("nonodev").is_err());
        // Filesystem data passes through untouched.
        assert_eq!(
            parse_mount_options("errors=remount-ro").unwrap().1,
            "errors=remount-ro"
        );
    }

    #[test]
    fn mountinfo() {
        let text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n\
                    30 1 179:4 / /my\\040data ro,relatime - ext4 /dev/mmcblk0p4 ro,errors=remount-ro\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            MountEntry {
                source: "proc".into(),
                target: "/proc".into(),
                fstype: "proc".into(),
                readonly: false
            }
        );
        assert_eq!(m[1].target, "/my data");
        assert!(m[1].readonly);
        assert_eq!(m[1].source, "/dev/mmcblk0p4");
    }
}
