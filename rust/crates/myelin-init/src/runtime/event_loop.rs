//! PID 1's event loop: one thread, one epoll set, no blocking call that a service could stall.
//!
//! The epoll set holds a signalfd (the handled signals, all blocked), the control socket and its
//! connections, every service's sd_notify socket and the read ends of its stdout/stderr pipes.
//! Timers are epoll timeouts computed from the supervisor's deadlines, the watchdog's next pet,
//! readiness-path polling and idle control connections.
//!
//! Each pass: run the supervisor's timers, poll readiness paths, pet the watchdog if the policy
//! allows, move the shutdown along, close idle connections, stream new log lines to followers,
//! then wait. After a shutdown that ends in `hang` the loop goes on serving `myelinctl` and
//! petting the watchdog.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::control_server::Clients;
use super::safe_mode::finish_plan;
use super::services::Io;
use super::{KIND_CLIENT, KIND_MASK, KIND_NOTIFY, KIND_PIPE, TOKEN_LISTENER, TOKEN_SIGNAL};
use crate::clock::{Clock, Instant, SystemClock};
use crate::config::{BootConfig, Config, InitConfig, NodeId, WatchdogConfig};
use crate::control::{Body, DataReport, StatusReport, WatchdogReport};
use crate::level::Level;
use crate::log::Logger;
use crate::notify;
use crate::ready_path::path_ready;
use crate::shutdown::{self, Action};
use crate::signals;
use crate::supervisor::{ExitStatus, Supervisor};
use crate::sys::LinuxSys;
use crate::terminal::{console_device, shell_command};
use crate::tracking::Tracking;
use crate::watchdog::{PetPolicy, Watchdog};

const READY_POLL: Duration = Duration::from_millis(10);

/// Where PID 1 is in its life.
pub(super) enum Phase {
    Running,
    Stopping { action: Action, deadline: Instant },
    Hung,
}

/// Everything the loop owns.
pub(super) struct Runtime {
    pub init: InitConfig,
    pub boot: BootConfig,
    pub wd_cfg: Option<WatchdogConfig>,
    pub sup: Supervisor,
    pub io: Io,
    pub clients: Clients,
    pub clock: SystemClock,
    pub started: Instant,
    pub sigfd: SignalFd,
    pub wd: Option<(Box<dyn Watchdog>, PetPolicy)>,
    pub phase: Phase,
    pub last_ready_poll: Instant,
    pub announced_ready: bool,
    pub data: Option<DataReport>,
}

/// The descriptors the loop needs, made before it starts.
pub(super) struct LoopParts {
    epoll: Epoll,
    sigfd: SignalFd,
    listener: Option<UnixListener>,
}

impl Runtime {
    pub(super) fn new(
        cfg: Config,
        log: Logger,
        wd: Option<Box<dyn Watchdog>>,
        parts: LoopParts,
        data: Option<DataReport>,
    ) -> Runtime {
        let clock = SystemClock;
        let now = clock.now();
        let wd = wd.map(|w| {
            let grace = cfg.watchdog.as_ref().map(|c| c.grace).unwrap_or_default();
            let p = PetPolicy::new(now, w.timeout(), grace);
            (w, p)
        });
        let tracking = Tracking::detect(cfg.init.cgroups);
        let mut io = Io::new(
            parts.epoll,
            log,
            now,
            &cfg.tree,
            (cfg.init.notify_dir(), console_device(&cfg.boot)),
            tracking,
        );
        let line = io.tracking.describe();
        let level = match io.tracking {
            Tracking::Cgroup { .. } => Level::Info,
            Tracking::ProcessGroup { .. } => Level::Notice,
        };
        io.log.init(now, level, &line);
        Runtime {
            clients: Clients::new(parts.listener, cfg.init.control_idle_timeout),
            init: cfg.init.clone(),
            boot: cfg.boot.clone(),
            wd_cfg: cfg.watchdog.clone(),
            sup: Supervisor::new(cfg.tree),
            io,
            clock,
            started: now,
            sigfd: parts.sigfd,
            wd,
            phase: Phase::Running,
            last_ready_poll: now,
            announced_ready: false,
            data,
        }
    }

    pub(super) fn setup(cfg: &Config) -> io::Result<LoopParts> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let sigfd = SignalFd::with_flags(
            &signals::handled(),
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
        Ok(LoopParts {
            epoll,
            sigfd,
            listener: Some(listener),
        })
    }

    pub(super) fn now(&mut self) -> Instant {
        let n = self.clock.now();
        self.io.now = n;
        n
    }

    pub(super) fn run(&mut self) -> i32 {
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
                self.io.timeline.all_ready(now);
            }
            if self.advance_phase(now) {
                continue;
            }
            self.clients.expire_idle(&self.io.epoll, now);
            self.clients
                .stream_logs(&self.io.epoll, &self.io.log.ring, now);
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
        if let Some(t) = self.clients.next_deadline() {
            consider(t);
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

    pub(super) fn request_shutdown(&mut self, action: Action, why: &str) {
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
    pub(super) fn reboot_now(&mut self) {
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

    pub(super) fn finish(&mut self, action: Action) {
        // Drain what services wrote last.
        self.io.drain_pipes();
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
            let console = console_device(&self.boot);
            if let Ok(mut cmd) = shell_command(&shell, &console) {
                let _ = cmd.spawn();
            }
        }
    }

    fn dispatch(&mut self, token: u64, flags: EpollFlags) {
        match token {
            TOKEN_SIGNAL => self.on_signals(),
            TOKEN_LISTENER => {
                let now = self.now();
                self.clients.accept(&self.io.epoll, now);
            }
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
        if let Some(id) = self.sup.find_pid(pid as u32) {
            // Whatever the service left behind goes with it.
            self.io.kill_leftovers(id, pid as u32);
            self.sup.on_exit(pid as u32, status, now, &mut self.io);
        }
    }

    fn on_notify(&mut self, id: NodeId) {
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let n = match self.io.notify_of(id).map(|s| s.recv(&mut buf)) {
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

    pub(super) fn snooze(&mut self, now: Instant) -> Vec<Body> {
        match (&mut self.wd, &self.wd_cfg) {
            (Some((_, p)), Some(c)) => {
                p.snooze(now, c.snooze);
                let d = crate::clock::format_duration(c.snooze);
                self.io
                    .log
                    .init(now, Level::Notice, &format!("watchdog snoozed for {d}"));
                vec![Body::Ok {
                    message: format!("watchdog petted unconditionally for {d}"),
                }]
            }
            _ => vec![Body::Error {
                message: "no hardware watchdog configured".into(),
            }],
        }
    }

    pub(super) fn status(&self, now: Instant) -> StatusReport {
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
            data: self.data.clone(),
        }
    }
}
