//! The real `myelin-init` binary as PID 1 in user+PID+mount+cgroup namespaces: signals,
//! strategies, restart types, escalation to reboot, reaping, shutdown timeouts, readiness,
//! liveness, bad configurations, the control socket and the watchdog rule.
//!
//! No assertion is about elapsed time: tests wait for events (a state, a log line, a file) with
//! generous bounds that only catch a hang, and compare PID 1's own clock readings where a
//! duration matters. The host's mounts and signal state do not reach them (see `support.rs`).
//! A machine without the namespaces fails them; `MYELIN_TEST_OPT_OUT=pid1` opts out.
//!
//! `reboot(2)` from a PID namespace's init ends the namespace: the outer `unshare` dies of
//! SIGHUP for RESTART/RESTART2 and of SIGINT for HALT/POWER_OFF, which is how these tests see
//! which action PID 1 chose. Which one exactly, and its argument, PID 1's kmsg file says.
//!
//! Custom harness (this executable also serves as the test service, see `support.rs`): tests
//! run four at a time; arguments filter by substring; `--list` lists them.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use myelin_init::control::{Body, Client, Op};
use support::{Ns, Outcome, Setup};

const SEC: Duration = Duration::from_secs(1);

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    ("sigterm_reboots", sigterm_reboots),
    ("sigusr1_and_sigpwr_halt", sigusr1_and_sigpwr_halt),
    ("sigusr2_powers_off", sigusr2_powers_off),
    (
        "reboot_param_gives_restart2_argument",
        reboot_param_gives_restart2_argument,
    ),
    ("one_for_one", one_for_one),
    ("one_for_all", one_for_all),
    ("rest_for_one", rest_for_one),
    ("restart_types", restart_types),
    (
        "intensity_escalates_to_reboot",
        intensity_escalates_to_reboot,
    ),
    (
        "nested_escalation_and_poweroff_action",
        nested_escalation_and_poweroff_action,
    ),
    (
        "ten_thousand_orphans_leave_no_zombie",
        ten_thousand_orphans_leave_no_zombie,
    ),
    (
        "service_ignoring_sigterm_is_killed_after_its_timeout",
        service_ignoring_sigterm_is_killed_after_its_timeout,
    ),
    (
        "shutdown_stops_in_reverse_order",
        shutdown_stops_in_reverse_order,
    ),
    ("readiness_orders_the_start", readiness_orders_the_start),
    (
        "hung_watchdog_service_is_restarted",
        hung_watchdog_service_is_restarted,
    ),
    (
        "invalid_config_is_reported_then_reboots",
        invalid_config_is_reported_then_reboots,
    ),
    ("missing_binary_is_reported", missing_binary_is_reported),
    ("missing_config_is_reported", missing_config_is_reported),
    (
        "safe_mode_offers_the_console_shell",
        safe_mode_offers_the_console_shell,
    ),
    (
        "services_get_a_clean_session_and_leave_nothing_behind",
        services_get_a_clean_session_and_leave_nothing_behind,
    ),
    (
        "hang_action_keeps_pid1_serving",
        hang_action_keeps_pid1_serving,
    ),
    ("control_socket_operations", control_socket_operations),
    (
        "reboot_now_skips_the_clean_shutdown",
        reboot_now_skips_the_clean_shutdown,
    ),
    ("log_capture_and_follow", log_capture_and_follow),
    ("log_flood_stays_bounded", log_flood_stays_bounded),
    (
        "watchdog_pets_only_while_critical_services_live",
        watchdog_pets_only_while_critical_services_live,
    ),
    ("boot_duties_in_a_namespace", boot_duties_in_a_namespace),
    (
        "stopped_critical_service_starves_the_watchdog",
        stopped_critical_service_starves_the_watchdog,
    ),
    (
        "console_service_gets_the_terminal",
        console_service_gets_the_terminal,
    ),
    (
        "all_services_ready_is_announced",
        all_services_ready_is_announced,
    ),
    (
        "a_stuck_console_never_stalls_pid1",
        a_stuck_console_never_stalls_pid1,
    ),
    (
        "a_daemon_that_escapes_with_setsid_is_stopped",
        a_daemon_that_escapes_with_setsid_is_stopped,
    ),
    (
        "without_cgroups_the_fallback_is_said",
        without_cgroups_the_fallback_is_said,
    ),
    (
        "an_optional_crash_loop_is_given_up_alone",
        an_optional_crash_loop_is_given_up_alone,
    ),
    (
        "idle_connections_cannot_lock_out_readiness",
        idle_connections_cannot_lock_out_readiness,
    ),
    (
        "log_levels_are_kept_filtered_and_passed_on",
        log_levels_are_kept_filtered_and_passed_on,
    ),
    ("run_lock_is_roots_alone", run_lock_is_roots_alone),
    ("drop_ins_add_services", drop_ins_add_services),
];

fn main() {
    support::run_helper_if_asked();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(n, _)| args.is_empty() || args.iter().any(|a| n.contains(a.as_str())))
        .collect();
    if let Err(why) = support::namespaces_available() {
        if support::opted_out("pid1") {
            println!("pid1: opted out with MYELIN_TEST_OPT_OUT (namespaces: {why})");
            return;
        }
        eprintln!(
            "FAILED: the {} PID-1 tests cannot run: user/PID/mount/cgroup namespaces: {why}\n\
             (MYELIN_TEST_OPT_OUT=pid1 opts out on a machine that cannot have them)",
            selected.len()
        );
        std::process::exit(1);
    }
    println!("running {} PID-1 tests", selected.len());
    let start = Instant::now();
    let queue = std::sync::Mutex::new(selected.into_iter());
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let Some((name, f)) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let t0 = Instant::now();
                    let r = std::panic::catch_unwind(f);
                    let ms = t0.elapsed().as_millis();
                    match r {
                        Ok(()) => println!("test {name} ... ok ({ms} ms)"),
                        Err(_) => {
                            println!("test {name} ... FAILED ({ms} ms)");
                            failed.lock().unwrap().push(*name);
                        }
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    println!(
        "\n{} failed, in {:.1}s",
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(1);
    }
}

fn two_services(name: &str) -> Ns {
    let mut s = Setup::new(name);
    s.body = s.svc("a", &[], "") + &s.svc("b", &[], "");
    let ns = s.start();
    ns.up("a");
    ns.up("b");
    ns
}

fn sigterm_reboots() {
    let mut ns = two_services("sigterm");
    ns.signal(libc::SIGTERM);
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    let k = ns.kmsg();
    assert!(k.contains("reboot requested (SIGTERM)"), "{k}");
    assert!(k.contains("reboot: reboot(2) RESTART\n"), "{k}");
    // Both services got SIGTERM, b (started last) first.
    assert_eq!(ns.names_of("term"), ["b", "a"]);
}

fn sigusr1_and_sigpwr_halt() {
    for (sig, name) in [(libc::SIGUSR1, "usr1"), (libc::SIGPWR, "pwr")] {
        let mut ns = two_services(name);
        ns.signal(sig);
        assert_eq!(ns.wait(10 * SEC), Outcome::HaltOrPoweroff);
        assert!(ns.kmsg().contains("halt: reboot(2) HALT"), "{}", ns.kmsg());
    }
}

fn sigusr2_powers_off() {
    let mut ns = two_services("usr2");
    ns.signal(libc::SIGUSR2);
    assert_eq!(ns.wait(10 * SEC), Outcome::HaltOrPoweroff);
    assert!(
        ns.kmsg().contains("poweroff: reboot(2) POWER_OFF"),
        "{}",
        ns.kmsg()
    );
}

fn reboot_param_gives_restart2_argument() {
    // The fwup/tryboot flow, from inside: write /run/reboot-param, then `kill -TERM 1`.
    let mut s = Setup::new("tryboot");
    s.boot = "[boot]\npseudo_fs = false\nrootdisk_links = false\nclock_floor = false\nloopback = false\n".into();
    s.body = "[[service]]\nname = \"updater\"\nargv = [\"/bin/sh\", \"-c\", \"echo '0 tryboot' > /run/reboot-param; kill -TERM 1; sleep 10\"]\nrestart = \"temporary\"\n".into();
    let mut ns = s.start();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    assert!(
        ns.kmsg()
            .contains("reboot: reboot(2) RESTART2 \"0 tryboot\""),
        "{}",
        ns.kmsg()
    );
}

fn abc(name: &str, strategy: &str) -> Ns {
    let mut s = Setup::new(name);
    // READY=1 makes the start order observable: each waits for the previous one's readiness.
    let ready = [("READY_AFTER_MS", "0")];
    s.body = format!("[root]\nstrategy = \"{strategy}\"\nintensity = 10\n")
        + &s.svc("a", &ready, "notify = true")
        + &s.svc("b", &ready, "notify = true")
        + &s.svc("c", &ready, "notify = true");
    let ns = s.start();
    for n in ["a", "b", "c"] {
        ns.up(n);
    }
    ns
}

fn pids(ns: &Ns) -> [u32; 3] {
    ["a", "b", "c"].map(|n| ns.up(n))
}

fn one_for_one() {
    let ns = abc("one_for_one", "one_for_one");
    let before = pids(&ns);
    ns.tell("b", "crash");
    ns.wait_for("b restarted", 10 * SEC, || {
        ns.node("b").restarts == 1 && ns.node("b").state == "running"
    });
    let after = pids(&ns);
    assert_eq!(
        (after[0], after[2]),
        (before[0], before[2]),
        "a and c untouched"
    );
    assert_ne!(after[1], before[1]);
    assert_eq!(ns.node("b").last_exit.as_deref(), Some("exit 1"));
    assert!(ns.names_of("term").is_empty());
}

fn one_for_all() {
    let ns = abc("one_for_all", "one_for_all");
    let before = pids(&ns);
    ns.tell("b", "crash");
    ns.wait_for("all restarted", 10 * SEC, || {
        ns.names_of("start").len() == 6
    });
    let after = pids(&ns);
    assert!(
        before.iter().zip(after).all(|(b, a)| *b != a),
        "{before:?} {after:?}"
    );
    // The others were stopped in reverse order, then all started in order.
    assert_eq!(ns.names_of("term"), ["c", "a"]);
    assert_eq!(ns.names_of("start"), ["a", "b", "c", "a", "b", "c"]);
}

fn rest_for_one() {
    let ns = abc("rest_for_one", "rest_for_one");
    let before = pids(&ns);
    ns.tell("b", "crash");
    ns.wait_for("b and c restarted", 10 * SEC, || {
        ns.names_of("start").len() == 5
    });
    let after = pids(&ns);
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert_ne!(after[2], before[2]);
    assert_eq!(ns.names_of("term"), ["c"]);
    assert_eq!(ns.names_of("start")[3..], ["b", "c"]);
}

fn restart_types() {
    let mut s = Setup::new("restart_types");
    s.body = "[root]\nintensity = 10\n".to_string()
        + &s.svc("perm", &[], "restart = \"permanent\"")
        + &s.svc("trans_ok", &[], "restart = \"transient\"")
        + &s.svc("trans_bad", &[], "restart = \"transient\"")
        + &s.svc("temp", &[], "restart = \"temporary\"");
    let ns = s.start();
    for n in ["perm", "trans_ok", "trans_bad", "temp"] {
        ns.up(n);
    }
    ns.tell("perm", "exit0");
    ns.tell("trans_ok", "exit0");
    ns.tell("trans_bad", "crash");
    ns.tell("temp", "crash");
    ns.wait_for("decisions", 10 * SEC, || {
        let st = ns.status().tree;
        let state = |n: &str| {
            st.children
                .iter()
                .find(|c| c.name == n)
                .map(|c| (c.state.clone(), c.restarts))
        };
        state("perm") == Some(("running".into(), 1))
            && state("trans_ok") == Some(("exited".into(), 0))
            && state("trans_bad") == Some(("running".into(), 1))
            && state("temp") == Some(("exited".into(), 0))
    });
    // "exited" is the decision itself: nothing restarts them later.
    let starts = ns.names_of("start");
    assert_eq!(starts.iter().filter(|n| *n == "trans_ok").count(), 1);
    assert_eq!(starts.iter().filter(|n| *n == "temp").count(), 1);
}

fn intensity_escalates_to_reboot() {
    let mut s = Setup::new("intensity");
    s.body = "[root]\nintensity = 2\nperiod = \"10s\"\n".to_string()
        + &s.svc("steady", &[], "")
        + "[[service]]\nname = \"flaky\"\nargv = [\"/bin/false\"]\nrestart_delay = \"10ms\"\n";
    let mut ns = s.start();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    let k = ns.kmsg();
    assert!(k.contains("supervisor root: 3 restarts within 10s"), "{k}");
    assert!(k.contains("reboot: reboot(2) RESTART"), "{k}");
    assert_eq!(
        ns.names_of("term"),
        ["steady"],
        "the healthy sibling was stopped cleanly first"
    );
}

fn nested_escalation_and_poweroff_action() {
    let mut s = Setup::new("nested");
    s.init = "fatal_action = \"poweroff\"\n".into();
    s.body = "[root]\nintensity = 1\nperiod = \"10s\"\n".to_string()
        + &s.svc("base", &[], "")
        + "[[supervisor]]\nname = \"app\"\nintensity = 0\n"
        + &s.svc("worker", &[], "supervisor = \"app\"");
    let mut ns = s.start();
    ns.up("worker");
    // app gives up at once (intensity 0); root restarts it once, then gives up too.
    ns.tell("worker", "crash");
    ns.wait_for("app restarted", 10 * SEC, || {
        ns.node("app").restarts == 1 && ns.node("worker").state == "running"
    });
    ns.up("worker");
    ns.tell("worker", "crash");
    assert_eq!(ns.wait(10 * SEC), Outcome::HaltOrPoweroff);
    let k = ns.kmsg();
    assert!(k.contains("supervisor app: 1 restarts within 5s"), "{k}");
    assert!(k.contains("supervisor root: 2 restarts within 10s"), "{k}");
    assert!(k.contains("poweroff: reboot(2) POWER_OFF"), "{k}");
}

fn ten_thousand_orphans_leave_no_zombie() {
    let mut s = Setup::new("zombies");
    s.body = format!(
        "[[service]]\nname = \"forker\"\nargv = [\"{}\"]\nenv = {{ MYELIN_TEST_HELPER = \"zombies\", COUNT = \"10000\", NAME = \"forker\", EVENTS = \"{}\" }}\nrestart = \"temporary\"\n",
        std::env::current_exe().unwrap().display(),
        s.dir.join("events").display()
    ) + &s.svc("alive", &[], "");
    let ns = s.start();
    ns.wait_for("forker done", 60 * SEC, || {
        ns.node("forker").state == "exited"
    });
    assert_eq!(ns.names_of("forked10000"), ["forker"]);
    ns.wait_for("no zombies", 10 * SEC, || ns.zombies() == 0);
    // PID 1 still works.
    assert_eq!(ns.node("alive").state, "running");
}

fn service_ignoring_sigterm_is_killed_after_its_timeout() {
    let mut s = Setup::new("stubborn");
    s.body = s.svc("stubborn", &[("IGNORE_TERM", "1")], "shutdown = \"400ms\"");
    let ns = s.start();
    ns.up("stubborn");
    let mut c = ns.client();
    c.call(Op::Stop {
        name: "stubborn".into(),
    })
    .unwrap();
    ns.wait_for("stopped", 10 * SEC, || {
        ns.node("stubborn").state == "stopped"
    });
    // When the KILL came is the supervisor's (unit-tested against a hand-moved clock); here,
    // that TERM came first and KILL only because TERM was ignored.
    let k = ns.kmsg();
    assert!(
        k.find("stopping stubborn (Term)") < k.find("stubborn did not stop in time: SIGKILL"),
        "{k}"
    );
    assert_eq!(
        ns.names_of("term"),
        ["stubborn"],
        "it did get SIGTERM first"
    );
    assert_eq!(ns.node("stubborn").last_exit.as_deref(), Some("signal 9"));
    assert!(ns.kmsg().contains("stubborn did not stop in time: SIGKILL"));
}

fn shutdown_stops_in_reverse_order() {
    let mut s = Setup::new("reverse");
    s.body = s.svc("first", &[], "")
        + "[[supervisor]]\nname = \"grp\"\n"
        + &s.svc("inner1", &[], "supervisor = \"grp\"")
        + &s.svc("inner2", &[], "supervisor = \"grp\"")
        + &s.svc("last", &[("IGNORE_TERM", "1")], "shutdown = \"300ms\"");
    let mut ns = s.start();
    for n in ["first", "inner1", "inner2", "last"] {
        ns.up(n);
    }
    ns.client().call(Op::Reboot { arg: None }).unwrap();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    assert_eq!(ns.names_of("term"), ["last", "inner2", "inner1", "first"]);
    // inner2 is stopped only once `last` is gone: killed after its timeout, as PID 1 says in
    // this order.
    let k = ns.kmsg();
    let at = |needle: &str| {
        k.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in\n{k}"))
    };
    assert!(
        at("last did not stop in time: SIGKILL") < at("stopping inner2"),
        "{k}"
    );
    assert!(at("last (pid") < at("stopping inner2"), "{k}");
}

fn readiness_orders_the_start() {
    let mut s = Setup::new("readiness");
    let sock = s.dir.join("db.sock");
    s.body = s.svc("slow", &[("READY_AFTER_MS", "300")], "notify = true")
        + &s.svc(
            "db",
            &[
                ("LISTEN_PATH", &sock.display().to_string()),
                ("LISTEN_AFTER_MS", "200"),
            ],
            &format!("ready_path = \"{}\"", sock.display()),
        )
        + &s.svc("next", &[], "");
    let ns = s.start();
    ns.up("next");
    let ev = ns.events();
    let t = |n: &str, w: &str| ev.iter().find(|e| e.0 == n && e.1 == w).unwrap().2;
    assert!(
        t("next", "start") > t("slow", "ready") + 200_000,
        "next waited for slow's READY=1 and db's socket"
    );
    let r = match ns.client().call(Op::Readiness).unwrap() {
        Body::Readiness(r) => r,
        b => panic!("{b:?}"),
    };
    assert!(r.all_ready);
}

fn hung_watchdog_service_is_restarted() {
    let mut s = Setup::new("hung");
    s.body = "[root]\nintensity = 10\n".to_string()
        + &s.svc(
            "beat",
            &[("READY_AFTER_MS", "0"), ("PING_MS", "50")],
            "notify = true\nwatchdog = \"400ms\"\nshutdown = \"200ms\"",
        );
    let ns = s.start();
    let pid = ns.up("beat");
    // Alive for more than twice its watchdog period, by its own pings' clock.
    ns.wait_for("pings over 800 ms", 10 * SEC, || {
        let ev = ns.events();
        let start = ev
            .iter()
            .find(|e| e.0 == "beat" && e.1 == "start")
            .map(|e| e.2);
        let last = ev
            .iter()
            .rev()
            .find(|e| e.0 == "beat" && e.1 == "ping")
            .map(|e| e.2);
        matches!((start, last), (Some(s), Some(l)) if l > s + 800_000)
    });
    assert_eq!(ns.node("beat").restarts, 0, "pings keep it alive");
    ns.tell("beat", "hang");
    ns.wait_for("restart after the missed ping", 10 * SEC, || {
        let n = ns.node("beat");
        n.restarts == 1 && n.state == "running" && n.pid != Some(pid)
    });
    let n = ns.node("beat");
    assert!(
        n.last_exit
            .as_deref()
            .unwrap_or("")
            .starts_with("watchdog timeout"),
        "{n:?}"
    );
    assert!(ns.kmsg().contains("beat: watchdog timeout, sending Abrt"));
}

fn invalid_config_is_reported_then_reboots() {
    let mut s = Setup::new("invalid");
    s.body = "[[service]]\nname = \"x\"\nargv = [\"/bin/true\"]\nrestrat = \"permanent\"\n".into();
    let cfg_lines = s.config().lines().count();
    let mut ns = s.start();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    let file = ns.dir.join("init.toml");
    let expect = format!(
        "{}:{}:1: unknown field `restrat`",
        file.display(),
        cfg_lines
    );
    assert!(
        ns.kmsg().contains(&expect),
        "kmsg lacks {expect}:\n{}",
        ns.kmsg()
    );
    assert!(
        ns.console().contains(&expect),
        "console lacks {expect}:\n{}",
        ns.console()
    );
    assert!(
        ns.kmsg().contains("FATAL: cannot continue; reboot"),
        "{}",
        ns.kmsg()
    );
}

fn missing_binary_is_reported() {
    let mut s = Setup::new("missing");
    s.init = "fatal_action = \"halt\"\n".into();
    s.body = "[[service]]\nname = \"ghost\"\nargv = [\"/no/such/daemon\", \"-x\"]\n".into();
    let mut ns = s.start();
    assert_eq!(ns.wait(10 * SEC), Outcome::HaltOrPoweroff);
    let k = ns.kmsg();
    assert!(
        k.contains("service `ghost`: `/no/such/daemon` is not an executable file"),
        "{k}"
    );
    assert!(k.contains("init.toml:"), "{k}");
    assert!(k.contains("halt: reboot(2) HALT"), "{k}");
}

fn hang_action_keeps_pid1_serving() {
    let mut s = Setup::new("hang");
    s.init = "fatal_action = \"hang\"\n".into();
    let wd = s.dir.join("wd");
    s.body = format!(
        "[watchdog]\nfake = true\ndevice = \"{}\"\ntimeout = \"1s\"\ngrace = \"0s\"\n[root]\nintensity = 0\n",
        wd.display()
    ) + &s.svc("a", &[], "critical = true");
    let mut ns = s.start();
    ns.up("a");
    ns.tell("a", "crash");
    ns.wait_for("hung", 10 * SEC, || ns.status().phase == "hung");
    assert!(ns.alive());
    // Hung on purpose: the hardware watchdog keeps being petted, the device stays up.
    let before = pets(&ns).len();
    ns.wait_for("two more pets", 10 * SEC, || pets(&ns).len() >= before + 2);
    assert_eq!(ns.node("a").state, "waiting");
    let err = ns
        .client()
        .call(Op::Start { name: "a".into() })
        .unwrap_err();
    assert!(err.to_string().contains("halted"), "{err}");
    // A reboot request still works.
    ns.client()
        .call(Op::Reboot {
            arg: Some("42".into()),
        })
        .unwrap();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    assert!(ns.kmsg().contains("RESTART2 \"42\""), "{}", ns.kmsg());
}

fn control_socket_operations() {
    let mut s = Setup::new("control");
    s.body = s.svc("a", &[], "") + &s.svc("b", &[], "critical = true");
    let ns = s.start();
    let pid_b = ns.running("b");
    let mut c = ns.client();
    // One connection, several requests.
    assert!(matches!(
        c.call(Op::Restart { name: "b".into() }).unwrap(),
        Body::Ok { .. }
    ));
    ns.wait_for("b restarted", 10 * SEC, || {
        ns.node("b").pid.is_some_and(|p| p != pid_b) && ns.node("b").state == "running"
    });
    assert_eq!(
        ns.node("b").restarts,
        0,
        "an operator restart is not a failure"
    );
    c.call(Op::Stop { name: "a".into() }).unwrap();
    ns.wait_for("a stopped", 10 * SEC, || ns.node("a").state == "stopped");
    let r = match c.call(Op::Readiness).unwrap() {
        Body::Readiness(r) => r,
        b => panic!("{b:?}"),
    };
    assert!(r.critical_ready);
    assert!(r.all_ready, "a stopped by the operator does not count");
    c.call(Op::Start { name: "a".into() }).unwrap();
    ns.running("a");
    let e = c
        .call(Op::Stop {
            name: "nope".into(),
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no service or supervisor named `nope`")
    );
    // Version check.
    use std::io::{BufRead, BufReader, Write};
    let mut raw = std::os::unix::net::UnixStream::connect(ns.dir.join("run/init.sock")).unwrap();
    raw.write_all(b"{\"v\":9,\"op\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&raw).read_line(&mut line).unwrap();
    assert!(line.contains("unsupported protocol version 9"), "{line}");
    let st = ns.status();
    assert_eq!(st.phase, "running");
    assert!(st.uptime_ms > 0);
    assert_eq!(st.tree.children.len(), 2);
}

fn reboot_now_skips_the_clean_shutdown() {
    // A service that would hold a clean shutdown for 30 s: the immediate reboot does not wait.
    // (A clean shutdown would wait forever for it: only the immediate reboot can end this.)
    let mut s = Setup::new("rebootnow");
    s.body = s.svc(
        "stubborn",
        &[("IGNORE_TERM", "1")],
        "shutdown = \"infinity\"",
    );
    let mut ns = s.start();
    ns.up("stubborn");
    assert!(matches!(
        ns.client().call(Op::RebootNow).unwrap(),
        Body::Ok { .. }
    ));
    assert_eq!(ns.wait(60 * SEC), Outcome::Reboot);
    assert!(ns.names_of("term").is_empty(), "no service was stopped");
    let kmsg = ns.kmsg();
    assert!(
        kmsg.contains("immediate reboot: reboot(2) RESTART"),
        "{kmsg}"
    );
    assert!(!kmsg.contains("stopping services"), "{kmsg}");
}

fn log_capture_and_follow() {
    let mut s = Setup::new("logs");
    s.body = s.svc("talker", &[("PRINT", "hello world")], "");
    let ns = s.start();
    ns.running("talker");
    let lines = |c: &mut Client| -> Vec<(String, String)> {
        let mut v = Vec::new();
        while let Some(b) = c.receive().unwrap() {
            match b {
                Body::Log(e) => v.push((e.service, e.text)),
                Body::End => break,
                b => panic!("{b:?}"),
            }
        }
        v
    };
    let mut c = ns.client();
    ns.wait_for("output logged", 10 * SEC, || {
        c.send(Op::Log {
            level: None,
            service: Some("talker".into()),
            lines: None,
            follow: false,
        })
        .unwrap();
        lines(&mut c).len() == 2
    });
    c.send(Op::Log {
        level: None,
        service: Some("talker".into()),
        lines: None,
        follow: false,
    })
    .unwrap();
    let got = lines(&mut c);
    assert!(
        got.contains(&("talker".into(), "hello world".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("talker".into(), "hello world (stderr)".into())),
        "{got:?}"
    );
    // Follow: new lines arrive as they are written.
    let mut f = ns.client();
    f.send(Op::Log {
        level: None,
        service: Some("talker".into()),
        lines: Some(0),
        follow: true,
    })
    .unwrap();
    ns.tell("talker", "crash");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match f.receive().unwrap() {
            Some(Body::Log(e)) => seen.push(e.text),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        ["hello world", "hello world (stderr)"],
        "the restarted instance's output"
    );
    // init's own messages are in the ring too.
    c.send(Op::Log {
        level: None,
        service: Some("init".into()),
        lines: Some(50),
        follow: false,
    })
    .unwrap();
    let init = lines(&mut c);
    assert!(
        init.iter()
            .any(|(_, t)| t.contains("talker") && t.contains("ended: exit 1")),
        "{init:?}"
    );
}

fn log_flood_stays_bounded() {
    let mut s = Setup::new("flood");
    s.log = "ring_bytes = 65536\nkmsg_rate = 10\nkmsg_burst = 20\n".into();
    let started = Instant::now();
    s.body = "[[service]]\nname = \"flood\"\nargv = [\"/bin/sh\", \"-c\", \"yes 'flooding the log with a long line of text' | head -c 50000000; sleep 60\"]\n".into();
    let ns = s.start();
    ns.running("flood");
    let mut c = ns.client();
    ns.wait_for("flood read", 30 * SEC, || {
        c.send(Op::Log {
            level: None,
            service: Some("flood".into()),
            lines: Some(1),
            follow: false,
        })
        .unwrap();
        let mut last = 0;
        while let Some(b) = c.receive().unwrap() {
            match b {
                Body::Log(e) => last = e.seq,
                _ => break,
            }
        }
        // 50 MB of 43-byte lines is about 1.16 million lines.
        last > 1_100_000
    });
    c.send(Op::Log {
        level: None,
        service: None,
        lines: None,
        follow: false,
    })
    .unwrap();
    let mut bytes = 0;
    let mut n = 0;
    while let Some(Body::Log(e)) = c.receive().unwrap() {
        bytes += e.text.len() + e.service.len() + 64;
        n += 1;
    }
    assert!(bytes <= 65536, "ring holds {bytes} bytes");
    assert!(n > 100, "{n} lines kept");
    // The limit admits the burst plus 10 lines a second for as long as the flood lasted (a
    // loaded machine makes it last longer), each possibly preceded by a "not copied" note;
    // without a limit it would be a million lines.
    let admitted = 20 + 10 * (started.elapsed().as_secs() as usize + 1);
    let kmsg_lines = ns.kmsg().lines().count();
    assert!(
        kmsg_lines <= 2 * admitted + 10,
        "kmsg rate limit: {kmsg_lines} lines in {:?}",
        started.elapsed()
    );
    assert!(
        ns.kmsg()
            .contains("log lines not copied to kmsg (rate limit)")
    );
    let rss = ns.init_rss_kib().unwrap();
    assert!(rss < 16 * 1024, "PID 1 RSS {rss} KiB after the flood");
}

fn pets(ns: &Ns) -> Vec<u64> {
    support::read(&ns.dir.join("wd"))
        .lines()
        .filter_map(|l| l.strip_prefix("pet ")?.parse().ok())
        .collect()
}

/// PID 1's view of the watchdog, all from one reading of its clock: (uptime, healthy, time
/// since the last pet, state of `service`).
fn wd_view(ns: &Ns, service: &str) -> (u64, bool, u64, String) {
    let st = ns.status();
    let w = st.watchdog.expect("watchdog in status");
    fn find(n: &myelin_init::control::NodeStatus, name: &str) -> Option<String> {
        if n.name == name {
            return Some(n.state.clone());
        }
        n.children.iter().find_map(|c| find(c, name))
    }
    (
        st.uptime_ms,
        w.policy.healthy,
        w.policy.last_pet_ms_ago.expect("petted once"),
        find(&st.tree, service).expect("service"),
    )
}

/// Waits until PID 1's clock has moved `ms` past `from` (an uptime it reported).
fn wait_pid1_clock(ns: &Ns, from: u64, ms: u64) {
    ns.wait_for("PID 1's clock", 30 * SEC, || {
        ns.status().uptime_ms >= from + ms
    });
}

/// Between two views no pet happened: the time since the last pet grew by exactly the time
/// between them (same clock, same last pet).
fn no_pet_between(a: &(u64, bool, u64, String), b: &(u64, bool, u64, String)) -> bool {
    b.2 - a.2 == b.0 - a.0
}

fn watchdog_pets_only_while_critical_services_live() {
    let mut s = Setup::new("watchdog");
    let wd = s.dir.join("wd");
    // The second restart waits for an hour: vital is down until an operator starts it.
    s.body = format!(
        "[watchdog]\nfake = true\ndevice = \"{}\"\ntimeout = \"1s\"\ngrace = \"0s\"\n[root]\nintensity = 10\n",
        wd.display()
    ) + &s.svc(
        "vital",
        &[],
        "critical = true\nrestart_delay = \"1h\"\nrestart_delay_max = \"1h\"",
    ) + &s.svc("other", &[], "");
    let mut ns = s.start();
    ns.up("other");
    ns.up("vital");
    ns.wait_for("pets while healthy", 10 * SEC, || pets(&ns).len() >= 3);
    // First crash: restarted at once. Second: a backoff, during which vital is dead.
    ns.tell("vital", "crash");
    ns.wait_for("first restart", 10 * SEC, || {
        ns.node("vital").restarts == 1 && ns.node("vital").state == "running"
    });
    ns.up("vital");
    ns.tell("vital", "crash");
    ns.wait_for("backoff", 10 * SEC, || {
        ns.node("vital").state == "restarting"
    });
    // Over more than two pet intervals of PID 1's clock: unhealthy, and not one pet.
    let a = wd_view(&ns, "vital");
    wait_pid1_clock(&ns, a.0, 1200);
    let b = wd_view(&ns, "vital");
    assert_eq!(
        (a.1, b.1, b.3.as_str()),
        (false, false, "restarting"),
        "{a:?} {b:?}"
    );
    assert!(
        no_pet_between(&a, &b),
        "petted while vital was down: {a:?} {b:?}"
    );
    // Back up (an operator cuts the backoff short): pets resume.
    ns.client()
        .call(Op::Start {
            name: "vital".into(),
        })
        .unwrap();
    ns.running("vital");
    let n = pets(&ns).len();
    ns.wait_for("pets resumed", 10 * SEC, || pets(&ns).len() > n);
    assert!(wd_view(&ns, "vital").1, "healthy again");
    // Snooze overrides, guarded reboot pets once more and never again.
    assert!(matches!(
        ns.client().call(Op::WatchdogSnooze).unwrap(),
        Body::Ok { .. }
    ));
    let wdst = ns.status().watchdog.unwrap();
    assert_eq!(wdst.identity, "fake");
    assert_eq!(wdst.timeout_ms, 1000);
    assert!(wdst.policy.snooze_left_ms > 60_000);
    let before = pets(&ns).len();
    ns.client().call(Op::Reboot { arg: None }).unwrap();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    let after = pets(&ns).len();
    assert!(
        after == before + 1 || after == before + 2,
        "one guarded pet at shutdown ({before} -> {after})"
    );
}

fn boot_duties_in_a_namespace() {
    // What a user namespace allows: tmpfs on /tmp and /run, loopback (own net namespace),
    // hostname (own UTS namespace), rlimits, an extra mount.
    let mut s = Setup::new("boot");
    s.unshare = vec!["--net".into()];
    let mnt = s.dir.join("mnt");
    s.boot = format!(
        "[boot]\npseudo_fs = false\nrootdisk_links = false\nclock_floor = false\nhostname = \"myelin-%-.4s\"\nserial_sources = [\"uboot_env\"]\nrlimits = {{ nofile = \"1000:2000\" }}\n[[boot.mount]]\nsource = \"tmpfs\"\ntarget = \"{}\"\nfstype = \"tmpfs\"\noptions = \"nodev,mode=700\"\n",
        mnt.display()
    );
    s.body = format!(
        "[[service]]\nname = \"probe\"\nargv = [\"/bin/sh\", \"-c\", \"echo host=$(cat /proc/sys/kernel/hostname) nofile=$(ulimit -n) tmp=$(stat -f -c %T /tmp) run=$(stat -f -c %T /run) mnt=$(stat -f -c %T {}) lo=$(ip -o link show lo | grep -c ,UP); sleep 60\"]\n",
        mnt.display()
    );
    let ns = s.start();
    ns.running("probe");
    let line = ns.last_line("probe", "host=");
    assert_eq!(
        line,
        "host=myelin-0000 nofile=1000 tmp=tmpfs run=tmpfs mnt=tmpfs lo=1"
    );
}

fn stopped_critical_service_starves_the_watchdog() {
    // SIGSTOP (a debugger, an operator) on a critical service: not alive, so no pets; its
    // WATCHDOG=1 deadline waits rather than killing what was frozen on purpose. SIGCONT: back.
    let mut s = Setup::new("paused");
    let wd = s.dir.join("wd");
    s.body = format!(
        "[watchdog]\nfake = true\ndevice = \"{}\"\ntimeout = \"1s\"\ngrace = \"0s\"\n",
        wd.display()
    ) + &s.svc(
        "vital",
        &[("READY_AFTER_MS", "0"), ("PING_MS", "50")],
        "critical = true\nnotify = true\nwatchdog = \"300ms\"",
    );
    let ns = s.start();
    let pid = ns.up("vital");
    ns.wait_for("pinging", 10 * SEC, || ns.names_of("ping").len() >= 5);
    ns.tell("vital", "stop");
    ns.wait_for("paused", 10 * SEC, || ns.node("vital").state == "paused");
    // Stopped for three of its watchdog periods and more than two pet intervals, by PID 1's
    // clock: no pet, and not killed for the pings it cannot send.
    let a = wd_view(&ns, "vital");
    wait_pid1_clock(&ns, a.0, 1200);
    let b = wd_view(&ns, "vital");
    assert_eq!(
        (a.1, b.1, b.3.as_str()),
        (false, false, "paused"),
        "{a:?} {b:?}"
    );
    assert!(
        no_pet_between(&a, &b),
        "petted while the critical service was stopped: {a:?} {b:?}"
    );
    assert_eq!(
        ns.node("vital").restarts,
        0,
        "not killed for missing pings while stopped"
    );
    let host = ns.host_pid(pid).expect("host pid of vital");
    // SAFETY: kill(2).
    unsafe { libc::kill(host, libc::SIGCONT) };
    ns.wait_for("running again", 10 * SEC, || {
        ns.node("vital").state == "running"
    });
    let n = pets(&ns).len();
    ns.wait_for("pets resume", 10 * SEC, || pets(&ns).len() > n);
    // A fresh liveness period, kept by its pings: still the same process two periods later.
    let c = wd_view(&ns, "vital");
    wait_pid1_clock(&ns, c.0, 600);
    let n = ns.node("vital");
    assert_eq!((n.restarts, n.pid), (0, Some(pid)), "{n:?}");
    assert!(ns.kmsg().contains("vital was stopped by a signal (paused)"));
}

fn console_service_gets_the_terminal() {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    // A pseudo-terminal stands in for the serial console.
    // SAFETY: plain libc pty calls; the master fd is owned by `master` from here on.
    let (mut master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m))
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(m), name)
    };
    let mut s = Setup::new("console");
    s.boot = format!(
        "[boot]\npseudo_fs = false\nrootdisk_links = false\ntmpfs = false\nclock_floor = false\nloopback = false\nconsole = \"{slave}\"\n"
    );
    s.body = "[[service]]\nname = \"shell\"\nargv = [\"/bin/sh\", \"-i\"]\nconsole = true\n".into();
    let ns = s.start();
    ns.running("shell");
    master
        .write_all(b"echo tty=$(tty) answer=$((6*7));\n")
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + 10 * SEC;
    let mut buf = [0u8; 1024];
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("answer=42") {
        match master.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(&format!("tty={slave} answer=42")),
        "console said: {text}"
    );
    // Not captured into the log: it is the terminal's.
    let mut c = ns.client();
    c.send(Op::Log {
        level: None,
        service: Some("shell".into()),
        lines: None,
        follow: false,
    })
    .unwrap();
    assert!(matches!(c.receive().unwrap(), Some(Body::End)));
}

fn all_services_ready_is_announced() {
    let mut s = Setup::new("announce");
    s.body = s.svc("a", &[("READY_AFTER_MS", "200")], "notify = true") + &s.svc("b", &[], "");
    let ns = s.start();
    ns.wait_for("announcement", 10 * SEC, || {
        ns.console().contains("myelin-init: all services ready")
    });
    assert!(
        ns.kmsg().contains("<29>myelin-init: all services ready\n"),
        "{}",
        ns.kmsg()
    );
    // Only once a was ready and b, after it, had started.
    let k = ns.kmsg();
    let at = |needle: &str| {
        k.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in\n{k}"))
    };
    assert!(
        at("myelin-init: a ready") < at("myelin-init: all services ready"),
        "{k}"
    );
    assert!(
        at("myelin-init: b started") < at("myelin-init: all services ready"),
        "{k}"
    );
    assert_eq!(ns.console().matches("all services ready").count(), 1);
}

fn a_stuck_console_never_stalls_pid1() {
    use std::os::fd::FromRawFd;
    // PID 1's console is a terminal nobody reads (a serial line with flow control held): once
    // its buffer is full, writing would block. A crash loop makes PID 1 write a lot to it.
    // SAFETY: plain libc pty calls; both descriptors are owned by Files from here on.
    let (master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
        let sl = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(sl >= 0);
        (
            std::fs::File::from_raw_fd(m),
            std::fs::File::from_raw_fd(sl),
        )
    };
    let mut s = Setup::new("stuck_console");
    s.console = Some(slave);
    s.body = "[root]\nintensity = 1000000\nperiod = \"1s\"\n\
              [[service]]\nname = \"flap\"\nargv = [\"/bin/false\"]\nrestart_delay = \"0s\"\nrestart_delay_max = \"0s\"\n"
        .into();
    let ns = s.start();
    // Thousands of "ended"/"restarting" warnings: far more than a terminal buffer holds. The
    // bound only catches a hang: a loaded machine restarts slower.
    ns.wait_for("many restarts", 300 * SEC, || {
        ns.node("flap").restarts > 1200
    });
    // PID 1 answers (a blocked one never would: the client gives up after 10 s) and its loop
    // goes on.
    let r1 = ns.node("flap").restarts;
    assert_eq!(ns.status().phase, "running");
    ns.wait_for("more restarts", 30 * SEC, || ns.node("flap").restarts > r1);
    drop(master);
}

fn missing_config_is_reported() {
    let mut s = Setup::new("noconfig");
    let missing = s.dir.join("nowhere/init.toml");
    s.config_file = Some(missing.clone());
    let mut ns = s.start();
    // Nothing readable: defaults (reboot, no shell), after saying why on console and kmsg.
    assert_eq!(ns.wait(20 * SEC), Outcome::Reboot);
    let expect = format!(
        "{}: cannot read: No such file or directory",
        missing.display()
    );
    assert!(ns.console().contains(&expect), "{}", ns.console());
    assert!(ns.kmsg().contains(&expect), "{}", ns.kmsg());
}

fn services_get_a_clean_session_and_leave_nothing_behind() {
    // Both spawn paths: posix_spawn (no user switch) and fork+exec (`user = 0`).
    let mut s = Setup::new("session");
    let work = s.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let probe = format!(
        "set -- $(cat /proc/self/stat); echo pid=$$ sid=$6 \
         blk=$(grep SigBlk /proc/self/status | cut -f2) ign=$(grep SigIgn /proc/self/status | cut -f2) \
         cwd=$(pwd) env=$(env | cut -d= -f1 | sort | tr '\\n' ,); (trap '' TERM; exec sleep 300) & echo $! > {}/$0.child; exec sleep 300",
        s.dir.display()
    );
    s.body = format!(
        "[[service]]\nname = \"fast\"\nargv = [\"/bin/sh\", \"-c\", {probe:?}, \"fast\"]\ncwd = \"{w}\"\nenv = {{ ONLY = \"this\" }}\n\
         [[service]]\nname = \"forked\"\nargv = [\"/bin/sh\", \"-c\", {probe:?}, \"forked\"]\ncwd = \"{w}\"\nenv = {{ ONLY = \"this\" }}\nuser = 0\n",
        w = work.display()
    );
    let ns = s.start();
    for name in ["fast", "forked"] {
        let pid = ns.running(name);
        let line = ns.last_line(name, "pid=");
        // No signal blocked; none of the standard ones ignored (glibc's posix_spawn leaves its
        // two internal real-time signals, 32 and 33, ignored, as for any posix_spawn child),
        // although PID 1 was started with SIGINT, SIGQUIT, SIGHUP, SIGTSTP and SIGPIPE ignored
        // and SIGALRM and SIGUSR2 blocked (see support.rs).
        let ign = line
            .split(" ign=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap();
        let ign = u64::from_str_radix(ign, 16).unwrap();
        assert_eq!(ign & 0x7fff_ffff, 0, "{name}: {line}");
        let line = line.replace(&format!(" ign={:016x}", ign), "");
        assert_eq!(
            line,
            format!(
                "pid={pid} sid={pid} blk=0000000000000000 cwd={} env=HOME,MYELIN_LOG,NOTIFY_SOCKET,ONLY,PATH,PWD,",
                work.display()
            ),
            "{name}"
        );
    }
    // A background child left in the service's process group goes when the service goes, even
    // one that ignores SIGTERM.
    let child: u32 = support::read(&ns.dir.join("fast.child"))
        .trim()
        .parse()
        .unwrap();
    assert!(ns.alive_inside(child), "the background sleep runs");
    ns.client()
        .call(Op::Stop {
            name: "fast".into(),
        })
        .unwrap();
    ns.wait_for("fast stopped", 10 * SEC, || {
        ns.node("fast").state == "stopped"
    });
    ns.wait_for("its background child gone", 10 * SEC, || {
        !ns.alive_inside(child)
    });
    assert_eq!(ns.zombies(), 0);
}

fn open_pty() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc pty calls; the master descriptor is owned by the File from here on.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m))
            .to_string_lossy()
            .into_owned();
        libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK);
        (std::fs::File::from_raw_fd(m), name)
    }
}

fn read_until(master: &mut std::fs::File, needle: &str, timeout: Duration) -> String {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains(needle) {
        match master.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn safe_mode_offers_the_console_shell() {
    use std::io::Write;
    let (mut master, slave) = open_pty();
    let mut s = Setup::new("safe_shell");
    s.init = "shell = \"/bin/sh\"\n".into();
    s.boot = format!("[boot]\nenabled = false\nconsole = \"{slave}\"\n");
    s.body = "[[service]]\nname = \"x\"\nargv = [\"/bin/true\"]\nshutdown = \"someday\"\n".into();
    let mut ns = s.start();
    // The error is on the console, and a shell there to look into it.
    ns.wait_for("safe mode", 10 * SEC, || ns.kmsg().contains("safe mode"));
    assert!(
        ns.kmsg().contains("invalid shutdown \"someday\""),
        "{}",
        ns.kmsg()
    );
    master.write_all(b"echo safe-$((2+3))\n").unwrap();
    let out = read_until(&mut master, "safe-5", 10 * SEC);
    assert!(out.contains("safe-5"), "console: {out}");
    assert!(ns.alive(), "PID 1 waits for the shell");
    // Leaving the shell: the fatal action (reboot by default).
    master.write_all(b"exit\n").unwrap();
    assert_eq!(ns.wait(10 * SEC), Outcome::Reboot);
    assert!(ns.kmsg().contains("console shell exited"), "{}", ns.kmsg());
}

/// A service that leaves a grandchild in a session of its own (`setsid`), ignoring SIGTERM:
/// the classic double-forking daemon. Its pid goes to `<scratch>/<name>.escaped`.
fn escaping_service(s: &Setup, name: &str) -> String {
    let script = format!(
        "setsid sh -c 'echo $$ > {dir}/{name}.escaped; trap \"\" TERM; exec sleep 300' & exec sleep 300",
        dir = s.dir.display()
    );
    format!(
        "[[service]]\nname = \"{name}\"\nargv = [\"/bin/sh\", \"-c\", {script:?}]\nshutdown = \"2s\"\n"
    )
}

fn escaped_pid(ns: &Ns, name: &str) -> u32 {
    let f = ns.dir.join(format!("{name}.escaped"));
    let mut pid = 0;
    ns.wait_for("the escaped pid", 10 * SEC, || {
        pid = support::read(&f).trim().parse().unwrap_or(0);
        pid != 0 && ns.alive_inside(pid)
    });
    pid
}

fn a_daemon_that_escapes_with_setsid_is_stopped() {
    let mut s = Setup::new("setsid");
    s.body = escaping_service(&s, "daemon");
    let ns = s.start();
    assert!(
        ns.cgroup,
        "this machine gives the test no cgroup2 hierarchy"
    );
    ns.running("daemon");
    let k = ns.kmsg();
    assert!(
        k.contains("process tracking: cgroup v2, one cgroup per service"),
        "{k}"
    );
    let escaped = escaped_pid(&ns, "daemon");
    ns.client()
        .call(Op::Stop {
            name: "daemon".into(),
        })
        .unwrap();
    ns.wait_for("daemon stopped", 10 * SEC, || {
        ns.node("daemon").state == "stopped"
    });
    ns.wait_for("the escaped process gone", 10 * SEC, || {
        !ns.alive_inside(escaped)
    });
    // And when the main process dies on its own, what it left goes too.
    std::fs::remove_file(ns.dir.join("daemon.escaped")).unwrap();
    ns.client()
        .call(Op::Start {
            name: "daemon".into(),
        })
        .unwrap();
    let main = ns.running("daemon");
    let escaped = escaped_pid(&ns, "daemon");
    // SAFETY: kill(2) of the namespace's process, from outside.
    unsafe { libc::kill(ns.host_pid(main).expect("host pid"), libc::SIGKILL) };
    ns.wait_for("the leftover gone", 10 * SEC, || !ns.alive_inside(escaped));
}

fn without_cgroups_the_fallback_is_said() {
    let mut s = Setup::new("nocgroup");
    s.init = "cgroups = false\n".into();
    s.body = s.svc("a", &[], "");
    let ns = s.start();
    ns.up("a");
    let k = ns.kmsg();
    assert!(
        k.contains("process tracking: process groups and sessions (cgroups = false in [init]); a daemon that calls setsid escapes it"),
        "{k}"
    );
}

fn an_optional_crash_loop_is_given_up_alone() {
    // The dropbear case: an optional service that exits at once, in the system group between a
    // critical service and another one, under a platform group, as in the shipped tree.
    let mut s = Setup::new("dropbear");
    s.body = "[root]\nintensity = 3\nperiod = \"10s\"\n\
              [[supervisor]]\nname = \"platform\"\nstrategy = \"rest_for_one\"\nintensity = 3\nperiod = \"10s\"\n\
              [[supervisor]]\nname = \"system\"\nsupervisor = \"platform\"\nstrategy = \"rest_for_one\"\nintensity = 5\nperiod = \"30s\"\n"
        .to_string()
        + &s.svc("vital", &[], "supervisor = \"system\"\ncritical = true")
        + "[[service]]\nname = \"ssh\"\nsupervisor = \"system\"\nargv = [\"/bin/false\"]\noptional = true\nrestart_delay = \"10ms\"\n"
        + &s.svc("net", &[], "supervisor = \"system\"")
        + &s.svc("app", &[], "supervisor = \"platform\"");
    let ns = s.start();
    let vital = ns.up("vital");
    let app = ns.up("app");
    ns.wait_for("ssh given up", 30 * SEC, || {
        ns.node("ssh").state == "failed"
    });
    let ssh = ns.node("ssh");
    assert_eq!(
        ssh.restarts, 5,
        "restarted up to system's intensity, then given up"
    );
    assert!(
        ssh.last_exit
            .as_deref()
            .unwrap_or("")
            .contains("given up after 6 restarts within 30s"),
        "{ssh:?}"
    );
    // The platform intact: same processes, no group restarted.
    assert_eq!(ns.node("vital").pid, Some(vital));
    assert_eq!(ns.node("app").pid, Some(app));
    assert_eq!(ns.node("net").restarts, 0);
    assert_eq!(
        (ns.node("system").restarts, ns.node("platform").restarts),
        (0, 0)
    );
    assert_eq!(ns.status().phase, "running");
    let r = match ns.client().call(Op::Readiness).unwrap() {
        Body::Readiness(r) => r,
        b => panic!("{b:?}"),
    };
    assert!(r.all_ready && r.critical_ready, "{r:?}");
    assert_eq!(r.restarts_total, 5);
    assert!(r.critical_ready_for_ms.is_some());
    assert_eq!(
        ns.names_of("start").iter().filter(|n| *n == "net").count(),
        1
    );
}

fn idle_connections_cannot_lock_out_readiness() {
    use std::io::{BufRead, BufReader};
    let mut s = Setup::new("idle");
    s.init = "control_idle_timeout = \"500ms\"\n".into();
    s.body = s.svc("a", &[], "");
    let ns = s.start();
    ns.up("a");
    let sock = ns.dir.join("run/init.sock");
    // More idle connections than one user may have: the oldest make room, one by one.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..myelin_init::control::MAX_CLIENTS_PER_UID
        + 2)
        .map(|_| {
            let c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            c.set_read_timeout(Some(10 * SEC)).unwrap();
            c
        })
        .collect();
    match ns.client().call(Op::Readiness).unwrap() {
        Body::Readiness(r) => assert!(r.all_ready),
        b => panic!("{b:?}"),
    }
    // Each idle one is closed, with a word saying why, by the time it has been idle long
    // enough (or to make room): every read ends.
    for c in &idle {
        let mut r = BufReader::new(c);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(
            line.contains("closed: idle") || line.contains("closed to make room"),
            "{line}"
        );
        line.clear();
        assert_eq!(r.read_line(&mut line).unwrap(), 0, "then closed");
    }
}

fn log_levels_are_kept_filtered_and_passed_on() {
    let mut s = Setup::new("levels");
    s.body = "[[service]]\nname = \"talk\"\nargv = [\"/bin/sh\", \"-c\", \"echo '<6>chatter'; echo '<4>odd'; echo '<3>broken'; echo \\\"<6>level=$MYELIN_LOG\\\"; exec sleep 300\"]\nlog_level = \"warning\"\n\
              [[service]]\nname = \"verbose\"\nargv = [\"/bin/sh\", \"-c\", \"echo '<7>details'; echo '<4>careful'; echo \\\"<4>level=$MYELIN_LOG\\\"; exec sleep 300\"]\nlog_level = \"debug\"\n"
        .into();
    let ns = s.start();
    ns.running("talk");
    ns.running("verbose");
    let mut c = ns.client();
    let mut get = |service: Option<&str>, level: Option<myelin_init::control::Level>| {
        c.send(Op::Log {
            service: service.map(String::from),
            lines: None,
            level,
            follow: false,
        })
        .unwrap();
        let mut v = Vec::new();
        loop {
            match c.receive().unwrap() {
                Some(Body::Log(e)) => v.push((e.service, e.level, e.text)),
                Some(Body::End) => return Ok(v),
                Some(Body::Error { message }) => return Err(message),
                other => panic!("{other:?}"),
            }
        }
    };
    use myelin_init::control::Level;
    ns.wait_for("verbose output", 10 * SEC, || {
        get(Some("verbose"), None).unwrap().len() == 3
    });
    // talk keeps warning and worse (its MYELIN_LOG line is info: dropped too).
    ns.wait_for("talk output", 10 * SEC, || {
        get(Some("talk"), None).unwrap().len() == 2
    });
    assert_eq!(
        get(Some("talk"), None).unwrap(),
        [
            ("talk".into(), Level::Warning, "odd".into()),
            ("talk".into(), Level::Err, "broken".into())
        ]
    );
    let v = get(Some("verbose"), None).unwrap();
    assert_eq!(v[0], ("verbose".into(), Level::Debug, "details".into()));
    assert_eq!(
        v[2],
        ("verbose".into(), Level::Warning, "level=debug".into())
    );
    // The filter: warning and worse, across services.
    let w: Vec<String> = get(None, Some(Level::Warning))
        .unwrap()
        .into_iter()
        .filter(|e| e.0 != "init")
        .map(|e| e.2)
        .collect();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w.iter().all(|t| t != "details" && t != "chatter"), "{w:?}");
    // PID 1's own messages carry their levels too.
    assert!(
        get(Some("init"), Some(Level::Notice))
            .unwrap()
            .iter()
            .any(|e| e.1 == Level::Notice && e.2 == "all services ready")
    );
    let e = get(Some("nosuch"), None).unwrap_err();
    assert_eq!(
        e,
        "no service named `nosuch` (`myelinctl status` lists them)"
    );
}

fn run_lock_is_roots_alone() {
    // /run/lock left world-writable (sticky) by whoever made /run: myelin-init takes it back.
    let mut s = Setup::new("runlock");
    s.lock_dir_1777 = true;
    s.boot = "[boot]\npseudo_fs = false\nrootdisk_links = false\nclock_floor = false\nloopback = false\n".into();
    s.body = "[[service]]\nname = \"probe\"\nargv = [\"/bin/sh\", \"-c\", \"echo lock=$(stat -c %a:%u:%F /run/lock); exec sleep 300\"]\n".into();
    let ns = s.start();
    ns.running("probe");
    let line = ns.last_line("probe", "lock=");
    assert_eq!(line, "lock=755:0:directory");
}

fn drop_ins_add_services() {
    let mut s = Setup::new("dropins");
    s.body = "[[supervisor]]\nname = \"app\"\n".to_string() + &s.svc("base", &[], "");
    let extra = s.svc("hello", &[], "supervisor = \"app\"");
    s.drop_ins = vec![
        ("20-hello.toml".into(), extra),
        ("notes.txt".into(), "not configuration".into()),
    ];
    let ns = s.start();
    ns.up("hello");
    let st = ns.status();
    let app = st.tree.children.iter().find(|c| c.name == "app").unwrap();
    assert_eq!(app.children[0].name, "hello");
    assert!(ns.kmsg().contains(" and 1 drop-in"), "{}", ns.kmsg());
}
