//! Safe mode: a configuration that cannot be used does not run the loop. PID 1 reports the
//! problems on the console and kmsg, runs the configured console shell if any, then takes the
//! fatal action. It does not pet a hardware watchdog that boot already opened, so a device
//! without a usable configuration resets (and a firmware on trial reverts).

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::args::Options;
use crate::clock::{Clock, SystemClock};
use crate::config::{BootConfig, Config, ConfigError, InitConfig};
use crate::level::Level;
use crate::log::Logger;
use crate::shutdown::{self, Action, Finish};
use crate::signals;
use crate::sys::LinuxSys;
use crate::terminal::{console_device, shell_command};

/// Safe mode for a configuration that cannot be read or is invalid as a whole.
pub(super) fn safe_mode(path: &Path, err: ConfigError, opts: &Options) -> i32 {
    let src = fs::read_to_string(path).unwrap_or_default();
    let (init, boot, logc) = crate::config::load_fallback(&src);
    let mut log = super::logger_for(&logc, opts);
    // Say it on the console at once, in case boot itself hangs.
    crate::log::console_write(&format!(
        "myelin-init: invalid configuration, entering safe mode:\n{err}\n"
    ));
    let clock = SystemClock;
    let fallback = Config::parse("", path).map(|mut c| {
        c.boot = boot.clone();
        c.init = init.clone();
        c
    });
    if let Ok(c) = &fallback {
        let mut none = None;
        // Safe mode serves no timeline: its own is not worth keeping.
        let mut timeline = crate::boot_timeline::Recorder::default();
        super::run_boot(c, &mut log, &mut none, &mut timeline);
        log.reopen_kmsg();
    }
    let _ = clock;
    safe_mode_after_boot(path, err, init, &boot, log, opts)
}

/// Safe mode once boot ran: report, console shell, fatal action.
pub(super) fn safe_mode_after_boot(
    path: &Path,
    err: ConfigError,
    init: InitConfig,
    boot: &BootConfig,
    mut log: Logger,
    _opts: &Options,
) -> i32 {
    let clock = SystemClock;
    log.console_level = Level::Debug;
    for line in err.to_string().lines() {
        log.init(clock.now(), Level::Err, line);
    }
    log.init(
        clock.now(),
        Level::Crit,
        &format!("invalid configuration {}: safe mode", path.display()),
    );
    if let Some(shell) = &init.shell {
        let console = console_device(boot);
        log.init(
            clock.now(),
            Level::Crit,
            &format!(
                "starting {shell} on {}; when it exits: {:?}",
                console.display(),
                init.fatal_action
            ),
        );
        match run_console_shell(shell, &console, &mut log) {
            Ok(Some(action)) => return fatal_without_loop(&init, boot, log, action),
            Ok(None) => {}
            Err(e) => log.init(
                clock.now(),
                Level::Err,
                &format!("cannot start {shell}: {e}"),
            ),
        }
    }
    let action = Action::from(init.fatal_action);
    fatal_without_loop(&init, boot, log, action)
}

/// Runs a shell on the console until it exits or PID 1 gets a shutdown signal; the signal's
/// action, if any.
fn run_console_shell(shell: &str, console: &Path, log: &mut Logger) -> io::Result<Option<Action>> {
    let child = shell_command(shell, console)?.spawn()?;
    let shell_pid = child.id();
    drop(child);
    let sfd = SignalFd::with_flags(&signals::handled(), SfdFlags::SFD_CLOEXEC)?;
    loop {
        let Some(info) = sfd.read_signal()? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGCHLD {
            loop {
                match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(st) => {
                        if st.pid().map(|p| p.as_raw() as u32) == Some(shell_pid) {
                            log.init(SystemClock.now(), Level::Notice, "console shell exited");
                            return Ok(None);
                        }
                    }
                }
            }
        } else if let Some(a) = Action::from_signal(sig) {
            return Ok(Some(a));
        }
    }
}

/// The final sequence's settings for `action`.
pub(super) fn finish_plan(init: &InitConfig, boot: &BootConfig, action: Action) -> Finish {
    let real = boot.enabled && boot.pseudo_fs;
    Finish {
        unmount: init.unmount && action != Action::Hang,
        action,
        reboot_param: init.reboot_param.clone(),
        kill_wait: init.kill_wait,
        time_file: boot.time_file.clone().filter(|_| boot.enabled),
        rng_seed: boot.rng_seed.clone().filter(|_| boot.enabled),
        disable_core_dumps: real,
    }
}

/// The fatal action without an event loop (safe mode): a visible message, a delay to read it,
/// the final sequence; `hang` waits forever reaping.
pub(super) fn fatal_without_loop(
    init: &InitConfig,
    boot: &BootConfig,
    mut log: Logger,
    action: Action,
) -> i32 {
    let clock = SystemClock;
    log.init(
        clock.now(),
        Level::Crit,
        &format!(
            "FATAL: cannot continue; {} in {}",
            action.name(),
            crate::clock::format_duration(init.fatal_delay)
        ),
    );
    std::thread::sleep(init.fatal_delay);
    let plan = finish_plan(init, boot, action.clone());
    {
        let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
        let mut sys = LinuxSys::new(&mut logf, None);
        shutdown::finish(&plan, &mut sys);
    }
    // Only `hang` (or a failed reboot) gets here: stay PID 1, reap orphans, obey signals.
    let Ok(sfd) = SignalFd::with_flags(&signals::handled(), SfdFlags::SFD_CLOEXEC) else {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    };
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    while let Ok(st) =
                        nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
                    {
                        if st == WaitStatus::StillAlive {
                            break;
                        }
                    }
                } else if let Some(a) = Action::from_signal(sig) {
                    if a != Action::Hang {
                        let plan = finish_plan(init, boot, a);
                        let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
                        let mut sys = LinuxSys::new(&mut logf, None);
                        shutdown::finish(&plan, &mut sys);
                    }
                }
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
