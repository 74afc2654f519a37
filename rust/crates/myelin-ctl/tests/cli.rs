//! `myelinctl` against a real myelin-init running as PID 1 in user+PID+mount namespaces.
//!
//! This test executable is also the PID 1: started with `MYELINCTL_TEST_AS_INIT=1`, it runs
//! myelin-init's entry point (the same library code as `/sbin/init`). Then the real
//! `myelinctl` binary is run against its control socket.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if std::env::var("MYELINCTL_TEST_AS_INIT").is_ok() {
        std::process::exit(myelin_init::runtime::main_entry(std::env::args()));
    }
    if std::env::args().any(|a| a == "--list") {
        println!("myelinctl_against_pid1: test");
        return;
    }
    let ok = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // A test that cannot run fails; only the explicit opt-out CI never sets skips it.
        let opted_out = std::env::var("MYELIN_TEST_OPT_OUT")
            .is_ok_and(|v| v.split(',').any(|n| n.trim() == "myelinctl"));
        if opted_out {
            eprintln!("myelinctl: opted out with MYELIN_TEST_OPT_OUT");
            return;
        }
        panic!(
            "myelinctl test: user, PID and mount namespaces are not available here \
             (MYELIN_TEST_OPT_OUT=myelinctl opts out on a machine that cannot have them)"
        );
    }
    let t0 = Instant::now();
    myelinctl_against_pid1();
    println!(
        "test myelinctl_against_pid1 ... ok ({} ms)",
        t0.elapsed().as_millis()
    );
}

struct Init {
    dir: PathBuf,
    child: Child,
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn start_init(dir: &Path) -> Init {
    let cfg = dir.join("init.toml");
    fs::write(
        &cfg,
        format!(
            r#"
[init]
run_dir = "{run}"
fatal_delay = "0s"
unmount = false
kill_wait = "300ms"
[boot]
enabled = false
[log]
kmsg = ""
[[service]]
name = "echo"
argv = ["/bin/sh", "-c", "echo hello from echo; exec sleep 600"]
critical = true
[[supervisor]]
name = "app"
strategy = "one_for_all"
[[service]]
name = "worker"
supervisor = "app"
argv = ["/bin/sh", "-c", "echo working; exec sleep 600"]
"#,
            run = dir.join("run").display()
        ),
    )
    .unwrap();
    let child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
        ])
        .arg(std::env::current_exe().unwrap())
        .arg("--config")
        .arg(&cfg)
        .env("MYELINCTL_TEST_AS_INIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Init {
        dir: dir.to_path_buf(),
        child,
    }
}

fn ctl(init: &Init, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myelinctl"))
        .args(args)
        .env("MYELIN_INIT_SOCKET", init.dir.join("run/init.sock"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn myelinctl_against_pid1() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("myelinctl-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut init = start_init(&dir);

    eventually("ready", || ctl(&init, &["ready"]).status.success());
    let o = ctl(&init, &["status"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.starts_with("myelin-init "), "{s}");
    assert!(s.contains("root (one_for_one)"), "{s}");
    // One line per node, its name first (what scripts and the system tests look for), then
    // the clock's line (myelin-time: not on this bus, which the line says).
    let lines: Vec<&str> = s.lines().collect();
    let time = lines.last().copied().unwrap_or_default();
    assert!(time.starts_with("time: unknown ("), "{s}");
    let first_words: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(first_words, ["root", "echo", "app", "worker"], "{s}");
    assert!(s.contains("\n  echo [critical]"), "{s}");
    assert!(s.contains("\n    worker "), "{s}");

    // The boot timeline: each service once, in start order, ready after it started, and the
    // moment all were ready; PID 1's own phases before them.
    let o = ctl(&init, &["--json", "boot"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let services = t["services"].as_array().unwrap();
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["echo", "worker"], "{t}");
    let init_start = t["init_start_ms"].as_u64().unwrap();
    let mut last_ready = 0;
    for s in services {
        let started = s["started_ms"].as_u64().unwrap();
        let ready = s["ready_ms"].as_u64().unwrap();
        assert!(init_start <= started && started <= ready, "{t}");
        last_ready = last_ready.max(ready);
    }
    assert!(t["all_ready_ms"].as_u64().unwrap() >= last_ready, "{t}");
    assert!(
        t["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "event loop setup"),
        "{t}"
    );
    let text = stdout(&ctl(&init, &["boot"]));
    assert!(
        text.contains("all services ready") && text.contains("slowest to ready:"),
        "{text}"
    );
    let svg = dir.join("boot.svg");
    assert!(
        ctl(&init, &["boot", "--svg", svg.to_str().unwrap()])
            .status
            .success()
    );
    assert!(fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // JSON for scripts.
    let o = ctl(&init, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tree"]["children"][0]["name"], "echo");
    let pid = v["tree"]["children"][0]["pid"].as_u64().unwrap();

    // Logs.
    eventually("log", || {
        stdout(&ctl(&init, &["log", "echo"])).contains("hello from echo")
    });
    let l = stdout(&ctl(&init, &["log", "-n", "1", "worker"]));
    assert_eq!(l.lines().count(), 1, "{l}");
    assert!(l.trim_end().ends_with("]: working"), "{l}");

    // Follow, in the background, while echo is restarted.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_myelinctl"))
        .args(["log", "-f", "-n", "0", "echo"])
        .env("MYELIN_INIT_SOCKET", init.dir.join("run/init.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let o = ctl(&init, &["restart", "echo"]);
    assert_eq!(stdout(&o).trim(), "restarting echo");
    eventually("new echo", || {
        let v: serde_json::Value =
            serde_json::from_slice(&ctl(&init, &["--json", "status"]).stdout).unwrap();
        v["tree"]["children"][0]["pid"]
            .as_u64()
            .is_some_and(|p| p != pid)
            && v["tree"]["children"][0]["state"] == "running"
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    let followed = stdout(&out);
    assert!(
        followed.contains("hello from echo"),
        "follow saw: {followed}"
    );

    // Stop, readiness with the critical service down, start.
    assert!(ctl(&init, &["stop", "echo"]).status.success());
    eventually("stopped", || {
        let s = stdout(&ctl(&init, &["status"]));
        s.lines().any(|l| {
            l.contains("echo [critical]")
                && l.split_whitespace()
                    .any(|w| w.trim_end_matches(',') == "stopped")
        })
    });
    let r = ctl(&init, &["ready", "--critical"]);
    assert_eq!(r.status.code(), Some(1), "{}", stdout(&r));
    assert!(
        stdout(&r)
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["echo", "not", "ready", "stopped", "[critical]"]),
        "{}",
        stdout(&r)
    );
    assert!(ctl(&init, &["start", "echo"]).status.success());
    assert!(
        ctl(&init, &["ready", "--critical", "--wait", "10"])
            .status
            .success()
    );

    // Errors are reported, with a non-zero exit.
    let e = ctl(&init, &["restart", "nonexistent"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("no service or supervisor named `nonexistent`")
    );
    // A log of a service the tree does not have is an error naming it, not an empty listing.
    let e = ctl(&init, &["log", "nosuch"]);
    assert_eq!(e.status.code(), Some(1), "{}", stdout(&e));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("no service named `nosuch`"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    // --level filters: PID 1's own lines at notice or worse only.
    let l = stdout(&ctl(&init, &["log", "--level", "notice", "init"]));
    assert!(l.contains("init: all services ready"), "{l}");
    assert!(
        !l.contains(" started (pid "),
        "info lines filtered out: {l}"
    );
    let e = ctl(&init, &["watchdog", "snooze"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("no hardware watchdog configured"));

    // Reboot through the socket: PID 1 answers, then the namespace ends with RESTART (SIGHUP).
    let o = ctl(&init, &["reboot"]);
    assert_eq!(stdout(&o).trim(), "rebooting");
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = init.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "init did not reboot");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        st.signal() == Some(libc::SIGHUP) || st.code() == Some(129),
        "{st:?}"
    );
}
