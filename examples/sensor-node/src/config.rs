//! The app's configuration: a small TOML file, then `SENSOR_NODE_*` environment variables over
//! it (a drop-in's `env` can change one setting without another file).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// Where the configuration file is unless `--config` or `SENSOR_NODE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/sensor-node.toml";

/// Everything the app can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// I2C bus: a number, `i2c-N`, `/dev/i2c-N` or an adapter's name.
    pub bus: String,
    /// 7-bit I2C address of the TMP102 (0x48..=0x4b).
    pub address: u8,
    /// GPIO line of the status LED: a line name or `CHIP:OFFSET`.
    pub led: String,
    /// MQTT broker host.
    pub broker: String,
    /// MQTT broker port.
    pub port: u16,
    /// MQTT topic of the readings.
    pub topic: String,
    /// MQTT client id.
    pub client_id: String,
    /// Time between two readings.
    pub interval: Duration,
    /// Readings kept while the broker is away; beyond it the oldest are dropped.
    pub buffer: usize,
    /// Readings the page shows.
    pub history: usize,
    /// Where the local page listens.
    pub http: String,
    /// Readings below this are rejected.
    pub min_celsius: f32,
    /// Readings above this are rejected.
    pub max_celsius: f32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bus: "1".into(),
            address: 0x48,
            led: "status-led".into(),
            broker: "localhost".into(),
            port: 1883,
            topic: "sensor-node/temperature".into(),
            client_id: "sensor-node".into(),
            interval: Duration::from_secs(5),
            buffer: 1000,
            history: 60,
            http: "0.0.0.0:8080".into(),
            // A TMP102's specified range.
            min_celsius: -40.0,
            max_celsius: 125.0,
        }
    }
}

/// A setting that cannot be used, named.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What the TOML parser said (it names the key and line).
        message: String,
    },
    /// One setting's value is wrong.
    #[error("{field}: {message}")]
    Field {
        /// The key (`interval`) or variable (`SENSOR_NODE_INTERVAL`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The file's keys: all optional, unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bus: Option<toml::Value>,
    address: Option<toml::Value>,
    led: Option<String>,
    broker: Option<String>,
    port: Option<u16>,
    topic: Option<String>,
    client_id: Option<String>,
    interval: Option<String>,
    buffer: Option<usize>,
    history: Option<usize>,
    http: Option<String>,
    min_celsius: Option<f32>,
    max_celsius: Option<f32>,
}

fn field(field: &str, message: impl Into<String>) -> Error {
    Error::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// `0x48`, `72` or a TOML integer.
fn parse_address(name: &str, text: &str) -> Result<u8, Error> {
    let t = text.trim();
    let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => t.parse(),
    }
    .map_err(|_| field(name, format!("{text:?} is not an I2C address")))?;
    if !(0x48..=0x4b).contains(&n) {
        return Err(field(
            name,
            format!("0x{n:02x}: a TMP102 answers at 0x48..0x4b"),
        ));
    }
    Ok(n)
}

fn parse_interval(name: &str, text: &str) -> Result<Duration, Error> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| field(name, format!("{text:?}: {e}")))?;
    if d < Duration::from_millis(100) {
        return Err(field(name, format!("{text:?}: at least 100ms")));
    }
    Ok(d)
}

fn parse_num<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, Error> {
    text.trim()
        .parse()
        .map_err(|_| field(name, format!("{text:?} is not a number")))
}

/// TOML scalar as text (the bus may be written `1` or `"i2c-1"`).
fn scalar(name: &str, v: &toml::Value) -> Result<String, Error> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        other => Err(field(
            name,
            format!("expected a string or number, not {other}"),
        )),
    }
}

impl Config {
    /// Parses a file's text (`path` only names it in errors), then applies `env`
    /// (`SENSOR_NODE_BUS`, `_ADDRESS`, `_LED`, `_BROKER`, `_PORT`, `_TOPIC`, `_CLIENT_ID`,
    /// `_INTERVAL`, `_BUFFER`, `_HISTORY`, `_HTTP`).
    pub fn parse(path: &str, text: &str, env: &HashMap<String, String>) -> Result<Config, Error> {
        let file: File = toml::from_str(text).map_err(|e| Error::File {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut c = Config::default();
        if let Some(v) = &file.bus {
            c.bus = scalar("bus", v)?;
        }
        if let Some(v) = &file.address {
            c.address = parse_address("address", &scalar("address", v)?)?;
        }
        if let Some(v) = file.interval {
            c.interval = parse_interval("interval", &v)?;
        }
        c.led = file.led.unwrap_or(c.led);
        c.broker = file.broker.unwrap_or(c.broker);
        c.port = file.port.unwrap_or(c.port);
        c.topic = file.topic.unwrap_or(c.topic);
        c.client_id = file.client_id.unwrap_or(c.client_id);
        c.buffer = file.buffer.unwrap_or(c.buffer);
        c.history = file.history.unwrap_or(c.history);
        c.http = file.http.unwrap_or(c.http);
        c.min_celsius = file.min_celsius.unwrap_or(c.min_celsius);
        c.max_celsius = file.max_celsius.unwrap_or(c.max_celsius);

        for (key, value) in env {
            let Some(name) = key.strip_prefix("SENSOR_NODE_") else {
                continue;
            };
            match name {
                "BUS" => c.bus = value.clone(),
                "ADDRESS" => c.address = parse_address(key, value)?,
                "LED" => c.led = value.clone(),
                "BROKER" => c.broker = value.clone(),
                "PORT" => c.port = parse_num(key, value)?,
                "TOPIC" => c.topic = value.clone(),
                "CLIENT_ID" => c.client_id = value.clone(),
                "INTERVAL" => c.interval = parse_interval(key, value)?,
                "BUFFER" => c.buffer = parse_num(key, value)?,
                "HISTORY" => c.history = parse_num(key, value)?,
                "HTTP" => c.http = value.clone(),
                "CONFIG" => {}
                _ => return Err(field(key, "unknown setting")),
            }
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), Error> {
        if self.buffer == 0 {
            return Err(field("buffer", "must keep at least one reading"));
        }
        if self.history == 0 {
            return Err(field("history", "must show at least one reading"));
        }
        if self.broker.is_empty() {
            return Err(field("broker", "empty"));
        }
        if self.topic.is_empty() || self.topic.contains(['+', '#']) {
            return Err(field(
                "topic",
                format!("{:?} is no topic to publish to", self.topic),
            ));
        }
        if self.min_celsius.partial_cmp(&self.max_celsius) != Some(std::cmp::Ordering::Less) {
            return Err(field(
                "min_celsius",
                format!(
                    "{} is not below max_celsius {}",
                    self.min_celsius, self.max_celsius
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_environment() {
        let text = r#"
            bus = "SMBus stub driver"
            address = "0x49"
            led = "gpiochip0:2"
            broker = "10.0.2.2"
            port = 18830
            interval = "2s"
            buffer = 50
        "#;
        let c = Config::parse(
            "t.toml",
            text,
            &env(&[("SENSOR_NODE_PORT", "1999"), ("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(c.bus, "SMBus stub driver");
        assert_eq!(c.address, 0x49);
        assert_eq!(c.led, "gpiochip0:2");
        assert_eq!(c.broker, "10.0.2.2");
        assert_eq!(c.port, 1999);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.buffer, 50);
        assert_eq!(c.topic, Config::default().topic);
    }

    #[test]
    fn the_shipped_settings_parse() {
        let text = include_str!("../rootfs_overlay/etc/sensor-node.toml");
        let c = Config::parse("sensor-node.toml", text, &env(&[])).unwrap();
        assert_eq!((c.bus.as_str(), c.address), ("1", 0x48));
        assert_eq!(c.interval, Duration::from_secs(5));
    }

    #[test]
    fn bus_as_number() {
        let c = Config::parse("t.toml", "bus = 3\naddress = 72", &env(&[])).unwrap();
        assert_eq!((c.bus.as_str(), c.address), ("3", 0x48));
    }

    #[test]
    fn errors_name_the_setting() {
        let e = |text: &str, vars: &[(&str, &str)]| {
            Config::parse("t.toml", text, &env(vars))
                .unwrap_err()
                .to_string()
        };
        assert!(e("adress = 1", &[]).contains("adress"));
        assert!(e("address = \"0x20\"", &[]).starts_with("address: 0x20"));
        assert!(e("interval = \"soon\"", &[]).starts_with("interval: \"soon\""));
        assert!(e("interval = \"10ms\"", &[]).contains("at least 100ms"));
        assert!(e("", &[("SENSOR_NODE_PORT", "x")]).starts_with("SENSOR_NODE_PORT:"));
        assert!(e("", &[("SENSOR_NODE_PROT", "1")]).starts_with("SENSOR_NODE_PROT: unknown"));
        assert!(e("buffer = 0", &[]).starts_with("buffer:"));
        assert!(e("topic = \"a/#\"", &[]).starts_with("topic:"));
        assert!(e("min_celsius = 50.0\nmax_celsius = 10.0", &[]).starts_with("min_celsius:"));
        assert!(e("port = 70000", &[]).starts_with("t.toml:"));
    }
}
