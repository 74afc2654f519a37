//! Firmware operations: the one module that uses myelin-fw.
//!
//! [`Firmware`] is what the daemon needs from an fwup-compatible applier: the `upgrade` task of
//! an archive streamed from a reader, and the resource-less tasks of the board's ops archive
//! (`status`, `validate`, `revert`, `prevent-revert`, `factory-reset`). [`FwApplier`] implements
//! it with the myelin-fw library: the archive's signature is checked against the keys of
//! `keys_dir` before anything is written, resources are hashed as they stream, and the task's
//! slot switch (`on-finish`) is written last.

use std::io::Read;
use std::path::{Path, PathBuf};

use myelin_fw::apply::ApplyOptions;
use myelin_fw::config::Vars;
use myelin_fw::progress::Event;
use myelin_fw::sign::PublicKey;
use myelin_fw::system::Host;
use myelin_fw::target::FileTarget;

use crate::rollback::{self, Allowed, RollbackError};

/// Why an install or an ops task was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FwError {
    /// The keys directory is missing: a damaged root filesystem must never mean "unsigned is fine".
    #[error(
        "the firmware keys directory {} does not exist: refusing the update (every image has it; an image built without keys has it empty)",
        .0.display()
    )]
    NoKeysDir(PathBuf),
    /// The keys directory could not be listed.
    #[error("cannot list the keys in {}: {source}", .dir.display())]
    ListKeys {
        /// The keys directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file could not be read.
    #[error("key {}: {source}", .path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file does not hold an fwup public key.
    #[error("key {}: {source}", .path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        source: myelin_fw::sign::KeyError,
    },
    /// No key is installed and the image is not a development image.
    #[error(
        "no public key in {} and this is not a development image ({} is absent): refusing an update whose signature cannot be checked",
        .keys_dir.display(),
        .marker.display()
    )]
    Unsigned {
        /// The (empty) keys directory.
        keys_dir: PathBuf,
        /// The development image marker that is absent.
        marker: PathBuf,
    },
    /// The archive was refused or its task failed (signature, format, a write).
    #[error(transparent)]
    Archive(#[from] myelin_fw::Error),
    /// The archive's version is refused by the rollback policy.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// The target disk does not exist (a file is never created where the disk should be).
    #[error("the disk {} does not exist", .0.display())]
    NoDisk(PathBuf),
    /// The target disk or the ops archive could not be opened.
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What an apply reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwEvent {
    /// Percent done, 0–100.
    Progress(u8),
    /// A message of the task (`info()`).
    Message(String),
    /// A warning (e.g. an unsigned archive accepted because no key is installed).
    Warning(String),
}

/// An fwup-compatible applier.
pub trait Firmware: Send + Sync {
    /// Applies the `upgrade` task of the archive read from `source` to `device`, refusing a
    /// downgrade unless `policy` allows it.
    fn upgrade(
        &self,
        device: &Path,
        source: &mut dyn Read,
        policy: &UpgradePolicy,
        events: &mut dyn FnMut(FwEvent),
    ) -> Result<(), FwError>;

    /// Runs `task` of the ops archive on `device`; returns its `info()` messages.
    fn ops(&self, device: &Path, task: &str) -> Result<Vec<String>, FwError>;
}

/// What an install allows, checked before anything is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// The running firmware's version (`<running slot>.nerves_fw_version`).
    pub running_version: Option<String>,
    /// Install an older version than the running one.
    pub allow_downgrade: bool,
}

/// The myelin-fw library.
pub struct FwApplier {
    /// The board's ops archive.
    pub ops_fw: PathBuf,
    /// Directory of fwup public key files.
    pub keys_dir: PathBuf,
    /// Where sysfs is: `require-path-at-offset` reads `<sysfs>/dev/block/M:m/start`.
    pub sysfs: PathBuf,
    /// Where `reboot_param()` writes (PID 1 reads its first line).
    pub reboot_param: PathBuf,
    /// The marker of a development image (an image built without firmware keys): only then is
    /// an update accepted without a signature check.
    pub development_marker: PathBuf,
    /// The environment lock taken around the environment writes of installs and ops tasks,
    /// and how long to wait for it; `None` for an image nobody else writes.
    pub env_lock: Option<(PathBuf, std::time::Duration)>,
}

/// Reads every public key in `dir` (each regular file, hidden ones excepted, holds one base64
/// fwup key). A missing directory is an error (every image has it, empty in a development
/// image), so a damaged root filesystem never means "accept unsigned"; an unreadable key is an
/// error naming its file.
pub fn load_keys(dir: &Path) -> Result<Vec<PublicKey>, FwError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FwError::NoKeysDir(dir.to_owned()));
        }
        Err(source) => {
            return Err(FwError::ListKeys {
                dir: dir.to_owned(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read(p).map_err(|source| FwError::ReadKey {
                path: p.clone(),
                source,
            })?;
            PublicKey::from_fwup(&text).map_err(|source| FwError::BadKey {
                path: p.clone(),
                source,
            })
        })
        .collect()
}

impl FwApplier {
    fn system(&self) -> Host {
        Host {
            sysfs: self.sysfs.clone(),
            reboot_param_path: Some(self.reboot_param.clone()),
            reboot_param_defaults: Vec::new(),
            env_lock: self.env_lock.clone(),
        }
    }

    fn apply(
        &self,
        device: &Path,
        source: &mut dyn Read,
        task: &str,
        keys: &[PublicKey],
        policy: Option<&UpgradePolicy>,
        events: &mut dyn FnMut(FwEvent),
    ) -> Result<(), FwError> {
        let vars = Vars::from_env();
        // The signature and meta.conf first: the version is checked before the disk is opened.
        let opened = myelin_fw::open(source, keys, &vars)?;
        if let Some(policy) = policy {
            let new = opened.config.meta.version.as_deref();
            let running = policy.running_version.as_deref();
            match rollback::check(running, new, policy.allow_downgrade) {
                Ok(Allowed::Upgrade) => {}
                Ok(Allowed::Downgrade) => events(FwEvent::Warning(format!(
                    "downgrading from {} to {} (allowed by the install)",
                    running.unwrap_or("?"),
                    new.unwrap_or("?")
                ))),
                Ok(Allowed::Unordered(why)) => events(FwEvent::Warning(why)),
                Err(e) => return Err(e.into()),
            }
        }
        // Never create a file where the disk should be.
        if !device.exists() {
            return Err(FwError::NoDisk(device.to_owned()));
        }
        let mut target = FileTarget::open(device).map_err(|source| FwError::Open {
            path: device.to_owned(),
            source,
        })?;
        let system = self.system();
        let opts = ApplyOptions {
            task,
            public_keys: keys,
            vars,
            system: &system,
            enable_trim: true,
            progress_range: (0, 100),
        };
        let mut progress = |e: Event| match e {
            Event::Percent(p) => events(FwEvent::Progress(p.min(100) as u8)),
            Event::Info(m) => events(FwEvent::Message(m)),
        };
        myelin_fw::apply_opened(opened, &mut target, &opts, Some(&mut progress))?;
        Ok(())
    }
}

impl Firmware for FwApplier {
    fn upgrade(
        &self,
        device: &Path,
        source: &mut dyn Read,
        policy: &UpgradePolicy,
        events: &mut dyn FnMut(FwEvent),
    ) -> Result<(), FwError> {
        let keys = load_keys(&self.keys_dir)?;
        if keys.is_empty() {
            if !self.development_marker.exists() {
                return Err(FwError::Unsigned {
                    keys_dir: self.keys_dir.clone(),
                    marker: self.development_marker.clone(),
                });
            }
            events(FwEvent::Warning(format!(
                "DEVELOPMENT IMAGE: no public key in {}: accepting the update without checking its signature",
                self.keys_dir.display()
            )));
        }
        self.apply(device, source, "upgrade", &keys, Some(policy), events)
    }

    fn ops(&self, device: &Path, task: &str) -> Result<Vec<String>, FwError> {
        let mut file = std::fs::File::open(&self.ops_fw).map_err(|source| FwError::Open {
            path: self.ops_fw.clone(),
            source,
        })?;
        let mut messages = Vec::new();
        let mut events = |e: FwEvent| {
            if let FwEvent::Message(m) = e {
                messages.push(m);
            }
        };
        // ops.fw is part of the read-only root filesystem, trusted like this program.
        self.apply(device, &mut file, task, &[], None, &mut events)?;
        Ok(messages)
    }
}

#[cfg(test)]
mod key_policy_tests {
    use super::*;

    fn applier(dir: &Path) -> FwApplier {
        FwApplier {
            ops_fw: dir.join("ops.fw"),
            keys_dir: dir.join("fw-keys"),
            development_marker: dir.join("development"),
            sysfs: dir.join("sys"),
            reboot_param: dir.join("reboot-param"),
            env_lock: None,
        }
    }

    fn upgrade(fw: &FwApplier, disk: &Path) -> (Result<(), FwError>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut events = |e: FwEvent| {
            if let FwEvent::Warning(w) = e {
                warnings.push(w);
            }
        };
        let policy = UpgradePolicy::default();
        let result = fw.upgrade(disk, &mut std::io::empty(), &policy, &mut events);
        (result, warnings)
    }

    #[test]
    fn no_keys_is_refused_unless_the_image_is_a_development_image() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        let fw = applier(dir.path());
        // A missing keys directory: refused, naming it, nothing written.
        let (result, _) = upgrade(&fw, &disk);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, FwError::NoKeysDir(d) if d.ends_with("fw-keys")),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
        // Empty, not a development image: refused, naming the marker.
        std::fs::create_dir(dir.path().join("fw-keys")).unwrap();
        let (result, _) = upgrade(&fw, &disk);
        let err = result.unwrap_err();
        assert!(
            matches!(&err, FwError::Unsigned { marker, .. } if marker.ends_with("development")),
            "{err}"
        );
        assert!(err.to_string().contains("not a development image"), "{err}");
        assert_eq!(std::fs::read(&disk).unwrap(), vec![0u8; 4096]);
        // A development image: the signature is not checked, loudly (this empty archive then
        // fails for its own reasons).
        std::fs::write(dir.path().join("development"), "no keys\n").unwrap();
        let (result, warnings) = upgrade(&fw, &disk);
        assert!(
            warnings.iter().any(|w| w.contains("DEVELOPMENT IMAGE")),
            "{warnings:?}"
        );
        assert!(matches!(result, Err(FwError::Archive(_))), "{result:?}");
    }
}
