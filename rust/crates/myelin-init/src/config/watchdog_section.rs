//! `[watchdog]`: the hardware watchdog.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{de_duration, de_wd_timeout};

/// `[watchdog]`: the hardware watchdog.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Device node.
    pub device: PathBuf,
    /// Timeout to program; absent: keep the driver's.
    #[serde(deserialize_with = "de_wd_timeout")]
    pub timeout: Option<Duration>,
    /// Unconditional petting after start.
    #[serde(deserialize_with = "de_duration")]
    pub grace: Duration,
    /// Length of one snooze.
    #[serde(deserialize_with = "de_duration")]
    pub snooze: Duration,
    /// Tests only: `device` is a plain file that records pets; no hardware is touched.
    pub fake: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            device: PathBuf::from("/dev/watchdog0"),
            timeout: None,
            grace: Duration::from_secs(60),
            snooze: Duration::from_secs(15 * 60),
            fake: false,
        }
    }
}
