//! The configuration format, checked against the messages a user gets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("/etc/myelin/init.toml"))
}

fn errors(src: &str) -> Vec<String> {
    match parse(src) {
        Ok(_) => panic!("accepted invalid config:\n{src}"),
        Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn empty_file_is_a_valid_default() {
    let c = parse("").unwrap();
    assert_eq!(c.tree.nodes.len(), 1);
    assert_eq!(c.init.fatal_action, FatalAction::Reboot);
    assert!(c.boot.enabled);
    assert!(c.watchdog.is_none());
    assert_eq!(c.log.ring_bytes, 262144);
}

#[test]
fn tree_follows_file_order_across_arrays() {
    let c = parse(
        r#"
[[service]]
name = "a"
argv = ["/bin/true"]

[[supervisor]]
name = "g"
strategy = "rest_for_one"

[[service]]
name = "b"
supervisor = "g"
argv = ["/bin/true"]

[[service]]
name = "c"
argv = ["/bin/true"]
after = ["b"]
"#,
    )
    .unwrap();
    let names = |ids: &[NodeId]| {
        ids.iter()
            .map(|&i| c.tree.nodes[i].name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(c.tree.children(0)), ["a", "g", "c"]);
    let g = c.tree.find("g").unwrap();
    assert_eq!(names(c.tree.children(g)), ["b"]);
    assert_eq!(
        c.tree.nodes[g].supervisor().unwrap().strategy,
        Strategy::RestForOne
    );
    let cc = c.tree.find("c").unwrap();
    assert_eq!(c.tree.nodes[cc].after, vec![c.tree.find("b").unwrap()]);
}

#[test]
fn service_fields_and_defaults() {
    let c = parse(
        r#"
[init]
env = { LANG = "C" }
[[service]]
name = "kv"
argv = ["myelin-kv", "daemon"]
env = { RUST_LOG = "info" }
notify = true
shutdown = "brutal_kill"
ready_timeout = "infinity"
watchdog = "2s"
critical = true
restart = "transient"
user = 1000
"#,
    )
    .unwrap();
    let s = c.tree.nodes[1].service().unwrap();
    assert_eq!(s.readiness, Readiness::Notify);
    assert_eq!(s.shutdown, Shutdown::BrutalKill);
    assert_eq!(s.ready_timeout, None);
    assert_eq!(s.watchdog, Some(Duration::from_secs(2)));
    assert_eq!(s.env["PATH"], DEFAULT_PATH);
    assert_eq!(s.env["LANG"], "C");
    assert_eq!(s.env["RUST_LOG"], "info");
    assert_eq!(s.user, Some(IdOrName::Id(1000)));
    assert_eq!(c.tree.nodes[1].restart, RestartType::Transient);
    assert_eq!(s.restart_delay, Duration::from_millis(100));
}

#[test]
fn console_optional_and_directories() {
    let c = parse(
        "[[service]]\nname = \"sh\"\nargv = [\"/bin/sh\"]\nconsole = true\noptional = true\ncreate_dirs = [\"/run/sh\"]\n",
    )
    .unwrap();
    let s = c.tree.nodes[1].service().unwrap();
    assert!(s.console && s.optional && !s.absent);
    assert_eq!(s.create_dirs, [PathBuf::from("/run/sh")]);
    let e =
        errors("[[service]]\nname = \"sh\"\nargv = [\"/bin/sh\"]\ncreate_dirs = [\"run/sh\"]\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:4:15: `run/sh` must be an absolute path"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_key_is_located() {
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"/bin/true\"]\nrestrat = \"permanent\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:4:1: unknown field `restrat`"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_types_and_values_are_located() {
    let e = errors("[init]\nkill_wait = 5\n");
    assert!(e[0].starts_with("/etc/myelin/init.toml:2:13:"), "{}", e[0]);
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"/bin/true\"]\nshutdown = \"soon\"\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:4:12: invalid shutdown \"soon\""),
        "{}",
        e[0]
    );
    let e = errors("[root]\nstrategy = \"one_for_most\"\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:2:12: unknown variant `one_for_most`"),
        "{}",
        e[0]
    );
    let e = errors("[boot]\nrlimits = { cores = 0 }\n");
    assert!(e[0].contains("unknown resource limit `cores`"), "{}", e[0]);
    let e = errors("[[service]]\nname = \"a\"\nargv = []\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:3:8: service `a`: argv must name a program"),
        "{}",
        e[0]
    );
    let e = errors("[boot]\nhostname = \"x-%d\"\n");
    assert!(e[0].starts_with("/etc/myelin/init.toml:2:12:"), "{}", e[0]);
    let e = errors("[boot.data]\ndevice = \"/dev/sda4\"\nfstype = \"btrfs\"\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:3:10: unknown variant `btrfs`"),
        "{}",
        e[0]
    );
    let e = errors(
        "[[boot.mount]]\nsource = \"tmpfs\"\ntarget = \"/x\"\nfstype = \"tmpfs\"\noptions = \"nodev,rw,ro\"\n",
    );
    assert!(e[0].starts_with("/etc/myelin/init.toml:5:11:"), "{}", e[0]);
    let e = errors("[watchdog]\ntimeout = \"100ms\"\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:2:11: the watchdog timeout"),
        "{}",
        e[0]
    );
    let e = errors("[log]\nline_max = 2\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:2:12: line_max"),
        "{}",
        e[0]
    );
}

#[test]
fn syntax_error_is_located() {
    let e = errors("[init]\nshell = \"/bin/sh\n");
    assert!(e[0].starts_with("/etc/myelin/init.toml:2:"), "{}", e[0]);
}

#[test]
fn duplicate_and_reserved_names() {
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\n[[supervisor]]\nname = \"a\"\n");
    assert_eq!(
        e,
        ["/etc/myelin/init.toml:5:8: duplicate name `a` (first defined at line 2, column 8)"]
    );
    let e = errors("[[service]]\nname = \"root\"\nargv = [\"x\"]\n");
    assert!(e[0].contains("reserved"), "{}", e[0]);
    let e = errors("[[service]]\nname = \"a b\"\nargv = [\"x\"]\n");
    assert!(e[0].contains("invalid name"), "{}", e[0]);
}

#[test]
fn bad_references() {
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nsupervisor = \"nope\"\n");
    assert_eq!(e, ["/etc/myelin/init.toml:4:14: unknown supervisor `nope`"]);
    let e = errors(
        "[[service]]\nname = \"a\"\nargv = [\"x\"]\n[[service]]\nname = \"b\"\nargv = [\"x\"]\nsupervisor = \"a\"\n",
    );
    assert_eq!(
        e,
        ["/etc/myelin/init.toml:7:14: `a` is a service, not a supervisor"]
    );
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nafter = [\"ghost\"]\n");
    assert_eq!(
        e,
        ["/etc/myelin/init.toml:4:10: `after`: unknown service or supervisor `ghost`"]
    );
    let e = errors(
        "[[supervisor]]\nname = \"g\"\nsupervisor = \"h\"\n[[supervisor]]\nname = \"h\"\nsupervisor = \"g\"\n",
    );
    assert_eq!(e.len(), 2);
    assert!(e[0].contains("supervisor cycle"), "{}", e[0]);
}

#[test]
fn cycles_are_found() {
    // Waiting for a later sibling: the sibling waits for us through the start order.
    let e = errors(
        "[[service]]\nname = \"a\"\nargv = [\"x\"]\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nargv = [\"x\"]\n",
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:4:10: start order cycle: a -> b -> a"),
        "{}",
        e[0]
    );
    // Waiting for one's own supervisor.
    let e = errors(
        "[[supervisor]]\nname = \"g\"\n[[service]]\nname = \"a\"\nsupervisor = \"g\"\nargv = [\"x\"]\nafter = [\"g\"]\n",
    );
    assert!(e[0].contains("start order cycle"), "{}", e[0]);
    // Across groups: a (in g1, first) waits for b (in g2, started after g1 is ready).
    let e = errors(
        "[[supervisor]]\nname = \"g1\"\n[[supervisor]]\nname = \"g2\"\n\
         [[service]]\nname = \"a\"\nsupervisor = \"g1\"\nargv = [\"x\"]\nafter = [\"b\"]\n\
         [[service]]\nname = \"b\"\nsupervisor = \"g2\"\nargv = [\"x\"]\n",
    );
    assert!(e[0].contains("start order cycle"), "{}", e[0]);
    // Waiting for an earlier node elsewhere is fine.
    parse(
        "[[supervisor]]\nname = \"g1\"\n[[supervisor]]\nname = \"g2\"\n\
         [[service]]\nname = \"a\"\nsupervisor = \"g1\"\nargv = [\"x\"]\n\
         [[service]]\nname = \"b\"\nsupervisor = \"g2\"\nargv = [\"x\"]\nafter = [\"a\", \"g1\"]\n",
    )
    .unwrap();
}

#[test]
fn environment_checks() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndbus:x:81:82:dbus:/run/dbus:/bin/false\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\ndbus:x:82:\nnet:x:90:\n").unwrap();
    let mut c = parse(
        "[[service]]\nname = \"a\"\nargv = [\"sh\", \"-c\", \"true\"]\nuser = \"dbus\"\n\
         [[service]]\nname = \"b\"\nargv = [\"/bin/sh\"]\nuser = \"dbus\"\ngroup = \"net\"\n",
    )
    .unwrap();
    c.check_environment(etc).unwrap();
    let a = c.tree.nodes[1].service().unwrap();
    assert!(
        a.program.is_absolute() && a.program.ends_with("sh"),
        "{:?}",
        a.program
    );
    assert_eq!((a.uid, a.gid), (Some(81), Some(82)));
    assert_eq!(a.env["HOME"], "/run/dbus");
    let b = c.tree.nodes[2].service().unwrap();
    assert_eq!((b.uid, b.gid), (Some(81), Some(90)));

    let mut c = parse(
        "[[service]]\nname = \"a\"\nargv = [\"/no/such/program\"]\n\
         [[service]]\nname = \"b\"\nargv = [\"/bin/sh\"]\nuser = \"nobody-here\"\ncwd = \"/no/dir\"\n",
    )
    .unwrap();
    let Err(ConfigError::Invalid(d)) = c.check_environment(etc) else {
        panic!()
    };
    let d: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(
        d[0].starts_with(
            "/etc/myelin/init.toml:3:8: service `a`: `/no/such/program` is not an executable file"
        ),
        "{}",
        d[0]
    );
    assert!(
        d[1].starts_with("/etc/myelin/init.toml:8:7: service `b`: working directory /no/dir"),
        "{}",
        d[1]
    );
    assert!(
        d[2].starts_with("/etc/myelin/init.toml:7:8: service `b`: unknown user `nobody-here`"),
        "{}",
        d[2]
    );
}

#[test]
fn sizes_have_upper_bounds_naming_the_field() {
    let cases = [
        (
            "[log]\nring_bytes = 1000000000\n",
            "2:14: ring_bytes must be between 4096 and 67108864",
        ),
        (
            "[log]\nring_bytes = 100\n",
            "2:14: ring_bytes must be between 4096",
        ),
        (
            "[log]\nline_max = 100000\n",
            "2:12: line_max must be between 16 and 65536",
        ),
        (
            "[log]\nkmsg_rate = 20000\n",
            "2:13: kmsg_rate must be between 0 and 10000",
        ),
        (
            "[log]\nkmsg_burst = 0\n",
            "2:14: kmsg_burst must be between 1 and 100000",
        ),
        (
            "[root]\nintensity = 2000000\n",
            "2:13: intensity must be between 0 and 1000000",
        ),
        (
            "[[supervisor]]\nname = \"g\"\nintensity = 4000000000\n",
            "3:13: intensity must be between 0 and 1000000",
        ),
        (
            "[init]\ncontrol_idle_timeout = \"2h\"\n",
            "2:24: control_idle_timeout must be between 100ms and 1h",
        ),
    ];
    for (src, want) in cases {
        let e = errors(src);
        assert!(
            e[0].starts_with(&format!("/etc/myelin/init.toml:{want}")),
            "{src}: {}",
            e[0]
        );
    }
    // The largest values are accepted.
    let c =
        parse("[log]\nring_bytes = 67108864\nkmsg_burst = 100000\n[root]\nintensity = 1000000\n")
            .unwrap();
    assert_eq!(c.log.ring_bytes, RING_BYTES.1);
}

#[test]
fn files_larger_than_a_configuration_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("init.toml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("1048577 bytes is more than a configuration file may hold"),
        "{e}"
    );
}

#[test]
fn log_level_sets_myelin_log_and_what_is_kept() {
    let c = parse(
        "[init]\nenv = { MYELIN_LOG = \"debug\" }\n\
         [[service]]\nname = \"a\"\nargv = [\"x\"]\n\
         [[service]]\nname = \"b\"\nargv = [\"x\"]\nlog_level = \"warning\"\n\
         [[service]]\nname = \"c\"\nargv = [\"x\"]\nenv = { MYELIN_LOG = \"error\" }\n",
    )
    .unwrap();
    let svc = |n: &str| {
        c.tree.nodes[c.tree.find(n).unwrap()]
            .service()
            .unwrap()
            .clone()
    };
    assert_eq!(
        (svc("a").log_level, svc("a").env["MYELIN_LOG"].as_str()),
        (LogLevel::Debug, "debug")
    );
    assert_eq!(
        (svc("b").log_level, svc("b").env["MYELIN_LOG"].as_str()),
        (LogLevel::Warn, "warn")
    );
    assert_eq!(
        (svc("c").log_level, svc("c").env["MYELIN_LOG"].as_str()),
        (LogLevel::Error, "error")
    );
    let c = parse("[[service]]\nname = \"d\"\nargv = [\"x\"]\n").unwrap();
    assert_eq!(c.tree.nodes[1].service().unwrap().env["MYELIN_LOG"], "info");
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nlog_level = \"loud\"\n");
    assert!(
        e[0].starts_with("/etc/myelin/init.toml:4:13: invalid log_level \"loud\""),
        "{}",
        e[0]
    );
    let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nenv = { MYELIN_LOG = \"loud\" }\n");
    assert!(
        e[0].contains("service `a`: MYELIN_LOG=\"loud\" is not a level"),
        "{}",
        e[0]
    );
}

fn write_tree(dir: &Path, main: &str, drop_ins: &[(&str, &str)]) -> PathBuf {
    let main_path = dir.join("init.toml");
    std::fs::write(&main_path, main).unwrap();
    std::fs::create_dir_all(dir.join("init.d")).unwrap();
    for (name, text) in drop_ins {
        std::fs::write(dir.join("init.d").join(name), text).unwrap();
    }
    main_path
}

#[test]
fn drop_ins_add_services_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tree(
        dir.path(),
        "[[supervisor]]\nname = \"app\"\n[[service]]\nname = \"kv\"\nargv = [\"x\"]\n",
        &[
            (
                "20-web.toml",
                "[[service]]\nname = \"web\"\nsupervisor = \"app\"\nargv = [\"w\"]\nafter = [\"db\"]\n",
            ),
            (
                "10-db.toml",
                "[[service]]\nname = \"db\"\nsupervisor = \"app\"\nargv = [\"d\"]\n",
            ),
            ("notes.txt", "not toml at all"),
            (".30-hidden.toml", "not toml at all"),
        ],
    );
    let c = Config::load(&p).unwrap();
    let app = c.tree.find("app").unwrap();
    let names: Vec<&str> = c
        .tree
        .children(app)
        .iter()
        .map(|&i| c.tree.nodes[i].name.as_str())
        .collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(c.sources.len(), 3);
    assert_eq!(c.tree.children(0).len(), 2, "app and kv at the root");
}

#[test]
fn drop_in_errors_name_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_tree(
        dir.path(),
        "[[supervisor]]\nname = \"app\"\n[[service]]\nname = \"kv\"\nargv = [\"x\"]\n",
        &[(
            "10-app.toml",
            "[[service]]\nname = \"kv\"\nsupervisor = \"ap\"\nargv = [\"y\"]\n",
        )],
    );
    let d = dir.path().join("init.d/10-app.toml");
    let e = Config::load(&p).unwrap_err().to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{}:2:8: duplicate name `kv` (first defined at line 4, column 8)",
                d.display()
            ),
            format!("{}:3:14: unknown supervisor `ap`", d.display()),
        ]
    );
    // Only nodes in a drop-in: the boot and init sections stay the main file's.
    std::fs::write(&d, "[init]\nfatal_action = \"hang\"\n").unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:1:2: unknown field `init`", d.display()))
            && e.contains("a drop-in holds only [[service]] and [[supervisor]] tables"),
        "{e}"
    );
    std::fs::write(
        &d,
        "[[service]]\nname = \"app-main\"\nsupervisor = \"app\"\nargv = []\n",
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:4:8: service `app-main`: argv must name a program",
            d.display()
        )
    );
    // A duplicate in the main file of a name a drop-in took first cannot happen (the main file
    // comes first); across two drop-ins the earlier one is named.
    std::fs::write(&d, "[[service]]\nname = \"x\"\nargv = [\"y\"]\n").unwrap();
    std::fs::write(
        dir.path().join("init.d/20.toml"),
        "[[service]]\nname = \"x\"\nargv = [\"y\"]\n",
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(
        e.ends_with(&format!(
            "duplicate name `x` (first defined at {}:2:8)",
            d.display()
        )),
        "{e}"
    );
}

#[test]
fn target_root_checks_programs_and_users_inside_it() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["etc", "bin", "usr/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:100:100::/home/web:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nweb:x:100:\n").unwrap();
    std::fs::write(root.join("bin/busybox"), "#!").unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("/bin/busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("usr/bin/notexec"), "").unwrap();
    let mut c = parse(
        "[[service]]\nname = \"a\"\nargv = [\"sh\", \"-c\", \"true\"]\nuser = \"web\"\ncwd = \"/data/app\"\n\
         [[service]]\nname = \"b\"\nargv = [\"/usr/bin/notexec\"]\nuser = \"nobody\"\n\
         [[service]]\nname = \"c\"\nargv = [\"/usr/bin/gone\"]\noptional = true\n",
    )
    .unwrap();
    let Err(ConfigError::Invalid(d)) = c.check_target(root) else {
        panic!("accepted")
    };
    let d: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(
        d,
        [
            "/etc/myelin/init.toml:8:8: service `b`: `/usr/bin/notexec` is not an executable file (PATH=/usr/sbin:/usr/bin:/sbin:/bin)",
            "/etc/myelin/init.toml:9:8: service `b`: unknown user `nobody`",
        ]
    );
    let a = c.tree.nodes[1].service().unwrap();
    // The device path is kept; the file was found in the target.
    assert_eq!(a.program, Path::new("/bin/sh"));
    assert_eq!((a.uid, a.gid), (Some(100), Some(100)));
    assert!(c.tree.nodes[3].service().unwrap().absent);
}
