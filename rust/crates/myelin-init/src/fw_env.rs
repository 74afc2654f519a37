//! The U-Boot environment as boot reads it (the serial number, the data partition): a trait so
//! tests need no block device.

use std::path::PathBuf;

use myelin_ubootenv::Vars;

/// Where the U-Boot environment comes from (a trait so tests need no block device).
pub trait EnvSource {
    /// The environment's variables, if it can be read.
    fn vars(&mut self) -> Option<Vars>;
}

/// The environment described by a `fw_env.config` file, read with `myelin_ubootenv`.
pub struct FwEnv {
    /// Path of `fw_env.config`.
    pub config: PathBuf,
}

impl EnvSource for FwEnv {
    fn vars(&mut self) -> Option<Vars> {
        let cfg = myelin_ubootenv::EnvConfig::from_file(&self.config).ok()?;
        myelin_ubootenv::read_vars(&cfg).ok()
    }
}

/// No environment (tests, boards without one).
pub struct NoEnv;

impl EnvSource for NoEnv {
    fn vars(&mut self) -> Option<Vars> {
        None
    }
}
