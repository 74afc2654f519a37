//! The configuration file, `/etc/myelin/time.toml`.
//!
//! TOML. Unknown keys and wrongly typed values are errors that name the key
//! (`save_interval: ...`). Durations are strings with a unit (`"11m"`). Every key is optional;
//! the values shown are the defaults.
//!
//! ```toml
//! servers = ["0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org"]
//! dhcp_servers = true                  # add the servers DHCP offers (option 42, via myelin-net)
//! client = "auto"                      # "ntpd" (busybox), "sntp" (built in), "auto": ntpd if found
//! ntpd = ["ntpd"]                      # argv prefix of busybox ntpd (Debian: ["busybox", "ntpd"])
//! time_file = "/data/myelin/time"      # its mtime is the next boot's clock floor (myelin-init's)
//! save_interval = "11m"                # how often the time file is refreshed while synchronized
//! rtc = "/dev/rtc0"                    # read at start, written after each sync; "" = none
//! build_time_file = "/etc/myelin/build-time"   # the build-time floor (seconds since the epoch)
//! run_dir = "/run/myelin-time"         # the ntpd hook's socket and symlink
//! sntp_poll = "64s"                    # built-in client: between successful queries
//! sntp_retry = "4s"                    # built-in client: after a failed round
//! ```
//!
//! A server is a host name or address, with `:port` when it is not 123 (`10.0.2.2:11123`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/myelin/time.toml";

/// The NTP client to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// busybox ntpd if its program is found, else the built-in client.
    Auto,
    /// busybox ntpd, reporting through its `-S` hook.
    Ntpd,
    /// The built-in SNTP client (one query per server and poll, steps the clock).
    Sntp,
}

/// `/etc/myelin/time.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeConfig {
    /// NTP servers (`host` or `host:port`), always first.
    pub servers: Vec<String>,
    /// Add the NTP servers of DHCP leases.
    pub dhcp_servers: bool,
    /// Which client.
    pub client: ClientKind,
    /// argv prefix of busybox ntpd.
    pub ntpd: Vec<String>,
    /// The time file (its mtime is a clock floor).
    pub time_file: Option<PathBuf>,
    /// Time file refresh interval.
    #[serde(deserialize_with = "de_duration")]
    pub save_interval: Duration,
    /// The RTC device; absent or empty: none.
    #[serde(deserialize_with = "de_opt_path")]
    pub rtc: Option<PathBuf>,
    /// The build-time floor file.
    pub build_time_file: Option<PathBuf>,
    /// The hook's socket and symlink.
    pub run_dir: PathBuf,
    /// Built-in client: between successful rounds.
    #[serde(deserialize_with = "de_duration")]
    pub sntp_poll: Duration,
    /// Built-in client: after a failed round.
    #[serde(deserialize_with = "de_duration")]
    pub sntp_retry: Duration,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            servers: (0..4).map(|i| format!("{i}.pool.ntp.org")).collect(),
            dhcp_servers: true,
            client: ClientKind::Auto,
            ntpd: vec!["ntpd".into()],
            time_file: Some(PathBuf::from("/data/myelin/time")),
            save_interval: Duration::from_secs(11 * 60),
            rtc: Some(PathBuf::from("/dev/rtc0")),
            build_time_file: Some(PathBuf::from("/etc/myelin/build-time")),
            run_dir: PathBuf::from("/run/myelin-time"),
            sntp_poll: Duration::from_secs(64),
            sntp_retry: Duration::from_secs(4),
        }
    }
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The key (`save_interval`, `servers[1]`); `config` for the file as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl TimeConfig {
    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<TimeConfig, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("config", e.to_string().trim().to_owned()))?;
        let cfg: TimeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "config".into() } else { path };
            ConfigError::new(field, e.into_inner().message().trim().to_owned())
        })?;
        for (i, s) in cfg.servers.iter().enumerate() {
            check_server(s).map_err(|m| ConfigError::new(format!("servers[{i}]"), m))?;
        }
        if cfg.ntpd.is_empty() || cfg.ntpd[0].is_empty() {
            return Err(ConfigError::new("ntpd", "needs at least the program"));
        }
        for (field, d) in [
            ("save_interval", cfg.save_interval),
            ("sntp_poll", cfg.sntp_poll),
            ("sntp_retry", cfg.sntp_retry),
        ] {
            if d < Duration::from_secs(1) {
                return Err(ConfigError::new(field, "must be at least 1s"));
            }
        }
        Ok(cfg)
    }

    /// Reads and parses a file; a missing file is the defaults (the image need not ship one).
    pub fn load(path: &std::path::Path) -> Result<TimeConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => TimeConfig::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TimeConfig::default()),
            Err(e) => Err(ConfigError::new(
                "config",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }
}

/// Checks a `host[:port]` server name: what ntpd's `-p` and the built-in client accept.
pub fn check_server(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty server name".into());
    }
    if s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not a host name or address"));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.contains(':') {
            if host.is_empty() {
                return Err(format!("{s:?} has no host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(format!("{s:?}: port {port:?} is not 1-65535")),
            }
        }
    }
    Ok(())
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration ({e})")))
}

fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_pool_and_the_time_file_init_reads() {
        let c = TimeConfig::parse("").expect("empty file");
        assert_eq!(c, TimeConfig::default());
        assert_eq!(c.servers[0], "0.pool.ntp.org");
        assert_eq!(c.time_file, Some(PathBuf::from("/data/myelin/time")));
    }

    #[test]
    fn values_are_read() {
        let c = TimeConfig::parse(
            "servers = [\"10.0.2.2:11123\"]\nclient = \"sntp\"\nsave_interval = \"5m\"\nrtc = \"\"\n",
        )
        .expect("valid");
        assert_eq!(c.servers, ["10.0.2.2:11123"]);
        assert_eq!(c.client, ClientKind::Sntp);
        assert_eq!(c.save_interval, Duration::from_secs(300));
        assert_eq!(c.rtc, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = TimeConfig::parse("save_interval = \"soon\"").unwrap_err();
        assert_eq!(e.field, "save_interval");
        let e = TimeConfig::parse("servers = [\"a\", \"b:99999\"]").unwrap_err();
        assert_eq!(e.field, "servers[1]");
        assert!(e.message.contains("99999"), "{e}");
        let e = TimeConfig::parse("server = []").unwrap_err();
        assert_eq!(e.field, "server", "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = TimeConfig::parse("client = \"chrony\"").unwrap_err();
        assert_eq!(e.field, "client");
        let e = TimeConfig::parse("sntp_retry = \"10ms\"").unwrap_err();
        assert_eq!(e.field, "sntp_retry");
        let e = TimeConfig::parse("servers = [\"-q\"]").unwrap_err();
        assert_eq!(e.field, "servers[0]");
    }

    #[test]
    fn servers_with_ports_and_ipv6() {
        assert!(check_server("pool.ntp.org").is_ok());
        assert!(check_server("10.0.2.2:11123").is_ok());
        assert!(check_server("fe80::1").is_ok());
        assert!(check_server(":123").is_err());
        assert!(check_server("a b").is_err());
    }
}
