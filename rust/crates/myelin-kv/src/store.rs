//! The key/value store: batches applied to the environment as one locked, fsync'd write, and a
//! tracker that keeps a cached copy and notices writes made by anyone else.

use myelin_ubootenv::format::{NameError, Vars};
use myelin_ubootenv::{
    Access, Env, EnvConfig, EnvError, EnvLock, Fingerprint, Modified, Recovery, Snapshot,
};

use crate::batch::{Batch, Diff};

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A name or value in the batch is not allowed.
    #[error(transparent)]
    Invalid(#[from] NameError),
    /// The environment could not be read or written.
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// The environment as a key/value store.
#[derive(Debug, Clone)]
pub struct Store {
    env: Env,
}

impl Store {
    /// A store on the environment `config` describes.
    pub fn new(config: EnvConfig) -> Self {
        Store {
            env: Env::new(config),
        }
    }

    /// The underlying environment.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Reads the current variables.
    pub fn read(&self) -> Result<Snapshot, EnvError> {
        self.env.read()
    }

    /// Validates `batch`, then applies it to the current on-disk variables as one write.
    pub fn apply(&self, batch: &Batch, recovery: Recovery<'_>) -> Result<Modified, KvError> {
        batch.validate()?;
        let lock = self.env.lock(Access::Write)?;
        self.apply_locked(&lock, batch, recovery)
    }

    /// [`Store::apply`] under a write lock the caller already holds.
    pub fn apply_locked(
        &self,
        lock: &EnvLock,
        batch: &Batch,
        recovery: Recovery<'_>,
    ) -> Result<Modified, KvError> {
        batch.validate()?;
        self.env.modify_locked(lock, recovery, |vars: &mut Vars| {
            batch.apply(vars);
            Ok::<(), KvError>(())
        })
    }
}

/// What a [`Tracker`] refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Same variables as before (or still unreadable).
    Unchanged,
    /// The variables changed; a recovered environment counts as all its variables set.
    Changed(Diff),
    /// The environment just became unreadable; the message says why.
    Unreadable(String),
}

/// A cached copy of the environment that notices every write, by anyone.
///
/// Comparing the copies' headers (CRC and flags, 10 bytes) is enough to know whether a full
/// read is needed, so a refresh is cheap enough to run before every D-Bus read.
#[derive(Debug)]
pub struct Tracker {
    env: Env,
    fingerprint: Option<Fingerprint>,
    state: Result<Vars, String>,
}

impl Tracker {
    /// Starts tracking: reads the environment once.
    pub fn new(env: Env) -> Self {
        let mut tracker = Tracker {
            env,
            fingerprint: None,
            state: Err("not read yet".into()),
        };
        match tracker.env.lock(Access::Read) {
            Ok(lock) => {
                tracker.refresh(&lock);
            }
            Err(e) => tracker.state = Err(e.to_string()),
        }
        tracker
    }

    /// The cached variables, or why the environment cannot be read.
    pub fn vars(&self) -> Result<&Vars, &str> {
        self.state.as_ref().map_err(String::as_str)
    }

    /// Re-reads the environment if its headers changed since the last read, under `lock`
    /// (taken by the caller before anything else, so that no state is held while waiting).
    pub fn refresh(&mut self, lock: &EnvLock) -> Update {
        let fingerprint = self.env.fingerprint().ok();
        if fingerprint.is_some() && fingerprint == self.fingerprint {
            return Update::Unchanged;
        }
        // Headers are read before the data: if a write lands in between, the next refresh sees
        // new headers again and reads again.
        self.fingerprint = fingerprint;
        let new = self
            .env
            .read_locked(lock)
            .map(|s| s.vars)
            .map_err(|e| e.to_string());
        self.transition(new)
    }

    /// Records the result of a write this process made, and returns what changed for clients
    /// (relative to the cache, so a write that lands on top of an unnoticed external change
    /// reports both).
    pub fn record(&mut self, after: Vars) -> Diff {
        // Force a full read next time: someone may write between our write and a header read.
        self.fingerprint = None;
        match self.transition(Ok(after)) {
            Update::Changed(diff) => diff,
            _ => Diff::default(),
        }
    }

    fn transition(&mut self, new: Result<Vars, String>) -> Update {
        let update = match (&self.state, &new) {
            (Ok(old), Ok(new)) => {
                let diff = Diff::between(old, new);
                if diff.is_empty() {
                    Update::Unchanged
                } else {
                    Update::Changed(diff)
                }
            }
            (Err(_), Ok(new)) => Update::Changed(Diff::between(&Vars::new(), new)),
            (Ok(_), Err(e)) => Update::Unreadable(e.clone()),
            (Err(_), Err(_)) => Update::Unchanged,
        };
        self.state = new;
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_ubootenv::{Layout, Location, format};

    const SIZE: usize = 0x800;

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("env");
        let mut bytes = format::encode(&Vars::new(), SIZE, Layout::Redundant, 1).unwrap();
        bytes.extend_from_slice(&bytes.clone());
        std::fs::write(&img, bytes).unwrap();
        let config = EnvConfig::redundant(
            Location::new(&img, 0, SIZE),
            Location::new(&img, SIZE as i64, SIZE),
        )
        .unwrap()
        .with_lock_path(dir.path().join("lock"));
        (dir, Store::new(config))
    }

    fn refresh(tracker: &mut Tracker) -> Update {
        let lock = tracker.env.lock(Access::Read).unwrap();
        tracker.refresh(&lock)
    }

    #[test]
    fn invalid_batches_write_nothing() {
        let (dir, store) = setup();
        let before = std::fs::read(dir.path().join("env")).unwrap();
        let mut b = Batch::new();
        b.set("good", "1").set("bad=name", "1");
        let err = store.apply(&b, Recovery::Refuse).unwrap_err();
        assert!(matches!(err, KvError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("\"bad=name\""), "{err}");
        assert_eq!(std::fs::read(dir.path().join("env")).unwrap(), before);
    }

    #[test]
    fn tracker_sees_external_writes_and_corruption() {
        let (dir, store) = setup();
        let mut tracker = Tracker::new(store.env().clone());
        assert_eq!(tracker.vars(), Ok(&Vars::new()));
        assert_eq!(refresh(&mut tracker), Update::Unchanged);

        // Another writer (a second Store stands in for fw_setenv here).
        let mut b = Batch::new();
        b.set("a", "1").set("b", "2");
        store.apply(&b, Recovery::Refuse).unwrap();
        let Update::Changed(diff) = refresh(&mut tracker) else {
            panic!("change not noticed");
        };
        assert_eq!(diff.set.len(), 2);
        assert_eq!(refresh(&mut tracker), Update::Unchanged);

        // Our own write is reported by record(), and the follow-up refresh finds nothing new.
        let mut b = Batch::new();
        b.unset("a");
        let m = store.apply(&b, Recovery::Refuse).unwrap();
        let diff = tracker.record(m.after);
        assert_eq!(diff.removed, vec!["a".to_string()]);
        assert_eq!(refresh(&mut tracker), Update::Unchanged);

        // Both copies destroyed, then restored.
        let img = dir.path().join("env");
        let good = std::fs::read(&img).unwrap();
        std::fs::write(&img, vec![0u8; 2 * SIZE]).unwrap();
        assert!(matches!(refresh(&mut tracker), Update::Unreadable(m) if m.contains("both")));
        assert!(tracker.vars().is_err());
        assert_eq!(refresh(&mut tracker), Update::Unchanged);
        std::fs::write(&img, good).unwrap();
        let Update::Changed(diff) = refresh(&mut tracker) else {
            panic!("recovery not noticed");
        };
        assert_eq!(diff.set.keys().collect::<Vec<_>>(), vec!["b"]);
    }
}
