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
    /// Where a device upgraded from Nerves had its single-copy environment. Read when
    /// `config`'s copies are not valid: on the first boot after a migration init runs before
    /// myelin-kv has converted it (myelin_ubootenv::migrate), and the serial number is there.
    pub nerves_config: Option<PathBuf>,
}

impl EnvSource for FwEnv {
    fn vars(&mut self) -> Option<Vars> {
        let read = |path: &PathBuf| {
            let cfg = myelin_ubootenv::EnvConfig::from_file(path).ok()?;
            myelin_ubootenv::read_vars(&cfg).ok()
        };
        read(&self.config).or_else(|| self.nerves_config.as_ref().and_then(read))
    }
}

/// No environment (tests, boards without one).
pub struct NoEnv;

impl EnvSource for NoEnv {
    fn vars(&mut self) -> Option<Vars> {
        None
    }
}
