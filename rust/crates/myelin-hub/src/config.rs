//! `/etc/myelin/hub.toml`, with runtime overrides from the KV.
//!
//! ```toml
//! # The NervesHub server: wss://host[:port]; the path is the protocol's.
//! url = "wss://devices.nervescloud.com"
//! # PEM bundle of the CAs the server's certificate must chain to.
//! server_ca = "/etc/ssl/certs/ca-certificates.crt"
//! heartbeat = "30s"
//! # A command that makes the device seen (blinks an LED) when the server asks.
//! identify_command = ["/usr/bin/myelin-led", "blink"]
//! # Asked before each offered update installs: prints apply, ignore [REASON] or
//! # reschedule SECONDS [REASON] (myelin_hub::policy). Without it, updates install at once.
//! update_command = ["/usr/bin/my-app", "may-update"]
//! # Reboot into an installed update at once (NervesHubLink's default).
//! reboot_after_update = true
//!
//! # The remote console gives a NervesHub operator a root shell on the device (in a PTY).
//! # The server authenticates the operator; off unless enabled here.
//! [console]
//! enabled = false
//! command = ["/bin/sh", "-l"]
//! idle_timeout = "5m"             # a shell nobody used this long is hung up
//!
//! # Health reports (uptime, load, memory, disk of /data, CPU temperature), sent when the
//! # server asks and every `interval` once it attached the health extension.
//! [health]
//! enabled = true
//! interval = "60m"
//! disk = "/data"
//!
//! [auth]
//! kind = "certificate"             # mTLS: /socket/websocket
//! certificate = "/data/myelin/hub/device.pem"
//! key = "/data/myelin/hub/device-key.pem"   # mode 0600
//!
//! # or:
//! # kind = "shared-secret"         # signed x-nh-* headers: /device-socket/websocket
//! # key = "nhp_..."                 # product key (or a device key)
//! # secret_file = "/data/myelin/hub/secret"  # mode 0600
//! # identifier = "..."              # default: the serial number in the environment
//! ```
//!
//! The KV (the U-Boot environment) overrides, so a provisioning step can point one device
//! elsewhere without a new firmware: `hub_url`, `hub_server_ca`, `hub_certificate`, `hub_key`,
//! `hub_shared_key`, `hub_secret_file`. Secret material is never in the file or the KV itself,
//! only the path to a file that must be readable by its owner only.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::SharedSecret;

/// Where the file is on a device.
pub const DEFAULT_PATH: &str = "/etc/myelin/hub.toml";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid (names the field).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field.
        message: String,
    },
    /// A secret file others can read.
    #[error(
        "{path}: mode {mode:04o} lets others read it; secret material must be mode 0600 \
         (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Something required is missing (names it).
    #[error("{0}")]
    Missing(String),
}

/// How the device proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    /// A device certificate (mTLS).
    Certificate {
        /// PEM certificate (chain).
        certificate: PathBuf,
        /// PEM private key, mode 0600.
        key: PathBuf,
    },
    /// Product/device key and secret.
    SharedSecret {
        /// `nhp_...` or a device key.
        key: String,
        /// The file holding the secret, mode 0600.
        secret_file: PathBuf,
        /// The device identifier; default: the serial number.
        #[serde(default)]
        identifier: Option<String>,
    },
}

/// The client's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `wss://host[:port]`.
    pub url: String,
    /// CA bundle for the server's certificate.
    #[serde(default = "default_ca")]
    pub server_ca: PathBuf,
    /// Heartbeat interval.
    #[serde(default = "default_heartbeat", deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// Run to identify the device.
    #[serde(default)]
    pub identify_command: Vec<String>,
    /// Asked whether an offered update may install now ([`crate::policy`]); empty: always.
    #[serde(default)]
    pub update_command: Vec<String>,
    /// Reboot when an update is installed.
    #[serde(default = "default_true")]
    pub reboot_after_update: bool,
    /// The remote console.
    #[serde(default)]
    pub console: Console,
    /// Health reports.
    #[serde(default)]
    pub health: Health,
    /// Authentication.
    pub auth: Auth,
}

/// `[console]`: the remote console.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Whether the device offers a console (off by default: it is a root shell).
    #[serde(default)]
    pub enabled: bool,
    /// The program and arguments run in the PTY.
    #[serde(default = "default_console_command")]
    pub command: Vec<String>,
    /// A shell without input or output this long is hung up (the server does not say when
    /// the operator's browser went away).
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for Console {
    fn default() -> Console {
        Console {
            enabled: false,
            command: default_console_command(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_idle_timeout() -> Duration {
    // NervesHubLink's remote_iex_timeout.
    Duration::from_secs(300)
}

fn default_console_command() -> Vec<String> {
    vec!["/bin/sh".into(), "-l".into()]
}

/// `[health]`: health reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Whether the device offers the health extension.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often to report once attached (besides when the server asks).
    #[serde(default = "default_health_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// A path on the file system whose usage is reported.
    #[serde(default = "default_health_disk")]
    pub disk: PathBuf,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            enabled: true,
            interval: default_health_interval(),
            disk: default_health_disk(),
        }
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_health_disk() -> PathBuf {
    PathBuf::from("/data")
}

fn default_ca() -> PathBuf {
    PathBuf::from("/etc/ssl/certs/ca-certificates.crt")
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    match humantime::parse_duration(&s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(serde::de::Error::custom("must be more than 0")),
        Err(e) => Err(serde::de::Error::custom(format!("`{s}`: {e}"))),
    }
}

impl Config {
    /// Parses the text of a file (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("field {}: {}", e.path(), e.inner()),
            })?;
        config.check(path)?;
        Ok(config)
    }

    /// Reads a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if self.console.enabled && self.console.command.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "field console.command: must name a program".into(),
            });
        }
        if !self.url.starts_with("wss://") {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("field url: `{}` must start with wss://", self.url),
            });
        }
        Ok(())
    }

    /// Applies the KV's `hub_*` overrides.
    pub fn with_overrides(mut self, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(url) = get("hub_url") {
            self.url = url;
        }
        if let Some(ca) = get("hub_server_ca") {
            self.server_ca = ca.into();
        }
        match &mut self.auth {
            Auth::Certificate { certificate, key } => {
                if let Some(c) = get("hub_certificate") {
                    *certificate = c.into();
                }
                if let Some(k) = get("hub_key") {
                    *key = k.into();
                }
            }
            Auth::SharedSecret {
                key, secret_file, ..
            } => {
                if let Some(k) = get("hub_shared_key") {
                    *key = k;
                }
                if let Some(f) = get("hub_secret_file") {
                    *secret_file = f.into();
                }
            }
        }
        self.check(Path::new("KV hub_url"))?;
        Ok(self)
    }

    /// The WebSocket URL for this kind of auth.
    pub fn socket_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        match self.auth {
            Auth::Certificate { .. } => format!("{base}/socket/websocket"),
            Auth::SharedSecret { .. } => format!("{base}/device-socket/websocket"),
        }
    }

    /// The shared-secret material, read from its file (checked to be 0600), with the
    /// identifier defaulting to the serial number in `env`.
    pub fn shared_secret(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<Option<SharedSecret>, ConfigError> {
        let Auth::SharedSecret {
            key,
            secret_file,
            identifier,
        } = &self.auth
        else {
            return Ok(None);
        };
        let secret = read_secret(secret_file)?;
        let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
        if secret.is_empty() {
            return Err(ConfigError::Missing(format!(
                "{}: the shared secret is empty",
                secret_file.display()
            )));
        }
        let identifier = identifier
            .clone()
            .or_else(|| env.get("nerves_serial_number").cloned())
            .or_else(|| env.get("serial_number").cloned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::Missing(
                    "auth.identifier is not set and the environment has no nerves_serial_number"
                        .into(),
                )
            })?;
        Ok(Some(SharedSecret::new(key, &secret, &identifier)))
    }
}

/// Reads a file of secret material, refusing it if group or others may read or write it.
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = r#"
url = "wss://hub.example:4001"
[auth]
kind = "certificate"
certificate = "/data/c.pem"
key = "/data/k.pem"
"#;

    #[test]
    fn certificate_config_and_defaults() {
        let c = Config::parse(CERT, Path::new("hub.toml")).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert!(c.reboot_after_update);
        assert_eq!(c.socket_url(), "wss://hub.example:4001/socket/websocket");
        assert!(!c.console.enabled, "the console is off unless enabled");
        assert_eq!(c.console.command, ["/bin/sh", "-l"]);
        assert_eq!(c.console.idle_timeout, Duration::from_secs(300));
        assert!(c.health.enabled);
        assert_eq!(c.health.interval, Duration::from_secs(3600));
        assert_eq!(c.health.disk, Path::new("/data"));
        let c = Config::parse(
            &format!("{CERT}[console]\nenabled = true\n[health]\ninterval = \"5m\"\n"),
            Path::new("hub.toml"),
        )
        .unwrap();
        assert!(c.console.enabled);
        assert_eq!(c.health.interval, Duration::from_secs(300));
        let e = Config::parse(
            &format!("{CERT}[console]\nenabled = true\ncommand = []\n"),
            Path::new("hub.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("console.command"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::parse(
            "url = \"ws://x\"\n[auth]\nkind = \"certificate\"\ncertificate = \"a\"\nkey = \"b\"\n",
            Path::new("hub.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field url"), "{e}");
        let e = Config::parse(
            &CERT.replace("certificate\"\n", "password\"\n"),
            Path::new("hub.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth"), "{e}");
        let e = Config::parse(
            &format!("heartbeat = \"soon\"\n{CERT}"),
            Path::new("hub.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("heartbeat"), "{e}");
    }

    #[test]
    fn kv_overrides_win() {
        let c = Config::parse(CERT, Path::new("hub.toml")).unwrap();
        let env = HashMap::from([
            ("hub_url".to_owned(), "wss://other".to_owned()),
            ("hub_key".to_owned(), "/data/k2.pem".to_owned()),
        ]);
        let c = c.with_overrides(&env).unwrap();
        assert_eq!(c.url, "wss://other");
        assert_eq!(
            c.auth,
            Auth::Certificate {
                certificate: "/data/c.pem".into(),
                key: "/data/k2.pem".into()
            }
        );
        let bad = HashMap::from([("hub_url".to_owned(), "http://x".to_owned())]);
        assert!(
            Config::parse(CERT, Path::new("h"))
                .unwrap()
                .with_overrides(&bad)
                .is_err()
        );
    }

    #[test]
    fn secret_file_must_be_0600() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "url = \"wss://h\"\n[auth]\nkind = \"shared-secret\"\nkey = \"nhp_k\"\nsecret_file = \"{}\"\n",
            secret.display()
        );
        let c = Config::parse(&text, Path::new("hub.toml")).unwrap();
        assert_eq!(c.socket_url(), "wss://h/device-socket/websocket");
        let env = HashMap::from([("nerves_serial_number".to_owned(), "sn1".to_owned())]);
        let e = c.shared_secret(&env).unwrap_err().to_string();
        assert!(e.contains(&secret.display().to_string()), "{e}");
        assert!(e.contains("0644"), "{e}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = c.shared_secret(&env).unwrap().unwrap();
        assert_eq!(s.secret, "s3cr3t");
        assert_eq!(s.identifier, "sn1");
        assert!(!format!("{c:?} {s:?}").contains("s3cr3t"));
        let e = c.shared_secret(&HashMap::new()).unwrap_err().to_string();
        assert!(e.contains("nerves_serial_number"), "{e}");
    }
}
