//! Golden traces of supervisor decisions.

use std::collections::HashSet;
use std::path::Path;

use super::*;
use crate::config::{Config, ServiceSpec};
use crate::control::NodeStatus;

#[derive(Default)]
struct Rec {
    trace: Vec<String>,
    next_pid: u32,
    fail_spawn: HashSet<String>,
}

impl Effects for Rec {
    fn spawn(&mut self, _id: NodeId, name: &str, spec: &ServiceSpec) -> Result<u32, SpawnError> {
        if self.fail_spawn.contains(name) {
            self.trace.push(format!("spawn {name} -> ENOENT"));
            return Err(SpawnError::Exec {
                program: spec.program.clone(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        self.next_pid += 1;
        self.trace
            .push(format!("spawn {name} -> {}", self.next_pid));
        Ok(self.next_pid)
    }
    fn signal(&mut self, _id: NodeId, name: &str, pid: u32, sig: Sig) {
        self.trace.push(format!("signal {name}[{pid}] {sig:?}"));
    }
    fn note(&mut self, note: Note) {
        // Started notes duplicate the spawn lines.
        if !matches!(note, Note::Started { .. }) {
            self.trace.push(format!("  {note}"));
        }
    }
}

struct H {
    sup: Supervisor,
    fx: Rec,
    now: Instant,
}

fn h(toml: &str) -> H {
    let cfg = Config::parse(toml, Path::new("test.toml")).unwrap();
    H {
        sup: Supervisor::new(cfg.tree),
        fx: Rec {
            next_pid: 100,
            ..Default::default()
        },
        now: Instant(0),
    }
}

impl H {
    fn start(&mut self) -> Vec<String> {
        self.sup.start(self.now, &mut self.fx);
        self.take()
    }
    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fx.trace)
    }
    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = Instant(ms);
        self
    }
    fn id(&self, name: &str) -> NodeId {
        self.sup.tree().find(name).unwrap()
    }
    fn pid(&self, name: &str) -> u32 {
        self.sup
            .pid(self.id(name))
            .unwrap_or_else(|| panic!("{name} has no process"))
    }
    fn exit(&mut self, name: &str, status: ExitStatus) -> Vec<String> {
        let pid = self.pid(name);
        assert!(self.sup.on_exit(pid, status, self.now, &mut self.fx));
        self.take()
    }
    fn crash(&mut self, name: &str) -> Vec<String> {
        self.exit(name, ExitStatus::Code(1))
    }
    fn ready(&mut self, name: &str) -> Vec<String> {
        let id = self.id(name);
        self.sup
            .on_notify(id, &[Notify::Ready], self.now, &mut self.fx);
        self.take()
    }
    fn notify(&mut self, name: &str, n: Notify) -> Vec<String> {
        let id = self.id(name);
        self.sup.on_notify(id, &[n], self.now, &mut self.fx);
        self.take()
    }
    fn tick(&mut self) -> Vec<String> {
        self.sup.on_tick(self.now, &mut self.fx);
        self.take()
    }
    fn shutdown(&mut self) -> Vec<String> {
        self.sup.shutdown(self.now, &mut self.fx);
        self.take()
    }
    fn control(&mut self, op: Control, name: &str) -> Result<Vec<String>, ControlError> {
        self.sup.control(op, name, self.now, &mut self.fx)?;
        Ok(self.take())
    }
    fn state(&self, name: &str) -> String {
        fn find(n: &NodeStatus, name: &str) -> Option<String> {
            if n.name == name {
                return Some(n.state.clone());
            }
            n.children.iter().find_map(|c| find(c, name))
        }
        find(&self.sup.status(self.now), name).unwrap()
    }
}

fn svc(name: &str, extra: &str) -> String {
    format!("[[service]]\nname = \"{name}\"\nargv = [\"/bin/{name}\"]\n{extra}\n")
}

fn abc(root: &str, b_extra: &str) -> H {
    h(&format!(
        "[root]\n{root}\n{}{}{}",
        svc("a", ""),
        svc("b", b_extra),
        svc("c", "")
    ))
}

#[test]
fn start_in_order_and_wait_for_readiness() {
    let mut t = h(&format!(
        "{}{}{}",
        svc("a", "notify = true"),
        svc("b", "ready_path = \"/run/b.sock\""),
        svc("c", "")
    ));
    assert_eq!(t.start(), ["spawn a -> 101"]);
    assert_eq!(t.state("root"), "starting");
    assert_eq!(t.state("b"), "waiting");
    assert!(t.sup.waiting_paths().is_empty());
    assert_eq!(t.at(50).ready("a"), ["  a ready", "spawn b -> 102"]);
    assert_eq!(
        t.sup.waiting_paths(),
        [(t.id("b"), std::path::PathBuf::from("/run/b.sock"))]
    );
    t.at(60);
    let id = t.id("b");
    t.sup.on_ready(id, t.now, &mut t.fx);
    assert_eq!(t.take(), ["  b ready", "spawn c -> 103"]);
    assert_eq!(t.state("root"), "running");
    let r = t.sup.readiness(t.now);
    assert!(r.all_ready);
    // READY=1 twice is harmless.
    assert!(t.ready("a").is_empty());
}

#[test]
fn one_for_one_restarts_only_the_dead_child() {
    let mut t = abc("strategy = \"one_for_one\"", "");
    assert_eq!(
        t.start(),
        ["spawn a -> 101", "spawn b -> 102", "spawn c -> 103"]
    );
    assert_eq!(
        t.at(1000).crash("b"),
        [
            "  b (pid 102) ended: exit 1",
            "  restarting b in 0s",
            "spawn b -> 104"
        ]
    );
    assert_eq!((t.pid("a"), t.pid("c")), (101, 103));
}

#[test]
fn one_for_all_stops_the_others_in_reverse_then_starts_all_in_order() {
    let mut t = abc("strategy = \"one_for_all\"", "");
    t.start();
    assert_eq!(
        t.at(1000).crash("b"),
        [
            "  b (pid 102) ended: exit 1",
            "  restarting b in 0s",
            "  stopping c (Term)",
            "signal c[103] Term"
        ]
    );
    assert_eq!(
        t.exit("c", ExitStatus::Signal(libc::SIGTERM)),
        [
            "  c (pid 103) ended: signal 15 (stopped)",
            "  stopping a (Term)",
            "signal a[101] Term"
        ]
    );
    assert_eq!(
        t.exit("a", ExitStatus::Code(0)),
        [
            "  a (pid 101) ended: exit 0 (stopped)",
            "spawn a -> 104",
            "spawn b -> 105",
            "spawn c -> 106"
        ]
    );
}

#[test]
fn rest_for_one_restarts_the_later_children() {
    let mut t = abc("strategy = \"rest_for_one\"", "");
    t.start();
    assert_eq!(
        t.at(1000).crash("b"),
        [
            "  b (pid 102) ended: exit 1",
            "  restarting b in 0s",
            "  stopping c (Term)",
            "signal c[103] Term"
        ]
    );
    assert_eq!(
        t.exit("c", ExitStatus::Signal(libc::SIGTERM)),
        [
            "  c (pid 103) ended: signal 15 (stopped)",
            "spawn b -> 104",
            "spawn c -> 105"
        ]
    );
    assert_eq!(t.pid("a"), 101);
}

#[test]
fn restart_types() {
    let mut t = h(&format!(
        "[root]\nintensity = 10\n{}{}{}{}",
        svc("perm", ""),
        svc("trans", "restart = \"transient\""),
        svc("temp", "restart = \"temporary\""),
        svc("trans2", "restart = \"transient\"")
    ));
    t.start();
    t.at(1000);
    // permanent: even a clean exit is restarted.
    assert_eq!(
        t.exit("perm", ExitStatus::Code(0)),
        [
            "  perm (pid 101) ended: exit 0",
            "  restarting perm in 0s",
            "spawn perm -> 105"
        ]
    );
    // transient: a clean exit or SIGTERM ends it, a crash restarts it.
    assert_eq!(
        t.exit("trans", ExitStatus::Signal(libc::SIGTERM)),
        [
            "  trans (pid 102) ended: signal 15",
            "  trans will not be restarted"
        ]
    );
    assert_eq!(t.state("trans"), "exited");
    assert_eq!(
        t.exit("trans2", ExitStatus::Signal(libc::SIGSEGV)),
        [
            "  trans2 (pid 104) ended: signal 11",
            "  restarting trans2 in 0s",
            "spawn trans2 -> 106"
        ]
    );
    // temporary: never.
    assert_eq!(
        t.crash("temp"),
        [
            "  temp (pid 103) ended: exit 1",
            "  temp will not be restarted"
        ]
    );
    assert_eq!(t.state("temp"), "exited");
}

#[test]
fn temporary_siblings_stay_down_after_one_for_all() {
    let mut t = h(&format!(
        "[root]\nstrategy = \"one_for_all\"\n{}{}",
        svc("a", ""),
        svc("t", "restart = \"temporary\"")
    ));
    t.start();
    assert_eq!(
        t.at(10).crash("a"),
        [
            "  a (pid 101) ended: exit 1",
            "  restarting a in 0s",
            "  stopping t (Term)",
            "signal t[102] Term"
        ]
    );
    assert_eq!(
        t.exit("t", ExitStatus::Signal(libc::SIGTERM)),
        ["  t (pid 102) ended: signal 15 (stopped)", "spawn a -> 103"]
    );
    assert_eq!(t.state("t"), "exited");
}

#[test]
fn intensity_exceeded_at_the_root_gives_up_after_stopping_everything() {
    let mut t = abc("intensity = 2\nperiod = \"5s\"", "");
    t.start();
    assert_eq!(
        t.at(1000).crash("b"),
        [
            "  b (pid 102) ended: exit 1",
            "  restarting b in 0s",
            "spawn b -> 104"
        ]
    );
    assert_eq!(
        t.at(2000).crash("b"),
        ["  b (pid 104) ended: exit 1", "  restarting b in 100ms",]
    );
    assert_eq!(t.at(2100).tick(), ["spawn b -> 105"]);
    // The first restart (t=1000) is still within 5 s at t=5999: three restarts > intensity 2.
    assert_eq!(
        t.at(5999).crash("b"),
        [
            "  b (pid 105) ended: exit 1",
            "  supervisor root: 3 restarts within 5s, stopping all its children and giving up",
            "  stopping c (Term)",
            "signal c[103] Term"
        ]
    );
    assert!(!t.sup.gave_up());
    assert_eq!(
        t.exit("c", ExitStatus::Signal(15)),
        [
            "  c (pid 103) ended: signal 15 (stopped)",
            "  stopping a (Term)",
            "signal a[101] Term"
        ]
    );
    assert_eq!(
        t.exit("a", ExitStatus::Signal(15)),
        [
            "  a (pid 101) ended: signal 15 (stopped)",
            "  the root supervisor gave up"
        ]
    );
    assert!(t.sup.gave_up());
    assert!(t.sup.is_stopped());
}

#[test]
fn restarts_outside_the_period_do_not_count() {
    let mut t = abc(
        "intensity = 1\nperiod = \"5s\"",
        "restart_delay_max = \"0s\"",
    );
    t.start();
    for (i, at) in [1000u64, 7000, 13_000, 19_000].iter().enumerate() {
        let pid = t.pid("b");
        let tr = t.at(*at).crash("b");
        assert_eq!(tr[0], format!("  b (pid {pid}) ended: exit 1"), "round {i}");
        assert_eq!(
            tr.last().unwrap(),
            &format!("spawn b -> {}", pid.max(103) + 1),
            "round {i}: {tr:?}"
        );
    }
    assert!(!t.sup.gave_up());
}

#[test]
fn escalation_goes_up_one_level() {
    let mut t = h(&format!(
        "[root]\nintensity = 5\n{}[[supervisor]]\nname = \"g\"\nintensity = 0\nstrategy = \"one_for_all\"\n{}{}{}",
        svc("a", ""),
        svc("x", "supervisor = \"g\""),
        svc("y", "supervisor = \"g\"\nshutdown = \"brutal_kill\""),
        svc("z", "")
    ));
    assert_eq!(
        t.start(),
        [
            "spawn a -> 101",
            "spawn x -> 102",
            "spawn y -> 103",
            "spawn z -> 104"
        ]
    );
    assert_eq!(
        t.at(100).crash("x"),
        [
            "  x (pid 102) ended: exit 1",
            "  supervisor g: 1 restarts within 5s, stopping all its children and giving up",
            "  stopping y (Kill)",
            "signal y[103] Kill"
        ]
    );
    // When g is empty it fails; root (one_for_one) restarts g, which starts x and y again.
    assert_eq!(
        t.exit("y", ExitStatus::Signal(9)),
        [
            "  y (pid 103) ended: signal 9 (stopped)",
            "  restarting g in 0s",
            "spawn x -> 105",
            "spawn y -> 106"
        ]
    );
    assert_eq!((t.pid("a"), t.pid("z")), (101, 104));
    let st = t.sup.status(t.now);
    assert_eq!(st.children[1].name, "g");
    assert_eq!(st.children[1].restarts, 1);
    assert_eq!(
        st.children[1].last_exit.as_deref(),
        Some("restart intensity exceeded")
    );
}

#[test]
fn shutdown_stops_in_reverse_with_timeouts() {
    let mut t = h(&format!(
        "{}[[supervisor]]\nname = \"g\"\n{}{}{}{}",
        svc("a", "shutdown = \"infinity\""),
        svc("g1", "supervisor = \"g\""),
        svc("g2", "supervisor = \"g\"\nshutdown = \"2s\""),
        svc("b", "shutdown = \"1s\""),
        svc("c", "shutdown = \"brutal_kill\"")
    ));
    t.start();
    assert_eq!(
        t.at(10_000).shutdown(),
        ["  stopping c (Kill)", "signal c[105] Kill"]
    );
    assert_eq!(
        t.exit("c", ExitStatus::Signal(9)),
        [
            "  c (pid 105) ended: signal 9 (stopped)",
            "  stopping b (Term)",
            "signal b[104] Term"
        ]
    );
    assert_eq!(t.sup.next_deadline(t.now), Some(Instant(11_000)));
    assert!(t.at(10_999).tick().is_empty());
    assert_eq!(
        t.at(11_000).tick(),
        ["  b did not stop in time: SIGKILL", "signal b[104] Kill"]
    );
    assert_eq!(t.sup.next_deadline(t.now), None);
    assert_eq!(
        t.exit("b", ExitStatus::Signal(9)),
        [
            "  b (pid 104) ended: signal 9 (stopped)",
            "  stopping g2 (Term)",
            "signal g2[103] Term"
        ]
    );
    assert_eq!(
        t.at(11_500).exit("g2", ExitStatus::Code(0)),
        [
            "  g2 (pid 103) ended: exit 0 (stopped)",
            "  stopping g1 (Term)",
            "signal g1[102] Term"
        ]
    );
    assert_eq!(
        t.exit("g1", ExitStatus::Signal(15)),
        [
            "  g1 (pid 102) ended: signal 15 (stopped)",
            "  stopping a (Term)",
            "signal a[101] Term"
        ]
    );
    // infinity: no deadline, however long it takes.
    assert_eq!(t.sup.next_deadline(t.now), None);
    assert!(t.at(999_999).tick().is_empty());
    assert!(!t.sup.is_stopped());
    assert_eq!(
        t.exit("a", ExitStatus::Code(0)),
        ["  a (pid 101) ended: exit 0 (stopped)"]
    );
    assert!(t.sup.is_stopped());
    assert!(!t.sup.gave_up());
    // Nothing restarts after a shutdown.
    assert!(t.tick().is_empty());
    assert_eq!(
        t.control(Control::Start, "a"),
        Err(ControlError::ShuttingDown)
    );
}

#[test]
fn shutdown_during_start_stops_what_runs() {
    let mut t = h(&format!("{}{}", svc("a", "notify = true"), svc("b", "")));
    assert_eq!(t.start(), ["spawn a -> 101"]);
    assert_eq!(t.shutdown(), ["  stopping a (Term)", "signal a[101] Term"]);
    assert_eq!(
        t.exit("a", ExitStatus::Signal(15)),
        ["  a (pid 101) ended: signal 15 (stopped)"]
    );
    assert!(t.sup.is_stopped());
}

#[test]
fn readiness_timeout_is_a_failure() {
    let mut t = h(&svc(
        "a",
        "notify = true\nready_timeout = \"2s\"\nshutdown = \"1s\"",
    ));
    t.start();
    assert_eq!(t.sup.next_deadline(t.now), Some(Instant(2000)));
    assert_eq!(
        t.at(1000)
            .notify("a", Notify::ExtendTimeout(Duration::from_secs(3))),
        Vec::<String>::new()
    );
    assert!(t.at(2000).tick().is_empty());
    assert_eq!(
        t.at(4000).tick(),
        ["  a: readiness timeout, sending Term", "signal a[101] Term"]
    );
    assert_eq!(
        t.exit("a", ExitStatus::Signal(15)),
        [
            "  a (pid 101) ended: signal 15",
            "  restarting a in 0s",
            "spawn a -> 102"
        ]
    );
    assert_eq!(
        t.sup.status(t.now).children[0].last_exit.as_deref(),
        Some("readiness timeout (signal 15)")
    );
}

#[test]
fn missed_watchdog_pings_restart_a_hung_service() {
    let mut t = h(&svc(
        "a",
        "notify = true\nwatchdog = \"1s\"\nshutdown = \"500ms\"",
    ));
    t.start();
    t.at(100).ready("a");
    assert_eq!(t.sup.next_deadline(t.now), Some(Instant(1100)));
    t.at(900).notify("a", Notify::Watchdog);
    assert!(t.at(1100).tick().is_empty());
    assert_eq!(
        t.at(1900).tick(),
        ["  a: watchdog timeout, sending Abrt", "signal a[101] Abrt"]
    );
    assert_eq!(
        t.at(2400).tick(),
        ["  a did not stop in time: SIGKILL", "signal a[101] Kill"]
    );
    assert_eq!(
        t.exit("a", ExitStatus::Signal(9)),
        [
            "  a (pid 101) ended: signal 9",
            "  restarting a in 0s",
            "spawn a -> 102"
        ]
    );
    // WATCHDOG=trigger from the service itself.
    t.at(3000).ready("a");
    assert_eq!(
        t.notify("a", Notify::WatchdogTrigger),
        ["  a: watchdog timeout, sending Abrt", "signal a[102] Abrt"]
    );
    // Even a clean exit after a watchdog failure restarts a transient-like failure path.
    assert_eq!(
        t.exit("a", ExitStatus::Code(0))[1],
        "  restarting a in 100ms"
    );
}

#[test]
fn backoff_doubles_and_resets_after_a_stable_run() {
    let mut t = h(&format!(
        "[root]\nintensity = 100\nperiod = \"5s\"\n{}",
        svc(
            "a",
            "restart_delay = \"100ms\"\nrestart_delay_max = \"300ms\""
        )
    ));
    t.start();
    let mut delays = Vec::new();
    let mut now = 1000;
    for _ in 0..5 {
        let tr = t.at(now).crash("a");
        delays.push(tr[1].clone());
        now += 1000;
        t.at(now).tick();
    }
    assert_eq!(
        delays,
        [
            "  restarting a in 0s",
            "  restarting a in 100ms",
            "  restarting a in 200ms",
            "  restarting a in 300ms",
            "  restarting a in 300ms"
        ]
    );
    assert_eq!(t.state("a"), "running");
    // A run as long as the period resets the backoff.
    let tr = t.at(now + 5000).crash("a");
    assert_eq!(tr[1], "  restarting a in 0s");
    // During the delay the state says so.
    let tr = t.at(now + 5001).crash("a");
    assert_eq!(tr[1], "  restarting a in 100ms");
    assert_eq!(t.state("a"), "restarting");
    assert_eq!(t.sup.next_deadline(t.now), Some(Instant(now + 5101)));
}

#[test]
fn spawn_failures_count_as_crashes() {
    let mut t = h(&format!("[root]\nintensity = 1\n{}", svc("a", "")));
    t.fx.fail_spawn.insert("a".into());
    assert_eq!(
        t.start(),
        [
            "spawn a -> ENOENT",
            "  a could not start: /bin/a: No such file or directory (os error 2)",
            "  restarting a in 0s",
            "spawn a -> ENOENT",
            "  a could not start: /bin/a: No such file or directory (os error 2)",
            "  supervisor root: 2 restarts within 5s, stopping all its children and giving up",
            "  the root supervisor gave up"
        ]
    );
    assert!(t.sup.gave_up());
}

#[test]
fn after_waits_across_supervisors() {
    let mut t = h(&format!(
        "{}[[supervisor]]\nname = \"g\"\n{}{}",
        svc("kv", "notify = true"),
        svc("app", "supervisor = \"g\"\nafter = [\"kv\"]"),
        svc("late", "")
    ));
    // kv is first anyway; g waits for it through the order, app through `after` as well.
    assert_eq!(t.start(), ["spawn kv -> 101"]);
    assert_eq!(
        t.ready("kv"),
        ["  kv ready", "spawn app -> 102", "spawn late -> 103"]
    );
    // one_for_one restarts of app after the first start wait for kv's readiness again.
    t.at(5000);
    assert_eq!(
        t.crash("kv"),
        [
            "  kv (pid 101) ended: exit 1",
            "  restarting kv in 0s",
            "spawn kv -> 104"
        ]
    );
    assert_eq!(
        t.crash("app"),
        ["  app (pid 102) ended: exit 1", "  restarting app in 0s"]
    );
    assert_eq!(t.ready("kv"), ["  kv ready", "spawn app -> 105"]);
}

#[test]
fn parallel_start_waits_for_after_alone_and_rest_for_one_keeps_its_order() {
    let sys = "supervisor = \"sys\"\nnotify = true";
    let mut t = h(&format!(
        "[[supervisor]]\nname = \"sys\"\nstrategy = \"rest_for_one\"\nstart = \"parallel\"\n{}{}{}{}",
        svc("bus", sys),
        svc("kv", &format!("{sys}\nafter = [\"bus\"]")),
        svc("net", &format!("{sys}\nafter = [\"bus\"]")),
        svc("ssh", "supervisor = \"sys\""),
    ));
    // ssh needs nothing: it starts with bus, not after everything before it is ready.
    assert_eq!(t.start(), ["spawn bus -> 101", "spawn ssh -> 102"]);
    // Both of bus's dependents start the moment it is ready, without waiting for each other.
    assert_eq!(
        t.ready("bus"),
        ["  bus ready", "spawn kv -> 103", "spawn net -> 104"]
    );
    assert!(t.ready("net").contains(&"  net ready".to_string()));
    assert!(t.ready("kv").contains(&"  kv ready".to_string()));
    // rest_for_one: kv's crash stops the children after it in the order, in reverse (ssh,
    // then net), bus stays; then all three start again together, as their `after` allows
    // (bus, the only dependency, stayed up).
    t.at(5000);
    let has = |trace: &[String], line: &str| trace.iter().any(|l| l == line);
    let trace = t.crash("kv");
    assert!(has(&trace, "signal ssh[102] Term"), "{trace:?}");
    let trace = t.exit("ssh", ExitStatus::Signal(15));
    assert!(has(&trace, "signal net[104] Term"), "{trace:?}");
    let trace = t.exit("net", ExitStatus::Signal(15));
    assert!(!trace.iter().any(|l| l.contains("signal bus")), "{trace:?}");
    let spawned: Vec<&str> = trace
        .iter()
        .filter_map(|l| l.strip_prefix("spawn "))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(spawned, ["kv", "net", "ssh"], "{trace:?}");
}

#[test]
fn a_parallel_supervisor_has_no_implicit_order_to_deadlock_on() {
    // kv after net would deadlock sequentially (net is after kv in the order); in parallel
    // it is only a dependency.
    let body = format!(
        "{}{}",
        svc("kv", "supervisor = \"sys\"\nafter = [\"net\"]"),
        svc("net", "supervisor = \"sys\"")
    );
    let sequential = format!("[[supervisor]]\nname = \"sys\"\n{body}");
    let err = Config::parse(&sequential, Path::new("t.toml")).unwrap_err();
    assert!(err.to_string().contains("start order cycle"), "{err}");
    let mut t = h(&format!(
        "[[supervisor]]\nname = \"sys\"\nstart = \"parallel\"\n{body}"
    ));
    assert_eq!(t.start(), ["spawn net -> 101", "spawn kv -> 102"]);
}

#[test]
fn operator_stop_start_restart() {
    let mut t = abc("", "notify = true");
    t.start();
    t.ready("b");
    assert_eq!(
        t.control(Control::Stop, "b").unwrap(),
        ["  stopping b (Term)", "signal b[102] Term"]
    );
    assert_eq!(
        t.exit("b", ExitStatus::Signal(15)),
        ["  b (pid 102) ended: signal 15 (stopped)"]
    );
    assert_eq!(t.state("b"), "stopped");
    assert!(t.at(100_000).tick().is_empty());
    assert_eq!(t.control(Control::Start, "b").unwrap(), ["spawn b -> 104"]);
    assert_eq!(t.state("b"), "starting");
    t.ready("b");
    assert_eq!(
        t.control(Control::Restart, "b").unwrap(),
        ["  stopping b (Term)", "signal b[104] Term"]
    );
    assert_eq!(
        t.exit("b", ExitStatus::Code(0)),
        ["  b (pid 104) ended: exit 0 (stopped)", "spawn b -> 105"]
    );
    // Operator restarts are not failures.
    assert_eq!(t.sup.status(t.now).children[1].restarts, 0);
    assert!(
        t.control(Control::Stop, "nope")
            .unwrap_err()
            .to_string()
            .contains("no service")
    );
    assert!(t.control(Control::Stop, "root").is_err());
}

#[test]
fn operator_can_stop_a_whole_supervisor() {
    let mut t = h(&format!(
        "[[supervisor]]\nname = \"g\"\n{}{}",
        svc("x", "supervisor = \"g\""),
        svc("y", "supervisor = \"g\"")
    ));
    t.start();
    assert_eq!(
        t.control(Control::Stop, "g").unwrap(),
        ["  stopping y (Term)", "signal y[102] Term"]
    );
    assert_eq!(
        t.exit("y", ExitStatus::Signal(15)),
        [
            "  y (pid 102) ended: signal 15 (stopped)",
            "  stopping x (Term)",
            "signal x[101] Term"
        ]
    );
    assert_eq!(
        t.exit("x", ExitStatus::Signal(15)),
        ["  x (pid 101) ended: signal 15 (stopped)"]
    );
    assert_eq!(t.state("g"), "stopped");
    assert_eq!(
        t.control(Control::Start, "g").unwrap(),
        ["spawn x -> 103", "spawn y -> 104"]
    );
    assert_eq!(
        t.control(Control::Start, "x").unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn critical_services_and_readiness_report() {
    let mut t = h(&format!(
        "{}{}",
        svc("kv", "critical = true\nnotify = true"),
        svc("app", "")
    ));
    assert!(!t.sup.critical_alive(), "not started yet");
    t.start();
    assert!(t.sup.critical_alive(), "starting counts as alive");
    let r = t.sup.readiness(t.now);
    assert!(!r.critical_ready && !r.all_ready);
    t.ready("kv");
    let r = t.sup.readiness(t.now);
    assert!(r.critical_ready && r.all_ready);
    assert_eq!(r.services.len(), 2);
    t.at(1000).crash("kv");
    // Restarted at once: alive again, but not ready.
    assert!(t.sup.critical_alive());
    assert!(!t.sup.readiness(t.now).critical_ready);
    let pid = t.pid("kv");
    t.control(Control::Stop, "kv").unwrap();
    assert!(
        t.sup.critical_alive(),
        "an operator-stopped service is excluded"
    );
    assert!(t.sup.on_exit(pid, ExitStatus::Signal(15), t.now, &mut t.fx));
    let st = t.sup.status(t.now);
    assert_eq!(st.children[0].state, "stopped");
    assert!(st.children[0].critical);
    assert_eq!(st.children[0].restarts, 1);
}

#[test]
fn critical_down_between_crash_and_restart() {
    let mut t = h(&format!(
        "[root]\nintensity = 10\n{}",
        svc("kv", "critical = true\nrestart_delay = \"1s\"")
    ));
    t.start();
    t.at(100).crash("kv");
    t.at(200).crash("kv");
    assert!(
        !t.sup.critical_alive(),
        "waiting 1 s before the second restart"
    );
    t.at(1200).tick();
    assert!(t.sup.critical_alive());
}

#[test]
fn status_reports_pids_uptime_and_text() {
    let mut t = abc("strategy = \"rest_for_one\"", "");
    t.start();
    t.at(2500).notify("a", Notify::Status("serving".into()));
    let st = t.sup.status(t.now);
    assert_eq!(st.name, "root");
    assert_eq!(st.strategy.as_deref(), Some("rest_for_one"));
    assert_eq!(st.state, "running");
    let a = &st.children[0];
    assert_eq!(
        (a.pid, a.uptime_ms, a.status.as_deref()),
        (Some(101), Some(2500), Some("serving"))
    );
    assert_eq!(a.kind, "service");
}

#[test]
fn unknown_pids_are_not_ours() {
    let mut t = abc("", "");
    t.start();
    assert!(!t.sup.on_exit(4242, ExitStatus::Code(0), t.now, &mut t.fx));
    assert!(t.take().is_empty());
}

#[test]
fn paused_services_are_not_alive_and_not_hung() {
    let mut t = h(&svc(
        "kv",
        "critical = true\nnotify = true\nwatchdog = \"1s\"",
    ));
    t.start();
    t.at(100).ready("kv");
    let pid = t.pid("kv");
    assert!(t.sup.critical_alive());
    t.at(200);
    t.sup.on_paused(pid, true, t.now, &mut t.fx);
    assert_eq!(t.take(), ["  kv was stopped by a signal (paused)"]);
    assert!(
        !t.sup.critical_alive(),
        "a stopped critical service starves the hardware watchdog"
    );
    assert_eq!(t.state("kv"), "paused");
    // Its liveness deadline waits while it is stopped on purpose.
    assert_eq!(t.sup.next_deadline(t.now), None);
    assert!(t.at(60_000).tick().is_empty());
    t.sup.on_paused(pid, false, t.now, &mut t.fx);
    assert_eq!(t.take(), ["  kv continued"]);
    assert!(t.sup.critical_alive());
    assert_eq!(t.sup.next_deadline(t.now), Some(Instant(61_000)));
    assert_eq!(
        t.at(61_000).tick(),
        [
            "  kv: watchdog timeout, sending Abrt",
            "signal kv[101] Abrt"
        ]
    );
    // Unknown pids and repeated reports change nothing.
    t.sup.on_paused(9999, true, t.now, &mut t.fx);
    assert!(t.take().is_empty());
}

#[test]
fn optional_services_that_are_not_installed_are_skipped() {
    let mut cfg = Config::parse(
        &format!(
            "{}[[service]]\nname = \"ssh\"\nargv = [\"/no/dropbear\"]\noptional = true\n{}",
            svc("a", "argv = [\"/bin/sh\"]").replace("argv = [\"/bin/a\"]\n", ""),
            svc("b", "argv = [\"/bin/sh\"]\nafter = [\"ssh\"]")
                .replace("argv = [\"/bin/b\"]\n", "")
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    cfg.check_environment(Path::new("/etc")).unwrap();
    let mut t = H {
        sup: Supervisor::new(cfg.tree),
        fx: Rec {
            next_pid: 100,
            ..Default::default()
        },
        now: Instant(0),
    };
    assert_eq!(t.start(), ["spawn a -> 101", "spawn b -> 102"]);
    assert_eq!(t.state("ssh"), "not installed");
    assert!(t.sup.all_started());
    assert!(
        t.control(Control::Start, "ssh")
            .unwrap_err()
            .to_string()
            .contains("not installed")
    );
}

#[test]
fn all_started_is_set_once_everything_was_ready() {
    let mut t = h(&format!("{}{}", svc("a", "notify = true"), svc("b", "")));
    t.start();
    assert!(!t.sup.all_started());
    t.ready("a");
    assert!(t.sup.all_started());
    t.at(10).crash("a");
    assert!(t.sup.all_started(), "stays true through restarts");
}

#[test]
fn backoff_delays_count_toward_intensity() {
    // Delays of 3 s, 6 s, 12 s: on the wall clock, never 4 restarts within 5 s; on the
    // supervisor's clock (stopped while a restart waits) the child fails at once each time.
    let mut t = h(&format!(
        "[root]\nintensity = 3\nperiod = \"5s\"\n{}{}",
        svc("ok", ""),
        svc("a", "restart_delay = \"3s\"\nrestart_delay_max = \"30s\"")
    ));
    t.start();
    assert_eq!(
        t.at(1000).crash("a"),
        [
            "  a (pid 102) ended: exit 1",
            "  restarting a in 0s",
            "spawn a -> 103"
        ]
    );
    assert_eq!(
        t.crash("a"),
        ["  a (pid 103) ended: exit 1", "  restarting a in 3s"]
    );
    assert_eq!(t.at(4000).tick(), ["spawn a -> 104"]);
    assert_eq!(
        t.crash("a"),
        ["  a (pid 104) ended: exit 1", "  restarting a in 6s"]
    );
    assert_eq!(t.at(10_000).tick(), ["spawn a -> 105"]);
    assert_eq!(
        t.crash("a"),
        [
            "  a (pid 105) ended: exit 1",
            "  supervisor root: 4 restarts within 5s, stopping all its children and giving up",
            "  stopping ok (Term)",
            "signal ok[101] Term"
        ]
    );
}

#[test]
fn running_time_between_crashes_is_on_the_clock() {
    // A crash every 3 s of running time, intensity 2 per 5 s: OTP would never escalate, and
    // growing delays do not change that.
    let mut t = h(&format!(
        "[root]\nintensity = 2\nperiod = \"5s\"\n{}",
        svc("a", "restart_delay = \"2s\"\nrestart_delay_max = \"30s\"")
    ));
    t.start();
    let mut now = 0;
    for round in 0..6 {
        now += 3000;
        let tr = t.at(now).crash("a");
        assert!(
            tr[1].starts_with("  restarting a in"),
            "round {round}: {tr:?}"
        );
        let delay = t.sup.next_deadline(t.now).map_or(now, |d| d.0);
        now = delay;
        t.at(now).tick();
        assert_eq!(t.state("a"), "running", "round {round}");
    }
    assert!(!t.sup.gave_up());
}

#[test]
fn a_crash_loop_below_escalates_all_the_way_up() {
    // g gives up every ~5 s because of x's backoff; to root, whose period is 4 s, those are
    // failures 5 s apart on the wall clock but instant on its own clock: root gives up.
    let mut t = h(&format!(
        "[root]\nintensity = 1\nperiod = \"4s\"\n[[supervisor]]\nname = \"g\"\nintensity = 2\nperiod = \"10s\"\n{}",
        svc(
            "x",
            "supervisor = \"g\"\nrestart_delay = \"5s\"\nrestart_delay_max = \"5s\""
        )
    ));
    t.start();
    let mut now = 100;
    let mut gave_up_at = None;
    for _ in 0..20 {
        if t.sup.gave_up() {
            gave_up_at = Some(now);
            break;
        }
        if t.sup.pid(t.id("x")).is_some() {
            t.at(now).crash("x");
        } else {
            now = t.sup.next_deadline(t.now).map_or(now + 1, |d| d.0);
            t.at(now).tick();
        }
    }
    assert!(gave_up_at.is_some(), "root never gave up");
    let st = t.sup.status(t.now);
    assert_eq!(
        st.children[0].restarts, 1,
        "g was restarted once, then root gave up"
    );
    assert_eq!(
        t.sup.restarts_total(),
        5,
        "x: 2 restarts per g instance, g: 1"
    );
}

#[test]
fn an_optional_service_is_given_up_alone() {
    // The dropbear case: an optional service that exits at once, in a rest_for_one group
    // with a critical service before it and another after it.
    let mut t = h(&format!(
        "[[supervisor]]\nname = \"system\"\nstrategy = \"rest_for_one\"\nintensity = 2\nperiod = \"30s\"\n{}{}{}",
        svc("dbus", "supervisor = \"system\"\ncritical = true"),
        svc(
            "ssh",
            "supervisor = \"system\"\noptional = true\nrestart_delay = \"100ms\""
        ),
        svc("late", "supervisor = \"system\"")
    ));
    assert_eq!(
        t.start(),
        ["spawn dbus -> 101", "spawn ssh -> 102", "spawn late -> 103"]
    );
    assert_eq!(
        t.at(10).crash("ssh"),
        [
            "  ssh (pid 102) ended: exit 1",
            "  restarting ssh in 0s",
            "spawn ssh -> 104"
        ]
    );
    assert_eq!(
        t.at(20).crash("ssh"),
        ["  ssh (pid 104) ended: exit 1", "  restarting ssh in 100ms"]
    );
    assert_eq!(t.at(120).tick(), ["spawn ssh -> 105"]);
    assert_eq!(
        t.at(130).crash("ssh"),
        [
            "  ssh (pid 105) ended: exit 1",
            "  ssh: 3 restarts within 30s, giving it up (optional: nothing else is stopped)"
        ]
    );
    // One clear state: ssh failed, the rest untouched (late was never restarted).
    assert_eq!(t.state("ssh"), "failed");
    assert_eq!(t.state("system"), "running");
    assert_eq!((t.pid("dbus"), t.pid("late")), (101, 103));
    assert_eq!(t.at(60_000).tick(), Vec::<String>::new());
    let r = t.sup.readiness(t.now);
    assert!(r.all_ready && r.critical_ready);
    assert_eq!(r.restarts_total, 2);
    let st = t.sup.status(t.now);
    assert_eq!(
        st.children[0].children[1].last_exit.as_deref(),
        Some("exit 1; given up after 3 restarts within 30s")
    );
    // An operator can try it again.
    let tr = t.control(Control::Start, "ssh").unwrap();
    assert_eq!(tr, ["spawn ssh -> 106"]);
    // Its restarts did not use up the group's intensity: dbus may still fail twice.
    assert_eq!(t.crash("dbus")[1], "  restarting dbus in 0s");
    assert!(!t.sup.gave_up());
}

#[test]
fn readiness_reports_stability_and_restarts() {
    let mut t = h(&format!(
        "[root]\nintensity = 10\n{}{}",
        svc("a", "critical = true\nnotify = true"),
        svc("b", "")
    ));
    t.start();
    let r = t.sup.readiness(t.now);
    assert_eq!((r.critical_ready_for_ms, r.restarts_total), (None, 0));
    t.at(100).ready("a");
    let ready_for = |t: &mut H, at: u64| {
        let r = t.at(at).sup.readiness(Instant(at));
        (r.critical_ready_for_ms, r.restarts_total)
    };
    assert_eq!(ready_for(&mut t, 1100), (Some(1000), 0));
    // A restart anywhere (b is not critical) starts the stable period again.
    t.at(2000).crash("b");
    assert_eq!(ready_for(&mut t, 2500), (Some(500), 1));
    // A critical service down: none, until it is ready again.
    t.at(3000).crash("a");
    assert_eq!(ready_for(&mut t, 3100), (None, 2));
    t.at(3200).ready("a");
    assert_eq!(ready_for(&mut t, 4200), (Some(1000), 2));
    // An operator stop of a critical service is not ready either.
    t.at(5000).control(Control::Stop, "a").unwrap();
    assert_eq!(ready_for(&mut t, 5000).0, None);
    // Without critical services: stable since the last restart, or since start.
    let mut u = h(&svc("x", ""));
    u.start();
    assert_eq!(ready_for(&mut u, 700), (Some(700), 0));
}
