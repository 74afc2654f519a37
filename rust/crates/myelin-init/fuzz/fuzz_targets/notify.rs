//! Any datagram on a service's notify socket: parsed without panic, and fed to a supervision
//! tree together with exits and the passing of time chosen by the same input, the state machine
//! never panics and keeps its promises (a pid is never reported for two services, a service
//! that is not ready never counts as ready).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use myelin_init::clock::Instant;
use myelin_init::config::{Config, NodeId, ServiceSpec};
use myelin_init::supervisor::{Effects, ExitStatus, Note, Sig, SpawnError, Supervisor};

const TREE: &str = r#"
[root]
intensity = 4
period = "1s"
[[service]]
name = "a"
argv = ["/bin/a"]
notify = true
watchdog = "200ms"
critical = true
ready_timeout = "500ms"
[[supervisor]]
name = "g"
strategy = "rest_for_one"
intensity = 2
[[service]]
name = "b"
supervisor = "g"
argv = ["/bin/b"]
notify = true
restart_delay = "50ms"
[[service]]
name = "c"
supervisor = "g"
argv = ["/bin/c"]
optional = true
"#;

struct Fx {
    next: u32,
}

impl Effects for Fx {
    fn spawn(&mut self, _id: NodeId, _name: &str, _s: &ServiceSpec) -> Result<u32, SpawnError> {
        self.next += 1;
        Ok(self.next)
    }
    fn signal(&mut self, _id: NodeId, _name: &str, _pid: u32, _sig: Sig) {}
    fn note(&mut self, note: Note) {
        let _ = note.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = Config::parse(TREE, Path::new("t.toml")) else {
        return;
    };
    let services: Vec<NodeId> = cfg.tree.services().collect();
    let mut sup = Supervisor::new(cfg.tree);
    let mut fx = Fx { next: 100 };
    let mut now = 0u64;
    sup.start(Instant(now), &mut fx);
    // Records: [op, target, len, bytes...]: op 0 = datagram, 1 = exit, 2 = time passes.
    let mut rest = data;
    while let [op, target, len, tail @ ..] = rest {
        let id = services[usize::from(*target) % services.len()];
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        match op % 3 {
            0 => {
                let msgs = myelin_init::notify::parse(body);
                sup.on_notify(id, &msgs, Instant(now), &mut fx);
            }
            1 => {
                if let Some(pid) = sup.pid(id) {
                    let status = match body.first() {
                        Some(&c) if c % 2 == 0 => ExitStatus::Code(i32::from(c)),
                        Some(&c) => ExitStatus::Signal(i32::from(c % 32)),
                        None => ExitStatus::Code(0),
                    };
                    assert!(sup.on_exit(pid, status, Instant(now), &mut fx));
                }
            }
            _ => {
                now += u64::from(*len) * 10;
                sup.on_tick(Instant(now), &mut fx);
            }
        }
        let pids: Vec<u32> = services.iter().filter_map(|&s| sup.pid(s)).collect();
        let mut unique = pids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), pids.len(), "a pid belongs to one service");
        let r = sup.readiness(Instant(now));
        for s in &r.services {
            if s.ready {
                assert_eq!(s.state, "running", "{s:?}");
            }
        }
        assert_eq!(r.critical_ready_for_ms.is_some(), r.critical_ready);
        if sup.gave_up() {
            break;
        }
    }
    sup.shutdown(Instant(now), &mut fx);
});
