//! The console terminal: which device it is, opening it safely, and the root shell PID 1 puts
//! on it (safe mode, and after a shutdown that ends in `hang`).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::BootConfig;

/// The terminal console services and the safe-mode shell use: `[boot] console`, else the
/// device behind /dev/console (the last of /sys/class/tty/console/active), else /dev/console.
pub fn console_device(boot: &BootConfig) -> PathBuf {
    if let Some(c) = &boot.console {
        return PathBuf::from(if c.starts_with('/') {
            c.clone()
        } else {
            format!("/dev/{c}")
        });
    }
    fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|a| {
            a.split_whitespace()
                .last()
                .map(|t| PathBuf::from(format!("/dev/{t}")))
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/dev/console"))
}

/// Opens a terminal without waiting for a modem's carrier (O_NONBLOCK for the open only) and
/// without making it PID 1's controlling terminal.
pub fn open_tty(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(f)
}

/// A root shell on `console`: its own session with the terminal as controlling terminal,
/// default signal handling, a minimal environment.
pub fn shell_command(shell: &str, console: &Path) -> io::Result<Command> {
    let tty = open_tty(console)?;
    let mut cmd = Command::new(shell);
    cmd.stdin(Stdio::from(tty.try_clone()?))
        .stdout(Stdio::from(tty.try_clone()?))
        .stderr(Stdio::from(tty))
        .env_clear()
        .env("PATH", crate::config::DEFAULT_PATH)
        .env("HOME", "/root")
        .env("TERM", "linux")
        .current_dir("/");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            crate::signals::reset_for_exec()?;
            nix::unistd::setsid()?;
            libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    Ok(cmd)
}
