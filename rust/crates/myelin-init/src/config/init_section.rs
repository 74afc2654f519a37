//! `[init]`: PID 1 itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{de_duration, de_idle_timeout};

/// What PID 1 does when the top supervisor gives up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FatalAction {
    /// Clean shutdown, then `reboot(2)` RESTART.
    #[default]
    Reboot,
    /// Clean shutdown, then POWER_OFF.
    Poweroff,
    /// Clean shutdown, then HALT.
    Halt,
    /// Stop every service and stay up (console shell if configured, control socket answers).
    Hang,
}

/// `[init]`: PID 1 itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitConfig {
    /// Action when the top supervisor gives up.
    pub fatal_action: FatalAction,
    /// Console shell for safe mode and `hang`.
    pub shell: Option<String>,
    /// Directory of the control socket and the sd_notify sockets.
    pub run_dir: PathBuf,
    /// Cap on stopping all services at shutdown.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// Wait between TERM and KILL to leftover processes.
    #[serde(deserialize_with = "de_duration")]
    pub kill_wait: Duration,
    /// File whose first line is the reboot argument.
    pub reboot_param: PathBuf,
    /// Unmount everything at shutdown.
    pub unmount: bool,
    /// How long the fatal message stays on the console before the fatal action (safe mode).
    #[serde(deserialize_with = "de_duration")]
    pub fatal_delay: Duration,
    /// Environment added to every service.
    pub env: BTreeMap<String, String>,
    /// Give every service its own cgroup (v2) when the kernel has cgroup2, so whatever it
    /// starts, even a daemon that left its session, is stopped with it.
    pub cgroups: bool,
    /// A control connection with nothing to do for this long is closed.
    #[serde(deserialize_with = "de_idle_timeout")]
    pub control_idle_timeout: Duration,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            fatal_action: FatalAction::Reboot,
            shell: None,
            run_dir: PathBuf::from("/run/myelin"),
            shutdown_timeout: Duration::from_secs(30),
            kill_wait: Duration::from_secs(1),
            reboot_param: PathBuf::from("/run/reboot-param"),
            unmount: true,
            fatal_delay: Duration::from_secs(3),
            env: BTreeMap::new(),
            cgroups: true,
            control_idle_timeout: Duration::from_secs(10),
        }
    }
}

impl InitConfig {
    /// Path of the control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("init.sock")
    }
    /// Directory of the per-service sd_notify sockets.
    pub fn notify_dir(&self) -> PathBuf {
        self.run_dir.join("notify")
    }
}
