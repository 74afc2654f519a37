//! `[log]`: service output capture.

use serde::Deserialize;

use super::values::{de_kmsg_burst, de_kmsg_rate, de_line_max, de_ring_bytes};
use crate::level::Level;

/// `[log]`: service output capture.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Byte budget of the in-memory ring.
    #[serde(deserialize_with = "de_ring_bytes")]
    pub ring_bytes: usize,
    /// Longest line kept; longer lines are cut.
    #[serde(deserialize_with = "de_line_max")]
    pub line_max: usize,
    /// Kernel log device; empty: none.
    pub kmsg: String,
    /// Lines per second copied to kmsg in the long run.
    #[serde(deserialize_with = "de_kmsg_rate")]
    pub kmsg_rate: u32,
    /// Lines copied to kmsg in a burst.
    #[serde(deserialize_with = "de_kmsg_burst")]
    pub kmsg_burst: u32,
    /// PID 1's own messages at or above this priority also go to the console (its stderr).
    pub console_level: Level,
    /// pstore's user-space log (`/dev/pmsg0`): every kept line is copied there, unlimited,
    /// so the last lines before a reset survive it whatever the console shows; empty: none.
    pub pmsg: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            ring_bytes: 256 * 1024,
            line_max: 1024,
            kmsg: "/dev/kmsg".into(),
            kmsg_rate: 20,
            kmsg_burst: 200,
            console_level: Level::Notice,
            pmsg: "/dev/pmsg0".into(),
        }
    }
}
