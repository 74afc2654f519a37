//! A redundant U-Boot environment image in a test's directory, with the `fw_env.config` that
//! describes it: what myelin-kv serves and what clients' writes are read back from.

use std::path::{Path, PathBuf};

use myelin_ubootenv::{EnvConfig, Layout, Vars};

/// Size of each of the two copies.
const COPY_SIZE: usize = 0x2000;

/// Writes `dir/env.img` holding `vars` (copy 1 valid, copy 2 erased) and `dir/fw_env.config`;
/// returns the config's path and the parsed config, locking with `dir/env.lock`.
pub fn redundant(dir: &Path, vars: &[(&str, &str)]) -> (PathBuf, EnvConfig) {
    let image = dir.join("env.img");
    let vars: Vars = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut bytes = myelin_ubootenv::format::encode(&vars, COPY_SIZE, Layout::Redundant, 1)
        .expect("cannot encode the test environment");
    bytes.extend(vec![0xFF; COPY_SIZE]);
    std::fs::write(&image, bytes).expect("cannot write env.img");
    let config = dir.join("fw_env.config");
    let img = image.display();
    std::fs::write(
        &config,
        format!("{img} 0x0 {COPY_SIZE:#x}\n{img} {COPY_SIZE:#x} {COPY_SIZE:#x}\n"),
    )
    .expect("cannot write fw_env.config");
    let env = EnvConfig::from_file(&config)
        .expect("cannot read fw_env.config back")
        .with_lock_path(dir.join("env.lock"));
    (config, env)
}
