//! The daemon: `org.myelin.Time1` on the bus, the NTP client (busybox ntpd as a child, or the
//! built-in SNTP client), the DHCP servers myelin-net reports, and the timers.
//!
//! One task owns [`Clockwork`] (the state machine plus the side effects); the D-Bus object
//! reads the published [`Status`] and sends server changes to that task.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use myelin_api::time::{BUS_NAME, OBJECT_PATH, Status};
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use crate::config::{ClientKind, TimeConfig};
use crate::state::{Action, Report, TimeState};
use crate::sys::{Clock, Rtc, TimeFile};

/// The state machine and the side effects it drives.
pub struct Clockwork {
    /// What is known.
    pub state: TimeState,
    /// The system clock.
    pub clock: Box<dyn Clock + Send>,
    /// The RTC, if the board has one.
    pub rtc: Option<Box<dyn Rtc + Send>>,
    /// The time file, if configured.
    pub file: Option<Box<dyn TimeFile + Send>>,
}

impl Clockwork {
    /// Carries out `actions`; failures are logged (the next sync or tick tries again).
    pub fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SetClock(t) => {
                    let before = self.clock.now();
                    match self.clock.set(t) {
                        Ok(()) => log::info!("clock set from {before:.0} to {t:.0}"),
                        Err(e) => log::error!("cannot set the clock to {t:.0}: {e}"),
                    }
                }
                Action::WriteRtc => {
                    let now = self.clock.now().round() as i64;
                    if let Some(rtc) = self.rtc.as_mut() {
                        match rtc.write(now) {
                            Ok(()) => log::debug!("RTC set to {now}"),
                            Err(e) => log::warn!("cannot write the RTC: {e}"),
                        }
                    }
                }
                Action::SaveTimeFile => {
                    let now = self.clock.now() as i64;
                    if let Some(f) = self.file.as_mut() {
                        if let Err(e) = f.save(now) {
                            log::warn!("cannot save the time file: {e}");
                        }
                    }
                }
            }
        }
    }

    /// At start: reads the RTC and applies what [`TimeState::start`] says.
    pub fn start(&mut self) {
        let rtc = self.rtc.as_mut().and_then(|r| match r.read() {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("cannot read the RTC: {e}");
                None
            }
        });
        let now = self.clock.now();
        let actions = self.state.start(now, rtc);
        self.apply(actions);
    }

    /// An NTP report (ntpd's hook).
    pub fn report(&mut self, r: &Report) {
        let now = self.clock.now();
        let actions = self.state.report(r, now);
        self.apply(actions);
    }

    /// A sample of the built-in client.
    pub fn sample(&mut self, stratum: u32, offset: f64) {
        let now = self.clock.now();
        let actions = self.state.sample(stratum, offset, now);
        self.apply(actions);
    }

    /// The save timer.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        let actions = self.state.tick(now);
        self.apply(actions);
    }

    /// Stopping.
    pub fn stop(&mut self) {
        let now = self.clock.now();
        let actions = self.state.stop(now);
        self.apply(actions);
    }
}

/// What the D-Bus object publishes.
struct Shared {
    status: Mutex<Status>,
    emitter: OnceLock<SignalEmitter<'static>>,
    to_daemon: mpsc::UnboundedSender<Msg>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Messages to the daemon's task.
#[derive(Debug)]
enum Msg {
    /// `SetServers`: replaces the configured servers until the daemon restarts.
    SetServers(Vec<String>),
    /// myelin-net's leases offer these servers.
    Dhcp(Vec<String>),
}

/// The `org.myelin.Time1` object.
#[derive(Clone)]
struct TimeObject {
    shared: Arc<Shared>,
}

#[zbus::interface(name = "org.myelin.Time1")]
impl TimeObject {
    /// Everything as one JSON document.
    async fn get_status(&self) -> zbus::fdo::Result<String> {
        let mut s = self.shared.lock().clone();
        s.now = crate::sys::SystemClock.now() as i64;
        serde_json::to_string(&s).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    /// Replaces the configured servers until myelin-time restarts (DHCP's are still added).
    async fn set_servers(&self, servers: Vec<String>) -> zbus::fdo::Result<()> {
        for (i, s) in servers.iter().enumerate() {
            crate::config::check_server(s)
                .map_err(|m| zbus::fdo::Error::InvalidArgs(format!("servers[{i}]: {m}")))?;
        }
        self.shared
            .to_daemon
            .send(Msg::SetServers(servers))
            .map_err(|_| zbus::fdo::Error::Failed("myelin-time is stopping".into()))
    }

    /// Whether NTP has set or confirmed the clock.
    #[zbus(property)]
    async fn synchronized(&self) -> bool {
        self.shared.lock().synchronized
    }

    /// Last sync, seconds since the epoch; 0: never.
    #[zbus(property)]
    async fn last_sync(&self) -> i64 {
        self.shared.lock().last_sync
    }

    /// The servers in use.
    #[zbus(property)]
    async fn servers(&self) -> Vec<String> {
        self.shared.lock().servers.clone()
    }

    /// Stratum of the last report.
    #[zbus(property)]
    async fn stratum(&self) -> u32 {
        self.shared.lock().stratum
    }
}

impl TimeObject {
    /// Copies the state into the published status and announces what changed.
    async fn publish(&self, state: &TimeState, servers: &[String]) {
        let before = {
            let mut s = self.shared.lock();
            let before = s.clone();
            s.synchronized = state.synchronized;
            s.last_sync = state.last_sync;
            s.stratum = state.stratum;
            s.offset = state.offset;
            s.servers = servers.to_vec();
            before
        };
        let Some(emitter) = self.shared.emitter.get() else {
            return;
        };
        let now = self.shared.lock().clone();
        macro_rules! announce {
            ($field:ident, $emit:ident) => {
                if now.$field != before.$field {
                    if let Err(e) = self.$emit(emitter).await {
                        log::warn!("cannot emit PropertiesChanged: {e}");
                    }
                }
            };
        }
        announce!(synchronized, synchronized_changed);
        announce!(last_sync, last_sync_changed);
        announce!(servers, servers_changed);
        announce!(stratum, stratum_changed);
    }
}

/// Runs the daemon until SIGTERM.
pub fn main(config: TimeConfig, address: Option<String>) -> Result<()> {
    myelin_api::service::run("myelin-time", serve(config, address))?
}

/// Which client runs.
fn client_kind(config: &TimeConfig) -> ClientKind {
    match config.client {
        ClientKind::Auto if crate::ntpd::program_exists(&config.ntpd[0]) => ClientKind::Ntpd,
        ClientKind::Auto => ClientKind::Sntp,
        k => k,
    }
}

async fn serve(config: TimeConfig, address: Option<String>) -> Result<()> {
    let floor = crate::sys::read_floor(config.build_time_file.as_deref(), crate::BUILD_TIME);
    let rtc = config.rtc.as_deref().and_then(crate::sys::DeviceRtc::open);
    let rtc_path = rtc.as_ref().map(|r| r.path().display().to_string());
    let mut work = Clockwork {
        state: TimeState::new(floor, rtc.is_some()),
        clock: Box::new(crate::sys::SystemClock),
        rtc: rtc.map(|r| Box::new(r) as Box<dyn Rtc + Send>),
        file: config
            .time_file
            .clone()
            .map(|p| Box::new(crate::sys::DiskTimeFile::new(p)) as Box<dyn TimeFile + Send>),
    };
    work.start();
    let kind = client_kind(&config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let object = TimeObject {
        shared: Arc::new(Shared {
            status: Mutex::new(Status {
                client: match kind {
                    ClientKind::Sntp => "sntp".into(),
                    _ => "ntpd".into(),
                },
                rtc: rtc_path,
                floor,
                stratum: work.state.stratum,
                servers: config.servers.clone(),
                ..Status::default()
            }),
            emitter: OnceLock::new(),
            to_daemon: tx.clone(),
        }),
    };
    // The hook socket exists before ntpd can run its hook.
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("cannot create {}", config.run_dir.display()))?;
    let socket_path = config.run_dir.join("hook.sock");
    let mut hook_socket = myelin_api::hook::Listener::bind(&socket_path)
        .with_context(|| format!("cannot bind {}", socket_path.display()))?;
    let hook = config.run_dir.join(crate::ntpd::HOOK_NAME);
    if kind == ClientKind::Ntpd {
        link_hook(&hook)?;
    }
    let (conn, emitter) =
        myelin_api::service::serve(address.as_deref(), BUS_NAME, OBJECT_PATH, object.clone())
            .await?;
    let _ = object.shared.emitter.set(emitter);
    myelin_api::service::ready();
    if config.dhcp_servers {
        let conn = conn.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = watch_dhcp(&conn, &tx).await {
                log::warn!("DHCP NTP servers unavailable: {e}");
            }
        });
    }
    let mut configured = config.servers.clone();
    let mut dhcp: Vec<String> = Vec::new();
    let mut servers = crate::servers::merge(&configured, &dhcp);
    log::info!(
        "client {}, servers {}, floor {floor}",
        if kind == ClientKind::Sntp {
            "sntp"
        } else {
            "ntpd"
        },
        servers.join(" ")
    );
    object.publish(&work.state, &servers).await;
    let mut ntpd: Option<tokio::process::Child> = None;
    // When to (re)start ntpd or query next; now at first.
    let mut next_run = tokio::time::Instant::now();
    let mut save = tokio::time::interval(config.save_interval);
    save.tick().await;
    let terminated = myelin_api::service::terminated();
    tokio::pin!(terminated);
    loop {
        let idle = ntpd.is_none();
        let child_exit = async {
            match ntpd.as_mut() {
                Some(c) => c.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut terminated => {
                r?;
                break;
            }
            msg = rx.recv() => {
                let changed = match msg {
                    Some(Msg::SetServers(s)) => { configured = s; true }
                    Some(Msg::Dhcp(d)) => { let c = d != dhcp; dhcp = d; c }
                    None => false,
                };
                let merged = crate::servers::merge(&configured, &dhcp);
                if changed && merged != servers {
                    servers = merged;
                    log::info!("servers: {}", servers.join(" "));
                    // A new list restarts the client at once.
                    if let Some(mut c) = ntpd.take() {
                        let _ = c.kill().await;
                    }
                    next_run = tokio::time::Instant::now();
                    object.publish(&work.state, &servers).await;
                }
            }
            status = child_exit => {
                ntpd = None;
                log::warn!("ntpd exited ({}); restarting in {:?}", status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()), config.sntp_retry);
                next_run = tokio::time::Instant::now() + config.sntp_retry;
                if work.state.synchronized {
                    work.state.synchronized = false;
                    object.publish(&work.state, &servers).await;
                }
            }
            r = hook_socket.recv() => {
                let h = r.context("hook socket")?;
                match Report::from_hook(&h.event, &h.vars) {
                    Ok(report) => {
                        log::info!("ntpd: {} {:?}", h.event, h.vars);
                        work.report(&report);
                        object.publish(&work.state, &servers).await;
                    }
                    Err(e) => log::warn!("ntpd hook: {e}"),
                }
            }
            _ = tokio::time::sleep_until(next_run), if idle => {
                next_run = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
                if servers.is_empty() {
                    continue;
                }
                match kind {
                    ClientKind::Sntp => {
                        next_run = tokio::time::Instant::now() + sntp_round(&mut work, &servers, &config).await;
                        object.publish(&work.state, &servers).await;
                    }
                    _ => match spawn_ntpd(&config.ntpd, &hook, &servers, &socket_path) {
                        Ok(c) => ntpd = Some(c),
                        Err(e) => {
                            log::error!("cannot start {}: {e}", config.ntpd[0]);
                            next_run = tokio::time::Instant::now() + config.sntp_retry;
                        }
                    },
                }
            }
            _ = save.tick() => work.tick(),
        }
    }
    if let Some(mut c) = ntpd.take() {
        let _ = c.kill().await;
    }
    work.stop();
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}

/// One round of the built-in client: the first server that answers gives the sample. Returns
/// the time to the next round.
async fn sntp_round(work: &mut Clockwork, servers: &[String], config: &TimeConfig) -> Duration {
    let clock = || crate::sys::SystemClock.now();
    for s in servers {
        // The whole query, name lookup included, is bounded: a server whose name cannot be
        // resolved (no DNS yet) must not hold up the next one, nor a new server list.
        let timeout = Duration::from_secs(3);
        let answer = tokio::time::timeout(timeout, crate::sntp::query(s, timeout, &clock))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 3 s",
                ))
            });
        match answer {
            Ok((addr, sample)) => {
                log::info!(
                    "sntp: {s} ({addr}) stratum {} offset {:.3}s delay {:.3}s",
                    sample.stratum,
                    sample.offset,
                    sample.delay
                );
                work.sample(sample.stratum, sample.offset);
                if work.state.synchronized {
                    return config.sntp_poll;
                }
            }
            Err(e) => log::info!("sntp: {s}: {e}"),
        }
    }
    config.sntp_retry
}

fn link_hook(hook: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    myelin_api::hook::link(&exe, hook)
        .with_context(|| format!("cannot link {} to {}", hook.display(), exe.display()))
}

fn spawn_ntpd(
    prefix: &[String],
    hook: &Path,
    servers: &[String],
    socket: &PathBuf,
) -> std::io::Result<tokio::process::Child> {
    let argv = crate::ntpd::argv(prefix, hook, servers);
    log::info!("running {}", argv.join(" "));
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env(crate::ntpd::HOOK_SOCKET_ENV, socket)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes ntpd die with us if we are killed, so a
    // restarted myelin-time never finds a second ntpd fighting over the clock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Follows myelin-net: at start and on each of its PropertiesChanged signals, reads its status
/// and sends the DHCP servers when they change.
async fn watch_dhcp(conn: &zbus::Connection, tx: &mpsc::UnboundedSender<Msg>) -> Result<()> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(myelin_api::net::BUS_NAME)
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .build()?;
    let mut signals = zbus::MessageStream::for_match_rule(rule, conn, None).await?;
    let mut last: Option<Vec<String>> = None;
    loop {
        // Not running yet, or no lease: no servers (the next signal asks again).
        let found = match myelin_api::net::status(conn, None).await {
            Ok(status) => crate::servers::from_net_status(&status),
            Err(e) => {
                log::debug!("myelin-net status: {e}");
                Vec::new()
            }
        };
        if last.as_ref() != Some(&found) {
            if tx.send(Msg::Dhcp(found.clone())).is_err() {
                return Ok(());
            }
            last = Some(found);
        }
        if signals.next().await.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock, RTC and time file that record into shared cells.
    #[derive(Clone, Default)]
    struct Cells {
        clock: Arc<Mutex<f64>>,
        rtc: Arc<AtomicI64>,
        saved: Arc<AtomicI64>,
    }
    impl Clock for Cells {
        fn now(&self) -> f64 {
            *self.clock.lock().expect("lock")
        }
        fn set(&mut self, t: f64) -> std::io::Result<()> {
            *self.clock.lock().expect("lock") = t;
            Ok(())
        }
    }
    impl Rtc for Cells {
        fn read(&mut self) -> std::io::Result<i64> {
            Ok(self.rtc.load(Ordering::SeqCst))
        }
        fn write(&mut self, t: i64) -> std::io::Result<()> {
            self.rtc.store(t, Ordering::SeqCst);
            Ok(())
        }
    }
    impl TimeFile for Cells {
        fn save(&mut self, t: i64) -> std::io::Result<()> {
            self.saved.store(t, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_boot_with_a_wrong_clock_then_a_step() {
        const FLOOR: i64 = 1_800_000_000;
        let c = Cells::default();
        *c.clock.lock().expect("lock") = 10.0;
        c.rtc.store(FLOOR + 3600, Ordering::SeqCst);
        let mut w = Clockwork {
            state: TimeState::new(FLOOR, true),
            clock: Box::new(c.clone()),
            rtc: Some(Box::new(c.clone())),
            file: Some(Box::new(c.clone())),
        };
        w.start();
        assert_eq!(c.now(), (FLOOR + 3600) as f64, "the RTC set the clock");
        // ntpd stepped the clock a day ahead and reports it.
        *c.clock.lock().expect("lock") = (FLOOR + 86_400) as f64;
        w.report(&Report {
            event: crate::state::NtpEvent::Step,
            stratum: Some(2),
            offset: Some(82_800.0),
        });
        assert!(w.state.synchronized);
        assert_eq!(c.rtc.load(Ordering::SeqCst), FLOOR + 86_400);
        assert_eq!(c.saved.load(Ordering::SeqCst), FLOOR + 86_400);
        w.tick();
        // The built-in client never goes below the floor.
        w.sample(1, -1e9);
        assert_eq!(c.now(), (FLOOR + 86_400) as f64);
        assert!(!w.state.synchronized);
    }
}
