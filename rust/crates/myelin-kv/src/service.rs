//! The `org.myelin.KV1` D-Bus service.
//!
//! Interface `org.myelin.KV1` at `/org/myelin/KV1`, well-known name `org.myelin.KV1`:
//!
//! | member | signature | |
//! |---|---|---|
//! | `Get(s name) -> s` | method | `org.myelin.KV1.Error.NotFound` if `name` is not set |
//! | `GetAll() -> a{ss}` | method | |
//! | `Set(a{ss} vars)` | method | validated first, then one write for the whole map |
//! | `Unset(as names)` | method | one write; unknown names are ignored |
//! | `Changed(a{ss} set, as removed)` | signal | after every change, by anyone |
//! | `Vars` | property `a{ss}`, read-only | emits `PropertiesChanged` |
//!
//! Errors: `org.myelin.KV1.Error.{NotFound, InvalidArgument, TooLarge, Unavailable, Failed}`.
//! `Unavailable` means no copy of the environment is valid (repair it with
//! `myelin-kv setenv -f <defaults>`; the service notices the repair).
//!
//! Other programs (fw_setenv, myelin-fw, myelin-kv setenv) write the environment without telling
//! anyone. The service notices: libubootenv and Myelin writers open the lock file for writing,
//! so an `IN_CLOSE_WRITE` on it triggers a check, and a periodic check catches writers that take
//! no lock. A check compares the copies' headers (CRC and flags) and reads the environment only
//! when they changed; Get and GetAll check first too, so they never answer from a stale cache.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, Result};
use myelin_ubootenv::format::{EncodeError, Vars};
use myelin_ubootenv::{Access, EnvError, EnvLock, Recovery};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};
use zbus::interface;
use zbus::object_server::SignalEmitter;

use crate::batch::{Batch, Diff};
use crate::cli::DaemonArgs;
use crate::store::{KvError, Store, Tracker, Update};

pub use myelin_api::kv::{BUS_NAME, INTERFACE, OBJECT_PATH};

/// Errors returned over D-Bus, as `org.myelin.KV1.Error.<variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.myelin.KV1.Error")]
pub enum BusError {
    /// A D-Bus level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The variable is not set.
    NotFound(String),
    /// A name or value is not allowed.
    InvalidArgument(String),
    /// The variables do not fit into the environment.
    TooLarge(String),
    /// No copy of the environment is valid.
    Unavailable(String),
    /// Reading, writing or locking failed.
    Failed(String),
}

impl From<KvError> for BusError {
    fn from(err: KvError) -> Self {
        let msg = err.to_string();
        match err {
            KvError::Invalid(_) | KvError::Env(EnvError::Encode(EncodeError::Invalid(_))) => {
                BusError::InvalidArgument(msg)
            }
            KvError::Env(EnvError::Encode(EncodeError::TooLarge { .. })) => BusError::TooLarge(msg),
            KvError::Env(e) if e.is_unreadable() => BusError::Unavailable(msg),
            KvError::Env(_) => BusError::Failed(msg),
        }
    }
}

/// State shared by the interface and the watcher.
struct Shared {
    store: Store,
    /// Serializes every operation, including the signals it emits, so clients see changes in
    /// the order they happened.
    tracker: Arc<Mutex<Tracker>>,
    /// What the `Vars` property returns: the state after the last operation.
    published: StdMutex<Result<Vars, String>>,
}

/// The object served at [`OBJECT_PATH`].
#[derive(Clone)]
pub struct Kv {
    shared: Arc<Shared>,
}

/// The outcome of an operation under the tracker lock: what to tell clients.
struct Outcome<R> {
    result: R,
    diff: Option<Diff>,
}

impl Kv {
    /// A service over `store`; reads the environment once.
    pub fn new(store: Store) -> Self {
        let tracker = Tracker::new(store.env().clone());
        let published = tracker.vars().cloned().map_err(str::to_owned);
        Kv {
            shared: Arc::new(Shared {
                store,
                tracker: Arc::new(Mutex::new(tracker)),
                published: StdMutex::new(published),
            }),
        }
    }

    /// Runs `op` on a blocking thread with the environment lock taken for `access` and the
    /// tracker locked; returns the guard so the caller emits signals before the next operation
    /// starts.
    ///
    /// The environment lock is taken first, holding nothing: while another process (an install,
    /// fw_setenv) keeps it, no state of this service is held, so property reads and the watcher
    /// keep working and the wait is bounded ([`myelin_ubootenv::EnvConfig::lock_wait`]). Every
    /// operation takes the two in the same order, so they cannot deadlock.
    async fn locked<R, F>(
        &self,
        access: Access,
        op: F,
    ) -> Result<(OwnedMutexGuard<Tracker>, Outcome<R>), BusError>
    where
        F: FnOnce(&Store, &mut Tracker, &EnvLock) -> Outcome<R> + Send + 'static,
        R: Send + 'static,
    {
        let shared = self.shared.clone();
        let env_lock = tokio::task::spawn_blocking(move || shared.store.env().lock(access))
            .await
            .map_err(|e| BusError::Failed(format!("internal error: {e}")))?
            .map_err(|e| BusError::from(KvError::from(e)))?;
        let mut guard = self.shared.tracker.clone().lock_owned().await;
        let shared = self.shared.clone();
        let (guard, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = op(&shared.store, &mut guard, &env_lock);
            drop(env_lock);
            (guard, outcome)
        })
        .await
        .map_err(|e| BusError::Failed(format!("internal error: {e}")))?;
        *self
            .shared
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = guard.vars().cloned().map_err(str::to_owned);
        Ok((guard, outcome))
    }

    /// Checks for writes by others, then answers from the cache.
    async fn fresh<R, F>(&self, emitter: &SignalEmitter<'_>, answer: F) -> Result<R, BusError>
    where
        F: FnOnce(&Vars) -> Result<R, BusError> + Send + 'static,
        R: Send + 'static,
    {
        let (guard, outcome) = self
            .locked(Access::Read, |_, tracker, lock| Outcome {
                result: (),
                diff: changed(tracker.refresh(lock)),
            })
            .await?;
        self.announce(emitter, outcome.diff).await;
        let vars = guard
            .vars()
            .map_err(|e| BusError::Unavailable(e.to_owned()))?;
        answer(vars)
    }

    /// Applies a batch as one write and announces what changed.
    async fn apply(&self, emitter: &SignalEmitter<'_>, batch: Batch) -> Result<(), BusError> {
        let (_guard, outcome) = self
            .locked(Access::Write, move |store, tracker, lock| {
                // Announce writes by others first, so the signals stay in order.
                let earlier = changed(tracker.refresh(lock));
                match store.apply_locked(lock, &batch, Recovery::Refuse) {
                    Ok(m) => {
                        let ours = tracker.record(m.after);
                        Outcome {
                            result: Ok(()),
                            diff: merge(earlier, ours),
                        }
                    }
                    Err(e) => Outcome {
                        result: Err(BusError::from(e)),
                        diff: earlier,
                    },
                }
            })
            .await?;
        self.announce(emitter, outcome.diff).await;
        outcome.result
    }

    /// Emits `Changed` and `PropertiesChanged` for a non-empty diff.
    async fn announce(&self, emitter: &SignalEmitter<'_>, diff: Option<Diff>) {
        let Some(diff) = diff else {
            return;
        };
        let set: HashMap<&str, &str> = diff
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let removed: Vec<&str> = diff.removed.iter().map(String::as_str).collect();
        if let Err(e) = Kv::changed(emitter, set, removed).await {
            log::warn!("cannot emit Changed: {e}");
        }
        if let Err(e) = self.vars_changed(emitter).await {
            log::warn!("cannot emit PropertiesChanged: {e}");
        }
    }

    /// One watcher tick: checks for writes by others and announces them.
    async fn check(&self, emitter: &SignalEmitter<'_>) {
        let result = self
            .locked(Access::Read, |_, tracker, lock| {
                let update = tracker.refresh(lock);
                if let Update::Unreadable(why) = &update {
                    log::warn!("the environment became unreadable: {why}");
                }
                Outcome {
                    result: (),
                    diff: changed(update),
                }
            })
            .await;
        match result {
            Ok((_guard, outcome)) => self.announce(emitter, outcome.diff).await,
            Err(e) => log::warn!("check failed: {e}"),
        }
    }
}

fn changed(update: Update) -> Option<Diff> {
    match update {
        Update::Changed(diff) if !diff.is_empty() => Some(diff),
        _ => None,
    }
}

fn merge(earlier: Option<Diff>, ours: Diff) -> Option<Diff> {
    let mut diff = earlier.unwrap_or_default();
    for name in &ours.removed {
        diff.set.remove(name);
    }
    for name in ours.set.keys() {
        diff.removed.retain(|r| r != name);
    }
    diff.removed.extend(ours.removed);
    diff.removed.sort();
    diff.removed.dedup();
    diff.set.extend(ours.set);
    (!diff.is_empty()).then_some(diff)
}

#[interface(name = "org.myelin.KV1")]
impl Kv {
    /// The value of `name`.
    #[zbus(out_args("value"))]
    async fn get(
        &self,
        name: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, BusError> {
        self.fresh(&emitter, move |vars| {
            vars.get(&name)
                .cloned()
                .ok_or_else(|| BusError::NotFound(format!("{name:?} is not set")))
        })
        .await
    }

    /// Every variable.
    #[zbus(out_args("vars"))]
    async fn get_all(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<HashMap<String, String>, BusError> {
        self.fresh(&emitter, |vars| {
            Ok(vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        })
        .await
    }

    /// Sets every variable of `vars` in one write; nothing is written if any is invalid.
    async fn set(
        &self,
        vars: HashMap<String, String>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        let mut batch = Batch::new();
        let mut sorted: Vec<_> = vars.into_iter().collect();
        sorted.sort();
        for (name, value) in sorted {
            batch.set(name, value);
        }
        self.apply(&emitter, batch).await
    }

    /// Removes every variable of `names` in one write; unknown names are ignored.
    async fn unset(
        &self,
        names: Vec<String>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        let mut batch = Batch::new();
        for name in names {
            batch.unset(name);
        }
        self.apply(&emitter, batch).await
    }

    /// Variables that were set or removed, by this service or anyone else.
    #[zbus(signal)]
    async fn changed(
        emitter: &SignalEmitter<'_>,
        set: HashMap<&str, &str>,
        removed: Vec<&str>,
    ) -> zbus::Result<()>;

    /// Every variable, as of the last operation or check.
    #[zbus(property)]
    async fn vars(&self) -> zbus::fdo::Result<HashMap<String, String>> {
        match &*self
            .shared
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Ok(vars) => Ok(vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Err(why) => Err(zbus::fdo::Error::Failed(why.clone())),
        }
    }
}

/// Calls `kv.check` whenever a writer closes the lock file, and every `interval`.
async fn watch(kv: Kv, emitter: SignalEmitter<'static>, lock: PathBuf, interval: Option<Duration>) {
    let mut closed = match watch_lock(&lock) {
        Ok(rx) => Some(rx),
        Err(e) => {
            log::warn!(
                "cannot watch {} ({e:#}); relying on the periodic check",
                lock.display()
            );
            None
        }
    };
    let mut ticker = interval.map(|i| {
        let mut t = tokio::time::interval(i);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        tokio::select! {
            event = recv(closed.as_mut()) => {
                if event.is_none() {
                    log::warn!("the inotify watch ended; relying on the periodic check");
                    closed = None;
                }
            }
            () = tick(ticker.as_mut()) => {}
        }
        kv.check(&emitter).await;
    }
}

async fn recv(rx: Option<&mut mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn tick(ticker: Option<&mut tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Watches the lock file's directory (so it works before the lock file exists and after it is
/// replaced) on a thread of its own; only writers (open for writing, then close) trigger it.
/// Bursts coalesce into one message in the 1-slot channel.
fn watch_lock(lock: &Path) -> Result<mpsc::Receiver<()>> {
    let dir = match lock.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = lock.file_name().map(OsStr::to_owned).unwrap_or_default();
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).context("inotify_init")?;
    inotify
        .add_watch(
            &dir,
            AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
        )
        .with_context(|| format!("inotify_add_watch {}", dir.display()))?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("lock-watch".into())
        .spawn(move || {
            loop {
                let events = match inotify.read_events() {
                    Ok(events) => events,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        log::warn!("reading inotify events: {e}");
                        return;
                    }
                };
                if events
                    .iter()
                    .any(|e| e.name.as_deref() == Some(name.as_os_str()))
                {
                    match tx.try_send(()) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                        Err(mpsc::error::TrySendError::Closed(())) => return,
                    }
                }
            }
        })
        .context("spawning the inotify thread")?;
    Ok(rx)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run_daemon(args: DaemonArgs) -> Result<()> {
    // Leveled records with the priority prefix myelin-init's log ring keeps.
    myelin_api::logger::init(log::LevelFilter::Info);
    let config = args.env.load()?;
    // Before anything reads the environment: on the first boot after a Nerves device was
    // upgraded, only the Nerves copy is valid. A failure is reported, not fatal: the Nerves copy
    // is untouched and the next start tries again.
    if let Some(nerves) = args.nerves_config.as_deref().filter(|p| p.exists()) {
        match crate::nerves::migrate_nerves(&config, nerves) {
            Ok(what) => log::info!("{what}"),
            Err(why) => log::warn!("{why:#}"),
        }
    }
    let lock = config.lock_path.clone();
    myelin_api::service::run("myelin-kv", async move {
        let kv = Kv::new(Store::new(config));
        if let Err(why) = &*kv
            .shared
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            log::warn!("{why}");
        }
        let (conn, emitter) =
            myelin_api::service::serve(args.address.as_deref(), BUS_NAME, OBJECT_PATH, kv.clone())
                .await?;
        let interval =
            (args.poll_interval > 0.0).then(|| Duration::from_secs_f64(args.poll_interval));
        let watcher = tokio::spawn(watch(kv, emitter, lock, interval));
        myelin_api::service::ready();
        myelin_api::service::terminated().await?;
        watcher.abort();
        drop(conn);
        Ok(())
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(set: &[(&str, &str)], removed: &[&str]) -> Diff {
        Diff {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn merged_diffs_keep_the_last_word() {
        let earlier = diff(&[("a", "1"), ("b", "1")], &["c"]);
        let ours = diff(&[("c", "2")], &["a"]);
        assert_eq!(
            merge(Some(earlier), ours),
            Some(diff(&[("b", "1"), ("c", "2")], &["a"]))
        );
        assert_eq!(merge(None, Diff::default()), None);
    }

    #[test]
    fn errors_map_to_bus_names() {
        use zbus::DBusError;
        let invalid = BusError::from(KvError::Invalid(myelin_ubootenv::NameError::EmptyName));
        assert_eq!(invalid.name(), "org.myelin.KV1.Error.InvalidArgument");
        let big = BusError::from(KvError::Env(EnvError::Encode(EncodeError::TooLarge {
            needed: 2,
            available: 1,
        })));
        assert_eq!(big.name(), "org.myelin.KV1.Error.TooLarge");
        assert_eq!(
            BusError::NotFound("x".into()).name(),
            "org.myelin.KV1.Error.NotFound"
        );
    }
}
