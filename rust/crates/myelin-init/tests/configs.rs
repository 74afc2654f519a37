//! The configurations the project ships: the production tree every board boots and the annotated
//! example. Both must stay valid, and the production tree must keep the shape the platform
//! relies on.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use myelin_init::config::{Config, FatalAction, Readiness, Strategy};

fn load(rel: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn production_tree() {
    let c = load("../../../board/common/rootfs_overlay/etc/myelin/init.toml");
    assert_eq!(c.init.fatal_action, FatalAction::Reboot);
    assert_eq!(c.init.reboot_param, Path::new("/run/reboot-param"));
    assert_eq!(c.boot.hostname.as_deref(), Some("myelin-%-.4s"));
    assert!(c.boot.enabled && c.boot.pseudo_fs && c.boot.tmpfs);
    let data = c.boot.data.as_ref().unwrap();
    assert!(data.from_uboot_env && data.format);
    assert_eq!(data.mountpoint, "/data");
    assert!(c.boot.rng_seed.as_ref().unwrap().starts_with("/data"));
    assert_eq!(
        c.watchdog.as_ref().unwrap().device,
        Path::new("/dev/watchdog0")
    );

    let t = &c.tree;
    let names = |id| {
        t.children(id)
            .iter()
            .map(|&i| t.nodes[i].name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["console", "platform"]);
    let platform = t.find("platform").unwrap();
    assert_eq!(names(platform), ["system", "app"]);
    assert_eq!(
        t.nodes[platform].supervisor().unwrap().strategy,
        Strategy::RestForOne
    );
    let system = t.find("system").unwrap();
    assert_eq!(
        names(system),
        [
            "dbus",
            "myelin-kv",
            "myelin-update",
            "myelin-net",
            "dropbear"
        ]
    );
    assert_eq!(
        t.nodes[system].supervisor().unwrap().strategy,
        Strategy::RestForOne
    );

    let svc = |n: &str| t.nodes[t.find(n).unwrap()].service().unwrap().clone();
    assert_eq!(
        svc("dbus").readiness,
        Readiness::Path("/run/dbus/system_bus_socket".into())
    );
    assert_eq!(svc("dbus").argv[0], "/usr/bin/dbus-daemon");
    assert_eq!(svc("myelin-kv").argv, ["/usr/bin/myelin-kv", "daemon"]);
    for n in ["myelin-kv", "myelin-update", "myelin-net"] {
        assert_eq!(svc(n).readiness, Readiness::Notify, "{n} says READY=1");
        assert_eq!(svc(n).ready_timeout, Some(Duration::from_secs(30)));
    }
    let critical: Vec<&str> = t
        .services()
        .filter(|&i| t.nodes[i].service().unwrap().critical)
        .map(|i| t.nodes[i].name.as_str())
        .collect();
    assert_eq!(critical, ["dbus", "myelin-kv", "myelin-update"]);
    let ssh = svc("dropbear");
    assert!(ssh.optional);
    assert!(ssh.argv.iter().any(|a| a == "-s"), "keys only");
    assert!(ssh.argv.iter().any(|a| a == "-F"), "foreground");
    assert!(svc("shell").console);
    assert!(
        names(t.find("app").unwrap()).is_empty(),
        "products fill the app group"
    );
}

#[test]
fn annotated_example() {
    let c = load("init.example.toml");
    assert_eq!(c.init.fatal_action, FatalAction::Hang);
    assert_eq!(c.tree.nodes.len(), 9);
    let web = c.tree.find("web").unwrap();
    assert_eq!(c.tree.nodes[web].after, [c.tree.find("sensors").unwrap()]);
}

#[test]
fn check_flag_reports_errors_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[service]]\nname = \"a\"\nargv = [\"sh\", \"-c\", \"true\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_myelin-init"))
        .arg("--check")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (2 nodes)"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[service]]\nname = \"a\"\nargv = [\"/nope\"]\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_myelin-init"))
        .args(["--config"])
        .arg(&bad)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3:8: service `a`: `/nope` is not an executable file",
            bad.display()
        )),
        "{err}"
    );
    // Not PID 1 and no --check: refuses, does nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_myelin-init"))
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not PID 1"));
}
