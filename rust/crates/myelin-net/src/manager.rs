//! The interface manager: one event loop that owns every interface's state and carries out
//! plans.
//!
//! Interface states: `unconfigured` (no configuration: only watched), `waiting` (configured,
//! but the interface does not exist yet), `configuring` (the plan is being applied),
//! `configured` (running), `retrying` (bring-up failed or a daemon died; everything was
//! undone and the next attempt comes after `retry_interval`).
//!
//! A configuration change tears the interface down completely and brings the new one up from
//! scratch, except when only the check targets or mDNS differ (those apply in place). A new
//! configuration is validated first; a rejected one changes nothing.
//!
//! After every event the manager recomputes routes (applied as a diff), resolv.conf and the
//! published [`Snapshot`], which the D-Bus service mirrors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::check::{self, CheckLogic, Connection};
use crate::config::{ConfigError, HostPort, InterfaceConfig, Ipv4Net, Kind, NetConfig};
use crate::dhcp::{self, HOOK_TOKEN_ENV, Lease, Report};
use crate::netlink::{LinkState, NetError, NetEvent, NetOps};
use crate::persist::{self, Store};
use crate::process::{self, Running, SpawnError};
use crate::report::report;
use crate::resolv;
use crate::route::{self, Entry, RouteInput};
use crate::tech::{self, CheckMode, Plan, When};
use crate::wpa;

/// How long a stopped daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Errors of manager requests.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The configuration was rejected (the cause names the field).
    #[error("invalid configuration")]
    Invalid(#[from] ConfigError),
    /// No such interface (or no configuration for it).
    #[error("{0}")]
    NotFound(String),
    /// The interface cannot do that (scanning Ethernet, ...).
    #[error("{0}")]
    NotSupported(String),
    /// Saving under `persist_dir` failed; nothing was changed.
    #[error("cannot persist {what}")]
    Persist {
        /// The configuration or the check targets.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Removing the persisted configuration failed; nothing was changed.
    #[error("cannot remove the persisted configuration")]
    Forget(#[source] std::io::Error),
    /// wpa_supplicant refused or failed the request.
    #[error("wpa_supplicant failed the request")]
    Wifi(#[from] wpa::WpaError),
    /// The WiFi session ended before answering.
    #[error("the WiFi session ended")]
    WifiEnded,
    /// The manager is not running any more.
    #[error("the manager has stopped")]
    Stopped,
}

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The run directory (or the control socket directory) cannot be made private.
    #[error("cannot prepare {}", path.display())]
    Dir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The DHCP hook symlink cannot be made.
    #[error("cannot link the DHCP hook {}", path.display())]
    Hook {
        /// Symlink.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The hook socket cannot be bound.
    #[error("cannot bind the hook socket {}", path.display())]
    HookSocket {
        /// Socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel monitor failed before its first dump was complete.
    #[error("the rtnetlink monitor failed")]
    Monitor(#[source] NetError),
    /// The kernel monitor ended before its first dump was complete.
    #[error("the rtnetlink monitor ended")]
    MonitorEnded,
    /// Nobody holds the event channel any more.
    #[error("the event channel closed")]
    Closed,
}

/// Why bringing an interface up failed (it is retried after `retry_interval`).
#[derive(Debug, thiserror::Error)]
pub enum BringUpError {
    /// A generated file could not be written.
    #[error("cannot write {}", path.display())]
    File {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a change.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A program could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// Requests from clients (the D-Bus service).
#[derive(Debug)]
pub enum Request {
    /// Replace an interface's configuration.
    Configure {
        /// Interface.
        ifname: String,
        /// New configuration (validated again by the manager).
        config: Box<InterfaceConfig>,
        /// Save it under `/data` so it survives a reboot.
        persist: bool,
        /// Outcome.
        reply: oneshot::Sender<Result<(), ManagerError>>,
    },
    /// Stop managing an interface and forget its persisted configuration.
    Deconfigure {
        /// Interface.
        ifname: String,
        /// Outcome.
        reply: oneshot::Sender<Result<(), ManagerError>>,
    },
    /// Replace the global check targets.
    SetCheckHosts {
        /// Targets.
        hosts: Vec<HostPort>,
        /// Save them under `/data`.
        persist: bool,
        /// Outcome.
        reply: oneshot::Sender<Result<(), ManagerError>>,
    },
    /// Start a WiFi scan.
    Scan {
        /// Interface.
        ifname: String,
        /// Outcome (results arrive in the interface's access points).
        reply: oneshot::Sender<Result<(), ManagerError>>,
    },
}

/// Everything the event loop reacts to.
#[derive(Debug)]
pub enum Msg {
    /// A client request.
    Request(Request),
    /// A kernel event.
    Net(NetEvent),
    /// The initial kernel dump is complete.
    NetReady,
    /// The kernel monitor failed (`None`: it ended).
    NetFailed(Option<NetError>),
    /// A udhcpc hook report.
    Hook(Report),
    /// A supervised program exited on its own.
    DaemonExit {
        /// Interface.
        ifname: String,
        /// Interface generation it belonged to.
        generation: u64,
        /// Program.
        name: String,
        /// Exit status.
        what: String,
    },
    /// Time for a connectivity check.
    CheckDue {
        /// Interface.
        ifname: String,
        /// Schedule number.
        seq: u64,
    },
    /// A connectivity check finished.
    CheckDone {
        /// Interface.
        ifname: String,
        /// Schedule number.
        seq: u64,
        /// Reachable.
        ok: bool,
    },
    /// News from a WiFi session.
    Wifi {
        /// Interface.
        ifname: String,
        /// Generation.
        generation: u64,
        /// The news.
        update: wpa::Update,
    },
    /// A WiFi session ended.
    WifiEnded {
        /// Interface.
        ifname: String,
        /// Generation.
        generation: u64,
        /// How: `Ok` when its command channel closed.
        ended: Result<(), wpa::WpaError>,
    },
    /// Time to try a `retrying` interface again.
    Retry {
        /// Interface.
        ifname: String,
        /// Generation.
        generation: u64,
    },
}

/// A name server and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameServer {
    /// Address.
    pub address: String,
    /// `global` and/or interface names.
    pub from: Vec<String>,
}

/// One interface as clients see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IfaceSnapshot {
    /// Technology (`ethernet`, `wifi`, `direct`), empty when unconfigured.
    #[serde(rename = "type")]
    pub kind: String,
    /// Interface state (see the module documentation).
    pub state: String,
    /// `disconnected`, `lan`, `internet`.
    pub connection: String,
    /// The netdev exists.
    pub present: bool,
    /// Carrier.
    pub lower_up: bool,
    /// Hardware address.
    pub mac_address: String,
    /// IPv4 addresses on the interface, `a.b.c.d/n`.
    pub addresses: Vec<String>,
    /// The DHCP lease's options, as udhcpc reported them.
    pub dhcp_options: BTreeMap<String, String>,
    /// Running configuration.
    pub configuration: Option<InterfaceConfig>,
    /// WiFi scan results.
    pub access_points: Vec<wpa::AccessPoint>,
    /// WiFi association.
    pub current_access_point: Option<wpa::CurrentAp>,
    /// AP mode: associated stations.
    pub stations: Vec<String>,
    /// The last problem (failed bring-up, daemon exit, WiFi event).
    pub last_error: String,
}

/// The published state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Best connection of all interfaces.
    pub connection: String,
    /// Interfaces with routes, best first.
    pub available_interfaces: Vec<String>,
    /// resolv.conf's name servers in order.
    pub name_servers: Vec<NameServer>,
    /// Global check targets.
    pub check_hosts: Vec<String>,
    /// Every configured or present interface.
    pub interfaces: BTreeMap<String, IfaceSnapshot>,
}

/// What the manager runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file's content (defaults).
    pub config: NetConfig,
    /// Host name.
    pub hostname: String,
    /// The udhcpc hook program (this binary).
    pub hook_program: PathBuf,
}

/// Where a request's outcome goes.
type Reply = oneshot::Sender<Result<(), ManagerError>>;

/// A client's handle on a running manager.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), ManagerError>>) -> Request,
    ) -> Result<(), ManagerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Request(make(reply)))
            .map_err(|_| ManagerError::Stopped)?;
        rx.await.map_err(|_| ManagerError::Stopped)?
    }

    /// Configures an interface.
    pub async fn configure(
        &self,
        ifname: &str,
        config: InterfaceConfig,
        persist: bool,
    ) -> Result<(), ManagerError> {
        let ifname = ifname.to_owned();
        self.ask(|reply| Request::Configure {
            ifname,
            config: Box::new(config),
            persist,
            reply,
        })
        .await
    }

    /// Deconfigures an interface.
    pub async fn deconfigure(&self, ifname: &str) -> Result<(), ManagerError> {
        let ifname = ifname.to_owned();
        self.ask(|reply| Request::Deconfigure { ifname, reply })
            .await
    }

    /// Replaces the global check targets.
    pub async fn set_check_hosts(
        &self,
        hosts: Vec<HostPort>,
        persist: bool,
    ) -> Result<(), ManagerError> {
        self.ask(|reply| Request::SetCheckHosts {
            hosts,
            persist,
            reply,
        })
        .await
    }

    /// Starts a WiFi scan.
    pub async fn scan(&self, ifname: &str) -> Result<(), ManagerError> {
        let ifname = ifname.to_owned();
        self.ask(|reply| Request::Scan { ifname, reply }).await
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every published state.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unconfigured,
    Waiting,
    Configuring,
    Configured,
    Retrying,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Unconfigured => "unconfigured",
            State::Waiting => "waiting",
            State::Configuring => "configuring",
            State::Configured => "configured",
            State::Retrying => "retrying",
        }
    }
}

struct Iface {
    name: String,
    config: Option<InterfaceConfig>,
    plan: Option<Plan>,
    state: State,
    generation: u64,
    daemons: Vec<Running>,
    dhcp_token: Option<u64>,
    lease: Option<Lease>,
    dhcp_options: BTreeMap<String, String>,
    /// Addresses this manager added (static and leased).
    applied: Vec<Ipv4Net>,
    check: CheckLogic,
    check_seq: u64,
    check_rotation: usize,
    wifi_cmd: Option<mpsc::UnboundedSender<wpa::Command>>,
    wifi_task: Option<tokio::task::JoinHandle<()>>,
    access_points: Vec<wpa::AccessPoint>,
    current_ap: Option<wpa::CurrentAp>,
    stations: Vec<String>,
    last_error: String,
}

impl Iface {
    fn new(name: &str, check: CheckLogic) -> Self {
        Iface {
            name: name.to_owned(),
            config: None,
            plan: None,
            state: State::Unconfigured,
            generation: 0,
            daemons: Vec::new(),
            dhcp_token: None,
            lease: None,
            dhcp_options: BTreeMap::new(),
            applied: Vec::new(),
            check,
            check_seq: 0,
            check_rotation: 0,
            wifi_cmd: None,
            wifi_task: None,
            access_points: Vec::new(),
            current_ap: None,
            stations: Vec::new(),
            last_error: String::new(),
        }
    }

    fn connection(&self) -> Connection {
        if self.state == State::Configured {
            self.check.connection
        } else {
            Connection::Disconnected
        }
    }

    fn gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.plan
            .as_ref()
            .and_then(|p| p.gateway)
            .or_else(|| self.lease.as_ref().and_then(|l| l.routers.first().copied()))
    }
}

/// The manager; create with [`Manager::new`], then [`Manager::start`] and
/// [`Manager::run_until_stopped`].
pub struct Manager {
    opts: Options,
    ctx: tech::Context,
    net: Arc<dyn NetOps>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    published: watch::Sender<Snapshot>,
    store: Store,
    persisted: BTreeMap<String, InterfaceConfig>,
    check_hosts: Vec<HostPort>,
    ifaces: BTreeMap<String, Iface>,
    links: BTreeMap<u32, LinkState>,
    observed: BTreeMap<u32, BTreeSet<Ipv4Net>>,
    routes: Vec<Entry>,
    slots: BTreeMap<String, u32>,
    next_token: u64,
    mdns: Option<crate::mdns::Responder>,
    /// Replies sent once the change they report is published.
    replies: Vec<(Reply, Result<(), ManagerError>)>,
}

impl Manager {
    /// A manager that changes the kernel through `net`.
    pub fn new(opts: Options, net: Arc<dyn NetOps>) -> (Manager, Handle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (published, snapshot) = watch::channel(Snapshot::default());
        let ctx = tech::Context::new(&opts.config.daemon, &opts.hostname);
        let store = Store::new(&opts.config.daemon.persist_dir);
        let check_hosts = opts.config.connectivity.hosts.clone();
        let handle = Handle {
            tx: tx.clone(),
            snapshot,
        };
        (
            Manager {
                opts,
                ctx,
                net,
                tx,
                rx,
                published,
                store,
                persisted: BTreeMap::new(),
                check_hosts,
                ifaces: BTreeMap::new(),
                links: BTreeMap::new(),
                observed: BTreeMap::new(),
                routes: Vec::new(),
                slots: BTreeMap::new(),
                next_token: 1,
                mdns: None,
                replies: Vec::new(),
            },
            handle,
        )
    }

    /// A sender for events from outside (kernel monitor, hook socket).
    pub fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        self.tx.clone()
    }

    /// Prepares the run directory and the hook, starts the kernel monitor, waits for its first
    /// dump, loads persisted configs and brings every configured interface up (or waits for it).
    pub async fn start(&mut self) -> Result<(), StartError> {
        self.start_with(true).await
    }

    /// [`Manager::start`]; without `monitor` the kernel events come from the caller (tests).
    async fn start_with(&mut self, monitor: bool) -> Result<(), StartError> {
        // The run directory holds the generated wpa_supplicant.conf files, with WiFi keys.
        let run = self.opts.config.daemon.run_dir.clone();
        persist::private_dir(&run).map_err(|source| StartError::Dir {
            path: run.clone(),
            source,
        })?;
        if let Some(parent) = self.ctx.wpa_ctrl_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StartError::Dir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let hook = self.ctx.hook_path();
        myelin_api::hook::link(&self.opts.hook_program, &hook)
            .map_err(|source| StartError::Hook { path: hook, source })?;
        let mut sock =
            myelin_api::hook::Listener::bind(&self.ctx.hook_socket()).map_err(|source| {
                StartError::HookSocket {
                    path: self.ctx.hook_socket(),
                    source,
                }
            })?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                match sock.recv().await {
                    Ok(r) => {
                        if tx.send(Msg::Hook(r)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        log::warn!("hook socket: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        if let Err(e) = self.net.cleanup().await {
            log::warn!("cleaning up old routes: {}", report(&e));
        }
        if !monitor {
            let _ = self.tx.send(Msg::NetReady);
        }
        let (ntx, mut nrx) = mpsc::unbounded_channel();
        let (dumped_tx, mut dumped) = oneshot::channel();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if !monitor {
                return;
            }
            let mon = crate::netlink::monitor(ntx, dumped_tx);
            tokio::pin!(mon);
            let mut waiting = true;
            loop {
                tokio::select! {
                    // Events first, so the dump is handled before NetReady.
                    biased;
                    ev = nrx.recv() => match ev {
                        Some(ev) => { let _ = tx.send(Msg::Net(ev)); }
                        None => return,
                    },
                    r = &mut dumped, if waiting => {
                        waiting = false;
                        if r.is_ok() {
                            // Everything the dump produced is queued before this message.
                            while let Ok(ev) = nrx.try_recv() {
                                let _ = tx.send(Msg::Net(ev));
                            }
                            let _ = tx.send(Msg::NetReady);
                        }
                    }
                    r = &mut mon => {
                        let _ = tx.send(Msg::NetFailed(r.err()));
                        return;
                    }
                }
            }
        });
        loop {
            match self.rx.recv().await {
                Some(Msg::NetReady) => break,
                Some(Msg::NetFailed(Some(e))) => return Err(StartError::Monitor(e)),
                Some(Msg::NetFailed(None)) => return Err(StartError::MonitorEnded),
                Some(Msg::Net(ev)) => self.on_net(ev).await,
                Some(other) => self.handle(other).await,
                None => return Err(StartError::Closed),
            }
        }
        if let Err(e) = self.store.secure() {
            log::warn!(
                "cannot restrict {} to root: {e}",
                self.opts.config.daemon.persist_dir.display()
            );
        }
        let (ok, bad) = self.store.load_all();
        for e in bad {
            log::warn!("ignoring a persisted configuration: {}", report(&e));
        }
        self.persisted = ok.into_iter().collect();
        match self.store.load_hosts() {
            Ok(Some(h)) => self.check_hosts = h,
            Ok(None) => {}
            Err(e) => log::warn!("ignoring the persisted check targets: {}", report(&e)),
        }
        if self.opts.config.mdns.enabled {
            match crate::mdns::Responder::new(&self.opts.hostname, &self.opts.config.mdns) {
                Ok(r) => self.mdns = Some(r),
                Err(e) => log::warn!("mDNS disabled: {e}"),
            }
        }
        let mut names: BTreeSet<String> = self.opts.config.interface.keys().cloned().collect();
        names.extend(self.persisted.keys().cloned());
        for name in names {
            let config = self
                .persisted
                .get(&name)
                .or_else(|| self.opts.config.interface.get(&name))
                .cloned();
            if let Some(config) = config {
                self.set_config(&name, config).await;
            }
        }
        self.refresh().await;
        Ok(())
    }

    /// Handles events; cancel it (and call [`Manager::shutdown`]) to stop.
    pub async fn run_until_stopped(&mut self) {
        while let Some(msg) = self.rx.recv().await {
            self.handle(msg).await;
        }
    }

    /// Stops every daemon (the addresses and routes stay, like a kernel without a manager).
    pub async fn shutdown(&mut self) {
        for iface in self.ifaces.values_mut() {
            for d in iface.daemons.drain(..) {
                d.stop().await;
            }
            if let Some(t) = iface.wifi_task.take() {
                t.abort();
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Request(r) => self.on_request(r).await,
            Msg::Net(ev) => self.on_net(ev).await,
            Msg::NetReady => {}
            Msg::NetFailed(why) => {
                // Without the monitor the manager is blind: exit and let init restart it.
                match why {
                    Some(e) => log::error!("the rtnetlink monitor failed: {}", report(&e)),
                    None => log::error!("the rtnetlink monitor ended"),
                }
                std::process::exit(1);
            }
            Msg::Hook(r) => self.on_hook(r).await,
            Msg::DaemonExit {
                ifname,
                generation,
                name,
                what,
            } => {
                if self
                    .ifaces
                    .get(&ifname)
                    .is_some_and(|i| i.generation == generation)
                {
                    log::warn!("{ifname}: {name} exited ({what})");
                    self.retry(&ifname, format!("{name} exited ({what})")).await;
                }
            }
            Msg::CheckDue { ifname, seq } => self.on_check_due(&ifname, seq).await,
            Msg::CheckDone { ifname, seq, ok } => {
                if let Some(i) = self.ifaces.get_mut(&ifname)
                    && i.check_seq == seq
                    && i.state == State::Configured
                {
                    let before = i.check.connection;
                    if ok {
                        i.check.success();
                    } else {
                        i.check.failure();
                    }
                    if i.check.connection != before {
                        log::info!(
                            "{ifname}: {} -> {}",
                            before.as_str(),
                            i.check.connection.as_str()
                        );
                    }
                    self.schedule_check(&ifname);
                }
            }
            Msg::Wifi {
                ifname,
                generation,
                update,
            } => {
                if let Some(i) = self.ifaces.get_mut(&ifname)
                    && i.generation == generation
                {
                    match update {
                        wpa::Update::AccessPoints(aps) => i.access_points = aps,
                        wpa::Update::Current(c) => i.current_ap = c,
                        wpa::Update::Stations(s) => i.stations = s,
                        wpa::Update::Event(e) => i.last_error = e,
                    }
                }
            }
            Msg::WifiEnded {
                ifname,
                generation,
                ended,
            } => {
                if self
                    .ifaces
                    .get(&ifname)
                    .is_some_and(|i| i.generation == generation)
                {
                    let why = match ended {
                        Ok(()) => "the wpa_supplicant session was closed".to_owned(),
                        Err(e) => report(&e),
                    };
                    log::warn!("{ifname}: {why}");
                    self.retry(&ifname, why).await;
                }
            }
            Msg::Retry { ifname, generation } => {
                if self
                    .ifaces
                    .get(&ifname)
                    .is_some_and(|i| i.generation == generation && i.state == State::Retrying)
                {
                    self.bring_up(&ifname).await;
                }
            }
        }
        self.refresh().await;
        // A client that hears "done" finds the change in the published state.
        for (reply, result) in self.replies.drain(..) {
            let _ = reply.send(result);
        }
    }

    fn reply_later(
        &mut self,
        reply: oneshot::Sender<Result<(), ManagerError>>,
        result: Result<(), ManagerError>,
    ) {
        self.replies.push((reply, result));
    }

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::Configure {
                ifname,
                config,
                persist,
                reply,
            } => {
                let config = match config.normalize(&ifname) {
                    Ok(c) => c,
                    Err(e) => {
                        self.reply_later(reply, Err(e.into()));
                        return;
                    }
                };
                log::debug!(
                    "{ifname}: configure{} {}",
                    if persist { "" } else { " (temporary)" },
                    serde_json::to_string(&config.without_secrets()).unwrap_or_default()
                );
                if persist {
                    if let Err(source) = self.store.save(&ifname, &config) {
                        self.reply_later(
                            reply,
                            Err(ManagerError::Persist {
                                what: "the configuration",
                                source,
                            }),
                        );
                        return;
                    }
                    self.persisted.insert(ifname.clone(), config.clone());
                }
                self.set_config(&ifname, config).await;
                self.reply_later(reply, Ok(()));
            }
            Request::Deconfigure { ifname, reply } => {
                let known = self.ifaces.get(&ifname).is_some_and(|i| i.config.is_some());
                if !known {
                    self.reply_later(
                        reply,
                        Err(ManagerError::NotFound(format!(
                            "{ifname} is not configured"
                        ))),
                    );
                    return;
                }
                if let Err(e) = self.store.clear(&ifname) {
                    self.reply_later(reply, Err(ManagerError::Forget(e)));
                    return;
                }
                self.persisted.remove(&ifname);
                self.teardown(&ifname).await;
                if let Some(i) = self.ifaces.get_mut(&ifname) {
                    i.config = None;
                    i.plan = None;
                    i.state = State::Unconfigured;
                    i.last_error.clear();
                }
                self.slots.remove(&ifname);
                let present = self.link_by_name(&ifname).is_some();
                if !present {
                    self.ifaces.remove(&ifname);
                }
                self.reply_later(reply, Ok(()));
            }
            Request::SetCheckHosts {
                hosts,
                persist,
                reply,
            } => {
                if hosts.is_empty() {
                    self.reply_later(
                        reply,
                        Err(ManagerError::Invalid(ConfigError::new(
                            "hosts",
                            "an empty list could never find the internet",
                        ))),
                    );
                    return;
                }
                if persist && let Err(source) = self.store.save_hosts(&hosts) {
                    self.reply_later(
                        reply,
                        Err(ManagerError::Persist {
                            what: "the check targets",
                            source,
                        }),
                    );
                    return;
                }
                self.check_hosts = hosts;
                let names: Vec<String> = self.ifaces.keys().cloned().collect();
                for n in names {
                    if let Some(i) = self.ifaces.get_mut(&n)
                        && i.config.as_ref().is_some_and(|c| c.check_hosts.is_none())
                    {
                        i.check.retarget();
                    }
                    self.schedule_check(&n);
                }
                self.reply_later(reply, Ok(()));
            }
            Request::Scan { ifname, reply } => {
                let Some(i) = self.ifaces.get(&ifname) else {
                    let _ = reply.send(Err(ManagerError::NotFound(format!(
                        "no interface {ifname}"
                    ))));
                    return;
                };
                let Some(cmd) = &i.wifi_cmd else {
                    let why = if i.config.as_ref().is_some_and(|c| c.kind == Kind::Wifi) {
                        format!(
                            "{ifname}'s wpa_supplicant is not running ({})",
                            i.state.as_str()
                        )
                    } else {
                        format!("{ifname} is not a configured WiFi interface")
                    };
                    let _ = reply.send(Err(ManagerError::NotSupported(why)));
                    return;
                };
                let (tx, rx) = oneshot::channel();
                if cmd.send(wpa::Command::Scan(tx)).is_err() {
                    let _ = reply.send(Err(ManagerError::WifiEnded));
                    return;
                }
                tokio::spawn(async move {
                    let r = match rx.await {
                        Ok(r) => r.map_err(ManagerError::from),
                        Err(_) => Err(ManagerError::WifiEnded),
                    };
                    let _ = reply.send(r);
                });
            }
        }
    }

    fn new_iface(&self, name: &str) -> Iface {
        Iface::new(
            name,
            CheckLogic::from_settings(&self.opts.config.connectivity),
        )
    }

    /// Installs a (normalized) configuration and brings the interface up with it.
    async fn set_config(&mut self, ifname: &str, config: InterfaceConfig) {
        if !self.ifaces.contains_key(ifname) {
            let i = self.new_iface(ifname);
            self.ifaces.insert(ifname.to_owned(), i);
        }
        if !self.slots.contains_key(ifname) {
            let used: BTreeSet<u32> = self.slots.values().copied().collect();
            let free = (0..).find(|s| !used.contains(s)).unwrap_or(0);
            self.slots.insert(ifname.to_owned(), free);
        }
        let in_place = self.ifaces.get(ifname).is_some_and(|i| {
            i.state == State::Configured
                && i.config
                    .as_ref()
                    .is_some_and(|c| c.same_link_setup(&config))
        });
        if in_place {
            if let Some(i) = self.ifaces.get_mut(ifname) {
                if i.config.as_ref().map(|c| &c.check_hosts) != Some(&config.check_hosts) {
                    i.check.retarget();
                }
                i.config = Some(config);
            }
            self.schedule_check(ifname);
            return;
        }
        self.teardown(ifname).await;
        if let Some(i) = self.ifaces.get_mut(ifname) {
            i.config = Some(config);
            i.last_error.clear();
        }
        self.bring_up(ifname).await;
    }

    fn link_by_name(&self, name: &str) -> Option<&LinkState> {
        self.links.values().find(|l| l.name == name)
    }

    /// Undoes everything the interface's plan did (daemons, addresses, files).
    async fn teardown(&mut self, ifname: &str) {
        let index = self.link_by_name(ifname).map(|l| l.index);
        let net = self.net.clone();
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return;
        };
        i.generation += 1;
        for d in i.daemons.drain(..) {
            d.stop().await;
        }
        if let Some(t) = i.wifi_task.take() {
            t.abort();
        }
        i.wifi_cmd = None;
        if let Some(index) = index {
            for a in i.applied.drain(..) {
                if let Err(e) = net.del_address(index, a).await
                    && !e.missing()
                {
                    log::warn!("{ifname}: {}", report(&e));
                }
            }
        }
        i.applied.clear();
        if let Some(p) = &i.plan {
            for f in &p.files {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        i.dhcp_token = None;
        i.lease = None;
        i.dhcp_options.clear();
        i.access_points.clear();
        i.current_ap = None;
        i.stations.clear();
        i.check.ifdown();
        i.check_seq += 1;
        if i.config.is_some() {
            i.state = State::Waiting;
        }
    }

    /// Tears down and schedules another attempt.
    async fn retry(&mut self, ifname: &str, why: String) {
        self.teardown(ifname).await;
        let delay = self.opts.config.daemon.retry_interval.0;
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return;
        };
        i.state = State::Retrying;
        i.last_error = why;
        let (tx, generation, name) = (self.tx.clone(), i.generation, ifname.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::Retry {
                ifname: name,
                generation,
            });
        });
    }

    fn publish_now(&mut self) {
        let s = self.snapshot();
        self.published.send_if_modified(|old| {
            if *old == s {
                false
            } else {
                *old = s;
                true
            }
        });
    }

    /// Applies the plan for the interface's configuration.
    async fn bring_up(&mut self, ifname: &str) {
        let Some(config) = self.ifaces.get(ifname).and_then(|i| i.config.clone()) else {
            return;
        };
        let Some(link) = self.link_by_name(ifname).cloned() else {
            if let Some(i) = self.ifaces.get_mut(ifname) {
                i.state = State::Waiting;
            }
            return;
        };
        let plan = tech::plan(ifname, &config, &self.ctx);
        log::debug!("{ifname}: bringing up: {}", plan.render());
        if let Some(i) = self.ifaces.get_mut(ifname) {
            i.state = State::Configuring;
            i.plan = Some(plan.clone());
        }
        self.publish_now();
        match self.apply_plan(&link, &plan).await {
            Ok(()) => {
                if let Some(i) = self.ifaces.get_mut(ifname) {
                    i.state = State::Configured;
                }
                self.on_lower(ifname, link.lower_up).await;
            }
            Err(e) => {
                let why = report(&e);
                log::warn!("{ifname}: bring-up failed: {why}");
                self.retry(ifname, why).await;
            }
        }
    }

    async fn apply_plan(&mut self, link: &LinkState, plan: &Plan) -> Result<(), BringUpError> {
        // Every generated file is the owner's only (wpa_supplicant.conf holds the WiFi keys),
        // in a directory that is too.
        for f in &plan.files {
            let file = |source| BringUpError::File {
                path: f.path.clone(),
                source,
            };
            if let Some(d) = f.path.parent() {
                persist::private_dir(d).map_err(file)?;
            }
            persist::write_atomic(&f.path, f.contents.as_bytes(), persist::PRIVATE_FILE, false)
                .map_err(file)?;
        }
        self.net.set_link(link.index, plan.link_up).await?;
        // Addresses left by someone else (or an earlier run) would confuse routing.
        let stale: Vec<Ipv4Net> = self
            .observed
            .get(&link.index)
            .map(|s| {
                s.iter()
                    .filter(|a| !plan.addresses.contains(a))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for a in stale {
            if let Err(e) = self.net.del_address(link.index, a).await
                && !e.missing()
            {
                return Err(e.into());
            }
        }
        for a in &plan.addresses {
            self.net.add_address(link.index, *a).await?;
            if let Some(i) = self.ifaces.get_mut(&plan.ifname) {
                i.applied.push(*a);
            }
        }
        for spec in plan.daemons.iter().filter(|d| d.when == When::Always) {
            self.start_daemon(&plan.ifname, spec)?;
        }
        if let Some(ctrl) = &plan.wpa_ctrl {
            self.start_wifi(&plan.ifname, ctrl.clone());
        }
        Ok(())
    }

    fn start_daemon(&mut self, ifname: &str, spec: &tech::DaemonSpec) -> Result<(), SpawnError> {
        let token = self.next_token;
        self.next_token += 1;
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return Ok(());
        };
        let mut spec = spec.clone();
        if spec.name == "udhcpc" {
            spec.env.push((HOOK_TOKEN_ENV.into(), token.to_string()));
            i.dhcp_token = Some(token);
        }
        let (tx, generation, name, n) = (
            self.tx.clone(),
            i.generation,
            ifname.to_owned(),
            spec.name.clone(),
        );
        log::debug!("{ifname}: starting {}", spec.argv.join(" "));
        let running = process::spawn(ifname, &spec, STOP_GRACE, move |what| {
            let _ = tx.send(Msg::DaemonExit {
                ifname: name,
                generation,
                name: n,
                what,
            });
        })?;
        i.daemons.push(running);
        Ok(())
    }

    fn start_wifi(&mut self, ifname: &str, ctrl: PathBuf) {
        let d = &self.opts.config.daemon;
        let timing = wpa::Timing {
            request: d.wpa_request_timeout.0,
            keepalive: d.wpa_keepalive.0,
            startup: Duration::from_secs(10),
        };
        let local = d.run_dir.clone();
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return;
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (upd_tx, mut upd_rx) = mpsc::unbounded_channel();
        let (tx, generation, name) = (self.tx.clone(), i.generation, ifname.to_owned());
        i.wifi_cmd = Some(cmd_tx);
        i.wifi_task = Some(tokio::spawn(async move {
            let session = wpa::session(ctrl, local, timing, upd_tx, cmd_rx);
            tokio::pin!(session);
            let result = loop {
                tokio::select! {
                    r = &mut session => break r,
                    Some(u) = upd_rx.recv() => {
                        let _ = tx.send(Msg::Wifi { ifname: name.clone(), generation, update: u });
                    }
                }
            };
            while let Ok(u) = upd_rx.try_recv() {
                let _ = tx.send(Msg::Wifi {
                    ifname: name.clone(),
                    generation,
                    update: u,
                });
            }
            let _ = tx.send(Msg::WifiEnded {
                ifname: name,
                generation,
                ended: result,
            });
        }));
    }

    /// The link's carrier changed (or the interface was just configured).
    async fn on_lower(&mut self, ifname: &str, lower_up: bool) {
        let Some(i) = self.ifaces.get(ifname) else {
            return;
        };
        if i.state != State::Configured {
            return;
        }
        let Some(plan) = i.plan.clone() else {
            return;
        };
        if lower_up {
            let running: Vec<String> = i.daemons.iter().map(|d| d.name.clone()).collect();
            for spec in plan.daemons.iter().filter(|d| d.when == When::LowerUp) {
                if !running.contains(&spec.name)
                    && let Err(e) = self.start_daemon(ifname, spec)
                {
                    let why = report(&e);
                    log::warn!("{ifname}: {why}");
                    self.retry(ifname, why).await;
                    return;
                }
            }
            if let Some(i) = self.ifaces.get_mut(ifname) {
                i.check.ifup();
            }
            self.schedule_check(ifname);
        } else {
            let index = self.link_by_name(ifname).map(|l| l.index);
            let net = self.net.clone();
            let Some(i) = self.ifaces.get_mut(ifname) else {
                return;
            };
            let lower: Vec<String> = plan
                .daemons
                .iter()
                .filter(|d| d.when == When::LowerUp)
                .map(|d| d.name.clone())
                .collect();
            let (stop, keep): (Vec<Running>, Vec<Running>) =
                i.daemons.drain(..).partition(|d| lower.contains(&d.name));
            i.daemons = keep;
            for d in stop {
                d.stop().await;
            }
            if let Some(lease) = i.lease.take() {
                i.applied.retain(|a| *a != lease.address);
                if let Some(index) = index {
                    let _ = net.del_address(index, lease.address).await;
                }
            }
            i.dhcp_options.clear();
            i.dhcp_token = None;
            i.check.ifdown();
            i.check_seq += 1;
        }
    }

    async fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Link(s) => {
                if s.loopback {
                    self.links.insert(s.index, s);
                    return;
                }
                let prev = self.links.insert(s.index, s.clone());
                if let Some(p) = &prev
                    && p.name != s.name
                {
                    self.link_gone(&p.name).await;
                }
                if !self.ifaces.contains_key(&s.name) {
                    let i = self.new_iface(&s.name);
                    self.ifaces.insert(s.name.clone(), i);
                }
                let state = self.ifaces.get(&s.name).map(|i| i.state);
                match state {
                    Some(State::Waiting) => self.bring_up(&s.name).await,
                    Some(State::Configured) => {
                        let was = prev
                            .as_ref()
                            .filter(|p| p.name == s.name)
                            .map(|p| p.lower_up);
                        if was != Some(s.lower_up) {
                            self.on_lower(&s.name, s.lower_up).await;
                        }
                    }
                    _ => {}
                }
            }
            NetEvent::LinkGone { index, name } => {
                self.links.remove(&index);
                self.observed.remove(&index);
                self.link_gone(&name).await;
            }
            NetEvent::Address { index, net, added } => {
                let set = self.observed.entry(index).or_default();
                if added {
                    set.insert(net);
                } else {
                    set.remove(&net);
                }
            }
        }
    }

    async fn link_gone(&mut self, name: &str) {
        let configured = self.ifaces.get(name).is_some_and(|i| i.config.is_some());
        if configured {
            self.teardown(name).await;
            if let Some(i) = self.ifaces.get_mut(name) {
                i.state = State::Waiting;
                i.applied.clear();
            }
        } else {
            self.ifaces.remove(name);
        }
    }

    async fn on_hook(&mut self, r: Report) {
        let Some(ifname) = r.var("interface").map(str::to_owned) else {
            return;
        };
        let index = self.link_by_name(&ifname).map(|l| l.index);
        let net = self.net.clone();
        let Some(i) = self.ifaces.get_mut(&ifname) else {
            return;
        };
        if i.dhcp_token.is_none() || i.dhcp_token != dhcp::token(&r) {
            return;
        }
        let Some(index) = index else {
            return;
        };
        match r.event.as_str() {
            "bound" | "renew" => {
                let lease = match Lease::from_vars(&r.vars) {
                    Ok(l) => l,
                    Err(why) => {
                        log::warn!("{ifname}: ignoring a bad lease: {why}");
                        return;
                    }
                };
                let old = i.lease.as_ref().map(|l| l.address);
                if old != Some(lease.address) {
                    if let Some(old) = old {
                        i.applied.retain(|a| *a != old);
                        let _ = net.del_address(index, old).await;
                    }
                    if let Err(e) = net.add_address(index, lease.address).await {
                        let why = report(&e);
                        log::error!("{ifname}: {why}");
                        i.last_error = why;
                        return;
                    }
                    i.applied.push(lease.address);
                    log::info!("{ifname}: leased {}", lease.address);
                }
                i.lease = Some(lease);
                i.dhcp_options = r.vars.clone();
                i.dhcp_options.remove(HOOK_TOKEN_ENV);
                i.check.kick();
                self.schedule_check(&ifname);
            }
            "deconfig" | "leasefail" | "nak" => {
                if let Some(l) = i.lease.take() {
                    i.applied.retain(|a| *a != l.address);
                    let _ = net.del_address(index, l.address).await;
                }
                i.dhcp_options.clear();
            }
            _ => {}
        }
    }

    /// Schedules the next check of an interface, replacing any pending one.
    fn schedule_check(&mut self, ifname: &str) {
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return;
        };
        i.check_seq += 1;
        let internet = i
            .plan
            .as_ref()
            .is_some_and(|p| p.check == CheckMode::Internet);
        let (Some(delay), true, State::Configured) = (i.check.interval, internet, i.state) else {
            return;
        };
        let (tx, seq, name) = (self.tx.clone(), i.check_seq, ifname.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::CheckDue { ifname: name, seq });
        });
    }

    async fn on_check_due(&mut self, ifname: &str, seq: u64) {
        let c = &self.opts.config.connectivity;
        let (timeout, probes, check_local) = (c.timeout.0, c.probes, c.check_local);
        let Some(i) = self.ifaces.get_mut(ifname) else {
            return;
        };
        if i.check_seq != seq || i.state != State::Configured {
            return;
        }
        let own = i.applied.clone();
        if own.is_empty() {
            i.check.failure();
            self.schedule_check(ifname);
            return;
        }
        let hosts = i
            .config
            .as_ref()
            .and_then(|c| c.check_hosts.clone())
            .unwrap_or_else(|| self.check_hosts.clone());
        let rotation = i.check_rotation;
        i.check_rotation = i.check_rotation.wrapping_add(1);
        let (tx, name) = (self.tx.clone(), ifname.to_owned());
        tokio::spawn(async move {
            let resolved = check::resolve(&hosts).await;
            let targets = check::pick_targets(&resolved, &own, check_local, probes, rotation);
            let ok = check::probe(&name, &targets, timeout).await;
            let _ = tx.send(Msg::CheckDone {
                ifname: name,
                seq,
                ok,
            });
        });
    }

    fn route_inputs(&self) -> Vec<RouteInput> {
        let mut by_kind: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
        for (n, i) in &self.ifaces {
            if let Some(c) = &i.config {
                by_kind.entry(c.kind).or_default().push(n);
            }
        }
        self.ifaces
            .values()
            .filter(|i| i.state == State::Configured)
            .filter_map(|i| {
                let link = self.link_by_name(&i.name)?;
                let kind = i.config.as_ref()?.kind;
                let weight = by_kind
                    .get(&kind)
                    .and_then(|v| v.iter().position(|n| *n == i.name))
                    .unwrap_or(0) as u32;
                Some(RouteInput {
                    ifname: i.name.clone(),
                    ifindex: link.index,
                    kind,
                    connection: i.connection(),
                    addresses: i.applied.clone(),
                    gateway: i.gateway(),
                    slot: self.slots.get(&i.name).copied().unwrap_or(0),
                    weight,
                })
            })
            .collect()
    }

    fn resolv_sources(&self, order: &[String]) -> Vec<resolv::Source> {
        order
            .iter()
            .filter_map(|n| self.ifaces.get(n))
            .map(|i| {
                let (servers, search) = match (&i.plan, &i.lease) {
                    (_, Some(l)) => (l.dns.clone(), l.search.clone()),
                    (Some(p), None) => (p.name_servers.clone(), p.search.clone()),
                    _ => (Vec::new(), Vec::new()),
                };
                resolv::Source {
                    ifname: i.name.clone(),
                    servers,
                    search,
                }
            })
            .collect()
    }

    /// Routes, resolv.conf, mDNS and the published snapshot, after any change.
    async fn refresh(&mut self) {
        let inputs = self.route_inputs();
        let wanted = route::calculate(&inputs);
        let (del, add) = route::diff(&self.routes, &wanted);
        let mut failed = Vec::new();
        for e in del {
            if let Err(err) = self.net.apply(e, false).await
                && !err.missing()
            {
                log::error!("{}", report(&err));
            }
        }
        for e in add {
            if let Err(err) = self.net.apply(e.clone(), true).await
                && !err.exists()
            {
                log::error!("{}", report(&err));
                failed.push(e);
            }
        }
        self.routes = wanted.into_iter().filter(|e| !failed.contains(e)).collect();

        let order = route::priority_order(&inputs);
        let sources = self.resolv_sources(&order);
        let text = resolv::render(&self.opts.config.daemon.name_servers, &sources);
        if let Err(e) = resolv::write(&self.opts.config.daemon.resolv_conf, &text) {
            log::error!(
                "cannot write {}: {e}",
                self.opts.config.daemon.resolv_conf.display()
            );
        }
        if let Some(m) = &mut self.mdns {
            let on: Vec<(String, Vec<Ipv4Net>)> = self
                .ifaces
                .values()
                .filter(|i| {
                    i.state == State::Configured && i.connection() != Connection::Disconnected
                })
                .filter(|i| i.config.as_ref().is_some_and(|c| c.mdns()))
                .map(|i| (i.name.clone(), i.applied.clone()))
                .collect();
            m.update(&on);
        }
        self.publish_now();
    }

    fn snapshot(&self) -> Snapshot {
        let inputs = self.route_inputs();
        let order = route::priority_order(&inputs);
        let sources = self.resolv_sources(&order);
        let name_servers = resolv::merge(&self.opts.config.daemon.name_servers, &sources)
            .into_iter()
            .map(|(a, from)| NameServer {
                address: a.to_string(),
                from,
            })
            .collect();
        let connection = self
            .ifaces
            .values()
            .map(Iface::connection)
            .max()
            .unwrap_or(Connection::Disconnected);
        let interfaces = self
            .ifaces
            .values()
            .map(|i| {
                let link = self.link_by_name(&i.name);
                let addresses = link
                    .and_then(|l| self.observed.get(&l.index))
                    .map(|s| s.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                (
                    i.name.clone(),
                    IfaceSnapshot {
                        kind: i
                            .config
                            .as_ref()
                            .map(|c| c.kind.as_str().to_owned())
                            .unwrap_or_default(),
                        state: i.state.as_str().to_owned(),
                        connection: i.connection().as_str().to_owned(),
                        present: link.is_some(),
                        lower_up: link.is_some_and(|l| l.lower_up),
                        mac_address: link.and_then(|l| l.mac.clone()).unwrap_or_default(),
                        addresses,
                        dhcp_options: i.dhcp_options.clone(),
                        // Clients see the configuration without its WiFi keys, whoever they are.
                        configuration: i.config.as_ref().map(InterfaceConfig::without_secrets),
                        access_points: i.access_points.clone(),
                        current_access_point: i.current_ap.clone(),
                        stations: i.stations.clone(),
                        last_error: i.last_error.clone(),
                    },
                )
            })
            .collect();
        Snapshot {
            connection: connection.as_str().to_owned(),
            available_interfaces: order,
            name_servers,
            check_hosts: self.check_hosts.iter().map(ToString::to_string).collect(),
            interfaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::NetError;
    use futures_util::future::BoxFuture;
    use std::sync::Mutex;

    /// Records what the manager asks of the kernel.
    #[derive(Default)]
    struct Trace(Mutex<Vec<String>>);

    impl Trace {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
        fn push(&self, s: String) -> BoxFuture<'_, Result<(), NetError>> {
            self.0.lock().unwrap().push(s);
            Box::pin(async { Ok(()) })
        }
    }

    impl NetOps for Trace {
        fn set_link(&self, index: u32, up: bool) -> BoxFuture<'_, Result<(), NetError>> {
            self.push(format!("link #{index} {}", if up { "up" } else { "down" }))
        }
        fn add_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>> {
            self.push(format!("add address {net} #{index}"))
        }
        fn del_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>> {
            self.push(format!("delete address {net} #{index}"))
        }
        fn apply(&self, entry: Entry, add: bool) -> BoxFuture<'_, Result<(), NetError>> {
            self.push(format!("{} {entry}", if add { "add" } else { "delete" }))
        }
        fn cleanup(&self) -> BoxFuture<'_, Result<(), NetError>> {
            self.push("cleanup".into())
        }
    }

    fn link(index: u32, name: &str, lower_up: bool) -> Msg {
        Msg::Net(NetEvent::Link(LinkState {
            index,
            name: name.into(),
            up: true,
            lower_up,
            mac: Some("02:00:00:00:00:01".into()),
            loopback: false,
        }))
    }

    async fn manager(dir: &std::path::Path, toml: &str) -> (Manager, Handle, Arc<Trace>) {
        let text = format!(
            "[daemon]\nrun_dir = \"{0}/run\"\npersist_dir = \"{0}/data\"\nresolv_conf = \"{0}/resolv.conf\"\n\
             [mdns]\nenabled = false\n{toml}",
            dir.display()
        );
        let config = NetConfig::parse(&text).unwrap();
        let trace = Arc::new(Trace::default());
        let (mut m, h) = Manager::new(
            Options {
                config,
                hostname: "testdev".into(),
                hook_program: "/bin/true".into(),
            },
            trace.clone(),
        );
        m.start_with(false).await.unwrap();
        (m, h, trace)
    }

    #[tokio::test]
    async fn golden_trace_of_a_static_interface() {
        let dir = tempfile::tempdir().unwrap();
        let (mut m, h, trace) = manager(
            dir.path(),
            "[interface.eth0]\ntype = \"ethernet\"\n\
             ipv4 = { method = \"static\", address = \"192.168.1.10/24\", gateway = \"192.168.1.1\", name_servers = [\"192.168.1.1\"] }\n",
        )
        .await;
        assert_eq!(trace.take(), ["cleanup"]);
        assert_eq!(h.snapshot().interfaces["eth0"].state, "waiting");

        // The interface appears with its cable in: configured, lan until a check succeeds.
        m.handle(link(2, "eth0", true)).await;
        assert_eq!(
            trace.take(),
            [
                "link #2 up",
                "add address 192.168.1.10/24 #2",
                "add rule from 192.168.1.10 lookup 100 priority 10000",
                "add route table 100 192.168.1.0/24 dev #2 src 192.168.1.10 metric 0",
                "add route table 254 192.168.1.0/24 dev #2 src 192.168.1.10 metric 400",
                "add route table 100 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.10 metric 0",
                "add route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.10 metric 400",
            ]
        );
        let s = h.snapshot();
        assert_eq!(
            (s.interfaces["eth0"].state.as_str(), s.connection.as_str()),
            ("configured", "lan")
        );
        assert_eq!(s.available_interfaces, ["eth0"]);
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.168.1.1 # eth0"), "{resolv}");

        // A successful check promotes the routes: only the main-table ones change.
        let seq = m.ifaces["eth0"].check_seq;
        m.handle(Msg::CheckDone {
            ifname: "eth0".into(),
            seq,
            ok: true,
        })
        .await;
        assert_eq!(
            trace.take(),
            [
                "delete route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.10 metric 400",
                "delete route table 254 192.168.1.0/24 dev #2 src 192.168.1.10 metric 400",
                "add route table 254 192.168.1.0/24 dev #2 src 192.168.1.10 metric 100",
                "add route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.10 metric 100",
            ]
        );
        assert_eq!(h.snapshot().connection, "internet");
        // A stale check result (an older schedule) changes nothing.
        m.handle(Msg::CheckDone {
            ifname: "eth0".into(),
            seq: seq - 1,
            ok: false,
        })
        .await;
        assert!(trace.take().is_empty());

        // Cable out: disconnected, every route and rule goes; the static address stays.
        m.handle(link(2, "eth0", false)).await;
        let t = trace.take();
        assert_eq!(t.len(), 5, "{t:?}");
        assert!(t.iter().all(|l| l.starts_with("delete r")), "{t:?}");
        assert_eq!(h.snapshot().connection, "disconnected");

        // A rejected configuration changes nothing at all.
        let bad: InterfaceConfig =
            serde_json::from_str(r#"{"type":"ethernet","ipv4":{"method":"static"}}"#).unwrap();
        let (reply, rx) = oneshot::channel();
        m.handle(Msg::Request(Request::Configure {
            ifname: "eth0".into(),
            config: Box::new(bad),
            persist: true,
            reply,
        }))
        .await;
        let err = rx.await.unwrap().unwrap_err();
        assert!(report(&err).contains("ipv4.address"), "{err:?}");
        assert!(trace.take().is_empty());
        assert!(!dir.path().join("data/interfaces/eth0.json").exists());

        // The interface disappears: waiting, its address forgotten.
        m.handle(Msg::Net(NetEvent::LinkGone {
            index: 2,
            name: "eth0".into(),
        }))
        .await;
        assert_eq!(h.snapshot().interfaces["eth0"].state, "waiting");
    }

    #[tokio::test]
    async fn dhcp_reports_with_a_stale_token_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut m, h, trace) =
            manager(dir.path(), "[interface.eth0]\ntype = \"ethernet\"\n").await;
        // No busybox in unit tests: a stand-in udhcpc that idles; the test plays its hook.
        m.ctx.udhcpc = vec!["sh".into(), "-c".into(), "sleep 60".into(), "--".into()];
        m.handle(link(3, "eth0", true)).await;
        trace.take();
        let token = m.ifaces["eth0"].dhcp_token.unwrap();
        let report = |t: u64, ip: &str| {
            let vars = [
                ("interface", "eth0"),
                ("ip", ip),
                ("subnet", "255.255.255.0"),
                ("router", "10.1.0.1"),
                ("dns", "10.1.0.53"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([(HOOK_TOKEN_ENV.to_owned(), t.to_string())])
            .collect();
            Msg::Hook(Report {
                event: "bound".into(),
                vars,
            })
        };
        m.handle(report(token + 100, "10.1.0.66")).await;
        assert!(
            trace.take().is_empty(),
            "a report from another udhcpc run was applied"
        );
        m.handle(report(token, "10.1.0.5")).await;
        let t = trace.take();
        assert_eq!(t[0], "add address 10.1.0.5/24 #3");
        assert!(
            t.contains(
                &"add route table 254 0.0.0.0/0 via 10.1.0.1 dev #3 src 10.1.0.5 metric 400"
                    .to_owned()
            ),
            "{t:?}"
        );
        assert_eq!(
            h.snapshot().interfaces["eth0"].dhcp_options["router"],
            "10.1.0.1"
        );
        // A renewal with a new address replaces the old one.
        m.handle(report(token, "10.1.0.6")).await;
        let t = trace.take();
        assert_eq!(
            t[..2],
            [
                "delete address 10.1.0.5/24 #3",
                "add address 10.1.0.6/24 #3"
            ]
        );
        m.shutdown().await;
    }
}
