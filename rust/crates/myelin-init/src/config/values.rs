//! How values are written in the configuration: durations with a unit (`"250ms"`, `"5s"`,
//! `"1.5s"`, `"2m"`, `"1h"`), absolute paths, mount options, and numbers with bounds. Each
//! deserializer's error names what was expected; toml locates it at the value.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::clock::parse_duration;

/// The largest file PID 1 reads as configuration (each of init.toml and its drop-ins).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Bounds of `[log] ring_bytes`: a ring too small holds nothing useful, one too large can take
/// a small device's memory from its services.
pub const RING_BYTES: (usize, usize) = (4096, 64 * 1024 * 1024);
/// Bounds of `[log] line_max`.
pub const LINE_MAX: (usize, usize) = (16, 65536);
/// Most lines per second `[log] kmsg_rate` may let through.
pub const KMSG_RATE_MAX: u32 = 10_000;
/// Bounds of `[log] kmsg_burst`.
pub const KMSG_BURST: (u32, u32) = (1, 100_000);
/// Most restarts `intensity` may allow.
pub const INTENSITY_MAX: u32 = 1_000_000;
/// Bounds of `[init] control_idle_timeout`.
pub const IDLE_TIMEOUT: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).ok_or_else(|| {
        de::Error::custom(format!(
            "invalid duration \"{s}\": expected a number and a unit, like \"250ms\", \"5s\", \"2m\""
        ))
    })
}

pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "infinity" {
        return Ok(None);
    }
    parse_duration(&s).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "invalid duration \"{s}\": expected a number and a unit, like \"250ms\", \"5s\", or \"infinity\""
        ))
    })
}

pub(crate) fn de_abs_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') {
        return Err(de::Error::custom(format!("`{s}` must be an absolute path")));
    }
    Ok(s)
}

pub(crate) fn de_abs_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(p) = v.iter().find(|p| !p.starts_with('/')) {
        return Err(de::Error::custom(format!("`{p}` must be an absolute path")));
    }
    Ok(v)
}

pub(crate) fn de_mount_options<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    crate::mount_options::parse_mount_options(&s).map_err(de::Error::custom)?;
    Ok(s)
}

pub(crate) fn de_hostname<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    crate::hostname::check_pattern(&s).map_err(de::Error::custom)?;
    Ok(Some(s))
}

/// A number outside its bounds, with the field it was given for.
#[derive(Debug, thiserror::Error)]
#[error("{field} must be between {lo} and {hi}, not {value}")]
pub(crate) struct OutOfBounds {
    field: &'static str,
    lo: String,
    hi: String,
    value: String,
}

/// A number within `[lo, hi]`.
fn bounded<T>(field: &'static str, v: T, lo: T, hi: T) -> Result<T, OutOfBounds>
where
    T: PartialOrd + std::fmt::Display,
{
    if v < lo || v > hi {
        return Err(OutOfBounds {
            field,
            lo: lo.to_string(),
            hi: hi.to_string(),
            value: v.to_string(),
        });
    }
    Ok(v)
}

pub(crate) fn de_ring_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    bounded("ring_bytes", n, RING_BYTES.0, RING_BYTES.1).map_err(de::Error::custom)
}

pub(crate) fn de_line_max<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    bounded("line_max", n, LINE_MAX.0, LINE_MAX.1).map_err(de::Error::custom)
}

pub(crate) fn de_kmsg_rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    bounded("kmsg_rate", n, 0, KMSG_RATE_MAX).map_err(de::Error::custom)
}

pub(crate) fn de_kmsg_burst<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    bounded("kmsg_burst", n, KMSG_BURST.0, KMSG_BURST.1).map_err(de::Error::custom)
}

pub(crate) fn de_intensity<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    bounded("intensity", n, 0, INTENSITY_MAX).map_err(de::Error::custom)
}

pub(crate) fn de_idle_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = de_duration(d)?;
    if t < IDLE_TIMEOUT.0 || t > IDLE_TIMEOUT.1 {
        return Err(de::Error::custom(
            "control_idle_timeout must be between 100ms and 1h",
        ));
    }
    Ok(t)
}

pub(crate) fn de_wd_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = de_duration(d)?;
    if t < Duration::from_secs(1) || t > Duration::from_secs(3600) {
        return Err(de::Error::custom(
            "the watchdog timeout must be between 1s and 1h",
        ));
    }
    Ok(Some(t))
}
