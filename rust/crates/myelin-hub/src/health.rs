//! Health reports: the device's vital signs NervesHub shows and alerts on.
//!
//! NervesHubLink 2.x sends them through its extensions mechanism, and so does Myelin: when the
//! server pushes `extensions:get` on `device`, the device joins the `extensions` topic with the
//! extensions it has (`{"health": "0.0.1"}`); the join's response lists those the server wants
//! (`["health"]`, later `attach`/`detach` pushes `{"extensions": [...] | "all"}` change that);
//! the device answers `health:attached` and from then on pushes `health:report`
//! `{"value": {"timestamp", "metadata", "alarms", "metrics", "checks", "connectivity"}}` when the
//! server asks (`health:check`) and every `health.interval` of hub.toml.
//!
//! The metrics use NervesHubLink's default metric sets' keys (numbers only, as the server stores
//! them): `uptime_seconds`; `load_1min`, `load_5min`, `load_15min`; `mem_size_mb`, `mem_used_mb`,
//! `mem_used_percent` (used = total - available); `disk_total_kb`, `disk_available_kb`,
//! `disk_used_percentage` of the data partition; `cpu_temp` (°C) where
//! `/sys/class/thermal/thermal_zone0/temp` exists. A value that cannot be read is left out.
//! Collection reads through [`Source`], so tests feed it fixture text.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The extensions topic.
pub const EXTENSIONS_TOPIC: &str = "extensions";
/// The health extension's name.
pub const EXTENSION: &str = "health";
/// The health extension revision NervesHubLink 2.x announces.
pub const VERSION: &str = "0.0.1";

/// Where health figures come from.
pub trait Source {
    /// The text of a kernel file (`/proc/...`, `/sys/...`).
    fn read(&self, path: &str) -> io::Result<String>;
    /// Total and available bytes of the file system holding `path`.
    fn disk(&self, path: &Path) -> io::Result<(u64, u64)>;
    /// Now, in seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The running system, with `/proc` and `/sys` under `root` (`/` on a device).
#[derive(Debug, Clone)]
pub struct System {
    /// Prefix of the kernel file paths.
    pub root: PathBuf,
}

impl Source for System {
    fn read(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/')))
    }
    // The block counts are 32-bit on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    fn disk(&self, path: &Path) -> io::Result<(u64, u64)> {
        let s = nix::sys::statvfs::statvfs(path)?;
        let unit = u64::from(s.fragment_size());
        Ok((
            u64::from(s.blocks()).saturating_mul(unit),
            u64::from(s.blocks_available()).saturating_mul(unit),
        ))
    }
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The metrics, from `source`, with the disk figures of the file system holding `disk`.
pub fn metrics(source: &impl Source, disk: &Path) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(up) = source
        .read("/proc/uptime")
        .ok()
        .and_then(|t| first_number(&t))
    {
        m.insert("uptime_seconds".into(), json!(up.floor() as u64));
    }
    if let Ok(text) = source.read("/proc/loadavg") {
        let loads: Vec<f64> = text
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        if let [one, five, fifteen] = loads[..] {
            m.insert("load_1min".into(), json!(one));
            m.insert("load_5min".into(), json!(five));
            m.insert("load_15min".into(), json!(fifteen));
        }
    }
    if let Ok(text) = source.read("/proc/meminfo") {
        // MemAvailable (Linux >= 3.14) counts reclaimable cache as free, as `free` does.
        if let (Some(total), Some(avail)) = (
            meminfo_kb(&text, "MemTotal"),
            meminfo_kb(&text, "MemAvailable"),
        ) && total > 0
        {
            let used = total.saturating_sub(avail);
            m.insert("mem_size_mb".into(), json!((total as f64 / 1000.0).round()));
            m.insert("mem_used_mb".into(), json!((used as f64 / 1000.0).round()));
            m.insert(
                "mem_used_percent".into(),
                json!((used as f64 * 100.0 / total as f64).round()),
            );
        }
    }
    match source.disk(disk) {
        Ok((total, avail)) if total > 0 => {
            m.insert("disk_total_kb".into(), json!(total / 1024));
            m.insert("disk_available_kb".into(), json!(avail / 1024));
            let used = total.saturating_sub(avail);
            m.insert(
                "disk_used_percentage".into(),
                json!((used as f64 * 100.0 / total as f64).round()),
            );
        }
        Ok(_) => {}
        Err(e) => log::debug!("health: {}: {e}", disk.display()),
    }
    if let Some(milli) = source
        .read("/sys/class/thermal/thermal_zone0/temp")
        .ok()
        .and_then(|t| first_number(&t))
    {
        m.insert("cpu_temp".into(), json!(round2(milli / 1000.0)));
    }
    m
}

/// `health:report`'s payload: the report NervesHubLink's `DeviceStatus` encodes, in `value`.
pub fn report(source: &impl Source, disk: &Path) -> Value {
    json!({
        "value": {
            "timestamp": iso8601(source.now()),
            "metadata": {},
            "alarms": {},
            "metrics": metrics(source, disk),
            "checks": {},
            "connectivity": {},
        }
    })
}

/// Whether an extensions list (a join response, or `attach`/`detach`'s `extensions`) names
/// the health extension: a list of names, one name, or `"all"`.
pub fn names_health(extensions: &Value) -> bool {
    match extensions {
        Value::String(s) => s == "all" || s == EXTENSION,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(EXTENSION)),
        _ => false,
    }
}

/// The date (year, month 1-12, day) of a day count since 1970-01-01 (proleptic Gregorian,
/// Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(unix: u64) -> String {
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fixture {
        files: HashMap<&'static str, &'static str>,
        disk: Option<(u64, u64)>,
    }

    impl Source for Fixture {
        fn read(&self, path: &str) -> io::Result<String> {
            self.files
                .get(path)
                .map(|s| (*s).to_owned())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn disk(&self, _: &Path) -> io::Result<(u64, u64)> {
            self.disk
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn now(&self) -> u64 {
            1_796_655_435
        }
    }

    const MEMINFO: &str = "MemTotal:        2000000 kB\nMemFree:          100000 kB\n\
                           MemAvailable:     500000 kB\nBuffers:           1000 kB\n";

    #[test]
    fn a_full_report_from_fixture_files() {
        let f = Fixture {
            files: HashMap::from([
                ("/proc/uptime", "12345.67 40000.00\n"),
                ("/proc/loadavg", "0.52 0.34 0.10 2/345 6789\n"),
                ("/proc/meminfo", MEMINFO),
                ("/sys/class/thermal/thermal_zone0/temp", "48312\n"),
            ]),
            disk: Some((1024 * 1024 * 1000, 1024 * 1024 * 250)),
        };
        let r = report(&f, Path::new("/data"));
        let v = &r["value"];
        assert_eq!(v["timestamp"], "2026-12-07T14:57:15Z");
        assert_eq!(v["alarms"], json!({}));
        assert_eq!(
            v["metrics"],
            json!({
                "uptime_seconds": 12345,
                "load_1min": 0.52, "load_5min": 0.34, "load_15min": 0.1,
                "mem_size_mb": 2000.0, "mem_used_mb": 1500.0, "mem_used_percent": 75.0,
                "disk_total_kb": 1_024_000, "disk_available_kb": 256_000,
                "disk_used_percentage": 75.0,
                "cpu_temp": 48.31,
            })
        );
    }

    #[test]
    fn missing_or_garbled_sources_are_left_out() {
        let f = Fixture {
            files: HashMap::from([
                ("/proc/uptime", "soon"),
                ("/proc/loadavg", "0.5 0.4\n"),
                ("/proc/meminfo", "MemTotal: 1000 kB\n"),
            ]),
            disk: None,
        };
        assert_eq!(metrics(&f, Path::new("/data")), Map::new());
    }

    #[test]
    fn extension_lists() {
        assert!(names_health(&json!(["geo", "health"])));
        assert!(names_health(&json!("all")));
        assert!(names_health(&json!("health")));
        assert!(!names_health(&json!(["geo"])));
        assert!(!names_health(&json!({})));
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(784_111_777), "1994-11-06T08:49:37Z");
    }
}
