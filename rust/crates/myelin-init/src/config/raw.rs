//! The files as serde reads them, before the tree is built: the main file (every section) and
//! a drop-in (services and supervisors only).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::boot_section::BootConfig;
use super::init_section::InitConfig;
use super::log_section::LogConfig;
use super::tree::{IdOrName, LogLevel, RestartType, Shutdown, StartMode, Strategy};
use super::values::{de_abs_paths, de_duration, de_intensity, de_opt_duration};
use super::watchdog_section::WatchdogConfig;

/// `init.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub init: InitConfig,
    #[serde(default)]
    pub boot: BootConfig,
    #[serde(default)]
    pub watchdog: Option<WatchdogConfig>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub root: RawRoot,
    #[serde(default)]
    pub supervisor: Vec<Spanned<RawSupervisor>>,
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
}

/// A drop-in, `init.d/*.toml`: it adds to the tree and changes nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDropIn {
    #[serde(default)]
    pub supervisor: Vec<Spanned<RawSupervisor>>,
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
}

/// `[root]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoot {
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "default_intensity", deserialize_with = "de_intensity")]
    pub intensity: u32,
    #[serde(default = "default_period", deserialize_with = "de_duration")]
    pub period: Duration,
}

impl Default for RawRoot {
    fn default() -> Self {
        RawRoot {
            strategy: Strategy::OneForOne,
            intensity: default_intensity(),
            period: default_period(),
        }
    }
}

fn default_intensity() -> u32 {
    3
}
fn default_period() -> Duration {
    Duration::from_secs(5)
}

/// `[[supervisor]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSupervisor {
    pub name: Spanned<String>,
    #[serde(default)]
    pub supervisor: Option<Spanned<String>>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "default_intensity", deserialize_with = "de_intensity")]
    pub intensity: u32,
    #[serde(default = "default_period", deserialize_with = "de_duration")]
    pub period: Duration,
    #[serde(default)]
    pub start: StartMode,
    #[serde(default)]
    pub restart: RestartType,
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// `[[service]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Spanned<String>,
    #[serde(default)]
    pub supervisor: Option<Spanned<String>>,
    pub argv: Spanned<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub user: Option<Spanned<IdOrName>>,
    #[serde(default)]
    pub group: Option<Spanned<IdOrName>>,
    #[serde(default)]
    pub restart: RestartType,
    #[serde(default)]
    pub shutdown: Shutdown,
    #[serde(default)]
    pub notify: bool,
    #[serde(default)]
    pub ready_path: Option<Spanned<String>>,
    #[serde(
        default = "default_ready_timeout",
        deserialize_with = "de_opt_duration"
    )]
    pub ready_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub watchdog: Option<Duration>,
    #[serde(default)]
    pub critical: bool,
    #[serde(default = "default_restart_delay", deserialize_with = "de_duration")]
    pub restart_delay: Duration,
    #[serde(
        default = "default_restart_delay_max",
        deserialize_with = "de_duration"
    )]
    pub restart_delay_max: Duration,
    #[serde(default)]
    pub console: bool,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, deserialize_with = "de_abs_paths")]
    pub create_dirs: Vec<String>,
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    #[serde(default)]
    pub log_level: Option<LogLevel>,
}

fn default_ready_timeout() -> Option<Duration> {
    Some(Duration::from_secs(60))
}
fn default_restart_delay() -> Duration {
    Duration::from_millis(100)
}
fn default_restart_delay_max() -> Duration {
    Duration::from_secs(5)
}
