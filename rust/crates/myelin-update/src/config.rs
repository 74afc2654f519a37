//! The configuration file, `/etc/myelin/update.toml`.
//!
//! Every key is optional; the defaults are what a board needs. Unknown keys and wrongly typed
//! values are errors that name the key, line and column. Durations are strings with a unit
//! (`"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`).
//!
//! ```toml
//! device = "/dev/rootdisk0"            # the disk to update (default: the environment's
//!                                      # nerves_fw_devpath, else /dev/rootdisk0)
//! ops_fw = "/usr/share/myelin/ops.fw"  # the board's resource-less tasks (validate, revert, ...)
//! keys_dir = "/etc/myelin/fw-keys"     # fwup public keys; a missing directory refuses every update
//! development_marker = "/etc/myelin/development"  # only with it, no keys = unsigned accepted
//! env_config = "/etc/fw_env.config"    # where the U-Boot environment is
//! env_lock = "/var/lock/fw_printenv.lock"  # the lock every environment writer takes
//! env_lock_wait = "15s"                # an install fails (naming the lock) after waiting this long
//! state_dir = "/data/myelin/update"    # the record of the last install
//! init_socket = "/run/myelin/init.sock"
//! auto_reboot = false                  # reboot as soon as an install succeeds
//! auto_validate = true                 # validate a trial once every critical service is ready
//! validate_timeout = "5m"              # a trial not validated by then is rebooted ("0s": never)
//! stable_period = "30s"                # critical services ready this long, no restart, to validate
//! ready_poll = "1s"                    # how often PID 1 is asked about readiness
//! reboot_param = "/run/reboot-param"   # where tasks leave the reboot(2) argument for PID 1
//! sysfs = "/sys"                       # require-path-at-offset reads partition starts here
//!
//! [http]
//! connect_timeout = "30s"
//! read_timeout = "60s"                 # the longest silence while a download streams
//! max_redirects = 5
//! ca_file = "/etc/ssl/certs/ca-certificates.crt"  # default: the built-in Mozilla roots
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where the daemon reads its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/myelin/update.toml";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The disk updates are applied to; `None`: `nerves_fw_devpath`, else `/dev/rootdisk0`.
    pub device: Option<PathBuf>,
    /// The ops archive (validate, revert, prevent-revert, factory-reset, status).
    pub ops_fw: PathBuf,
    /// Directory of fwup public key files.
    pub keys_dir: PathBuf,
    /// Present in a development image (built without keys): only then are unsigned updates
    /// accepted when `keys_dir` is empty.
    pub development_marker: PathBuf,
    /// `fw_env.config` describing the U-Boot environment.
    pub env_config: PathBuf,
    /// The environment lock file installs take around their environment writes (shared with
    /// myelin-kv and fw_setenv).
    pub env_lock: PathBuf,
    /// How long an install waits for the environment lock before failing.
    #[serde(deserialize_with = "duration")]
    pub env_lock_wait: Duration,
    /// Directory for the last-install record.
    pub state_dir: PathBuf,
    /// myelin-init's control socket.
    pub init_socket: PathBuf,
    /// Reboot right after a successful install.
    pub auto_reboot: bool,
    /// Validate a trial firmware once every critical service is ready.
    pub auto_validate: bool,
    /// How long a trial may stay unvalidated before the daemon asks for a reboot (zero: forever).
    #[serde(deserialize_with = "duration")]
    pub validate_timeout: Duration,
    /// How long every critical service must stay ready, with no restart anywhere in the tree,
    /// before a trial is validated (zero: at the first ready answer).
    #[serde(deserialize_with = "duration")]
    pub stable_period: Duration,
    /// Interval between readiness questions to PID 1.
    #[serde(deserialize_with = "duration")]
    pub ready_poll: Duration,
    /// Where the tasks' `reboot_param()` writes; myelin-init reads the same file.
    pub reboot_param: PathBuf,
    /// Where sysfs is mounted; tests point it at a fixture to choose the "running" slot.
    pub sysfs: PathBuf,
    /// Downloads.
    pub http: HttpConfig,
}

/// HTTP(S) downloads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Limit on resolving and connecting.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Limit on each read of the response (the download may take longer in total).
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Duration,
    /// Redirects followed before giving up.
    pub max_redirects: u32,
    /// PEM file of trusted CA certificates instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: None,
            ops_fw: PathBuf::from("/usr/share/myelin/ops.fw"),
            keys_dir: PathBuf::from("/etc/myelin/fw-keys"),
            development_marker: PathBuf::from("/etc/myelin/development"),
            env_config: PathBuf::from(myelin_ubootenv::DEFAULT_CONFIG_PATH),
            env_lock: PathBuf::from(myelin_ubootenv::DEFAULT_LOCK_PATH),
            env_lock_wait: myelin_ubootenv::DEFAULT_LOCK_WAIT,
            state_dir: PathBuf::from("/data/myelin/update"),
            init_socket: PathBuf::from("/run/myelin/init.sock"),
            auto_reboot: false,
            auto_validate: true,
            validate_timeout: Duration::from_secs(300),
            stable_period: Duration::from_secs(30),
            ready_poll: Duration::from_secs(1),
            reboot_param: PathBuf::from("/run/reboot-param"),
            sysfs: PathBuf::from("/sys"),
            http: HttpConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_redirects: 5,
            ca_file: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and position.
        message: String,
    },
}

impl Config {
    /// Parses a configuration; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_owned(),
            message: describe(text, &e),
        })?;
        if config.ready_poll.is_zero() {
            return Err(ConfigError::Invalid {
                path: origin.to_owned(),
                message: "ready_poll must be longer than zero".into(),
            });
        }
        Ok(config)
    }

    /// Reads a configuration file; a missing file at the default path means the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// One line: the message with its line and column (toml's own rendering spans several lines).
fn describe(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end_matches('\n').to_owned();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Parses a duration string such as `"5m"` or `"250ms"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"30s\", \"5m\", \"250ms\"")
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("update.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert!(Config::default().auto_validate);
        assert!(!Config::default().auto_reboot);
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
device = "/dev/mmcblk0"
ops_fw = "/ops.fw"
keys_dir = "/keys"
env_config = "/fw_env.config"
state_dir = "/state"
init_socket = "/init.sock"
auto_reboot = true
auto_validate = false
validate_timeout = "20s"
ready_poll = "250ms"
[http]
connect_timeout = "5s"
read_timeout = "1m"
max_redirects = 0
ca_file = "/ca.pem"
"#,
        )
        .unwrap();
        assert_eq!(c.device.as_deref(), Some(Path::new("/dev/mmcblk0")));
        assert!(c.auto_reboot && !c.auto_validate);
        assert_eq!(c.validate_timeout, Duration::from_secs(20));
        assert_eq!(c.ready_poll, Duration::from_millis(250));
        assert_eq!(c.http.read_timeout, Duration::from_secs(60));
        assert_eq!(c.http.max_redirects, 0);
        assert_eq!(c.http.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn errors_name_the_key_and_position() {
        let e = parse("auto_validate = true\nvalidate_timout = \"5s\"\n").unwrap_err();
        assert!(e.contains("update.toml: line 2, column 1"), "{e}");
        assert!(e.contains("validate_timout"), "{e}");
        let e = parse("validate_timeout = \"five minutes\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("five minutes"), "{e}");
        let e = parse("auto_reboot = \"yes\"\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("[http]\nmax_redirects = -1\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("ready_poll = \"0s\"\n").unwrap_err();
        assert!(e.contains("ready_poll"), "{e}");
    }

    #[test]
    fn the_shipped_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../board/common/rootfs_overlay/etc/myelin/update.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text, &path).unwrap();
        assert!(c.auto_validate);
        assert_eq!(c.ops_fw, Path::new("/usr/share/myelin/ops.fw"));
    }
}
