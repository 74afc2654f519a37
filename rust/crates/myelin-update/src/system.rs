//! The daemon's side effects outside the firmware: the U-Boot environment, PID 1 (readiness and
//! reboot) and the kernel's boot id. Each is a small trait; the real implementations here are
//! the ones the daemon uses on a device.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use myelin_init::control::{Body, Client, Op};
use myelin_ubootenv::{EnvConfig, Vars};

use crate::stability::Readiness;

/// Reads the U-Boot environment.
pub trait EnvSource: Send + Sync {
    /// The current variables.
    fn read(&self) -> Result<Vars, EnvReadError>;
}

/// Why the U-Boot environment could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnvReadError {
    /// `fw_env.config` could not be loaded (every later read fails the same way).
    #[error("the environment configuration {path}: {source}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What was wrong with it (shared: a broken configuration is reported on every read).
        #[source]
        source: Arc<myelin_ubootenv::ConfigError>,
    },
    /// The environment described by the configuration could not be read.
    #[error("reading the environment ({path}): {source}")]
    Read {
        /// The configuration file that describes it.
        path: PathBuf,
        /// The storage error.
        #[source]
        source: Arc<myelin_ubootenv::EnvError>,
    },
}

/// The environment `fw_env.config` describes, read afresh every time.
pub struct UbootEnv {
    config: EnvConfig,
    path: PathBuf,
}

impl UbootEnv {
    /// Loads the configuration once.
    pub fn open(path: &Path) -> Result<UbootEnv, EnvReadError> {
        let config = EnvConfig::from_file(path).map_err(|e| EnvReadError::Config {
            path: path.to_owned(),
            source: Arc::new(e),
        })?;
        Ok(UbootEnv {
            config,
            path: path.to_owned(),
        })
    }
}

impl EnvSource for UbootEnv {
    fn read(&self) -> Result<Vars, EnvReadError> {
        myelin_ubootenv::read_vars(&self.config).map_err(|e| EnvReadError::Read {
            path: self.path.clone(),
            source: Arc::new(e),
        })
    }
}

/// PID 1, as far as the updater needs it.
pub trait Init: Send + Sync {
    /// How ready the services flagged critical are (and for how long, with no restart).
    fn readiness(&self) -> io::Result<Readiness>;
    /// A clean reboot. PID 1 passes the first line of `/run/reboot-param` (written by the
    /// firmware task, e.g. RPi's `0 tryboot`) to reboot(2).
    fn reboot(&self) -> io::Result<()>;
    /// An immediate reboot: no service stopped, nothing unmounted (after a factory reset, a
    /// clean unmount could write the erased filesystem blocks back).
    fn reboot_now(&self) -> io::Result<()>;
}

/// myelin-init's control socket.
pub struct InitSocket {
    path: PathBuf,
}

/// How long PID 1 may take to answer one request.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

impl InitSocket {
    /// The socket at `path` (`/run/myelin/init.sock`).
    pub fn new(path: &Path) -> InitSocket {
        InitSocket {
            path: path.to_owned(),
        }
    }

    fn expect_ok(&self, op: Op, what: &str) -> io::Result<()> {
        match self.call(op)? {
            Body::Ok { .. } => Ok(()),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to {what}: {other:?}"),
            )),
        }
    }

    fn call(&self, op: Op) -> io::Result<Body> {
        let mut client = Client::connect(&self.path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to {}: {e}", self.path.display()),
            )
        })?;
        client.set_timeout(Some(INIT_TIMEOUT))?;
        client.call(op)
    }
}

impl Init for InitSocket {
    fn readiness(&self) -> io::Result<Readiness> {
        match self.call(Op::Readiness)? {
            Body::Readiness(report) => Ok(Readiness {
                critical_ready: report.critical_ready,
                ready_for: report.critical_ready_for_ms.map(Duration::from_millis),
                restarts_total: report.restarts_total,
            }),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to readiness: {other:?}"),
            )),
        }
    }

    fn reboot(&self) -> io::Result<()> {
        self.expect_ok(Op::Reboot { arg: None }, "reboot")
    }

    fn reboot_now(&self) -> io::Result<()> {
        self.expect_ok(Op::RebootNow, "reboot_now")
    }
}

/// Where the kernel tells this boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Reads a boot id file (one line).
pub fn read_boot_id(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let id = text.trim();
    if id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(id.to_owned())
}
