//! PID 1's event loop: one thread, one epoll set, no blocking call that a service could stall.
//!
//! The epoll set holds a signalfd (SIGCHLD, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPWR, SIGHUP,
//! all blocked), the control socket and its clients, every service's sd_notify socket and the
//! read ends of its stdout/stderr pipes. Timers are epoll timeouts computed from the
//! supervisor's deadlines, the watchdog's next pet and readiness-path polling.
//!
//! Each pass: run the supervisor's timers, poll readiness paths, pet the watchdog if the policy
//! allows, move the shutdown along, stream new log lines to followers, then wait.
//!
//! Services run in their own session and process group; their stdin is /dev/null, their
//! environment only what the configuration gives them plus `NOTIFY_SOCKET` (and
//! `WATCHDOG_USEC`); the signal mask PID 1 blocks is cleared before exec. When a service's main
//! process ends, whatever is left of its process group is killed.
//!
//! Safe mode (a configuration that cannot be used) does not run the loop: it reports the
//! problems on the console and kmsg, runs the configured console shell if any, then takes the
//! fatal action. It does not pet a hardware watchdog that boot already opened, so a device
//! without a usable configuration resets (and a firmware on trial reverts). After a shutdown
//! that ends in `hang` the loop goes on serving `myelinctl` and petting the watchdog.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::clock::{Clock, Instant, SystemClock};
use crate::config::{
    Config, ConfigError, InitConfig, LogConfig, NodeId, ServiceSpec, WatchdogConfig,
};
use crate::control::{self, Body, Op, StatusReport, WatchdogReport};
use crate::log::{Level, LineSplitter, Logger, Stream};
use crate::notify;
use crate::serial::FwEnv;
use crate::shutdown::{self, Action, Finish};
use crate::supervisor::{Control, Effects, ExitStatus, Note, Sig, Supervisor};
use crate::sys::LinuxSys;
use crate::watchdog::{DevWatchdog, FakeWatchdog, PetPolicy, Watchdog};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_LISTENER: u64 = 2;
const KIND_CLIENT: u64 = 3 << 56;
const KIND_NOTIFY: u64 = 4 << 56;
const KIND_PIPE: u64 = 5 << 56;
const KIND_MASK: u64 = 0xff << 56;

const MAX_CLIENTS: usize = 32;
const CLIENT_IN_MAX: usize = 64 * 1024;
const CLIENT_OUT_MAX: usize = 1024 * 1024;
const READY_POLL: Duration = Duration::from_millis(10);

/// Command-line options of `myelin-init`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Configuration file.
    pub config: Option<PathBuf>,
    /// Overrides `[log] kmsg` (tests).
    pub kmsg: Option<String>,
    /// Only validate the configuration and exit.
    pub check: bool,
}

/// Parses PID 1's arguments (the kernel passes unknown boot parameters too: they are ignored).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => o.config = Some(it.next().ok_or("--config needs a path")?.into()),
            "--kmsg" => o.kmsg = Some(it.next().ok_or("--kmsg needs a path")?),
            "--check" => o.check = true,
            "--version" | "-V" => return Err(format!("myelin-init {}", crate::VERSION)),
            _ => {}
        }
    }
    if o.config.is_none() {
        if let Ok(p) = std::env::var("myelin_config") {
            o.config = Some(p.into());
        }
    }
    Ok(o)
}

/// Entry point of the `myelin-init` binary; returns the exit code (only when not PID 1 or for
/// `--check`).
pub fn main_entry(args: impl IntoIterator<Item = String>) -> i32 {
    // Block the signals first: to PID 1, an unblocked signal without a handler is lost.
    let mask = handled_signals();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(msg) => {
            println!("{msg}");
            return 0;
        }
    };
    let path = opts
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH));
    if opts.check {
        return check_only(&path);
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
        Err(e) => safe_mode(&path, e, &opts),
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

fn check_only(path: &Path) -> i32 {
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = cfg.check_environment(Path::new("/etc")) {
        eprintln!("{e}");
        return 1;
    }
    println!("{}: ok ({} nodes)", path.display(), cfg.tree.nodes.len());
    0
}

fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        s.add(sig);
    }
    s
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

fn run_boot(cfg: &Config, log: &mut Logger, wd: &mut Option<Box<dyn Watchdog>>) {
    let clock = SystemClock;
    let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
    let mut sys = LinuxSys::new(&mut logf, wd.as_deref_mut().map(|w| w as &mut dyn Watchdog));
    let mut env = FwEnv {
        config: PathBuf::from(myelin_ubootenv::DEFAULT_CONFIG_PATH),
    };
    let report = crate::boot::run(&cfg.boot, &mut sys, &mut env, crate::BUILD_TIME);
    if let Some(h) = &report.hostname {
        let from = report
            .serial
            .as_ref()
            .map(|(s, src)| format!(" (serial {s} from {src})"))
            .unwrap_or_default();
        logf(Level::Info, &format!("hostname {h}{from}"));
    }
}

fn run_pid1(mut cfg: Config, opts: &Options) -> i32 {
    let clock = SystemClock;
    let mut log = logger_for(&cfg.log, opts);
    log.init(
        clock.now(),
        Level::Notice,
        &format!(
            "myelin-init {} starting with {}",
            crate::VERSION,
            cfg.path.display()
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
    run_boot(&cfg, &mut log, &mut wd);
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
        return safe_mode_after_boot(&cfg.path.clone(), e, cfg.init.clone(), &cfg.boot, log, opts);
    }
    match Runtime::setup(&cfg) {
        Ok(parts) => Runtime::new(cfg, log, wd, parts).run(),
        Err(e) => {
            let msg = format!("cannot set up the event loop: {e}");
            log.init(clock.now(), Level::Crit, &msg);
            let init = cfg.init.clone();
            fatal_without_loop(&init, &cfg.boot, log, Action::from(init.fatal_action))
        }
    }
}

// ----- safe mode ------------------------------------------------------------------------------

fn safe_mode(path: &Path, err: ConfigError, opts: &Options) -> i32 {
    let src = fs::read_to_string(path).unwrap_or_default();
    let (init, boot, logc) = crate::config::load_fallback(&src);
    let mut log = logger_for(&logc, opts);
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
        run_boot(c, &mut log, &mut none);
        log.reopen_kmsg();
    }
    let _ = clock;
    safe_mode_after_boot(path, err, init, &boot, log, opts)
}

fn safe_mode_after_boot(
    path: &Path,
    err: ConfigError,
    init: InitConfig,
    boot: &crate::config::BootConfig,
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
        let console = console_device(boot).display().to_string();
        log.init(
            clock.now(),
            Level::Crit,
            &format!(
                "starting {shell} on {console}; when it exits: {:?}",
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
fn run_console_shell(shell: &str, console: &str, log: &mut Logger) -> io::Result<Option<Action>> {
    let tty = open_tty(Path::new(console))?;
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
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            nix::unistd::setsid()?;
            libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let shell_pid = child.id();
    drop(child);
    let sfd = SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC)?;
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

fn finish_plan(init: &InitConfig, boot: &crate::config::BootConfig, action: Action) -> Finish {
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
fn fatal_without_loop(
    init: &InitConfig,
    boot: &crate::config::BootConfig,
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
    let Ok(sfd) = SignalFd::with_flags(&handled_signals(), SfdFlags::SFD_CLOEXEC) else {
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

// ----- the loop -------------------------------------------------------------------------------

struct Pipe {
    fd: fs::File,
    node: NodeId,
    name: String,
    pid: u32,
    stream: Stream,
    split: LineSplitter,
}

struct ClientConn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    follow: Option<(Option<String>, u64)>,
    want_write: bool,
    closing: bool,
}

/// The side of PID 1 the supervisor acts through.
struct Io {
    epoll: Epoll,
    log: Logger,
    now: Instant,
    notify_dir: PathBuf,
    console: PathBuf,
    notify: HashMap<NodeId, UnixDatagram>,
    pipes: HashMap<u64, Pipe>,
    next_pipe: u64,
    names: Vec<String>,
}

impl Io {
    fn notify_socket(&mut self, id: NodeId, spec: &ServiceSpec) -> io::Result<PathBuf> {
        let path = self.notify_dir.join(&self.names[id]);
        if let Some(s) = self.notify.get(&id) {
            // Drop whatever the previous instance left unread.
            let mut buf = [0u8; 512];
            while s.recv(&mut buf).is_ok() {}
            return Ok(path);
        }
        let _ = fs::remove_file(&path);
        let s = UnixDatagram::bind(&path)?;
        s.set_nonblocking(true)?;
        if spec.uid.is_some() || spec.gid.is_some() {
            let _ = nix::unistd::chown(
                &path,
                spec.uid.map(nix::unistd::Uid::from_raw),
                spec.gid.map(nix::unistd::Gid::from_raw),
            );
        }
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        self.epoll.add(
            s.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, KIND_NOTIFY | id as u64),
        )?;
        self.notify.insert(id, s);
        Ok(path)
    }

    fn add_pipe(&mut self, fd: OwnedFd, node: NodeId, pid: u32, stream: Stream) -> io::Result<()> {
        let token = KIND_PIPE | self.next_pipe;
        self.next_pipe += 1;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        self.epoll
            .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        let max = self.log.line_max();
        self.pipes.insert(
            token,
            Pipe {
                fd: fs::File::from(fd),
                node,
                name: self.names[node].clone(),
                pid,
                stream,
                split: LineSplitter::new(max),
            },
        );
        Ok(())
    }

    fn spawn_inner(&mut self, id: NodeId, spec: &ServiceSpec) -> io::Result<u32> {
        let notify_path = self.notify_socket(id, spec)?;
        for d in &spec.create_dirs {
            fs::create_dir_all(d)?;
            if spec.uid.is_some() || spec.gid.is_some() {
                nix::unistd::chown(
                    d,
                    spec.uid.map(nix::unistd::Uid::from_raw),
                    spec.gid.map(nix::unistd::Gid::from_raw),
                )?;
            }
        }
        if spec.uid.is_none() && spec.gid.is_none() && !spec.console {
            return self.spawn_fast(id, spec, &notify_path);
        }
        let mut cmd = Command::new(&spec.program);
        cmd.arg0(&spec.argv[0])
            .args(&spec.argv[1..])
            .env_clear()
            .envs(&spec.env)
            .env("NOTIFY_SOCKET", &notify_path)
            .current_dir(&spec.cwd);
        let mut pipes = None;
        let console = spec.console;
        if console {
            let tty = open_tty(&self.console)?;
            cmd.stdin(Stdio::from(tty.try_clone()?))
                .stdout(Stdio::from(tty.try_clone()?))
                .stderr(Stdio::from(tty));
            if !spec.env.contains_key("TERM") {
                cmd.env("TERM", "vt100");
            }
        } else {
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w));
            pipes = Some((out_r, err_r));
        }
        if let Some(w) = spec.watchdog {
            cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
        if let Some(g) = spec.gid {
            cmd.gid(g);
        }
        if let Some(u) = spec.uid {
            cmd.uid(u);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                )?;
                nix::unistd::setsid()?;
                if console {
                    // The console becomes the shell's controlling terminal (job control).
                    libc::ioctl(0, libc::TIOCSCTTY, 1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(cmd);
        let pid = child.id();
        drop(child);
        if let Some((out_r, err_r)) = pipes {
            self.add_pipe(out_r, id, pid, Stream::Stdout)?;
            self.add_pipe(err_r, id, pid, Stream::Stderr)?;
        }
        Ok(pid)
    }

    /// The common case (no user switch, no terminal) with posix_spawn: glibc's vfork-style
    /// clone does not copy PID 1's page tables, about three times faster than fork+exec here.
    fn spawn_fast(&mut self, id: NodeId, spec: &ServiceSpec, notify: &Path) -> io::Result<u32> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr =
            |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let program = cstr(spec.program.as_os_str().as_bytes())?;
        let cwd = cstr(spec.cwd.as_os_str().as_bytes())?;
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let mut env: Vec<CString> = Vec::with_capacity(spec.env.len() + 2);
        for (k, v) in &spec.env {
            if k != "NOTIFY_SOCKET" && k != "WATCHDOG_USEC" {
                env.push(cstr(format!("{k}={v}").as_bytes())?);
            }
        }
        let mut ns = b"NOTIFY_SOCKET=".to_vec();
        ns.extend_from_slice(notify.as_os_str().as_bytes());
        env.push(cstr(&ns)?);
        if let Some(w) = spec.watchdog {
            env.push(cstr(format!("WATCHDOG_USEC={}", w.as_micros()).as_bytes())?);
        }
        let null = fs::File::open("/dev/null")?;
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut argv_p: Vec<*mut libc::c_char> =
            argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
        argv_p.push(std::ptr::null_mut());
        let mut env_p: Vec<*mut libc::c_char> = env.iter().map(|a| a.as_ptr().cast_mut()).collect();
        env_p.push(std::ptr::null_mut());
        let mut pid: libc::pid_t = 0;
        // SAFETY: the attribute and file-action objects are initialised before use and destroyed
        // after; every pointer passed (program, argv, envp, cwd) is a NUL-terminated string that
        // outlives the call, and the argv/envp arrays are NULL-terminated.
        let rc = unsafe {
            let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
            let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            libc::posix_spawnattr_init(&mut attr);
            libc::posix_spawn_file_actions_init(&mut fa);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::posix_spawnattr_setsigmask(&mut attr, &empty);
            // PID 1 ignores SIGPIPE (Rust's runtime does); services get the default.
            let mut dfl: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut dfl);
            libc::sigaddset(&mut dfl, libc::SIGPIPE);
            libc::posix_spawnattr_setsigdefault(&mut attr, &dfl);
            let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::c_int::from(libc::POSIX_SPAWN_SETSIGMASK)
                | libc::c_int::from(libc::POSIX_SPAWN_SETSIGDEF);
            libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short);
            libc::posix_spawn_file_actions_adddup2(&mut fa, null.as_raw_fd(), 0);
            libc::posix_spawn_file_actions_adddup2(&mut fa, out_w.as_raw_fd(), 1);
            libc::posix_spawn_file_actions_adddup2(&mut fa, err_w.as_raw_fd(), 2);
            libc::posix_spawn_file_actions_addchdir_np(&mut fa, cwd.as_ptr());
            let rc = libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &fa,
                &attr,
                argv_p.as_ptr(),
                env_p.as_ptr(),
            );
            libc::posix_spawn_file_actions_destroy(&mut fa);
            libc::posix_spawnattr_destroy(&mut attr);
            rc
        };
        drop((null, out_w, err_w));
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let pid = pid as u32;
        self.add_pipe(out_r, id, pid, Stream::Stdout)?;
        self.add_pipe(err_r, id, pid, Stream::Stderr)?;
        Ok(pid)
    }

    /// Reads what a pipe has; `true` at end of file.
    fn read_pipe(&mut self, token: u64) -> bool {
        let Some(p) = self.pipes.get_mut(&token) else {
            return true;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut lines: Vec<String> = Vec::new();
        let mut eof = false;
        for _ in 0..16 {
            match p.fd.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => p.split.feed(&buf[..n], &mut |l| lines.push(l)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            lines.extend(p.split.finish());
        }
        let (name, pid, stream) = (p.name.clone(), p.pid, p.stream);
        let _ = p.node;
        for l in lines {
            self.log.service_line(self.now, &name, pid, stream, &l);
        }
        if eof {
            if let Some(p) = self.pipes.remove(&token) {
                let _ = self.epoll.delete(p.fd.as_fd());
            }
        }
        eof
    }
}

impl Effects for Io {
    fn spawn(&mut self, id: NodeId, _name: &str, spec: &ServiceSpec) -> Result<u32, String> {
        self.spawn_inner(id, spec).map_err(|e| e.to_string())
    }

    fn signal(&mut self, _id: NodeId, _name: &str, pid: u32, sig: Sig) {
        let Ok(p) = i32::try_from(pid) else { return };
        let (target, s) = match sig {
            Sig::Term => (-p, libc::SIGTERM),
            Sig::Kill => (-p, libc::SIGKILL),
            Sig::Abrt => (p, libc::SIGABRT),
        };
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(target, s) } < 0 && target < 0 {
            // SAFETY: as above.
            unsafe { libc::kill(p, s) };
        }
    }

    fn note(&mut self, note: Note) {
        let level = note.level();
        self.log.init(self.now, level, &note.to_string());
    }
}

enum Phase {
    Running,
    Stopping { action: Action, deadline: Instant },
    Hung,
}

struct Runtime {
    init: InitConfig,
    boot: crate::config::BootConfig,
    wd_cfg: Option<WatchdogConfig>,
    sup: Supervisor,
    io: Io,
    clock: SystemClock,
    started: Instant,
    sigfd: SignalFd,
    listener: Option<UnixListener>,
    clients: HashMap<u64, ClientConn>,
    next_client: u64,
    wd: Option<(Box<dyn Watchdog>, PetPolicy)>,
    phase: Phase,
    last_ready_poll: Instant,
    announced_ready: bool,
}

type LoopParts = (Epoll, SignalFd, Option<UnixListener>);

impl Runtime {
    fn new(cfg: Config, log: Logger, wd: Option<Box<dyn Watchdog>>, parts: LoopParts) -> Runtime {
        let (epoll, sigfd, listener) = parts;
        let clock = SystemClock;
        let now = clock.now();
        let names = cfg.tree.nodes.iter().map(|n| n.name.clone()).collect();
        let wd = wd.map(|w| {
            let grace = cfg.watchdog.as_ref().map(|c| c.grace).unwrap_or_default();
            let p = PetPolicy::new(now, w.timeout(), grace);
            (w, p)
        });
        Runtime {
            init: cfg.init.clone(),
            boot: cfg.boot.clone(),
            wd_cfg: cfg.watchdog.clone(),
            sup: Supervisor::new(cfg.tree.clone()),
            io: Io {
                epoll,
                log,
                now,
                notify_dir: cfg.init.notify_dir(),
                console: console_device(&cfg.boot),
                notify: HashMap::new(),
                pipes: HashMap::new(),
                next_pipe: 0,
                names,
            },
            clock,
            started: now,
            sigfd,
            listener,
            clients: HashMap::new(),
            next_client: 0,
            wd,
            phase: Phase::Running,
            last_ready_poll: now,
            announced_ready: false,
        }
    }

    fn setup(cfg: &Config) -> io::Result<LoopParts> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let sigfd = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?;
        epoll.add(
            sigfd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNAL),
        )?;
        fs::create_dir_all(&cfg.init.run_dir)?;
        fs::create_dir_all(cfg.init.notify_dir())?;
        let _ = fs::set_permissions(cfg.init.notify_dir(), fs::Permissions::from_mode(0o755));
        let sock = cfg.init.control_socket();
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        epoll.add(
            listener.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LISTENER),
        )?;
        Ok((epoll, sigfd, Some(listener)))
    }

    fn now(&mut self) -> Instant {
        let n = self.clock.now();
        self.io.now = n;
        n
    }

    fn run(&mut self) -> i32 {
        crate::log::console_nonblocking();
        let now = self.now();
        self.sup.start(now, &mut self.io);
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            let now = self.now();
            self.sup.on_tick(now, &mut self.io);
            self.poll_ready_paths(now);
            self.pet(now);
            if !self.announced_ready && self.sup.all_started() {
                // The line boot-time measurements and the system tests wait for.
                self.announced_ready = true;
                self.io.log.init(now, Level::Notice, "all services ready");
            }
            if self.advance_phase(now) {
                continue;
            }
            self.stream_logs();
            let timeout = self.timeout(now);
            let n = match self.io.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    self.io
                        .log
                        .init(now, Level::Err, &format!("epoll_wait: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            self.now();
            for ev in &events[..n] {
                self.dispatch(ev.data(), ev.events());
            }
        }
    }

    fn timeout(&self, now: Instant) -> EpollTimeout {
        let mut next: Option<Instant> = self.sup.next_deadline(now);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some((_, p)) = &self.wd {
            if let Some(t) = p.next_deadline(now) {
                consider(t);
            }
        }
        if !self.sup.waiting_paths().is_empty() {
            consider(self.last_ready_poll.after(READY_POLL));
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            consider(deadline);
        }
        match next {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = t.0.saturating_sub(now.0).min(60_000) as u16;
                EpollTimeout::from(ms)
            }
        }
    }

    fn poll_ready_paths(&mut self, now: Instant) {
        if now < self.last_ready_poll.after(READY_POLL) {
            return;
        }
        self.last_ready_poll = now;
        for (id, path) in self.sup.waiting_paths() {
            if path_ready(&path) {
                self.sup.on_ready(id, now, &mut self.io);
            }
        }
    }

    fn pet(&mut self, now: Instant) {
        let healthy = match self.phase {
            Phase::Running => self.sup.critical_alive(),
            // Hung on purpose (`hang`): the loop still runs and there is nothing to supervise.
            Phase::Hung => true,
            Phase::Stopping { .. } => false,
        };
        if let Some((w, p)) = &mut self.wd {
            if p.due(now, healthy) {
                if let Err(e) = w.pet() {
                    self.io
                        .log
                        .init(now, Level::Err, &format!("watchdog pet failed: {e}"));
                }
                p.petted(now);
            }
        }
    }

    fn request_shutdown(&mut self, action: Action, why: &str) {
        let now = self.now();
        match self.phase {
            Phase::Stopping { .. } => {
                self.io.log.init(
                    now,
                    Level::Notice,
                    &format!(
                        "{} requested ({why}) while already shutting down",
                        action.name()
                    ),
                );
                return;
            }
            Phase::Hung if action == Action::Hang => return,
            _ => {}
        }
        self.io.log.init(
            now,
            Level::Notice,
            &format!("{} requested ({why}): stopping services", action.name()),
        );
        if let Some((w, p)) = &mut self.wd {
            // Guarded shutdown: one last pet, then none; a hung shutdown ends in a reset.
            let _ = w.pet();
            p.petted(now);
            p.disarm();
        }
        self.phase = Phase::Stopping {
            action,
            deadline: now.after(self.init.shutdown_timeout),
        };
        self.sup.shutdown(now, &mut self.io);
    }

    /// Moves shutdowns along; `true` if the loop should go round again at once.
    fn advance_phase(&mut self, now: Instant) -> bool {
        match &self.phase {
            Phase::Running if self.sup.gave_up() => {
                let action = Action::from(self.init.fatal_action);
                self.io.log.init(
                    now,
                    Level::Crit,
                    &format!("supervision tree failed: {}", action.name()),
                );
                self.request_shutdown(action, "restart intensity exceeded at the root");
                true
            }
            Phase::Stopping { action, deadline } => {
                let action = action.clone();
                if !self.sup.is_stopped() && now < *deadline {
                    return false;
                }
                if !self.sup.is_stopped() {
                    self.io.log.init(
                        now,
                        Level::Warning,
                        "services still running after shutdown_timeout; killing everything",
                    );
                }
                self.finish(action);
                true
            }
            _ => false,
        }
    }

    /// The guarded immediate reboot: one last pet, then reboot(2) without the clean sequence.
    /// If reboot(2) fails the watchdog stays disarmed, so the hardware resets the device.
    fn reboot_now(&mut self) {
        let now = self.now();
        self.io.log.init(
            now,
            Level::Notice,
            "immediate reboot requested (control socket): no service stopped, nothing unmounted",
        );
        if let Some((w, p)) = &mut self.wd {
            let _ = w.pet();
            p.petted(now);
            p.disarm();
        }
        let clock = self.clock;
        {
            let log = &mut self.io.log;
            let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
            let mut sys = LinuxSys::new(&mut logf, None);
            shutdown::immediate(&mut sys);
        }
        self.phase = Phase::Hung;
    }

    fn finish(&mut self, action: Action) {
        // Drain what services wrote last.
        let tokens: Vec<u64> = self.io.pipes.keys().copied().collect();
        for t in tokens {
            self.io.read_pipe(t);
        }
        let plan = finish_plan(&self.init, &self.boot, action.clone());
        let clock = self.clock;
        {
            let log = &mut self.io.log;
            let mut logf = |level: Level, msg: &str| log.init(clock.now(), level, msg);
            let mut sys = LinuxSys::new(&mut logf, None);
            shutdown::finish(&plan, &mut sys);
        }
        // Only `hang` (or a failed reboot(2)) returns here. A deliberate hang keeps the device
        // up for inspection, so the watchdog is petted again; after a failed reboot(2) it stays
        // disarmed and the hardware resets the device, the only way left.
        self.phase = Phase::Hung;
        if action == Action::Hang {
            if let Some((_, p)) = &mut self.wd {
                p.rearm();
            }
        }
        if let Some(shell) = self.init.shell.clone() {
            let console = console_device(&self.boot).display().to_string();
            let _ = spawn_detached_shell(&shell, &console);
        }
    }

    fn dispatch(&mut self, token: u64, flags: EpollFlags) {
        match token {
            TOKEN_SIGNAL => self.on_signals(),
            TOKEN_LISTENER => self.accept(),
            t if t & KIND_MASK == KIND_CLIENT => self.on_client(t & !KIND_MASK, flags),
            t if t & KIND_MASK == KIND_NOTIFY => self.on_notify((t & !KIND_MASK) as NodeId),
            t if t & KIND_MASK == KIND_PIPE => {
                self.io.read_pipe(t);
            }
            _ => {}
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                self.reap();
            } else if let Some(a) = Action::from_signal(sig) {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                self.request_shutdown(a, name);
            }
        }
    }

    fn reap(&mut self) {
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(flags)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.exited(pid.as_raw(), ExitStatus::Code(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid.as_raw(), ExitStatus::Signal(sig as i32))
                }
                Ok(WaitStatus::Stopped(pid, _)) => self.paused(pid.as_raw(), true),
                Ok(WaitStatus::Continued(pid)) => self.paused(pid.as_raw(), false),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn paused(&mut self, pid: i32, paused: bool) {
        let now = self.now();
        self.sup.on_paused(pid as u32, paused, now, &mut self.io);
    }

    fn exited(&mut self, pid: i32, status: ExitStatus) {
        let now = self.now();
        if self.sup.find_pid(pid as u32).is_some() {
            // Whatever the service left in its process group goes with it.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            self.sup.on_exit(pid as u32, status, now, &mut self.io);
        }
    }

    fn on_notify(&mut self, id: NodeId) {
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let n = match self.io.notify.get(&id).map(|s| s.recv(&mut buf)) {
                Some(Ok(n)) => n,
                _ => return,
            };
            let msgs = notify::parse(&buf[..n]);
            if !msgs.is_empty() {
                let now = self.now();
                self.sup.on_notify(id, &msgs, now, &mut self.io);
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            let uid =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|c| c.uid())
                    .unwrap_or(u32::MAX);
            if uid != 0 || self.clients.len() >= MAX_CLIENTS {
                let _ = (&stream).write_all(&control::encode(&control::response(Body::Error {
                    message: if uid != 0 {
                        "permission denied: root only".into()
                    } else {
                        "too many clients".into()
                    },
                })));
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next_client;
            self.next_client += 1;
            if self
                .io
                .epoll
                .add(
                    stream.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, KIND_CLIENT | id),
                )
                .is_err()
            {
                continue;
            }
            self.clients.insert(
                id,
                ClientConn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    follow: None,
                    want_write: false,
                    closing: false,
                },
            );
        }
    }

    fn on_client(&mut self, id: u64, flags: EpollFlags) {
        let mut requests = Vec::new();
        let mut drop_it = false;
        if let Some(c) = self.clients.get_mut(&id) {
            if flags.contains(EpollFlags::EPOLLIN) || flags.contains(EpollFlags::EPOLLHUP) {
                let mut buf = [0u8; 4096];
                loop {
                    match (&c.stream).read(&mut buf) {
                        Ok(0) => {
                            drop_it = true;
                            break;
                        }
                        Ok(n) => {
                            c.input.extend_from_slice(&buf[..n]);
                            if c.input.len() > CLIENT_IN_MAX {
                                drop_it = true;
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                while let Some(pos) = c.input.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = c.input.drain(..=pos).collect();
                    requests.push(line);
                }
            }
        } else {
            return;
        }
        for line in requests {
            let body = match control::decode_request(&line[..line.len() - 1]) {
                Ok(req) => self.handle(id, req.op),
                Err(message) => vec![Body::Error { message }],
            };
            for b in body {
                self.send(id, &b);
            }
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush(id);
        }
        if drop_it {
            // A half-closed client may still want its answers: flush, then forget it.
            self.flush(id);
            self.close_client(id);
        }
    }

    fn send(&mut self, id: u64, body: &Body) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.output
                .extend_from_slice(&control::encode(&control::response(body.clone())));
        }
        self.flush(id);
    }

    fn flush(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        while !c.output.is_empty() {
            match (&c.stream).write(&c.output) {
                Ok(0) => break,
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closing = true;
                    break;
                }
            }
        }
        let want = !c.output.is_empty();
        if c.output.len() > CLIENT_OUT_MAX {
            c.closing = true;
        }
        if want != c.want_write {
            c.want_write = want;
            let flags = if want {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = self.io.epoll.modify(
                c.stream.as_fd(),
                &mut EpollEvent::new(flags, KIND_CLIENT | id),
            );
        }
        if c.closing {
            self.close_client(id);
        }
    }

    fn close_client(&mut self, id: u64) {
        if let Some(c) = self.clients.remove(&id) {
            let _ = self.io.epoll.delete(c.stream.as_fd());
        }
    }

    fn handle(&mut self, client: u64, op: Op) -> Vec<Body> {
        let now = self.now();
        let ok = |m: String| vec![Body::Ok { message: m }];
        match op {
            Op::Status => vec![Body::Status(Box::new(self.status(now)))],
            Op::Readiness => vec![Body::Readiness(self.sup.readiness(now))],
            Op::Start { name } | Op::Stop { name } | Op::Restart { name }
                if matches!(self.phase, Phase::Hung) =>
            {
                vec![Body::Error {
                    message: format!("cannot control {name}: the system is halted (hang)"),
                }]
            }
            Op::Start { name } => self.control(Control::Start, &name),
            Op::Stop { name } => self.control(Control::Stop, &name),
            Op::Restart { name } => self.control(Control::Restart, &name),
            Op::Log {
                service,
                lines,
                follow,
            } => {
                let filter =
                    |e: &&crate::log::Entry| service.as_ref().is_none_or(|s| &e.service == s);
                let ring = &self.io.log.ring;
                let all: Vec<&crate::log::Entry> = ring.since(0).filter(filter).collect();
                let skip = all.len().saturating_sub(lines.unwrap_or(usize::MAX));
                let mut out: Vec<Body> = all[skip..]
                    .iter()
                    .map(|e| Body::Log((*e).clone()))
                    .collect();
                if follow {
                    let next = ring.next_seq();
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.follow = Some((service, next));
                    }
                } else {
                    out.push(Body::End);
                }
                out
            }
            Op::Reboot { arg } => {
                let msg = ok(format!(
                    "rebooting{}",
                    arg.as_ref().map(|a| format!(" ({a})")).unwrap_or_default()
                ));
                self.reply_then_shutdown(client, msg, Action::Reboot(arg))
            }
            Op::RebootNow => {
                for b in &ok("rebooting now, without stopping services".into()) {
                    self.send(client, b);
                }
                self.reboot_now();
                Vec::new()
            }
            Op::Poweroff => {
                self.reply_then_shutdown(client, ok("powering off".into()), Action::Poweroff)
            }
            Op::Halt => self.reply_then_shutdown(client, ok("halting".into()), Action::Halt),
            Op::WatchdogSnooze => match (&mut self.wd, &self.wd_cfg) {
                (Some((_, p)), Some(c)) => {
                    p.snooze(now, c.snooze);
                    self.io.log.init(
                        now,
                        Level::Notice,
                        &format!(
                            "watchdog snoozed for {}",
                            crate::clock::format_duration(c.snooze)
                        ),
                    );
                    ok(format!(
                        "watchdog petted unconditionally for {}",
                        crate::clock::format_duration(c.snooze)
                    ))
                }
                _ => vec![Body::Error {
                    message: "no hardware watchdog configured".into(),
                }],
            },
        }
    }

    fn reply_then_shutdown(&mut self, client: u64, reply: Vec<Body>, action: Action) -> Vec<Body> {
        for b in &reply {
            self.send(client, b);
        }
        if matches!(self.phase, Phase::Hung) {
            self.phase = Phase::Running;
            self.finish(action);
        } else {
            self.request_shutdown(action, "control socket");
        }
        Vec::new()
    }

    fn control(&mut self, op: Control, name: &str) -> Vec<Body> {
        let now = self.now();
        match self.sup.control(op, name, now, &mut self.io) {
            Ok(message) => {
                self.io
                    .log
                    .init(now, Level::Notice, &format!("operator: {message}"));
                vec![Body::Ok { message }]
            }
            Err(message) => vec![Body::Error { message }],
        }
    }

    fn status(&self, now: Instant) -> StatusReport {
        StatusReport {
            version: crate::VERSION.into(),
            uptime_ms: now.since(self.started).as_millis() as u64,
            phase: match self.phase {
                Phase::Running if self.sup.gave_up() => "gave_up",
                Phase::Running => "running",
                Phase::Stopping { .. } => "stopping",
                Phase::Hung => "hung",
            }
            .into(),
            tree: self.sup.status(now),
            watchdog: self.wd.as_ref().map(|(w, p)| WatchdogReport {
                device: self
                    .wd_cfg
                    .as_ref()
                    .map(|c| c.device.display().to_string())
                    .unwrap_or_default(),
                identity: w.identity(),
                timeout_ms: w.timeout().as_millis() as u64,
                last_boot: w.last_boot(),
                policy: p.status(now, self.sup.critical_alive()),
            }),
        }
    }

    fn stream_logs(&mut self) {
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.follow.is_some())
            .map(|(&k, _)| k)
            .collect();
        for id in ids {
            let next = self.io.log.ring.next_seq();
            let bodies: Vec<Body> = {
                let Some(c) = self.clients.get(&id) else {
                    continue;
                };
                let Some((svc, from)) = &c.follow else {
                    continue;
                };
                if *from == next {
                    continue;
                }
                self.io
                    .log
                    .ring
                    .since(*from)
                    .filter(|e| svc.as_ref().is_none_or(|s| &e.service == s))
                    .map(|e| Body::Log(e.clone()))
                    .collect()
            };
            if let Some(c) = self.clients.get_mut(&id) {
                if let Some(f) = &mut c.follow {
                    f.1 = next;
                }
                for b in &bodies {
                    c.output
                        .extend_from_slice(&control::encode(&control::response(b.clone())));
                }
            }
            self.flush(id);
        }
    }
}

/// The terminal console services and the safe-mode shell use: `[boot] console`, else the
/// device behind /dev/console (the last of /sys/class/tty/console/active), else /dev/console.
pub fn console_device(boot: &crate::config::BootConfig) -> PathBuf {
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

/// Whether a readiness path is there: it exists, and if it is a socket, something listens.
pub fn path_ready(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_socket() {
        return true;
    }
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    // A full backlog (EAGAIN) still means someone listens; a stale socket file refuses.
    matches!(
        connect(fd.as_raw_fd(), &addr),
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS)
    )
}

fn spawn_detached_shell(shell: &str, console: &str) -> io::Result<()> {
    let tty = open_tty(Path::new(console))?;
    let mut cmd = Command::new(shell);
    cmd.stdin(Stdio::from(tty.try_clone()?))
        .stdout(Stdio::from(tty.try_clone()?))
        .stderr(Stdio::from(tty))
        .env_clear()
        .env("PATH", crate::config::DEFAULT_PATH)
        .env("HOME", "/root")
        .env("TERM", "linux");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            nix::unistd::setsid()?;
            libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    cmd.spawn().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let o = parse_args(
            ["init", "--config", "/x.toml", "quiet", "--kmsg", "/tmp/k"].map(String::from),
        )
        .unwrap();
        assert_eq!(o.config.as_deref(), Some(Path::new("/x.toml")));
        assert_eq!(o.kmsg.as_deref(), Some("/tmp/k"));
        assert!(!o.check);
        assert!(parse_args(["init", "--config"].map(String::from)).is_err());
        assert!(
            parse_args(["init", "--version"].map(String::from))
                .unwrap_err()
                .starts_with("myelin-init ")
        );
    }

    #[test]
    fn readiness_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flag");
        assert!(!path_ready(&file));
        fs::write(&file, "").unwrap();
        assert!(path_ready(&file));
        let sock = dir.path().join("s.sock");
        let l = UnixListener::bind(&sock).unwrap();
        assert!(path_ready(&sock));
        drop(l);
        // The socket file is still there, but nobody listens: not ready.
        assert!(sock.exists());
        assert!(!path_ready(&sock));
    }
}
