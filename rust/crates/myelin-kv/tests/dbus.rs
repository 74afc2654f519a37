//! The org.myelin.KV1 service on a private dbus-daemon configured like a system bus, with the
//! policy file the rootfs ships. Driven by the zbus client proxy and by `gdbus`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use myelin_kv::client::Kv1Proxy;
use myelin_testbus::{TestBus, shipped_policy};
use myelin_ubootenv::{Env, EnvConfig, Layout, Vars};

const TIMEOUT: Duration = Duration::from_secs(10);

fn initial() -> Vars {
    vars(&[("nerves_fw_active", "a"), ("nerves_serial_number", "MYL7")])
}

/// A dbus-daemon of our own, system-bus rules, with the repository's KV1 policy included.
struct Bus(TestBus);

impl std::ops::Deref for Bus {
    type Target = TestBus;
    fn deref(&self) -> &TestBus {
        &self.0
    }
}

impl Bus {
    fn start() -> Bus {
        Bus(TestBus::system(&shipped_policy("org.myelin.KV1.conf")))
    }

    async fn proxy(&self) -> Kv1Proxy<'static> {
        Kv1Proxy::new(&self.connect().await).await.unwrap()
    }

    /// `gdbus call` on the service, as `uid` if given; returns (success, output).
    fn gdbus(&self, uid: Option<u32>, method: &str, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("gdbus");
        cmd.args(["call", "--address", self.address()])
            .args([
                "-d",
                "org.myelin.KV1",
                "-o",
                "/org/myelin/KV1",
                "-m",
                method,
            ])
            .args(args);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid).env("HOME", "/");
        }
        let out = cmd
            .output()
            .expect("cannot run gdbus: install libglib2.0-bin (scripts/deps/apt.txt)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

/// A running `myelin-kv daemon`, ready (it sent READY=1 on its NOTIFY_SOCKET).
struct Daemon(myelin_testbus::Daemon);

impl Daemon {
    fn start(bus: &Bus, config: &Path, lock: &Path, poll: &str) -> Daemon {
        Daemon::start_with(bus, config, lock, poll, &[])
    }

    /// [`Daemon::start`] with extra daemon options.
    fn start_with(bus: &Bus, config: &Path, lock: &Path, poll: &str, extra: &[&str]) -> Daemon {
        let mut cmd = myelin_kv();
        cmd.arg("daemon")
            .arg("-c")
            .arg(config)
            .arg("--lock")
            .arg(lock)
            .args(["--poll-interval", poll])
            .args(extra)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
        Daemon(myelin_testbus::Daemon::start(cmd))
    }

    /// SIGTERM, and the daemon must exit cleanly.
    fn stop(self) {
        self.0.stop();
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

fn method_error(err: &zbus::Error) -> (String, String) {
    match err {
        zbus::Error::MethodError(name, msg, _) => {
            (name.to_string(), msg.clone().unwrap_or_default())
        }
        other => panic!("expected a D-Bus error reply, got {other:?}"),
    }
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn next_changed(
    stream: &mut myelin_kv::client::ChangedStream,
) -> (HashMap<String, String>, Vec<String>) {
    let signal = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("no Changed signal")
        .unwrap();
    let args = signal.args().unwrap();
    let mut removed = args.removed().clone();
    removed.sort();
    (args.set().clone(), removed)
}

#[tokio::test]
async fn methods_signals_and_errors() {
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x1000, &initial());
    let daemon = Daemon::start(&bus, &env.config, &env.lock, "0");
    let kv = bus.proxy().await;

    assert_eq!(
        kv.get_all().await.unwrap(),
        map(&[("nerves_fw_active", "a"), ("nerves_serial_number", "MYL7")])
    );
    assert_eq!(kv.get("nerves_serial_number").await.unwrap(), "MYL7");
    let (name, msg) = method_error(&kv.get("nope").await.unwrap_err());
    assert_eq!(name, "org.myelin.KV1.Error.NotFound");
    assert!(msg.contains("\"nope\""), "{msg}");

    let mut changed = kv.receive_changed().await.unwrap();
    let mut props = kv.receive_vars_changed().await;
    // The property stream yields the current value first.
    tokio::time::timeout(TIMEOUT, props.next())
        .await
        .unwrap()
        .unwrap();

    // Set: one write of both variables, one Changed signal, one PropertiesChanged.
    let flags_before: Vec<_> = env.copies().iter().map(|c| c.as_ref().unwrap().0).collect();
    kv.set(HashMap::from([("x", "1"), ("y", "two words")]))
        .await
        .unwrap();
    assert_eq!(
        next_changed(&mut changed).await,
        (map(&[("x", "1"), ("y", "two words")]), vec![])
    );
    let value = tokio::time::timeout(TIMEOUT, props.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        value.get().await.unwrap().get("x").map(String::as_str),
        Some("1")
    );
    let copies = env.copies();
    assert_eq!(
        copies[0].as_ref().unwrap().0,
        flags_before[0],
        "copy 1 must be untouched"
    );
    assert_eq!(
        copies[1].as_ref().unwrap().0,
        Some(2),
        "one write, flags + 1"
    );
    assert_eq!(
        ok(env.debian("fw_printenv").args(["-n", "y"])),
        "two words\n"
    );

    // Invalid input: the right error names, nothing written, no signal.
    let before = env.bytes();
    let (name, msg) = method_error(
        &kv.set(HashMap::from([("ok", "1"), ("bad=name", "2")]))
            .await
            .unwrap_err(),
    );
    assert_eq!(name, "org.myelin.KV1.Error.InvalidArgument");
    assert!(msg.contains("bad=name"), "{msg}");
    let (name, _) = method_error(&kv.set(HashMap::from([("empty", "")])).await.unwrap_err());
    assert_eq!(name, "org.myelin.KV1.Error.InvalidArgument");
    let big = "v".repeat(0x1000);
    let (name, msg) = method_error(
        &kv.set(HashMap::from([("big", big.as_str())]))
            .await
            .unwrap_err(),
    );
    assert_eq!(name, "org.myelin.KV1.Error.TooLarge");
    assert!(msg.contains("holds only"), "{msg}");
    let (name, _) = method_error(&kv.unset(&[""]).await.unwrap_err());
    assert_eq!(name, "org.myelin.KV1.Error.InvalidArgument");
    assert_eq!(env.bytes(), before);

    // Unset: unknown names are ignored; one Changed with what really went away.
    kv.unset(&["x", "never_set"]).await.unwrap();
    assert_eq!(
        next_changed(&mut changed).await,
        (map(&[]), vec!["x".to_string()])
    );
    assert_eq!(kv.vars().await.unwrap(), kv.get_all().await.unwrap());

    // Our own writes are not announced twice (the lock-file watch sees them too).
    assert!(
        tokio::time::timeout(Duration::from_millis(700), changed.next())
            .await
            .is_err(),
        "a duplicate Changed signal"
    );

    // gdbus, a client of another toolkit.
    let (success, out) = bus.gdbus(None, "org.myelin.KV1.Get", &["y"]);
    assert!(success, "{out}");
    assert_eq!(out.trim(), "('two words',)");
    let (success, out) = bus.gdbus(None, "org.myelin.KV1.Set", &["{'from_gdbus': 'yes'}"]);
    assert!(success, "{out}");
    assert_eq!(
        next_changed(&mut changed).await,
        (map(&[("from_gdbus", "yes")]), vec![])
    );

    daemon.stop();
}

#[tokio::test]
async fn notices_writes_by_libubootenv_and_the_cli() {
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    // No periodic check: only the watch on libubootenv's lock file can notice.
    ensure_lock_dir();
    let lock = PathBuf::from(myelin_ubootenv::DEFAULT_LOCK_PATH);
    let daemon = Daemon::start(&bus, &env.config, &lock, "0");
    let kv = bus.proxy().await;
    let mut changed = kv.receive_changed().await.unwrap();

    ok(env
        .debian("fw_setenv")
        .args(["from_debian", "1", "nerves_fw_active", "b"]));
    assert_eq!(
        next_changed(&mut changed).await,
        (
            map(&[("from_debian", "1"), ("nerves_fw_active", "b")]),
            vec![]
        )
    );
    ok(env.debian("fw_setenv").arg("from_debian"));
    assert_eq!(
        next_changed(&mut changed).await,
        (map(&[]), vec!["from_debian".to_string()])
    );
    ok(myelin_kv()
        .args(["setenv", "-c"])
        .arg(&env.config)
        .args(["from_cli", "1"]));
    assert_eq!(
        next_changed(&mut changed).await,
        (map(&[("from_cli", "1")]), vec![])
    );
    assert_eq!(kv.get("from_cli").await.unwrap(), "1");
    assert!(
        daemon.log().is_empty(),
        "daemon complained: {}",
        daemon.log()
    );
    daemon.stop();
}

#[tokio::test]
async fn notices_unlocked_writes_by_polling_and_reads_are_never_stale() {
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    let daemon = Daemon::start(&bus, &env.config, &env.lock, "0.2");
    let kv = bus.proxy().await;
    let mut changed = kv.receive_changed().await.unwrap();

    // A writer that takes another lock (an image tool, U-Boot before boot): only the periodic
    // check can notice.
    let other = Env::new(
        EnvConfig::from_file(&env.config)
            .unwrap()
            .with_lock_path(env.path("elsewhere.lock")),
    );
    other.replace(&vars(&[("replaced", "yes")])).unwrap();
    assert_eq!(
        next_changed(&mut changed).await,
        (
            map(&[("replaced", "yes")]),
            vec![
                "nerves_fw_active".to_string(),
                "nerves_serial_number".to_string()
            ]
        )
    );
    // A read right after an unannounced write sees it (the headers are checked first).
    other.replace(&vars(&[("replaced", "again")])).unwrap();
    assert_eq!(kv.get("replaced").await.unwrap(), "again");
    daemon.stop();
}

#[tokio::test]
async fn unreadable_environment_then_repair() {
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    env.corrupt(0);
    env.corrupt(1);
    let daemon = Daemon::start(&bus, &env.config, &env.lock, "0");
    assert!(
        daemon.log().contains("both environment copies are corrupt"),
        "{}",
        daemon.log()
    );
    let kv = bus.proxy().await;
    let (name, msg) = method_error(&kv.get_all().await.unwrap_err());
    assert_eq!(name, "org.myelin.KV1.Error.Unavailable");
    assert!(msg.contains("both environment copies are corrupt"), "{msg}");
    let before = env.bytes();
    let (name, _) = method_error(&kv.set(HashMap::from([("a", "1")])).await.unwrap_err());
    assert_eq!(name, "org.myelin.KV1.Error.Unavailable");
    assert_eq!(
        env.bytes(),
        before,
        "nothing may be written to a destroyed environment"
    );

    let mut changed = kv.receive_changed().await.unwrap();
    std::fs::write(
        env.path("defaults.txt"),
        "nerves_fw_active=a\nbootdelay=0\n",
    )
    .unwrap();
    ok(env
        .kv("setenv")
        .arg("-f")
        .arg(env.path("defaults.txt"))
        .args(["repaired", "1"]));
    assert_eq!(
        next_changed(&mut changed).await,
        (
            map(&[
                ("bootdelay", "0"),
                ("nerves_fw_active", "a"),
                ("repaired", "1")
            ]),
            vec![]
        )
    );
    assert_eq!(kv.get("repaired").await.unwrap(), "1");
    daemon.stop();
}

/// The shipped policy: only root owns the name and writes; everyone reads and gets signals.
#[tokio::test]
async fn policy_lets_everyone_read_but_only_root_write() {
    require_root("the D-Bus policy test (it runs clients as another user)");
    const NOBODY: u32 = 65534;
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    for path in [&env.config, &env.image] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // An ordinary user cannot own the name (running a copy it can reach, wherever the
    // checkout is).
    let exe = myelin_testbus::SharedExe::copy(Path::new(env!("CARGO_BIN_EXE_myelin-kv"))).unwrap();
    let out = run(Command::new(exe.path())
        .arg("daemon")
        .arg("-c")
        .arg(&env.config)
        .arg("--lock")
        .arg(bus.dir().join("nobody.lock"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .uid(NOBODY)
        .gid(NOBODY));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot serve org.myelin.KV1"), "{stderr}");
    assert!(
        stderr.contains("AccessDenied") || stderr.contains("not allowed"),
        "{stderr}"
    );

    let daemon = Daemon::start(&bus, &env.config, &env.lock, "0");
    for (method, args) in [
        ("org.myelin.KV1.Get", &["nerves_fw_active"][..]),
        ("org.myelin.KV1.GetAll", &[][..]),
        (
            "org.freedesktop.DBus.Properties.Get",
            &["org.myelin.KV1", "Vars"][..],
        ),
        ("org.freedesktop.DBus.Introspectable.Introspect", &[][..]),
    ] {
        let (success, out) = bus.gdbus(Some(NOBODY), method, args);
        assert!(success, "nobody may call {method}: {out}");
    }
    for (method, args) in [
        ("org.myelin.KV1.Set", &["{'nerves_fw_active': 'b'}"][..]),
        ("org.myelin.KV1.Unset", &["['nerves_fw_active']"][..]),
    ] {
        let (success, out) = bus.gdbus(Some(NOBODY), method, args);
        assert!(!success, "nobody called {method}");
        assert!(out.contains("AccessDenied"), "{method}: {out}");
    }
    assert_eq!(
        ok(env.debian("fw_printenv").args(["-n", "nerves_fw_active"])),
        "a\n"
    );

    // Signals reach ordinary users.
    let mut monitor = Command::new("gdbus")
        .args([
            "monitor",
            "--address",
            bus.address(),
            "-d",
            "org.myelin.KV1",
        ])
        .uid(NOBODY)
        .gid(NOBODY)
        .env("HOME", "/")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the monitor is subscribed (it prints who owns the name first).
    loop {
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("gdbus monitor printed nothing");
        if line.contains("is owned by") {
            break;
        }
    }
    let kv = bus.proxy().await;
    kv.set(HashMap::from([("seen_by_nobody", "1")]))
        .await
        .unwrap();
    loop {
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("no Changed signal reached nobody");
        if line.contains("org.myelin.KV1.Changed") {
            assert!(line.contains("seen_by_nobody"), "{line}");
            break;
        }
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    daemon.stop();
}

/// Another process holds the environment lock (an install, a stuck fw_setenv): a Set waits for
/// it, but without holding the service's state, so a Get issued meanwhile is answered; the Set
/// gives up after its bounded wait with an error naming the lock file, and nothing is written.
/// Before, the Set waited forever holding the state mutex and every Get queued behind it.
#[tokio::test]
async fn a_writer_waiting_for_the_lock_blocks_no_reader_and_gives_up() {
    let bus = Bus::start();
    let env = EnvFile::new(Layout::Redundant, 0x1000, &initial());
    let daemon = Daemon::start_with(&bus, &env.config, &env.lock, "0", &["--lock-wait", "3"]);
    let kv = bus.proxy().await;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&env.lock)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let before = env.bytes();
    let writer = kv.clone();
    let set = tokio::spawn(async move { writer.set(HashMap::from([("x", "1")])).await });
    // Let the Set reach the lock before the Get is sent (ordering only, nothing is timed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = tokio::time::timeout(Duration::from_secs(60), kv.get("nerves_serial_number"))
        .await
        .expect("a Get stalled behind a Set waiting for the environment lock")
        .unwrap();
    assert_eq!(got, "MYL7");
    let err = tokio::time::timeout(Duration::from_secs(60), set)
        .await
        .expect("the Set never gave up waiting for the lock")
        .unwrap()
        .unwrap_err();
    let (name, msg) = method_error(&err);
    assert_eq!(name, "org.myelin.KV1.Error.Failed", "{msg}");
    assert!(msg.contains(&env.lock.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())) || !msg.contains("pid"),
        "{msg}"
    );
    assert_eq!(
        env.bytes(),
        before,
        "nothing may be written without the lock"
    );
    drop(held);
    kv.set(HashMap::from([("x", "1")])).await.unwrap();
    assert_eq!(kv.get("x").await.unwrap(), "1");
    daemon.stop();
}
