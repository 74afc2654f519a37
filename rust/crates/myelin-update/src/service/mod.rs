//! The `org.myelin.Update1` D-Bus service and the daemon around it.
//!
//! Interface `org.myelin.Update1` at `/org/myelin/Update1`, well-known name `org.myelin.Update1`:
//!
//! | member | signature | |
//! |---|---|---|
//! | `Install(s source)` | method | absolute path or `http(s)://` URL; returns once started; an older version than the running one is refused |
//! | `InstallWithOptions(s source, a{sv} options)` | method | `Install` with options: `allow-downgrade` (b) |
//! | `InstallFd(h fd)` | method | streams the archive from a passed file descriptor (stdin) |
//! | `InstallFdWithOptions(h fd, a{sv} options)` | method | `InstallFd` with the same options |
//! | `Cancel()` | method | stops the running install; the active slot is untouched |
//! | `Validate() -> as` | method | runs the ops `validate` task (commits a trial); allowed during an install |
//! | `Revert(b reboot) -> as` | method | runs `revert`; reboots if asked |
//! | `PreventRevert() -> as` | method | runs `prevent-revert` |
//! | `FactoryReset(b reboot) -> as` | method | runs `factory-reset`; reboots at once if asked |
//! | `Reboot()` | method | asks myelin-init for a clean reboot |
//! | `Refresh()` | method | re-reads the status, the environment and the last-install record; concurrent calls share one re-read |
//! | `InstallProgress(u percent, t bytes_read, t bytes_total)` | signal | while installing; `bytes_total` is the `Content-Length` or file size, 0 if unknown |
//! | `Completed(b success, s message)` | signal | an install ended |
//! | `State` | `s` | `idle`, `installing`, `installed`, `failed`, `rebooting` |
//! | `Progress` | `u` | 0–100, of the running or last install |
//! | `LastError` | `s` | why the last install failed; empty after a success |
//! | `Source` | `s` | what the running or last install read (URLs without credentials and query-string values) |
//! | `Status` | `s` | the ops `status` verdict: `a`, `b`, `a->b`, `b->a`, `a (b reverted)` |
//! | `RunningSlot` | `s` | `a` or `b` (empty if unknown) |
//! | `Trial` | `b` | the running firmware is not validated yet |
//! | `Version` | `s` | the running slot's `nerves_fw_version` |
//! | `Slots` | `a{sa{ss}}` | per slot: `validated` (`1`/`0`) and the `nerves_fw_*` metadata |
//! | `LastInstall` | `a{ss}` | `outcome` (`none`, `pending-reboot`, `trial`, `validated`, `reverted`, `superseded`), `slot`, `version`, `uuid`, `installed_at` |
//!
//! Every property emits `PropertiesChanged`. Errors: `org.myelin.Update1.Error.{Busy,
//! InvalidArgument, Failed}`.
//!
//! The daemon owns two pure state machines, [`Machine`] (installs) and [`Guard`] (validation of
//! a trial), and carries out the actions they return through the [`Firmware`], [`EnvSource`]
//! and [`Init`] traits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use myelin_ubootenv::Vars;
use zbus::interface;
use zbus::object_server::SignalEmitter;

use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::fw::Firmware;
use crate::guard::{self, Guard, Policy};
use crate::machine::{self, Action, Machine, Refused};
use crate::record::{self, Outcome, Record};
use crate::slot::{self, BootStatus, Slot, SlotInfo};
use crate::source::{Cancel, Source};
use crate::system::{EnvSource, Init};

pub use myelin_api::update::{BUS_NAME, INTERFACE, OBJECT_PATH};

mod daemon;
mod install;
mod properties;

pub use daemon::{DaemonOptions, run};
use properties::{install_options, last_install, slots, version};

/// The disk updated when neither the configuration nor the environment names one.
pub const DEFAULT_DEVICE: &str = "/dev/rootdisk0";

/// Errors returned over D-Bus, as `org.myelin.Update1.Error.<variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.myelin.Update1.Error")]
pub enum BusError {
    /// A D-Bus level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Another operation is running.
    Busy(String),
    /// The request is malformed.
    InvalidArgument(String),
    /// The operation failed.
    Failed(String),
}

impl From<Refused> for BusError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NotInstalling => BusError::Failed(r.to_string()),
            Refused::Busy | Refused::Rebooting => BusError::Busy(r.to_string()),
        }
    }
}

/// The side effects, as traits.
#[derive(Clone)]
pub struct Backends {
    /// The firmware applier.
    pub fw: Arc<dyn Firmware>,
    /// The U-Boot environment.
    pub env: Arc<dyn EnvSource>,
    /// PID 1.
    pub init: Arc<dyn Init>,
}

/// What the daemon knows about the system, refreshed after every operation.
#[derive(Debug, Clone, Default, PartialEq)]
struct Snapshot {
    status: String,
    running: Option<Slot>,
    trial: bool,
    slots: Vec<(Slot, SlotInfo)>,
    last_install: Option<Record>,
    outcome: Option<Outcome>,
    problems: Vec<String>,
}

/// Every property value, to emit `PropertiesChanged` for exactly those that changed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Published {
    state: String,
    progress: u32,
    last_error: String,
    source: String,
    snapshot: Snapshot,
}

struct Inner {
    machine: Machine,
    guard: Guard,
    snapshot: Snapshot,
    /// A firmware task (ops or guard validation) is running.
    op_running: bool,
    cancel: Option<Cancel>,
    published: Option<Published>,
}

struct Shared {
    config: Config,
    backends: Backends,
    boot_id: String,
    started: tokio::time::Instant,
    inner: Mutex<Inner>,
    /// Held while an ops task runs (including `status`), so a snapshot never reads the disk
    /// halfway through a validate or revert.
    ops_lock: Mutex<()>,
    /// One re-read at a time for any number of callers (`Refresh` is open to every user).
    reloads: Coalescer,
    emitter: std::sync::OnceLock<SignalEmitter<'static>>,
}

/// The object served at [`OBJECT_PATH`].
#[derive(Clone)]
pub struct Update {
    shared: Arc<Shared>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Clears the "op running" flag even if the operation's future is dropped.
struct OpGuard(Arc<Shared>);

impl Drop for OpGuard {
    fn drop(&mut self) {
        self.0.lock().op_running = false;
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disk to update: the configuration's, else `nerves_fw_devpath`, else the default.
    fn device(&self, vars: Option<&Vars>) -> PathBuf {
        resolve_device(&self.config, vars)
    }

    /// Reads the status task, the environment and the record (blocking).
    fn read_snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        let vars = match self.backends.env.read() {
            Ok(v) => Some(v),
            Err(e) => {
                snap.problems.push(e.to_string());
                None
            }
        };
        let device = self.device(vars.as_ref());
        let status = {
            let _ops = self.ops_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.backends.fw.ops(&device, "status")
        };
        match status {
            Ok(messages) => match BootStatus::from_messages(&messages) {
                Ok(status) => {
                    snap.status = messages
                        .iter()
                        .rev()
                        .find(|m| BootStatus::parse(m).is_ok())
                        .map(|m| m.trim().to_owned())
                        .unwrap_or_default();
                    snap.running = Some(status.running);
                }
                Err(e) => snap.problems.push(format!("status task: {e}")),
            },
            Err(e) => snap.problems.push(format!("status task: {e}")),
        }
        if let Some(vars) = &vars {
            snap.slots = Slot::ALL
                .iter()
                .map(|&s| (s, SlotInfo::from_env(vars, s)))
                .collect();
            if let Some(running) = snap.running {
                snap.trial = slot::is_trial(vars, running);
            }
        }
        match record::load(&self.config.state_dir) {
            Ok(r) => snap.last_install = r,
            Err(e) => snap.problems.push(format!("last install record: {e}")),
        }
        if let (Some(running), Some(vars)) = (snap.running, &vars) {
            snap.outcome = Some(record::assess(
                snap.last_install.as_ref(),
                running,
                vars,
                &self.boot_id,
            ));
        }
        snap
    }
}

impl Update {
    /// A service with the given configuration and side effects; nothing is read yet.
    pub fn new(config: Config, backends: Backends, boot_id: String) -> Update {
        let policy = Policy {
            auto_validate: config.auto_validate,
            stable_period: config.stable_period,
            timeout: config.validate_timeout,
        };
        let machine = Machine::new(config.auto_reboot);
        Update {
            shared: Arc::new(Shared {
                config,
                backends,
                boot_id,
                started: tokio::time::Instant::now(),
                inner: Mutex::new(Inner {
                    machine,
                    guard: Guard::new(policy),
                    snapshot: Snapshot::default(),
                    op_running: false,
                    cancel: None,
                    published: None,
                }),
                ops_lock: Mutex::new(()),
                reloads: Coalescer::new(),
                emitter: std::sync::OnceLock::new(),
            }),
        }
    }

    fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Re-reads the system state and publishes what changed.
    async fn reload(&self) {
        let shared = self.shared.clone();
        shared.reloads.run(|| self.reload_now()).await;
    }

    /// One re-read (see [`Update::reload`], which coalesces them).
    async fn reload_now(&self) {
        let shared = self.shared.clone();
        let snap = tokio::task::spawn_blocking(move || shared.read_snapshot())
            .await
            .unwrap_or_else(|e| Snapshot {
                problems: vec![format!("internal error: {e}")],
                ..Snapshot::default()
            });
        for p in &snap.problems {
            log::info!("{p}");
        }
        self.shared.lock().snapshot = snap;
        self.publish().await;
    }

    /// Emits `PropertiesChanged` for every property whose value changed since the last call.
    async fn publish(&self) {
        let Some(emitter) = self.shared.emitter.get() else {
            return;
        };
        let (now, before) = {
            let mut inner = self.shared.lock();
            let now = Published {
                state: inner.machine.state().name().to_owned(),
                progress: u32::from(inner.machine.progress()),
                last_error: inner.machine.last_error().to_owned(),
                source: inner.machine.source().to_owned(),
                snapshot: inner.snapshot.clone(),
            };
            let before = inner.published.replace(now.clone());
            (now, before)
        };
        let before = before.unwrap_or_default();
        if now == before {
            return;
        }
        // One PropertiesChanged per property that changed.
        macro_rules! announce {
            ($changed:expr, $emit:ident) => {
                if $changed {
                    if let Err(e) = self.$emit(emitter).await {
                        log::warn!("cannot emit PropertiesChanged: {e}");
                    }
                }
            };
        }
        let (n, b) = (&now.snapshot, &before.snapshot);
        announce!(now.state != before.state, state_changed);
        announce!(now.progress != before.progress, progress_changed);
        announce!(now.last_error != before.last_error, last_error_changed);
        announce!(now.source != before.source, source_changed);
        announce!(n.status != b.status, status_changed);
        announce!(n.running != b.running, running_slot_changed);
        announce!(n.trial != b.trial, trial_changed);
        announce!(version(n) != version(b), version_changed);
        announce!(n.slots != b.slots, slots_changed);
        announce!(last_install(n) != last_install(b), last_install_changed);
    }

    /// Runs an ops task on a blocking thread, refusing if another firmware operation runs.
    async fn run_ops(&self, task: &'static str) -> Result<Vec<String>, BusError> {
        let op = {
            let mut inner = self.shared.lock();
            if task == "validate" {
                inner.machine.check_validation()?;
            } else {
                inner.machine.check_operation()?;
            }
            if inner.op_running {
                return Err(BusError::Busy(
                    "another firmware operation is running".into(),
                ));
            }
            inner.op_running = true;
            OpGuard(self.shared.clone())
        };
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let vars = shared.backends.env.read().ok();
            let device = shared.device(vars.as_ref());
            let _ops = shared.ops_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.backends.fw.ops(&device, task)
        })
        .await
        .map_err(|e| BusError::Failed(format!("internal error: {e}")))?;
        drop(op);
        let result = result.map_err(|e| BusError::Failed(format!("{task}: {e}")));
        match &result {
            Ok(messages) => log::info!("{task}: done {}", messages.join("; ")),
            Err(e) => log::warn!("{e}"),
        }
        self.reload().await;
        result
    }

    /// Feeds the install machine and carries out what it asks for; a refusal of `event`
    /// itself is returned, refusals of events it leads to (auto_reboot) are logged. Returns
    /// whether the machine asked for an apply to start: only the caller holding the source can
    /// start it (`start_install`).
    async fn machine_event(&self, event: machine::Event) -> Result<bool, BusError> {
        let mut queue = std::collections::VecDeque::from([event]);
        let mut first = true;
        let mut start_apply = false;
        while let Some(event) = queue.pop_front() {
            let handled = self.shared.lock().machine.handle(event);
            let actions = match handled {
                Ok(actions) => actions,
                Err(refused) if first => return Err(refused.into()),
                Err(refused) => {
                    log::warn!("{refused}");
                    continue;
                }
            };
            first = false;
            self.publish().await;
            for action in actions {
                match action {
                    Action::StartApply => start_apply = true,
                    Action::AbortApply => {
                        if let Some(c) = &self.shared.lock().cancel {
                            c.cancel();
                        }
                    }
                    Action::WriteRecord => self.write_record().await,
                    Action::RequestReboot => self.request_reboot_for_machine().await,
                    Action::Reboot => queue.push_back(machine::Event::Reboot),
                    Action::Completed { success, message } => {
                        if let Some(emitter) = self.shared.emitter.get() {
                            if let Err(e) = Update::completed(emitter, success, &message).await {
                                log::warn!("cannot emit Completed: {e}");
                            }
                        }
                    }
                }
            }
        }
        Ok(start_apply)
    }

    async fn write_record(&self) {
        let shared = self.shared.clone();
        let running = shared.lock().snapshot.running;
        let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let running = running.ok_or("the running slot is unknown")?;
            let slot = running.other();
            let vars = shared.backends.env.read().map_err(|e| e.to_string())?;
            let info = SlotInfo::from_env(&vars, slot);
            let record = Record {
                v: record::VERSION,
                slot: slot.into(),
                version: info.version().map(str::to_owned),
                uuid: info.uuid().map(str::to_owned),
                boot_id: shared.boot_id.clone(),
                installed_at: now_unix(),
            };
            record::store(&shared.config.state_dir, &record).map_err(|e| {
                format!(
                    "cannot record the install in {}: {e}",
                    shared.config.state_dir.display()
                )
            })
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("{e}"),
            Err(e) => log::error!("internal error: {e}"),
        }
        self.reload().await;
    }

    async fn request_reboot_for_machine(&self) {
        log::info!("asking myelin-init for a reboot");
        let init = self.shared.backends.init.clone();
        let result = tokio::task::spawn_blocking(move || init.reboot())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = result {
            log::warn!("reboot request failed: {e}");
            let _ = self
                .shared
                .lock()
                .machine
                .handle(machine::Event::RebootFailed(e.to_string()));
            self.publish().await;
        }
    }

    /// Feeds the guard and carries out its actions, repeatedly, until it has nothing to do.
    async fn guard_event(&self, event: guard::Event) {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let actions = {
                let now = self.now();
                self.shared.lock().guard.handle(now, event)
            };
            for action in actions {
                match action {
                    guard::Action::Log(m) => log::info!("{m}"),
                    guard::Action::AskReadiness => {
                        let init = self.shared.backends.init.clone();
                        let answer = tokio::task::spawn_blocking(move || init.readiness())
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        queue.push(guard::Event::Readiness(answer));
                    }
                    guard::Action::RunValidate => {
                        let result =
                            self.run_ops("validate")
                                .await
                                .map(|_| ())
                                .map_err(|e| match e {
                                    BusError::Busy(m)
                                    | BusError::Failed(m)
                                    | BusError::InvalidArgument(m) => m,
                                    BusError::ZBus(e) => e.to_string(),
                                });
                        queue.push(guard::Event::Validated(result));
                    }
                    guard::Action::RequestReboot { reason } => {
                        log::info!("{reason}");
                        let init = self.shared.backends.init.clone();
                        let result = tokio::task::spawn_blocking(move || init.reboot())
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()));
                        if let Err(e) = result {
                            queue.push(guard::Event::RebootFailed(e));
                        }
                    }
                }
            }
        }
    }

    /// Tells the guard the trial ended through the API (validate, revert, prevent-revert).
    async fn trial_ended(&self) {
        self.guard_event(guard::Event::TrialEnded).await;
    }
}

#[interface(name = "org.myelin.Update1")]
impl Update {
    /// Installs the `.fw` at an absolute path on the device or an `http(s)://` URL.
    async fn install(&self, source: String) -> Result<(), BusError> {
        let source =
            Source::parse(&source).map_err(|e| BusError::InvalidArgument(e.to_string()))?;
        self.start_install(source, false).await
    }

    /// [`Update::install`] with options: `allow-downgrade` (b) installs a version older than
    /// the running one (refused otherwise, naming both versions).
    async fn install_with_options(
        &self,
        source: String,
        options: HashMap<String, zbus::OwnedVariant>,
    ) -> Result<(), BusError> {
        let allow_downgrade = install_options(&options)?;
        let source =
            Source::parse(&source).map_err(|e| BusError::InvalidArgument(e.to_string()))?;
        self.start_install(source, allow_downgrade).await
    }

    /// Installs the `.fw` streamed from a file descriptor (e.g. the client's stdin).
    async fn install_fd(&self, fd: zbus::OwnedFd) -> Result<(), BusError> {
        self.start_install(Source::Fd(OwnedFd::from(fd)), false)
            .await
    }

    /// [`Update::install_fd`] with the options of [`Update::install_with_options`].
    async fn install_fd_with_options(
        &self,
        fd: zbus::OwnedFd,
        options: HashMap<String, zbus::OwnedVariant>,
    ) -> Result<(), BusError> {
        let allow_downgrade = install_options(&options)?;
        self.start_install(Source::Fd(OwnedFd::from(fd)), allow_downgrade)
            .await
    }

    /// Stops the running install.
    async fn cancel(&self) -> Result<(), BusError> {
        self.machine_event(machine::Event::Cancel).await?;
        Ok(())
    }

    /// Commits the running firmware.
    #[zbus(out_args("messages"))]
    async fn validate(&self) -> Result<Vec<String>, BusError> {
        let messages = self.run_ops("validate").await?;
        self.trial_ended().await;
        Ok(messages)
    }

    /// Switches to the other slot from the next boot on; reboots if asked.
    #[zbus(out_args("messages"))]
    async fn revert(&self, reboot: bool) -> Result<Vec<String>, BusError> {
        let messages = self.run_ops("revert").await?;
        self.trial_ended().await;
        if let Err(e) = record::note_revert(&self.shared.config.state_dir, &self.shared.boot_id) {
            log::warn!("cannot note the revert: {e}");
        }
        if reboot {
            self.machine_event(machine::Event::Reboot).await?;
        }
        Ok(messages)
    }

    /// Commits the running firmware and makes the other slot unbootable.
    #[zbus(out_args("messages"))]
    async fn prevent_revert(&self) -> Result<Vec<String>, BusError> {
        let messages = self.run_ops("prevent-revert").await?;
        self.trial_ended().await;
        Ok(messages)
    }

    /// Erases the application data partition; reboots if asked.
    #[zbus(out_args("messages"))]
    async fn factory_reset(&self, reboot: bool) -> Result<Vec<String>, BusError> {
        let mut messages = self.run_ops("factory-reset").await?;
        if reboot {
            // Not a clean reboot: unmounting the erased /data could write its blocks back.
            log::info!("factory reset done, asking myelin-init for an immediate reboot");
            let init = self.shared.backends.init.clone();
            tokio::task::spawn_blocking(move || init.reboot_now())
                .await
                .map_err(|e| BusError::Failed(e.to_string()))?
                .map_err(|e| BusError::Failed(format!("immediate reboot refused: {e}")))?;
            messages.push("rebooting now".into());
        }
        Ok(messages)
    }

    /// Asks myelin-init for a clean reboot.
    async fn reboot(&self) -> Result<(), BusError> {
        self.machine_event(machine::Event::Reboot).await?;
        let failed = self.shared.lock().machine.state() != machine::State::Rebooting;
        if failed {
            return Err(BusError::Failed(
                self.shared.lock().machine.last_error().to_owned(),
            ));
        }
        Ok(())
    }

    /// Re-reads the status, the environment and the last-install record.
    async fn refresh(&self) {
        self.reload().await;
    }

    /// Progress of the running install: percent done, bytes of the archive read so far, and
    /// its size (`Content-Length` or file size; 0 when unknown, e.g. a pipe).
    #[zbus(signal)]
    async fn install_progress(
        emitter: &SignalEmitter<'_>,
        percent: u32,
        bytes_read: u64,
        bytes_total: u64,
    ) -> zbus::Result<()>;

    /// An install ended.
    #[zbus(signal)]
    async fn completed(
        emitter: &SignalEmitter<'_>,
        success: bool,
        message: &str,
    ) -> zbus::Result<()>;

    /// `idle`, `installing`, `installed`, `failed` or `rebooting`.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.shared.lock().machine.state().name().to_owned()
    }

    /// Percent done of the running or last install.
    #[zbus(property)]
    async fn progress(&self) -> u32 {
        u32::from(self.shared.lock().machine.progress())
    }

    /// Why the last install failed.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.shared.lock().machine.last_error().to_owned()
    }

    /// What the running or last install read.
    #[zbus(property)]
    async fn source(&self) -> String {
        self.shared.lock().machine.source().to_owned()
    }

    /// The `status` task's verdict.
    #[zbus(property)]
    async fn status(&self) -> String {
        self.shared.lock().snapshot.status.clone()
    }

    /// The running slot.
    #[zbus(property)]
    async fn running_slot(&self) -> String {
        self.shared
            .lock()
            .snapshot
            .running
            .map(|s| s.name().to_owned())
            .unwrap_or_default()
    }

    /// Whether the running firmware is on trial.
    #[zbus(property)]
    async fn trial(&self) -> bool {
        self.shared.lock().snapshot.trial
    }

    /// The running firmware's version.
    #[zbus(property)]
    async fn version(&self) -> String {
        version(&self.shared.lock().snapshot)
    }

    /// Per-slot metadata.
    #[zbus(property)]
    async fn slots(&self) -> HashMap<String, HashMap<String, String>> {
        slots(&self.shared.lock().snapshot)
    }

    /// The last install and what became of it.
    #[zbus(property)]
    async fn last_install(&self) -> HashMap<String, String> {
        last_install(&self.shared.lock().snapshot)
    }
}

/// The disk updates go to: the configuration's `device`, else the environment's
/// `nerves_fw_devpath`, else [`DEFAULT_DEVICE`].
pub fn resolve_device(config: &Config, vars: Option<&Vars>) -> PathBuf {
    if let Some(d) = &config.device {
        return d.clone();
    }
    vars.and_then(|v| v.get("nerves_fw_devpath"))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DEFAULT_DEVICE).to_owned())
}
