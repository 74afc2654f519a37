//! `myelinctl kv|fw|net` against the real daemons' D-Bus interfaces on a private dbus-daemon.
//!
//! myelin-kv's service runs in this process (its library entry point, the same code as
//! `myelin-kv daemon`) on an environment image in a temp dir; the real `myelinctl` binary talks
//! to it through `--bus`, and what it changes is read back with the library, from the image.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clap::Parser;
use myelin_testbus::TestBus;
use myelin_ubootenv::{EnvConfig, read_vars};

/// A bus that lets anyone own names: this test is about myelinctl, not policy.
struct Bus(TestBus);

impl Bus {
    fn start() -> Bus {
        Bus(TestBus::open())
    }

    fn myelinctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_myelinctl"))
            .arg("--bus")
            .arg(self.0.address())
            .args(args)
            .output()
            .unwrap()
    }
}

/// `myelin-kv daemon`'s options, parsed the way its command line parses them.
#[derive(Parser)]
struct KvDaemon {
    #[command(flatten)]
    args: myelin_kv::cli::DaemonArgs,
}

/// A redundant environment image holding `initial` (`name=value` lines), and its fw_env.config.
fn environment(dir: &Path, initial: &str) -> (PathBuf, EnvConfig) {
    let vars: Vec<(&str, &str)> = initial
        .lines()
        .map(|l| l.split_once('=').unwrap())
        .collect();
    myelin_testbus::env_image::redundant(dir, &vars)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn errors(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn kv_commands_go_through_the_daemon_in_one_write_each() {
    let bus = Bus::start();
    let (config, env) = environment(bus.0.dir(), "nerves_fw_active=a\nserial=MYL1");
    let lock = bus.0.dir().join("env.lock");
    let daemon = KvDaemon::parse_from([
        "myelin-kv",
        "-c",
        config.to_str().unwrap(),
        "--lock",
        lock.to_str().unwrap(),
        "--address",
        bus.0.address(),
    ]);
    std::thread::spawn(move || myelin_kv::service::run_daemon(daemon.args));

    // The daemon owns its name once `get` answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = bus.myelinctl(&["kv", "get", "serial"]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", errors(&out));
    assert_eq!(text(&out), "MYL1\n");

    let out = bus.myelinctl(&["kv", "set", "a.nerves_fw_version=2.0.0", "note=x=y"]);
    assert!(out.status.success(), "{}", errors(&out));
    let vars = read_vars(&env).unwrap();
    assert_eq!(
        vars.get("a.nerves_fw_version").map(String::as_str),
        Some("2.0.0")
    );
    assert_eq!(vars.get("note").map(String::as_str), Some("x=y"));

    let out = bus.myelinctl(&["--json", "kv", "list"]);
    assert!(out.status.success(), "{}", errors(&out));
    let all: serde_json::Value = serde_json::from_str(&text(&out)).unwrap();
    assert_eq!(all["note"], "x=y");
    assert_eq!(all["nerves_fw_active"], "a");

    let out = bus.myelinctl(&["kv", "unset", "note", "serial"]);
    assert!(out.status.success(), "{}", errors(&out));
    let vars = read_vars(&env).unwrap();
    assert!(!vars.contains_key("note") && !vars.contains_key("serial"));

    // A missing variable: exit 1 and say so; a bad name: the daemon's refusal, nothing written.
    let out = bus.myelinctl(&["kv", "get", "serial"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        errors(&out).contains("serial is not set"),
        "{}",
        errors(&out)
    );
    let before = std::fs::read(bus.0.dir().join("env.img")).unwrap();
    let out = bus.myelinctl(&["kv", "set", "bad name=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(errors(&out).contains("refused"), "{}", errors(&out));
    assert_eq!(std::fs::read(bus.0.dir().join("env.img")).unwrap(), before);
    let out = bus.myelinctl(&["kv", "set", "novalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        errors(&out).contains("is not NAME=VALUE"),
        "{}",
        errors(&out)
    );
}

#[test]
fn a_stopped_daemon_is_named_once() {
    let bus = Bus::start();
    for (args, daemon) in [
        (&["kv", "list"][..], "myelin-kv"),
        (&["fw", "status"][..], "myelin-update"),
        (&["net", "status"][..], "myelin-net"),
    ] {
        let out = bus.myelinctl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("myelinctl: {daemon} is not running")),
            "{args:?}: {err}"
        );
    }
}
