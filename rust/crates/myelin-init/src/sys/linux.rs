//! [`LinuxSys`]: the real system calls behind [`super::Sys`].

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{MountEntry, MountFlags, RebootCmd, Sys, parse_mountinfo};
use crate::config::RLimit;
use crate::level::Level;
use crate::watchdog::Watchdog;

/// The real [`Sys`] of a Linux PID 1.
pub struct LinuxSys<'a> {
    log: &'a mut dyn FnMut(Level, &str),
    watchdog: Option<&'a mut dyn Watchdog>,
    phases: Vec<(String, crate::clock::Instant)>,
}

impl<'a> LinuxSys<'a> {
    /// A `Sys` that logs through `log` and pets `watchdog` while waiting on programs.
    pub fn new(
        log: &'a mut dyn FnMut(Level, &str),
        watchdog: Option<&'a mut dyn Watchdog>,
    ) -> Self {
        LinuxSys {
            log,
            watchdog,
            phases: Vec::new(),
        }
    }

    /// The phases boot went through, with when each began.
    pub fn take_phases(&mut self) -> Vec<(String, crate::clock::Instant)> {
        std::mem::take(&mut self.phases)
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
    fn phase(&mut self, name: &str) {
        use crate::clock::Clock;
        self.phases
            .push((name.to_string(), crate::clock::SystemClock.now()));
    }

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

    fn secure_dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let meta = fs::symlink_metadata(path);
        match &meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => fs::remove_file(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {}
        }
        if !matches!(&meta, Ok(m) if m.is_dir()) {
            if let Some(parent) = Path::new(path).parent() {
                fs::create_dir_all(parent)?;
            }
            fs::DirBuilder::new().mode(mode).create(path)?;
        }
        // Through a descriptor of the directory itself: a symbolic link put there meanwhile is
        // refused (O_NOFOLLOW), never followed to chown something else.
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)?;
        nix::unistd::fchown(&dir, Some(0.into()), Some(0.into())).map_err(io::Error::from)?;
        dir.set_permissions(fs::Permissions::from_mode(mode))
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

    fn read_prefix(&mut self, path: &str, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len);
        File::open(path)?.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
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
        let f = crate::terminal::open_tty(Path::new(path))?;
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
        // The helper would inherit PID 1's blocked signal mask (and whatever it was started
        // with ignored) otherwise.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, crate::signals::reset_for_exec);
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
