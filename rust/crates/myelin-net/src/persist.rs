//! Persisted runtime configuration under `persist_dir` (see [`crate::config`] for the layout)
//! and the atomic file write everything myelin-net writes goes through.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{HostPort, InterfaceConfig};

/// Current file format version.
pub const VERSION: u32 = 1;

/// Writes `bytes` to `path` so that a power cut leaves either the old or the new file: a
/// temporary file in the same directory, fsync, rename over `path`, and (with `durable`) an
/// fsync of the directory so the rename itself survives.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
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
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
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

/// A persisted file that could not be used, and why.
pub type Unreadable = (PathBuf, String);

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

    fn iface_path(&self, ifname: &str) -> PathBuf {
        self.dir.join("interfaces").join(format!("{ifname}.json"))
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.join("connectivity.json")
    }

    /// Saves an interface's configuration.
    pub fn save(&self, ifname: &str, config: &InterfaceConfig) -> std::io::Result<()> {
        let path = self.iface_path(ifname);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let json = serde_json::to_vec_pretty(&IfaceFile {
            version: VERSION,
            config: config.clone(),
        })
        .map_err(std::io::Error::other)?;
        write_atomic(&path, &json, true)
    }

    /// Forgets an interface's configuration (the default applies again after a reboot).
    pub fn clear(&self, ifname: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.iface_path(ifname)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => {
                if let Ok(d) = std::fs::File::open(self.dir.join("interfaces")) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
        }
    }

    /// Every readable persisted interface config; unreadable ones are reported in the second
    /// list (file and reason) and left out.
    pub fn load_all(&self) -> (Vec<(String, InterfaceConfig)>, Vec<Unreadable>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("interfaces")) else {
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
                Err(why) => bad.push((path, why)),
            }
        }
        (ok, bad)
    }

    fn load_file(&self, path: &Path, ifname: &str) -> Result<InterfaceConfig, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let f: IfaceFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if f.version != VERSION {
            return Err(format!("unsupported version {}", f.version));
        }
        f.config.normalize(ifname).map_err(|e| e.to_string())
    }

    /// Saves the check targets.
    pub fn save_hosts(&self, hosts: &[HostPort]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(&HostsFile {
            version: VERSION,
            hosts: hosts.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        write_atomic(&self.hosts_path(), &json, true)
    }

    /// The persisted check targets: `Ok(None)` if there are none, `Err` if the file is bad.
    pub fn load_hosts(&self) -> Result<Option<Vec<HostPort>>, String> {
        let bytes = match std::fs::read(self.hosts_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let f: HostsFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if f.version != VERSION {
            return Err(format!("unsupported version {}", f.version));
        }
        if f.hosts.is_empty() {
            return Err("empty host list".into());
        }
        Ok(Some(f.hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_interface_json;

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
    fn hosts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load_hosts(), Ok(None));
        let hosts = vec!["10.0.2.2:1234".parse().unwrap()];
        store.save_hosts(&hosts).unwrap();
        assert_eq!(store.load_hosts(), Ok(Some(hosts)));
        std::fs::write(dir.path().join("connectivity.json"), "garbage").unwrap();
        assert!(store.load_hosts().is_err());
    }
}
