//! The app crate's platform calls against the real myelin-kv service on a private dbus-daemon
//! (its library entry point, the code `myelin-kv daemon` runs), with what they change read back
//! from the environment image itself.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use myelin::platform::{Error, Platform};
use myelin_testbus::TestBus;
use myelin_ubootenv::read_vars;

/// `myelin-kv daemon`'s options, parsed the way its command line parses them.
#[derive(Parser)]
struct KvDaemon {
    #[command(flatten)]
    args: myelin_kv::cli::DaemonArgs,
}

#[test]
fn kv_calls_reach_the_environment_and_missing_services_are_named() {
    let bus = TestBus::open();
    let platform = Platform::connect_to(bus.address()).unwrap();

    // Nothing owns the names yet: each error names the service it could not reach.
    let e = platform.kv_get("serial").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Call {
                service: "org.myelin.KV1",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("org.myelin.KV1: "), "{e}");
    let e = platform.firmware().unwrap_err();
    assert!(e.to_string().starts_with("org.myelin.Update1: "), "{e}");
    let e = platform.interface("eth0").unwrap_err();
    assert!(e.to_string().starts_with("org.myelin.Network1: "), "{e}");

    let (config, env) = myelin_testbus::env_image::redundant(
        bus.dir(),
        &[("nerves_fw_active", "a"), ("serial", "MYL1")],
    );
    let lock = bus.dir().join("env.lock");
    let daemon = KvDaemon::parse_from([
        "myelin-kv",
        "-c",
        config.to_str().unwrap(),
        "--lock",
        lock.to_str().unwrap(),
        "--address",
        bus.address(),
    ]);
    std::thread::spawn(move || myelin_kv::service::run_daemon(daemon.args));

    // The service is up once a call answers (its name is owned when it is ready).
    let deadline = Instant::now() + Duration::from_secs(30);
    let serial = loop {
        match platform.kv_get("serial") {
            Ok(v) => break v,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("myelin-kv never answered: {e}"),
        }
    };
    assert_eq!(serial.as_deref(), Some("MYL1"));
    assert_eq!(platform.kv_get("nosuch").unwrap(), None);

    platform
        .kv_put(&[("app_key", "k=v"), ("a.nerves_fw_version", "2.0.0")])
        .unwrap();
    let vars = read_vars(&env).unwrap();
    assert_eq!(vars.get("app_key").map(String::as_str), Some("k=v"));
    assert_eq!(
        vars.get("a.nerves_fw_version").map(String::as_str),
        Some("2.0.0")
    );
    assert_eq!(platform.kv_all().unwrap().get("serial").unwrap(), "MYL1");

    platform.kv_unset(&["app_key"]).unwrap();
    assert!(!read_vars(&env).unwrap().contains_key("app_key"));

    // A name the environment cannot hold is refused by the service, naming it; nothing written.
    let before = std::fs::read(bus.dir().join("env.img")).unwrap();
    let e = platform
        .kv_put(&[("bad=name", "x"), ("ok", "1")])
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Call {
                service: "org.myelin.KV1",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("bad=name"), "{e}");
    assert_eq!(std::fs::read(bus.dir().join("env.img")).unwrap(), before);
}
