//! A client of `org.myelin.Update1`: the proxy, and the few calls a command line needs
//! (`myelin-update install|status|...` use them; `myelinctl fw ...` can use them as they are).
//!
//! ```no_run
//! # async fn demo() -> Result<(), myelin_api::update::ClientError> {
//! use myelin_api::update::{self as client, InstallSource};
//!
//! let update = client::connect(None).await?;
//! client::install(&update, InstallSource::Location("http://10.0.2.2:8000/x.fw".into()), |p| {
//!     eprintln!("{p}%");
//! })
//! .await?;
//! let status = client::status(&update).await?;
//! println!("{}", serde_json::to_string_pretty(&status.to_json()).unwrap_or_default());
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

mod command;
pub use command::Command;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.myelin.Update1";
/// Object path.
pub const OBJECT_PATH: &str = "/org/myelin/Update1";
/// Interface name.
pub const INTERFACE: &str = "org.myelin.Update1";

/// `org.myelin.Update1`, as seen from a client. `Update1Proxy` is the async proxy.
#[zbus::proxy(
    interface = "org.myelin.Update1",
    default_service = "org.myelin.Update1",
    default_path = "/org/myelin/Update1"
)]
pub trait Update1 {
    /// Installs from an absolute path on the device or an `http(s)://` URL; returns once started.
    fn install(&self, source: &str) -> zbus::Result<()>;

    /// Installs from a passed file descriptor.
    fn install_fd(&self, fd: zbus::Fd<'_>) -> zbus::Result<()>;

    /// [`Update1Proxy::install`] with options (`allow-downgrade`: b).
    fn install_with_options(
        &self,
        source: &str,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<()>;

    /// [`Update1Proxy::install_fd`] with options (`allow-downgrade`: b).
    fn install_fd_with_options(
        &self,
        fd: zbus::Fd<'_>,
        options: std::collections::HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<()>;

    /// Stops the running install.
    fn cancel(&self) -> zbus::Result<()>;

    /// Commits the running firmware.
    fn validate(&self) -> zbus::Result<Vec<String>>;

    /// Switches to the other slot; reboots if asked.
    fn revert(&self, reboot: bool) -> zbus::Result<Vec<String>>;

    /// Commits the running firmware and makes the other slot unbootable.
    fn prevent_revert(&self) -> zbus::Result<Vec<String>>;

    /// Erases /data; reboots if asked.
    fn factory_reset(&self, reboot: bool) -> zbus::Result<Vec<String>>;

    /// Asks for a clean reboot.
    fn reboot(&self) -> zbus::Result<()>;

    /// Re-reads the system state.
    fn refresh(&self) -> zbus::Result<()>;

    /// Progress of the running install: percent, bytes read, total bytes (0: unknown).
    #[zbus(signal)]
    fn install_progress(&self, percent: u32, bytes_read: u64, bytes_total: u64)
    -> zbus::Result<()>;

    /// An install ended.
    #[zbus(signal)]
    fn completed(&self, success: bool, message: String) -> zbus::Result<()>;

    /// `idle`, `installing`, `installed`, `failed` or `rebooting`.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;

    /// Percent done.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<u32>;

    /// Why the last install failed.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    /// What the running or last install read.
    #[zbus(property)]
    fn source(&self) -> zbus::Result<String>;

    /// The ops `status` verdict.
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;

    /// The running slot.
    #[zbus(property)]
    fn running_slot(&self) -> zbus::Result<String>;

    /// Whether the running firmware is on trial.
    #[zbus(property)]
    fn trial(&self) -> zbus::Result<bool>;

    /// The running firmware's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// Per-slot metadata.
    #[zbus(property)]
    fn slots(&self) -> zbus::Result<HashMap<String, HashMap<String, String>>>;

    /// The last install and what became of it.
    #[zbus(property)]
    fn last_install(&self) -> zbus::Result<HashMap<String, String>>;
}

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// D-Bus failed, or the daemon refused (the message names the D-Bus error).
    #[error("{0}")]
    Bus(String),
    /// The install ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The answer could not be written out.
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Output(e.to_string())
    }
}

impl From<serde_json::Error> for ClientError {
    fn from(e: serde_json::Error) -> Self {
        ClientError::Output(e.to_string())
    }
}

impl From<zbus::Error> for ClientError {
    fn from(e: zbus::Error) -> Self {
        ClientError::Bus(describe(&e))
    }
}

impl From<zbus::fdo::Error> for ClientError {
    fn from(e: zbus::fdo::Error) -> Self {
        ClientError::Bus(e.to_string())
    }
}

/// A D-Bus error as one line: the daemon's message (and error name) when it sent one.
pub fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        other => other.to_string(),
    }
}

/// Connects to the daemon on the system bus, or on the bus at `address`. Properties are not
/// cached, so every read is the daemon's current value.
pub async fn connect(address: Option<&str>) -> Result<Update1Proxy<'static>, ClientError> {
    let conn = match address {
        Some(a) => zbus::connection::Builder::address(a).build().await?,
        None => zbus::Connection::system().await?,
    };
    Ok(Update1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

/// What to install.
#[derive(Debug)]
pub enum InstallSource {
    /// An absolute path on the device or an `http(s)://` URL.
    Location(String),
    /// A stream, e.g. stdin: its file descriptor is passed to the daemon.
    Stream(OwnedFd),
}

impl InstallSource {
    /// What a command-line argument names: `-` is standard input (which must not be a
    /// terminal), `scheme://...` a URL, anything else a file, made absolute for the daemon.
    pub fn from_argument(arg: &str) -> Result<InstallSource, ClientError> {
        if arg == "-" {
            let stdin = std::io::stdin();
            if std::io::IsTerminal::is_terminal(&stdin) {
                return Err(ClientError::Bus(
                    "`install -` reads the .fw from standard input: pipe or redirect it".into(),
                ));
            }
            let fd = std::os::fd::AsFd::as_fd(&stdin)
                .try_clone_to_owned()
                .map_err(|e| ClientError::Bus(format!("standard input: {e}")))?;
            Ok(InstallSource::Stream(fd))
        } else if arg.contains("://") {
            Ok(InstallSource::Location(arg.to_owned()))
        } else {
            let path = std::path::absolute(arg)
                .map_err(|e| ClientError::Bus(format!("cannot make {arg} absolute: {e}")))?;
            if !path.exists() {
                return Err(ClientError::Bus(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            Ok(InstallSource::Location(path.display().to_string()))
        }
    }
}

/// Installs and waits for the end; `progress` gets every new percentage. `Err(Failed)` carries
/// the daemon's `LastError`.
pub async fn install(
    proxy: &Update1Proxy<'_>,
    source: InstallSource,
    progress: impl FnMut(u32),
) -> Result<(), ClientError> {
    install_with(proxy, source, false, progress).await
}

/// [`install`], allowing a version older than the running one if `allow_downgrade`.
pub async fn install_with(
    proxy: &Update1Proxy<'_>,
    source: InstallSource,
    allow_downgrade: bool,
    mut progress: impl FnMut(u32),
) -> Result<(), ClientError> {
    // Subscribe first, so the end of a quick install is not missed.
    let mut completed = proxy.receive_completed().await?;
    let mut progressed = proxy.receive_install_progress().await?;
    let options =
        || std::collections::HashMap::from([("allow-downgrade", zbus::Variant::from(true))]);
    match (&source, allow_downgrade) {
        (InstallSource::Location(s), false) => proxy.install(s).await?,
        (InstallSource::Stream(fd), false) => proxy.install_fd(zbus::Fd::from(fd)).await?,
        (InstallSource::Location(s), true) => proxy.install_with_options(s, options()).await?,
        (InstallSource::Stream(fd), true) => {
            proxy
                .install_fd_with_options(zbus::Fd::from(fd), options())
                .await?
        }
    }
    // Our copy of a passed descriptor must close, or a pipe would never see its end.
    drop(source);
    let mut check = tokio::time::interval(Duration::from_secs(2));
    check.tick().await;
    loop {
        // Progress first: the daemon sends its last progress before Completed, and a random
        // pick between two ready streams would drop it.
        tokio::select! {
            biased;
            Some(signal) = progressed.next() => {
                if let Ok(args) = signal.args() {
                    progress(*args.percent());
                }
            }
            Some(signal) = completed.next() => {
                let args = signal.args()?;
                return if *args.success() {
                    Ok(())
                } else {
                    Err(ClientError::Failed(args.message().clone()))
                };
            }
            _ = check.tick() => {
                // A signal may be lost (the daemon restarted); the state tells the end too.
                match proxy.state().await?.as_str() {
                    "installing" => {}
                    "failed" => return Err(ClientError::Failed(proxy.last_error().await?)),
                    _ => return Ok(()),
                }
            }
        }
    }
}

/// Everything the daemon reports, as `myelin-update status --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// `idle`, `installing`, `installed`, `failed` or `rebooting`.
    pub state: String,
    /// Percent done of the running or last install.
    pub progress: u32,
    /// Why the last install failed (empty if it did not).
    pub last_error: String,
    /// What the running or last install read.
    pub source: String,
    /// The ops `status` verdict (`a`, `b`, `a->b`, `b->a`, `a (b reverted)`).
    pub status: String,
    /// `a` or `b`; empty when unknown.
    pub running_slot: String,
    /// The slot the next boot runs, when it differs.
    pub next_slot: Option<String>,
    /// The running firmware is not validated yet.
    pub trial: bool,
    /// The running firmware's version.
    pub version: String,
    /// Per slot: `validated` and the metadata.
    pub slots: BTreeMap<String, SlotStatus>,
    /// The last install.
    pub last_install: LastInstall,
}

/// One slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// `<slot>.nerves_fw_validated` is `1`.
    pub validated: bool,
    /// `product`, `version`, `platform`, `architecture`, `uuid`, ... as recorded.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, String>,
}

/// The last install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastInstall {
    /// `none`, `pending-reboot`, `trial`, `validated`, `reverted` or `superseded`.
    pub outcome: String,
    /// The slot it wrote.
    pub slot: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Its firmware UUID.
    pub uuid: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub installed_at: Option<u64>,
}

impl Status {
    /// The JSON value `status --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Asks the daemon to re-read the system, then reads every property.
pub async fn status(proxy: &Update1Proxy<'_>) -> Result<Status, ClientError> {
    proxy.refresh().await?;
    let status = proxy.status().await?;
    let next_slot = status.split_once("->").map(|(_, to)| to.trim().to_owned());
    let slots = proxy
        .slots()
        .await?
        .into_iter()
        .map(|(name, mut meta)| {
            let validated = meta.remove("validated").as_deref() == Some("1");
            (
                name,
                SlotStatus {
                    validated,
                    metadata: meta.into_iter().collect(),
                },
            )
        })
        .collect();
    let mut last = proxy.last_install().await?;
    let last_install = LastInstall {
        outcome: last.remove("outcome").unwrap_or_else(|| "none".into()),
        slot: last.remove("slot"),
        version: last.remove("version"),
        uuid: last.remove("uuid"),
        installed_at: last.remove("installed_at").and_then(|t| t.parse().ok()),
    };
    Ok(Status {
        state: proxy.state().await?,
        progress: proxy.progress().await?,
        last_error: proxy.last_error().await?,
        source: proxy.source().await?,
        status,
        running_slot: proxy.running_slot().await?,
        next_slot,
        trial: proxy.trial().await?,
        version: proxy.version().await?,
        slots,
        last_install,
    })
}

/// The human-readable status, as `myelin-update status` and `myelinctl fw status` print it.
pub fn human(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<14}{v}\n"));
    let running = match (s.running_slot.as_str(), s.trial) {
        ("", _) => "unknown".to_owned(),
        (slot, true) => format!("{slot} (on trial: not validated yet)"),
        (slot, false) => slot.to_owned(),
    };
    line("state:", &s.state);
    if s.state == "installing" {
        line("progress:", &format!("{}%", s.progress));
    }
    line("status:", &s.status);
    line("running slot:", &running);
    line("version:", &s.version);
    for (name, slot) in &s.slots {
        let mut desc = String::from(if slot.validated {
            "validated"
        } else {
            "not validated"
        });
        for key in ["version", "product", "uuid"] {
            if let Some(v) = slot.metadata.get(key) {
                desc.push_str(&format!(", {key} {v}"));
            }
        }
        line(&format!("slot {name}:"), &desc);
    }
    let li = &s.last_install;
    if li.outcome != "none" {
        let mut desc = li.outcome.clone();
        if let Some(slot) = &li.slot {
            desc.push_str(&format!(" (slot {slot}"));
            if let Some(v) = &li.version {
                desc.push_str(&format!(", version {v}"));
            }
            desc.push(')');
        }
        line("last install:", &desc);
    }
    if !s.last_error.is_empty() {
        line("last error:", &s.last_error);
    }
    out
}

/// What a user asks of the updater through a command line (`myelin-update <command>`,
/// `myelinctl fw <command>`): both carry it out with [`execute`].
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// Install from a path, an http(s) URL or `-`; reboot into it after if `reboot`.
    Install {
        /// Path, URL or `-`.
        source: &'a str,
        /// Reboot once installed.
        reboot: bool,
        /// Print no progress.
        quiet: bool,
        /// Install even a version older than the running one.
        allow_downgrade: bool,
    },
    /// Print the status, as JSON if `json`.
    Status {
        /// JSON instead of text.
        json: bool,
    },
    /// Validate the running firmware.
    Validate,
    /// Switch back to the other slot (and reboot if `reboot`).
    Revert {
        /// Reboot now.
        reboot: bool,
    },
    /// Validate the running firmware and make the other slot unbootable.
    PreventRevert,
    /// Erase /data (and reboot if `reboot`).
    FactoryReset {
        /// Reboot now.
        reboot: bool,
    },
    /// Stop the install in progress.
    Cancel,
    /// Reboot (into an installed firmware).
    Reboot,
}

/// Carries out `request`: answers go to `out`, install progress (every 5 %) to standard error.
/// Returns `Ok(false)` when an install ran and failed; its reason is then printed on standard
/// error after `program: `.
pub async fn execute(
    proxy: &Update1Proxy<'_>,
    request: Request<'_>,
    program: &str,
    out: &mut dyn std::io::Write,
) -> Result<bool, ClientError> {
    let messages = match request {
        Request::Install {
            source,
            reboot,
            quiet,
            allow_downgrade,
        } => {
            let source = InstallSource::from_argument(source)?;
            // Every 5% is enough on a serial console.
            let mut last = None;
            let result = install_with(proxy, source, allow_downgrade, |p| {
                if !quiet && last.is_none_or(|l: u32| p / 5 > l / 5) {
                    last = Some(p);
                    eprintln!("installing: {p}%");
                }
            })
            .await;
            return match result {
                Ok(()) => {
                    // The end may be learnt from the state before the last progress signal.
                    if !quiet && last != Some(100) {
                        eprintln!("installing: 100%");
                    }
                    writeln!(out, "installed; the new firmware runs after a reboot")?;
                    if reboot {
                        proxy.reboot().await?;
                        writeln!(out, "rebooting")?;
                    }
                    Ok(true)
                }
                Err(ClientError::Failed(why)) => {
                    eprintln!("{program}: install failed: {why}");
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        }
        Request::Status { json } => {
            let status = status(proxy).await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &status.to_json())?;
                writeln!(out)?;
            } else {
                write!(out, "{}", human(&status))?;
            }
            return Ok(true);
        }
        Request::Validate => proxy.validate().await?,
        Request::Revert { reboot } => proxy.revert(reboot).await?,
        Request::PreventRevert => proxy.prevent_revert().await?,
        Request::FactoryReset { reboot } => proxy.factory_reset(reboot).await?,
        Request::Cancel => {
            proxy.cancel().await?;
            Vec::new()
        }
        Request::Reboot => {
            proxy.reboot().await?;
            Vec::new()
        }
    };
    for m in messages {
        writeln!(out, "{m}")?;
    }
    Ok(true)
}
