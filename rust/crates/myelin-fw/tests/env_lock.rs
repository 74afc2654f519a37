//! One lock for every environment writer (issue 9, item 3): myelin-fw's `uboot_setenv` (the
//! path myelin-update's installs take), myelin-kv's store (myelin_ubootenv's read-modify-write)
//! and Debian's `fw_setenv` (libubootenv) write the same image file concurrently, round after
//! round, and no update is ever lost.
//!
//! The archive's task reads the environment in `on-init`, streams a resource, and sets its
//! variable in `on-finish`: the window an install has in real life, during which the other two
//! writers land. Before the lock (and the re-read under it), the install wrote back the
//! environment it had read at the start and dropped what the others wrote meanwhile.
#![allow(clippy::unwrap_used)]

mod common;

use common::{create_with, fw_env_config, scratch_dir};
use myelin_fw::Vars;
use myelin_ubootenv::{DEFAULT_LOCK_PATH, Env, EnvConfig, EnvError, Recovery};
use std::path::Path;
use std::process::Command;

const ROUNDS: usize = 400;

const CONF: &str = r#"
uboot-environment uboot-env {
    block-offset = 16
    block-count = 16
    block-offset-redund = 32
}
file-resource payload {
    host-path = "${PAYLOAD}"
}
task set {
    on-init {
        uboot_setenv(uboot-env, "fw_started", "${VALUE}")
    }
    on-resource payload { raw_write(64) }
    on-finish {
        uboot_setenv(uboot-env, "fw", "${VALUE}")
    }
}
"#;

/// libubootenv's tools always take /var/lock/fw_printenv.lock: make sure its directory exists.
fn lock_dir() {
    let dir = Path::new(DEFAULT_LOCK_PATH).parent().unwrap();
    let target = match std::fs::read_link(dir) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => dir.parent().unwrap().join(t),
        Err(_) => dir.to_owned(),
    };
    std::fs::create_dir_all(&target).unwrap();
}

fn fw_setenv_missing() -> bool {
    std::env::var_os("PATH")
        .map(|p| !std::env::split_paths(&p).any(|d| d.join("fw_setenv").is_file()))
        .unwrap_or(true)
}

#[test]
fn concurrent_writers_lose_no_update() {
    assert!(
        !fw_setenv_missing(),
        "fw_setenv is missing: install libubootenv-tool (scripts/deps/apt.txt)"
    );
    lock_dir();
    let dir = scratch_dir();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![0u8; 2 << 20]).unwrap();
    let cfg = fw_env_config(
        dir.path(),
        &image,
        &[(16 * 512, 16 * 512), (32 * 512, 16 * 512)],
    );
    let env = Env::new(EnvConfig::from_file(&cfg).unwrap());
    env.replace(&myelin_ubootenv::Vars::new()).unwrap();

    // Two archives, so that consecutive rounds write different values.
    let payload = dir.path().join("payload");
    std::fs::write(&payload, vec![0x5a; 512 << 10]).unwrap();
    let conf = dir.path().join("fwup.conf");
    std::fs::write(&conf, CONF).unwrap();
    let archives: Vec<_> = ["even", "odd"]
        .iter()
        .map(|v| {
            let vars = Vars::from_pairs([("VALUE", *v), ("PAYLOAD", payload.to_str().unwrap())]);
            let fw = dir.path().join(format!("{v}.fw"));
            std::fs::write(&fw, create_with(&conf, vars, None).unwrap()).unwrap();
            fw
        })
        .collect();

    // MYELIN_TEST_ENV_NO_LOCK=1 runs the same rounds with myelin-fw taking no lock, to show
    // that this test finds the lost updates (it then fails).
    let lock_args: Vec<&str> = if std::env::var_os("MYELIN_TEST_ENV_NO_LOCK").is_some() {
        vec!["--no-env-lock"]
    } else {
        vec!["--env-lock", DEFAULT_LOCK_PATH]
    };
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        let value = round.to_string();
        let fw_value = ["even", "odd"][round % 2];
        let mut installer = Command::new(env!("CARGO_BIN_EXE_myelin-fw"))
            .args(["-a", "-q", "-t", "set", "-d"])
            .arg(&image)
            .arg("-i")
            .arg(&archives[round % 2])
            .args(&lock_args)
            .spawn()
            .unwrap();
        let mut debian = Command::new("fw_setenv")
            .arg("-c")
            .arg(&cfg)
            .args(["deb", &value])
            .spawn()
            .unwrap();
        // myelin-kv's write: the store's read-modify-write under the lock.
        env.modify(Recovery::Refuse, |vars| {
            vars.insert("kv".into(), value.clone());
            Ok::<(), EnvError>(())
        })
        .unwrap();
        assert!(
            installer.wait().unwrap().success(),
            "round {round}: myelin-fw failed"
        );
        assert!(
            debian.wait().unwrap().success(),
            "round {round}: fw_setenv failed"
        );
        let vars = env.read().unwrap().vars;
        let get = |k: &str| vars.get(k).map(String::as_str);
        for (key, want) in [
            ("kv", value.as_str()),
            ("deb", value.as_str()),
            ("fw", fw_value),
            ("fw_started", fw_value),
        ] {
            if get(key) != Some(want) {
                lost.push(format!("round {round}: {key}={:?}, want {want}", get(key)));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} lost update(s) in {ROUNDS} rounds:\n{}",
        lost.len(),
        lost.join("\n")
    );
}
