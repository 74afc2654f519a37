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
    // Every service says how much it logs (the default: info).
    assert!(
        c.tree
            .services()
            .all(|i| c.tree.nodes[i].service().unwrap().env["MYELIN_LOG"] == "info")
    );
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
            "myelin-uevent",
            "myelin-kv",
            "myelin-update",
            "myelin-net",
            "dropbear",
            "myelin-time"
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
    // myelin-kv converts a migrated Nerves device's environment before serving (the file
    // exists only on the boards Nerves devices migrate from).
    assert_eq!(
        svc("myelin-kv").argv,
        [
            "/usr/bin/myelin-kv",
            "daemon",
            "--nerves-config",
            "/etc/myelin/nerves-env.config"
        ]
    );
    for n in ["myelin-uevent", "myelin-kv", "myelin-update", "myelin-net"] {
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
    // The NervesHub client is not started until a product configures it (a drop-in).
    assert!(t.find("myelin-hub").is_none());
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

/// A stand-in for an image's target directory: every program the shipped init.toml names, the
/// users it uses, and the shipped configuration with a product's drop-in next to it.
fn target_root(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let root = dir.join("target");
    let shipped = load("../../../board/common/rootfs_overlay/etc/myelin/init.toml");
    for d in ["etc/myelin/init.d", "bin", "usr/bin", "usr/sbin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), "#!").unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Buildroot's links are absolute: they must be followed inside the target.
    symlink("/bin/busybox", root.join("bin/sh")).unwrap();
    for id in shipped.tree.services() {
        let argv0 = &shipped.tree.nodes[id].service().unwrap().argv[0];
        let p = root.join(argv0.trim_start_matches('/'));
        if !p.exists() && !p.is_symlink() {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nhello:x:1000:1000::/home/hello:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nhello:x:1000:\n").unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../board/common/rootfs_overlay/etc/myelin/init.toml"),
        root.join("etc/myelin/init.toml"),
    )
    .unwrap();
    std::fs::write(root.join("usr/bin/hello"), "").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/myelin/init.d/50-hello.toml"),
        "[[service]]\nname = \"hello\"\nsupervisor = \"app\"\nargv = [\"/usr/bin/hello\"]\nuser = \"hello\"\nnotify = true\n",
    )
    .unwrap();
    root
}

fn check(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_myelin-init"))
        .arg("--check")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_a_file_and_its_drop_ins_against_a_target_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = target_root(dir.path());
    let main = root.join("etc/myelin/init.toml");
    let drop_in = root.join("etc/myelin/init.d/50-hello.toml");
    let out = check(&[main.as_os_str(), "--root".as_ref(), root.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}: ok (", main.display())) && stdout.contains(", 1 drop-in)"),
        "{stdout}"
    );
    // The product's app is missing from the image, and its user too: both named, in the drop-in.
    std::fs::remove_file(root.join("usr/bin/hello")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let out = check(&[main.as_os_str(), "--root".as_ref(), root.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!(
                "{}:4:8: service `hello`: `/usr/bin/hello` is not an executable file (PATH=/usr/sbin:/usr/bin:/sbin:/bin)",
                drop_in.display()
            ),
            format!(
                "{}:5:8: service `hello`: unknown user `hello`",
                drop_in.display()
            ),
        ],
        "{err}"
    );
    // A platform program missing: named in init.toml itself, at its argv.
    std::fs::write(&drop_in, "").unwrap();
    std::fs::remove_file(root.join("usr/bin/myelin-kv")).unwrap();
    let out = check(&[main.as_os_str(), "--root".as_ref(), root.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:", main.display()))
            && err
                .contains(": service `myelin-kv`: `/usr/bin/myelin-kv` is not an executable file"),
        "{err}"
    );
    // The file given is the one checked (not /etc/myelin/init.toml).
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[log]\nring_bytes = 999999999999\n").unwrap();
    let out = check(&[bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&format!(
            "{}:2:14: ring_bytes must be between",
            bad.display()
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
