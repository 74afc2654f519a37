//! The client at run time: connect (TLS, WebSocket upgrade with the auth headers), run the
//! [`Channel`] machine over the socket, reconnect with [`Backoff`], and carry out the server's
//! events through the device's side effects ([`Device`], [`Installer`]).
//!
//! Two futures share one task: the connection loop, and the install worker it hands updates
//! to. An install therefore survives a dropped connection (myelin-update downloads on its own;
//! the worker's reports queue until the device channel is joined again).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::auth::SharedSecret;
use crate::backoff::{Backoff, Policy, Random};
use crate::channel::{Channel, Close, Output, State};
use crate::console::{self, CONSOLE_TOPIC, Shell};
use crate::health::{self, EXTENSIONS_TOPIC};
use crate::message::{self, ServerEvent, Stage, Status, UpdateInfo};
use crate::meta::{self, RuntimeState};
use crate::policy::Decision;

/// Why the device side could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A platform service (myelin-kv, myelin-update) could not be reached or refused the call.
    #[error("{service}: {reason}")]
    Service {
        /// The service's bus name.
        service: &'static str,
        /// What went wrong, as the service or the bus said it.
        reason: String,
    },
    /// The install was refused or failed; the updater's reason, as reported to the server.
    #[error("{0}")]
    Install(String),
}

/// The device's side effects the client needs.
pub trait Device {
    /// The U-Boot environment (firmware metadata, serial number).
    fn env(&self) -> impl Future<Output = Result<HashMap<String, String>, DeviceError>>;
    /// Whether the running firmware is validated.
    fn validated(&self) -> impl Future<Output = bool>;
    /// Returns once the running firmware is validated.
    fn wait_validated(&self) -> impl Future<Output = ()>;
    /// Reboots (cleanly, through the updater).
    fn reboot(&self) -> impl Future<Output = Result<(), DeviceError>>;
    /// Makes the device seen (blinks an LED).
    fn identify(&self) -> impl Future<Output = ()>;
    /// Whether the product lets this offer install now ([`crate::policy`]); without a policy,
    /// it does.
    fn update_decision(&self, _offer: &UpdateInfo) -> impl Future<Output = Decision> {
        async { Decision::Apply }
    }
}

/// Installs a firmware from a URL, sending percentages to `progress`; `Err` is the reason.
pub trait Installer {
    /// Installs and waits for the end.
    fn install(
        &self,
        url: &str,
        progress: mpsc::UnboundedSender<u32>,
    ) -> impl Future<Output = Result<(), DeviceError>>;
}

/// Wall-clock time, for signing (a skewed clock in tests).
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn unix_seconds(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_seconds(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Everything a connection needs, resolved from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// `wss://host[:port]/socket/websocket` or `.../device-socket/websocket`.
    pub url: String,
    /// TLS (roots, client certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// Shared-secret material, when that is the auth.
    pub shared_secret: Option<SharedSecret>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Reconnect delays.
    pub backoff: Policy,
    /// Reboot once an update is installed.
    pub reboot_after_update: bool,
    /// Where to write the status for `myelinctl hub status`.
    pub status_path: Option<PathBuf>,
    /// The remote console; `None`: no console.
    pub console: Option<ConsoleSettings>,
    /// Health reports; `None`: no health extension.
    pub health: Option<HealthSettings>,
}

/// The remote console's shell.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// A shell without input or output this long is hung up.
    pub idle_timeout: Duration,
}

/// How health reports are made.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// Between reports once the server attached the extension.
    pub interval: Duration,
    /// A path on the file system whose usage is reported.
    pub disk: PathBuf,
    /// Where `/proc` and `/sys` are (`/`).
    pub root: PathBuf,
}

/// One connection's console and extensions.
struct Session {
    shell: Option<Shell>,
    /// The operator's terminal size (rows, columns).
    size: (u16, u16),
    /// When the shell is hung up for want of use.
    console_idle: Option<tokio::time::Instant>,
    /// When the next health report is due, once the extension is attached.
    next_health: Option<tokio::time::Instant>,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            shell: None,
            size: (24, 80),
            console_idle: None,
            next_health: None,
        }
    }
}

async fn next_shell_event(shell: &mut Option<Shell>) -> std::io::Result<console::Event> {
    match shell {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("shared_secret", &self.shared_secret)
            .field("heartbeat", &self.heartbeat)
            .field("backoff", &self.backoff)
            .field("console", &self.console)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

pub use myelin_api::hub::HubStatus;

/// One report to push on the device channel.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    event: &'static str,
    payload: Value,
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// TCP, TLS or WebSocket failed.
    #[error("{0}")]
    Transport(String),
    /// The server refused the upgrade (auth): its status.
    #[error("server refused the connection: HTTP {0}")]
    Refused(u16),
    /// The protocol machine closed it.
    #[error(transparent)]
    Protocol(#[from] Close),
    /// The server closed the socket.
    #[error("server closed the connection")]
    ServerClosed,
}

type Socket = WebSocketStream<TlsStream<TcpStream>>;

/// The client.
pub struct Client<D: Device, I: Installer> {
    settings: Settings,
    device: D,
    installer: I,
    random: RefCell<Box<dyn Random>>,
    clock: Box<dyn Clock>,
    /// The server's clock, learned from a refused upgrade's `Date` (a device without RTC).
    server_time_hint: RefCell<Option<u64>>,
    downloading: RefCell<Option<String>>,
    status: RefCell<HubStatus>,
}

impl<D: Device, I: Installer> Client<D, I> {
    /// A client; `random` drives the backoff jitter, `clock` the signatures.
    pub fn new(
        settings: Settings,
        device: D,
        installer: I,
        random: Box<dyn Random>,
        clock: Box<dyn Clock>,
    ) -> Client<D, I> {
        let status = HubStatus {
            state: "connecting".into(),
            url: settings.url.clone(),
            ..HubStatus::default()
        };
        Client {
            settings,
            device,
            installer,
            random: RefCell::new(random),
            clock,
            server_time_hint: RefCell::new(None),
            downloading: RefCell::new(None),
            status: RefCell::new(status),
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        tokio::select! {
            _ = self.connection_loop(updates_tx, reports_rx) => {}
            _ = self.install_worker(updates_rx, reports_tx) => {}
            _ = shutdown => log::info!("stopping"),
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut HubStatus)) {
        let mut s = self.status.borrow_mut();
        f(&mut s);
        if let Some(path) = &self.settings.status_path {
            let tmp = path.with_extension("tmp");
            let text = serde_json::to_string_pretty(&*s).unwrap_or_default();
            if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
                log::debug!("cannot write {}: {e}", path.display());
            }
        }
    }

    /// The status as it is now.
    pub fn status(&self) -> HubStatus {
        self.status.borrow().clone()
    }

    async fn connection_loop(
        &self,
        updates: mpsc::UnboundedSender<UpdateInfo>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        let mut backoff = Backoff::new(self.settings.backoff);
        loop {
            self.set_status(|s| {
                s.state = "connecting".into();
                s.connections += 1;
            });
            let result = match self.connect().await {
                Ok(socket) => {
                    log::info!("connected to {}", self.settings.url);
                    self.session(socket, &mut backoff, &updates, &mut reports)
                        .await
                }
                Err(e) => Err(e),
            };
            let why = match result {
                Ok(()) => "connection ended".to_owned(),
                Err(e) => e.to_string(),
            };
            let delay = backoff.next_delay(&mut **self.random.borrow_mut());
            log::warn!(
                "NervesHub connection: {why}; reconnecting in {:.1}s",
                delay.as_secs_f64()
            );
            self.set_status(|s| {
                s.state = "disconnected".into();
                s.last_error = Some(why);
            });
            tokio::time::sleep(delay).await;
        }
    }

    async fn connect(&self) -> Result<Socket, ConnectionError> {
        let transport = |e: &dyn std::fmt::Display| ConnectionError::Transport(e.to_string());
        let mut request = self
            .settings
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| transport(&e))?;
        let host = request
            .uri()
            .host()
            .ok_or_else(|| ConnectionError::Transport("the URL has no host".into()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = request.uri().port_u16().unwrap_or(443);
        if let Some(secret) = &self.settings.shared_secret {
            let now = self.clock.unix_seconds();
            // A server clock seen ahead of ours wins: our clock may not be set yet.
            let signed_at = self.server_time_hint.borrow().map_or(now, |h| h.max(now));
            for (name, value) in secret.headers(signed_at) {
                let value = HeaderValue::from_str(&value).map_err(|e| transport(&e))?;
                request.headers_mut().insert(name, value);
            }
        }
        let timeout = Duration::from_secs(30);
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| {
                ConnectionError::Transport(format!("connecting to {host}:{port} timed out"))
            })?
            .map_err(|e| ConnectionError::Transport(format!("{host}:{port}: {e}")))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| transport(&e))?;
        let tls = tokio::time::timeout(
            timeout,
            TlsConnector::from(self.settings.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| ConnectionError::Transport("TLS handshake timed out".into()))?
        .map_err(|e| ConnectionError::Transport(format!("TLS: {e}")))?;
        match tokio::time::timeout(timeout, tokio_tungstenite::client_async(request, tls)).await {
            Err(_) => Err(ConnectionError::Transport(
                "WebSocket upgrade timed out".into(),
            )),
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let hint = response
                    .headers()
                    .get("date")
                    .and_then(|d| d.to_str().ok())
                    .and_then(parse_http_date);
                if let Some(hint) = hint {
                    *self.server_time_hint.borrow_mut() = Some(hint);
                }
                Err(ConnectionError::Refused(response.status().as_u16()))
            }
            Ok(Err(e)) => Err(ConnectionError::Transport(format!("WebSocket: {e}"))),
        }
    }

    async fn join_payload(&self) -> Value {
        let env = match self.device.env().await {
            Ok(env) => env,
            Err(e) => {
                log::warn!("cannot read the firmware metadata: {e}");
                HashMap::new()
            }
        };
        let runtime = RuntimeState {
            validated: self.device.validated().await,
            auto_reverted: false,
            downloading: self.downloading.borrow().clone(),
        };
        meta::join_payload(&env, &runtime)
    }

    async fn session(
        &self,
        socket: Socket,
        backoff: &mut Backoff,
        updates: &mpsc::UnboundedSender<UpdateInfo>,
        reports: &mut mpsc::UnboundedReceiver<Report>,
    ) -> Result<(), ConnectionError> {
        let mut session = Session::default();
        let result = self
            .session_loop(socket, &mut session, backoff, updates, reports)
            .await;
        // The console lives and dies with its connection.
        if let Some(shell) = session.shell.take() {
            let pid = shell.pid();
            let status = shell.close().await;
            log::info!("console: shell {pid} ended with the connection ({status:?})");
        }
        result
    }

    async fn session_loop(
        &self,
        mut socket: Socket,
        session: &mut Session,
        backoff: &mut Backoff,
        updates: &mpsc::UnboundedSender<UpdateInfo>,
        reports: &mut mpsc::UnboundedReceiver<Report>,
    ) -> Result<(), ConnectionError> {
        let started = tokio::time::Instant::now();
        let now_ms = || started.elapsed().as_millis() as u64;
        let payload = self.join_payload().await;
        let heartbeat_ms = self.settings.heartbeat.as_millis() as u64;
        let (mut channel, join) = Channel::open(payload, now_ms(), heartbeat_ms);
        send(&mut socket, join.encode()).await?;
        if self.settings.console.is_some() {
            // NervesHubLink joins the console alongside the device channel.
            let join = channel.join(CONSOLE_TOPIC, console::join_payload());
            send(&mut socket, join.encode()).await?;
        }
        loop {
            let deadline = started + Duration::from_millis(channel.next_deadline());
            let joined = channel.state() == State::Joined;
            let health_due = session.next_health;
            let console_idle = session.console_idle;
            tokio::select! {
                incoming = socket.next() => {
                    let text = match incoming {
                        None | Some(Ok(Message::Close(_))) => return Err(ConnectionError::ServerClosed),
                        Some(Err(e)) => return Err(ConnectionError::Transport(e.to_string())),
                        Some(Ok(Message::Text(t))) => t.to_string(),
                        Some(Ok(Message::Binary(_))) => {
                            // The JSON serializer never sends binary frames.
                            let close = Close::Malformed(crate::frame::FrameError::Json(
                                "binary frame on a JSON socket".into(),
                            ));
                            return Err(close_with(&mut socket, close).await);
                        }
                        Some(Ok(_)) => continue,
                    };
                    let outputs = match channel.receive(&text) {
                        Ok(o) => o,
                        Err(close) => return Err(close_with(&mut socket, close).await),
                    };
                    for output in outputs {
                        match output {
                            Output::Send(f) => send(&mut socket, f.encode()).await?,
                            Output::Joined(_) => {
                                log::info!("joined the device channel");
                                backoff.reset();
                                self.set_status(|s| {
                                    s.state = "joined".into();
                                });
                            }
                            Output::Ignored(bad) => log::warn!("ignored: {bad}"),
                            Output::Event(event) => {
                                self.dispatch(event, &mut channel, &mut socket, updates).await?;
                            }
                            Output::TopicJoined { topic, response } => {
                                self.topic_joined(&topic, &response, session, &mut channel, &mut socket)
                                    .await?;
                            }
                            Output::TopicClosed { topic, reason } => {
                                log::info!("the server ended the {topic} channel: {reason}");
                                if topic == EXTENSIONS_TOPIC {
                                    session.next_health = None;
                                }
                                if topic == CONSOLE_TOPIC
                                    && let Some(shell) = session.shell.take()
                                {
                                    let pid = shell.pid();
                                    let status = shell.close().await;
                                    log::info!("console: shell {pid} ended ({status:?})");
                                }
                            }
                            Output::TopicEvent { topic, event, payload } => {
                                self.topic_event(&topic, &event, &payload, session, &mut channel, &mut socket)
                                    .await?;
                            }
                        }
                    }
                }
                event = next_shell_event(&mut session.shell) => {
                    self.shell_event(event, session, &mut channel, &mut socket).await?;
                }
                _ = sleep_until_some(console_idle) => {
                    session.console_idle = None;
                    if let Some(shell) = session.shell.take() {
                        let pid = shell.pid();
                        shell.close().await;
                        log::info!("console: shell {pid} hung up after inactivity");
                        let text = "\r\n*** session closed after inactivity; \
                                    press a key for a new one ***\r\n";
                        self.console_up(text, &mut channel, &mut socket).await?;
                    }
                }
                _ = sleep_until_some(health_due) => {
                    self.health_report(session, &mut channel, &mut socket).await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    match channel.tick(now_ms()) {
                        Ok(Some(f)) => send(&mut socket, f.encode()).await?,
                        Ok(None) => {}
                        Err(close) => return Err(close_with(&mut socket, close).await),
                    }
                }
                Some(report) = reports.recv(), if joined => {
                    if let Some(f) = channel.push(report.event, report.payload) {
                        send(&mut socket, f.encode()).await?;
                    }
                }
            }
        }
    }

    async fn dispatch(
        &self,
        event: ServerEvent,
        channel: &mut Channel,
        socket: &mut Socket,
        updates: &mpsc::UnboundedSender<UpdateInfo>,
    ) -> Result<(), ConnectionError> {
        match event {
            ServerEvent::Update(info) => {
                log::info!(
                    "update offered: version {} ({})",
                    info.firmware_meta.version.as_deref().unwrap_or("?"),
                    info.firmware_meta.uuid.as_deref().unwrap_or("?")
                );
                // The worker outlives the connection; its end of the channel only closes
                // with the client.
                let _ = updates.send(info);
            }
            ServerEvent::Reboot => {
                log::warn!("reboot requested by NervesHub");
                if let Some(f) = channel.push("rebooting", json!({})) {
                    send(socket, f.encode()).await?;
                }
                if let Err(e) = self.device.reboot().await {
                    log::error!("reboot failed: {e}");
                }
            }
            ServerEvent::Identify => {
                log::info!("identify requested by NervesHub");
                self.device.identify().await;
            }
            ServerEvent::PublicKeys { kind, count } => {
                log::info!("{kind}: {count} key(s) offered; myelin-update uses the device's own");
            }
            ServerEvent::ExtensionsGet => {
                // Offer the extensions this device has; the join's response says which the
                // server wants.
                let offer = match self.settings.health {
                    Some(_) => json!({ health::EXTENSION: health::VERSION }),
                    None => json!({}),
                };
                let join = channel.join(EXTENSIONS_TOPIC, offer);
                send(socket, join.encode()).await?;
            }
            ServerEvent::Unknown(event) => log::info!("ignoring NervesHub message `{event}`"),
        }
        Ok(())
    }

    async fn topic_joined(
        &self,
        topic: &str,
        response: &Value,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        log::info!("joined the {topic} channel");
        if topic == EXTENSIONS_TOPIC && health::names_health(response) {
            self.attach_health(true, session, channel, socket).await?;
        }
        Ok(())
    }

    async fn attach_health(
        &self,
        attach: bool,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        let Some(settings) = &self.settings.health else {
            return Ok(());
        };
        let event = if attach {
            session.next_health = Some(tokio::time::Instant::now() + settings.interval);
            "health:attached"
        } else {
            session.next_health = None;
            "health:detached"
        };
        if let Some(f) = channel.push_to(EXTENSIONS_TOPIC, event, json!({})) {
            send(socket, f.encode()).await?;
        }
        Ok(())
    }

    async fn health_report(
        &self,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        let Some(settings) = &self.settings.health else {
            return Ok(());
        };
        session.next_health = Some(tokio::time::Instant::now() + settings.interval);
        let source = health::System {
            root: settings.root.clone(),
        };
        let report = health::report(&source, &settings.disk);
        if let Some(f) = channel.push_to(EXTENSIONS_TOPIC, "health:report", report) {
            send(socket, f.encode()).await?;
        }
        Ok(())
    }

    async fn topic_event(
        &self,
        topic: &str,
        event: &str,
        payload: &Value,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        match topic {
            CONSOLE_TOPIC => match console::parse(event, payload) {
                Ok(Some(input)) => self.console_input(input, session, channel, socket).await,
                Ok(None) => {
                    log::info!("console: ignoring `{event}`");
                    Ok(())
                }
                Err(bad) => {
                    log::warn!("ignored: {bad}");
                    Ok(())
                }
            },
            EXTENSIONS_TOPIC => match event {
                "health:check" if session.next_health.is_some() => {
                    self.health_report(session, channel, socket).await
                }
                "attach" | "detach" if health::names_health(&payload["extensions"]) => {
                    self.attach_health(event == "attach", session, channel, socket)
                        .await
                }
                _ => {
                    log::info!("extensions: ignoring `{event}`");
                    Ok(())
                }
            },
            _ => {
                log::info!("ignoring NervesHub message `{topic}/{event}`");
                Ok(())
            }
        }
    }

    async fn console_up(
        &self,
        text: &str,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        if let Some(f) = channel.push_to(CONSOLE_TOPIC, "up", console::output(text)) {
            send(socket, f.encode()).await?;
        }
        Ok(())
    }

    async fn start_shell(
        &self,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        let Some(console) = &self.settings.console else {
            return Ok(());
        };
        let command = &console.command;
        let (rows, cols) = session.size;
        match Shell::spawn(command, rows, cols) {
            Ok(shell) => {
                log::info!(
                    "console: shell {} started for a NervesHub operator",
                    shell.pid()
                );
                session.shell = Some(shell);
                Ok(())
            }
            Err(e) => {
                log::error!("console: cannot start {command:?}: {e}");
                let text = format!("\r\n*** cannot start the shell: {e} ***\r\n");
                self.console_up(&text, channel, socket).await
            }
        }
    }

    async fn console_input(
        &self,
        input: console::Input,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        let result = self.console_command(input, session, channel, socket).await;
        self.console_used(session);
        result
    }

    /// The console was used: the idle timer starts again.
    fn console_used(&self, session: &mut Session) {
        session.console_idle = match (&self.settings.console, &session.shell) {
            (Some(c), Some(_)) => Some(tokio::time::Instant::now() + c.idle_timeout),
            _ => None,
        };
    }

    async fn console_command(
        &self,
        input: console::Input,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        match input {
            console::Input::WindowSize { rows, cols } => {
                session.size = (rows, cols);
                match &session.shell {
                    Some(shell) => {
                        if let Err(e) = shell.resize(rows, cols) {
                            log::warn!("console: cannot resize the terminal: {e}");
                        }
                    }
                    None => self.start_shell(session, channel, socket).await?,
                }
            }
            console::Input::Data(data) => {
                if session.shell.is_none() {
                    self.start_shell(session, channel, socket).await?;
                }
                if let Some(shell) = &mut session.shell
                    && !shell.input(data.as_bytes())
                {
                    log::warn!("console: the shell is not reading its input; keystrokes dropped");
                }
            }
            console::Input::Restart => {
                if let Some(shell) = session.shell.take() {
                    shell.close().await;
                }
                self.console_up("\r\n*** restarting the shell ***\r\n", channel, socket)
                    .await?;
                self.start_shell(session, channel, socket).await?;
            }
        }
        Ok(())
    }

    async fn shell_event(
        &self,
        event: std::io::Result<console::Event>,
        session: &mut Session,
        channel: &mut Channel,
        socket: &mut Socket,
    ) -> Result<(), ConnectionError> {
        match event {
            Ok(console::Event::Output(text)) => {
                self.console_used(session);
                self.console_up(&text, channel, socket).await
            }
            Ok(console::Event::Exited(status)) => {
                // Reaped already; closing drops the PTY.
                if let Some(shell) = session.shell.take() {
                    shell.close().await;
                }
                log::info!("console: the shell exited ({status})");
                let text = format!("\r\n*** shell exited ({status}) ***\r\n");
                self.console_up(&text, channel, socket).await
            }
            Err(e) => {
                log::error!("console: {e}");
                if let Some(shell) = session.shell.take() {
                    shell.close().await;
                }
                let text = format!("\r\n*** console error: {e} ***\r\n");
                self.console_up(&text, channel, socket).await
            }
        }
    }

    async fn install_worker(
        &self,
        mut updates: mpsc::UnboundedReceiver<UpdateInfo>,
        reports: mpsc::UnboundedSender<Report>,
    ) {
        let report = |event: &'static str, payload: Value| {
            let _ = reports.send(Report { event, payload });
        };
        let status = |s: Status| report("status_update", message::status(&s));
        if !self.device.validated().await {
            // Tell the server once the running firmware is committed, as NervesHubLink does.
            let reports = reports.clone();
            let wait = async move {
                self.device.wait_validated().await;
                let _ = reports.send(Report {
                    event: "firmware_validated",
                    payload: json!({}),
                });
            };
            // Runs alongside the loop below; whichever waits does not block the other.
            let work = self.updates_loop(&mut updates, &report, &status);
            tokio::join!(wait, work);
        } else {
            self.updates_loop(&mut updates, &report, &status).await;
        }
    }

    async fn updates_loop(
        &self,
        updates: &mut mpsc::UnboundedReceiver<UpdateInfo>,
        report: &impl Fn(&'static str, Value),
        status: &impl Fn(Status),
    ) {
        // An offer that arrives while another waits (for validation, or for the product's
        // reschedule) replaces it and goes through every check from the top.
        let mut newer = None;
        'offers: loop {
            let mut info = match newer.take() {
                Some(info) => info,
                None => match updates.recv().await {
                    Some(info) => info,
                    None => return,
                },
            };
            // Only the newest offer matters.
            while let Ok(latest) = updates.try_recv() {
                info = latest;
            }
            status(Status::Received);
            if let Some(why) = self.platform_mismatch(&info).await {
                log::error!("update refused: {why}");
                status(Status::Failed(why.clone()));
                self.set_status(|s| s.last_update = Some(format!("refused: {why}")));
                continue;
            }
            // A device on trial installs nothing: the update would replace the slot it falls
            // back to. Wait (do not ask the server to resend) until the firmware is validated.
            if !self.device.validated().await {
                log::info!("update waits: the running firmware is not validated yet");
                self.set_status(|s| {
                    s.last_update = Some("waiting for the running firmware to be validated".into())
                });
                tokio::select! {
                    _ = self.device.wait_validated() => {}
                    Some(latest) = updates.recv() => {
                        newer = Some(latest);
                        continue 'offers;
                    }
                }
            }
            // The product's say (a maintenance window, "busy now").
            loop {
                match self.device.update_decision(&info).await {
                    Decision::Apply => break,
                    Decision::Ignore(why) => {
                        log::info!("update ignored by the product: {why}");
                        self.set_status(|s| s.last_update = Some(format!("ignored: {why}")));
                        status(Status::Ignored(why));
                        continue 'offers;
                    }
                    Decision::Reschedule(after, why) => {
                        log::info!("update rescheduled by the product in {after:?}: {why}");
                        self.set_status(|s| {
                            s.last_update =
                                Some(format!("rescheduled in {} s: {why}", after.as_secs()))
                        });
                        status(Status::Rescheduled(after.as_secs(), why));
                        tokio::select! {
                            _ = tokio::time::sleep(after) => {}
                            Some(latest) = updates.recv() => {
                                newer = Some(latest);
                                continue 'offers;
                            }
                        }
                    }
                }
            }
            self.install(&info, report, status).await;
        }
    }

    async fn platform_mismatch(&self, info: &UpdateInfo) -> Option<String> {
        let env = self.device.env().await.ok()?;
        let running = meta::active_metadata(&env);
        for (field, offered) in [
            ("platform", &info.firmware_meta.platform),
            ("architecture", &info.firmware_meta.architecture),
        ] {
            let ours = running
                .get(&format!("nerves_fw_{field}"))
                .and_then(Value::as_str);
            if let (Some(ours), Some(offered)) = (ours, offered.as_deref())
                && ours != offered
            {
                return Some(format!(
                    "firmware {field} `{offered}` does not match this device's `{ours}`"
                ));
            }
        }
        None
    }

    async fn install(
        &self,
        info: &UpdateInfo,
        report: &impl Fn(&'static str, Value),
        status: &impl Fn(Status),
    ) {
        *self.downloading.borrow_mut() = info.firmware_meta.uuid.clone();
        let version = info.firmware_meta.version.clone().unwrap_or_default();
        self.set_status(|s| s.last_update = Some(format!("installing {version}")));
        status(Status::Started);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let install = self.installer.install(&info.firmware_url, tx);
        tokio::pin!(install);
        let mut last = None;
        let result = loop {
            tokio::select! {
                result = &mut install => break result,
                Some(p) = rx.recv() => {
                    if last != Some(p) {
                        last = Some(p);
                        report("fwup_progress", message::progress(Stage::Updating, p));
                    }
                }
            }
        };
        // Progress sent after the end must not be lost.
        while let Ok(p) = rx.try_recv() {
            if last != Some(p) {
                last = Some(p);
                report("fwup_progress", message::progress(Stage::Updating, p));
            }
        }
        *self.downloading.borrow_mut() = None;
        match result {
            Ok(()) => {
                log::info!("update {version} installed");
                report("fwup_progress", message::progress(Stage::Updating, 100));
                status(Status::Completed);
                self.set_status(|s| s.last_update = Some(format!("installed {version}")));
                if self.settings.reboot_after_update {
                    // Give the connection loop its turn to push the reports first.
                    tokio::task::yield_now().await;
                    if let Err(e) = self.device.reboot().await {
                        log::error!("reboot after the update failed: {e}");
                    }
                }
            }
            Err(why) => {
                let why = why.to_string();
                log::error!("update {version} failed: {why}");
                status(Status::Failed(why.clone()));
                self.set_status(|s| s.last_update = Some(format!("failed: {why}")));
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut Socket, text: String) -> Result<(), ConnectionError> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| ConnectionError::Transport(e.to_string()))
}

/// Closes the socket for a protocol reason and returns that reason.
async fn close_with(socket: &mut Socket, close: Close) -> ConnectionError {
    let code = match close {
        Close::Malformed(_) => CloseCode::Protocol,
        _ => CloseCode::Normal,
    };
    let frame = CloseFrame {
        code,
        reason: close
            .to_string()
            .chars()
            .take(100)
            .collect::<String>()
            .into(),
    };
    // The socket is going away either way.
    let _ = socket.close(Some(frame)).await;
    ConnectionError::Protocol(close)
}

/// An HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400)
        .ok()
        .map(|d| d + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Mon, 07 Dec 2026 14:57:15 GMT"),
            Some(1_796_655_435)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }
}
