//! PID 1 as a program: the command line, the boot duties, then the event loop
//! ([`event_loop`]) or, for a configuration that cannot be used, safe mode ([`safe_mode`]).
//!
//! Services run in their own session (and cgroup, see [`crate::tracking`]); their stdin is
//! /dev/null, their environment only what the configuration gives them plus `NOTIFY_SOCKET`
//! (and `WATCHDOG_USEC`), every signal at its default action and none blocked, whatever PID 1
//! inherited ([`crate::signals`]).

mod args;
mod check;
mod control_server;
mod event_loop;
mod safe_mode;
mod services;
mod spawn;

use std::io;
use std::path::{Path, PathBuf};

pub use args::{ArgsError, Invocation, Options, parse_args};

use crate::boot::BootReport;
use crate::boot_timeline::Recorder;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogConfig, WatchdogConfig};
use crate::control::DataReport;
use crate::fw_env::FwEnv;
use crate::level::Level;
use crate::log::Logger;
use crate::shutdown::Action;
use crate::sys::LinuxSys;
use crate::watchdog::{DevWatchdog, FakeWatchdog, Watchdog};
use event_loop::Runtime;

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_LISTENER: u64 = 2;
const KIND_CLIENT: u64 = 3 << 56;
const KIND_NOTIFY: u64 = 4 << 56;
const KIND_PIPE: u64 = 5 << 56;
const KIND_MASK: u64 = 0xff << 56;

/// Entry point of the `myelin-init` binary; returns the exit code (only when not PID 1 or for
/// `--check`).
pub fn main_entry(args: impl IntoIterator<Item = String>) -> i32 {
    // First of all: to PID 1, an unblocked signal without a handler is lost.
    crate::signals::take_over();
    let opts = match parse_args(args) {
        Ok(Invocation::Run(o)) => o,
        Ok(Invocation::Version) => {
            println!("myelin-init {}", crate::VERSION);
            return 0;
        }
        // As PID 1 a bad command line (from the boot loader) must not end the system: say it
        // and go on with the defaults.
        Err(e) if std::process::id() == 1 => {
            crate::log::console_write(&format!("myelin-init: {e}; using the defaults\n"));
            Options {
                config: std::env::var_os("myelin_config").map(PathBuf::from),
                ..Options::default()
            }
        }
        Err(e) => {
            eprintln!("myelin-init: {e}");
            return 2;
        }
    };
    let path = opts
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
    if opts.check {
        return check::check_only(&path, opts.root.as_deref());
    }
    if std::process::id() != 1 {
        eprintln!(
            "myelin-init: refusing to run: not PID 1 (use --check to validate a configuration)"
        );
        return 1;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    ensure_stdio();
    match Config::load(&path) {
        Ok(cfg) => run_pid1(cfg, &opts),
        Err(e) => safe_mode::safe_mode(&path, e, &opts),
    }
}

/// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if the kernel gave none), so no
/// pipe or socket of PID 1 can ever land on them and be mistaken for stdio by a child.
fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            let path = c"/dev/null";
            // SAFETY: open(2) with a valid C string; the lowest free descriptor is `fd`.
            unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
        }
    }
}

fn logger_for(cfg: &LogConfig, opts: &Options) -> Logger {
    let mut c = cfg.clone();
    if let Some(k) = &opts.kmsg {
        c.kmsg = k.clone();
    }
    Logger::new(&c)
}

fn open_watchdog(cfg: &WatchdogConfig) -> io::Result<Box<dyn Watchdog>> {
    if cfg.fake {
        Ok(Box::new(FakeWatchdog::open(&cfg.device, cfg.timeout)?))
    } else {
        Ok(Box::new(DevWatchdog::open(&cfg.device, cfg.timeout)?))
    }
}

fn run_boot(
    cfg: &Config,
    log: &mut Logger,
    wd: &mut Option<Box<dyn Watchdog>>,
    timeline: &mut Recorder,
) -> BootReport {
    let clock = SystemClock;
    let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
    let mut sys = LinuxSys::new(&mut logf, wd.as_deref_mut().map(|w| w as &mut dyn Watchdog));
    let mut env = FwEnv {
        config: PathBuf::from(myelin_ubootenv::DEFAULT_CONFIG_PATH),
        nerves_config: Some(PathBuf::from(myelin_ubootenv::migrate::NERVES_CONFIG_PATH)),
    };
    let report = crate::boot::run(&cfg.boot, &mut sys, &mut env, crate::BUILD_TIME);
    for (name, at) in sys.take_phases() {
        timeline.phase(&name, at);
    }
    timeline.end_phase(clock.now());
    if let Some(h) = &report.hostname {
        let from = report
            .serial
            .as_ref()
            .map(|(s, src)| format!(" (serial {s} from {src})"))
            .unwrap_or_default();
        logf(Level::Info, &format!("hostname {h}{from}"));
    }
    report
}

fn run_pid1(mut cfg: Config, opts: &Options) -> i32 {
    let clock = SystemClock;
    let mut timeline = Recorder::new(clock.now());
    let mut log = logger_for(&cfg.log, opts);
    log.init(
        clock.now(),
        Level::Notice,
        &format!(
            "myelin-init {} starting with {}{}",
            crate::VERSION,
            cfg.path.display(),
            match cfg.sources.len() - 1 {
                0 => String::new(),
                n => format!(" and {n} drop-in{}", if n == 1 { "" } else { "s" }),
            }
        ),
    );
    // The watchdog may already run (enabled by the bootloader): open it early when it exists,
    // so a long first-boot mkfs keeps it petted.
    let mut wd: Option<Box<dyn Watchdog>> = None;
    if let Some(w) = &cfg.watchdog {
        if w.fake || w.device.exists() {
            wd = open_watchdog(w).ok();
        }
    }
    let report = run_boot(&cfg, &mut log, &mut wd, &mut timeline);
    log.reopen_kmsg();
    ensure_stdio();
    if let Some(w) = &cfg.watchdog {
        if wd.is_none() {
            match open_watchdog(w) {
                Ok(x) => wd = Some(x),
                Err(e) => log.init(
                    clock.now(),
                    Level::Err,
                    &format!("no hardware watchdog at {}: {e}", w.device.display()),
                ),
            }
        }
    }
    if let Err(e) = cfg.check_environment(Path::new("/etc")) {
        let (path, init, boot) = (cfg.path.clone(), cfg.init.clone(), cfg.boot.clone());
        return safe_mode::safe_mode_after_boot(&path, e, init, &boot, log, opts);
    }
    let data = report.data.as_ref().map(DataReport::from);
    timeline.phase("event loop setup", clock.now());
    match Runtime::setup(&cfg) {
        Ok(parts) => {
            let mut runtime = Runtime::new(cfg, log, wd, parts, data);
            timeline.end_phase(clock.now());
            runtime.io.timeline = timeline;
            runtime.run()
        }
        Err(e) => {
            let msg = format!("cannot set up the event loop: {e}");
            log.init(clock.now(), Level::Crit, &msg);
            let init = cfg.init.clone();
            safe_mode::fatal_without_loop(&init, &cfg.boot, log, Action::from(init.fatal_action))
        }
    }
}
