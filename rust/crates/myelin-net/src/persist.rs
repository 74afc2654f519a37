//! Persisted runtime configuration under `persist_dir` (see [`crate::config`] for the layout)
//! and the atomic file write everything myelin-net writes goes through.
//!
//! The persisted files hold WiFi keys, so the directories are 0700 and the files 0600, created
//! with that mode (never written first and restricted afterwards); directories and files an
//! older version left readable by others are restricted when the store is opened
//! ([`Store::secure`]).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, HostPort, InterfaceConfig};

/// Current file format version.
pub const VERSION: u32 = 1;

/// Mode of files holding configuration (WiFi keys): the owner's only.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of directories holding such files.
pub const PRIVATE_DIR: u32 = 0o700;

/// Writes `bytes` to `path` so that a power cut leaves either the old or the new file: a
/// temporary file in the same directory, created with `mode` (so it is never readable by more
/// than `mode` allows, not even for a moment), fsync, rename over `path`, and (with
/// `durable`) an fsync of the directory so the rename itself survives. The umask still
/// applies to `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of an earlier process with this pid that died mid-write.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes `dir` a directory only its owner can enter: created with mode 0700 (its missing
/// parents get the usual mode), or restricted to 0700 if it exists with more. A shared
/// directory (sticky bit, like `/tmp`) is refused rather than restricted.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o1000 != 0 {
                return Err(std::io::Error::other(format!(
                    "{} is a shared directory (sticky bit); myelin-net needs one of its own",
                    dir.display()
                )));
            }
            restrict(dir, PRIVATE_DIR)
        }
        Err(e) => Err(e),
    }
}

/// Takes away every permission bit of `path` that `mode` does not have.
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let now = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if now & !mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(now & mode))
}

/// Why a persisted file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading it failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not the JSON this version writes.
    #[error("{} is not a persisted configuration", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a version with another format.
    #[error("{} has format version {found}, not {VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// It parses, but the configuration is not valid (any more).
    #[error("{} holds an invalid configuration", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: ConfigError,
    },
    /// A check target list without targets.
    #[error("{} has an empty host list", path.display())]
    NoHosts {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Serialize, Deserialize)]
struct IfaceFile {
    version: u32,
    config: InterfaceConfig,
}

#[derive(Serialize, Deserialize)]
struct HostsFile {
    version: u32,
    hosts: Vec<HostPort>,
}

/// The persisted configurations in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    fn iface_dir(&self) -> PathBuf {
        self.dir.join("interfaces")
    }

    fn iface_path(&self, ifname: &str) -> PathBuf {
        self.iface_dir().join(format!("{ifname}.json"))
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("connectivity.json")
    }

    /// Restricts what exists of the store to its owner (directories 0700, files 0600), for
    /// stores an older version wrote readable by everyone. Nothing is created.
    pub fn secure(&self) -> std::io::Result<()> {
        let present = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        present(restrict(&self.dir, PRIVATE_DIR))?;
        present(restrict(&self.iface_dir(), PRIVATE_DIR))?;
        present(restrict(&self.hosts_path(), PRIVATE_FILE))?;
        if let Ok(entries) = std::fs::read_dir(self.iface_dir()) {
            for e in entries {
                present(restrict(&e?.path(), PRIVATE_FILE))?;
            }
        }
        Ok(())
    }

    /// Saves an interface's configuration.
    pub fn save(&self, ifname: &str, config: &InterfaceConfig) -> std::io::Result<()> {
        private_dir(&self.dir)?;
        private_dir(&self.iface_dir())?;
        let json = serde_json::to_vec_pretty(&IfaceFile {
            version: VERSION,
            config: config.clone(),
        })
        .map_err(std::io::Error::other)?;
        write_atomic(&self.iface_path(ifname), &json, PRIVATE_FILE, true)
    }

    /// Forgets an interface's configuration (the default applies again after a reboot).
    pub fn clear(&self, ifname: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.iface_path(ifname)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => {
                if let Ok(d) = std::fs::File::open(self.iface_dir()) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
        }
    }

    /// Every readable persisted interface config; the unreadable ones are reported in the
    /// second list and left out.
    pub fn load_all(&self) -> (Vec<(String, InterfaceConfig)>, Vec<PersistError>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.iface_dir()) else {
            return (ok, bad);
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Some(ifname) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_owned)
            else {
                continue;
            };
            if ifname.starts_with('.') {
                continue;
            }
            match self.load_file(&path, &ifname) {
                Ok(c) => ok.push((ifname, c)),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }

    fn load_file(&self, path: &Path, ifname: &str) -> Result<InterfaceConfig, PersistError> {
        let bytes = std::fs::read(path).map_err(|source| PersistError::Read {
            path: path.to_owned(),
            source,
        })?;
        let f: IfaceFile =
            serde_json::from_slice(&bytes).map_err(|source| PersistError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if f.version != VERSION {
            return Err(PersistError::Version {
                path: path.to_owned(),
                found: f.version,
            });
        }
        f.config
            .normalize(ifname)
            .map_err(|source| PersistError::Invalid {
                path: path.to_owned(),
                source,
            })
    }

    /// Saves the check targets.
    pub fn save_hosts(&self, hosts: &[HostPort]) -> std::io::Result<()> {
        private_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(&HostsFile {
            version: VERSION,
            hosts: hosts.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        write_atomic(&self.hosts_path(), &json, PRIVATE_FILE, true)
    }

    /// The persisted check targets: `Ok(None)` if there are none, `Err` if the file is bad.
    pub fn load_hosts(&self) -> Result<Option<Vec<HostPort>>, PersistError> {
        let path = self.hosts_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PersistError::Read { path, source }),
        };
        let f: HostsFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(source) => return Err(PersistError::Parse { path, source }),
        };
        if f.version != VERSION {
            return Err(PersistError::Version {
                path,
                found: f.version,
            });
        }
        if f.hosts.is_empty() {
            return Err(PersistError::NoHosts { path });
        }
        Ok(Some(f.hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_interface_json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("net"));
        assert!(store.load_all().0.is_empty());
        let eth = parse_interface_json(
            "eth0",
            r#"{"type":"ethernet","check_hosts":["10.0.2.2:8080"]}"#,
        )
        .unwrap();
        let wlan = parse_interface_json(
            "wlan0",
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"home","passphrase":"hunter2hunter2"}]}}"#,
        )
        .unwrap();
        store.save("eth0", &eth).unwrap();
        store.save("wlan0", &wlan).unwrap();
        let on_disk =
            std::fs::read_to_string(dir.path().join("net/interfaces/wlan0.json")).unwrap();
        assert!(
            !on_disk.contains("hunter2"),
            "the passphrase reached the disk: {on_disk}"
        );
        // The PSK did, so only root may read it.
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("net"), 0o700);
        assert_eq!(mode("net/interfaces"), 0o700);
        assert_eq!(mode("net/interfaces/wlan0.json"), 0o600);
        let (ok, bad) = store.load_all();
        assert!(bad.is_empty());
        assert_eq!(
            ok,
            vec![("eth0".to_owned(), eth.clone()), ("wlan0".to_owned(), wlan)]
        );

        std::fs::write(
            dir.path().join("net/interfaces/wlan0.json"),
            b"{\"version\":1,\"conf",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("net/interfaces/usb0.json"),
            br#"{"version":1,"config":{"type":"direct","ipv4":{"method":"dhcp"}}}"#,
        )
        .unwrap();
        let (ok, bad) = store.load_all();
        assert_eq!(ok, vec![("eth0".to_owned(), eth)]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(matches!(bad[0], PersistError::Invalid { .. }), "{bad:?}");
        assert!(matches!(bad[1], PersistError::Parse { .. }), "{bad:?}");

        store.clear("eth0").unwrap();
        store.clear("eth0").unwrap();
        assert!(store.load_all().0.is_empty());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("net/interfaces"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn an_old_readable_store_is_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        std::fs::create_dir_all(net.join("interfaces")).unwrap();
        let file = net.join("interfaces/wlan0.json");
        std::fs::write(&file, "{}").unwrap();
        for (p, m) in [
            (&net, 0o755),
            (&net.join("interfaces"), 0o775),
            (&file, 0o644),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        Store::new(&net).secure().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&net), 0o700);
        assert_eq!(mode(&net.join("interfaces")), 0o700);
        assert_eq!(mode(&file), 0o600);
        // A store that does not exist yet is fine, and stays absent.
        Store::new(dir.path().join("none")).secure().unwrap();
        assert!(!dir.path().join("none").exists());
    }

    #[test]
    fn files_are_created_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("run");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&private).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o700);
        let f = private.join("wpa_supplicant.wlan0.conf");
        write_atomic(&f, b"psk=00", PRIVATE_FILE, false).unwrap();
        assert_eq!(mode(&f), 0o600);
        // Replacing a file that was readable gives the new mode, not the old file's.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&f, b"psk=01", PRIVATE_FILE, false).unwrap();
        assert_eq!(mode(&f), 0o600);
        // A shared directory is not taken over.
        let shared = dir.path().join("tmp");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(private_dir(&shared).is_err());
        assert_eq!(
            std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
    }

    #[test]
    fn hosts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(matches!(store.load_hosts(), Ok(None)));
        let hosts = vec!["10.0.2.2:1234".parse().unwrap()];
        store.save_hosts(&hosts).unwrap();
        assert_eq!(store.load_hosts().unwrap(), Some(hosts));
        std::fs::write(dir.path().join("connectivity.json"), "garbage").unwrap();
        assert!(matches!(
            store.load_hosts(),
            Err(PersistError::Parse { .. })
        ));
    }
}
