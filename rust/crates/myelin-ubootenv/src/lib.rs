//! The U-Boot environment: its on-disk format, `fw_env.config`, and safe reads and writes on
//! block devices and image files.
//!
//! Shared by every Myelin program that touches the environment: myelin-kv (the key/value store),
//! myelin-fw (`uboot_setenv` and friends in fwup tasks), myelin-init (serial number) and
//! myelin-update (slot metadata). It is synchronous and small on purpose: PID 1 links it.
//!
//! Reading the environment a configuration describes:
//!
//! ```no_run
//! use myelin_ubootenv::{EnvConfig, read_vars};
//!
//! let config = EnvConfig::from_file(myelin_ubootenv::DEFAULT_CONFIG_PATH)?;
//! let vars = read_vars(&config)?;
//! let serial = vars.get("nerves_serial_number");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod format;
pub mod lock;
pub mod migrate;
pub mod storage;
pub mod text;

pub use config::{
    ConfigError, ConfigProblem, DEFAULT_CONFIG_PATH, DEFAULT_LOCK_PATH, EnvConfig, Location,
};
pub use format::{Active, DecodeError, EncodeError, ImageOptions, Layout, NameError, Vars};
pub use lock::{Access, DEFAULT_LOCK_WAIT, EnvLock, LockError};
pub use storage::{
    CopyStatus, Env, EnvError, Fingerprint, Modified, Plan, Recovery, Snapshot, plan_write,
    read_vars,
};
pub use text::{TextEntry, TextError};
