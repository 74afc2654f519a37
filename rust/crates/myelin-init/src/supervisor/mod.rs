//! The supervision tree as a pure state machine, with OTP's rules for OS processes.
//!
//! Events come in (`start`, a process exited, a service notified, time passed, an operator
//! asked); decisions go out through [`Effects`] (spawn a service, signal its processes, note
//! what happened). Nothing here touches the system, so tests drive it with a hand-moved clock
//! and compare the effects to golden traces.
//!
//! The rules:
//! * A supervisor starts its children in order; each waits for the previous one to be ready
//!   (and for its `after` nodes). With `start = "parallel"` a child waits for its `after` nodes
//!   only, so independent services start together; the order still says what `rest_for_one`
//!   restarts and in which reverse order children stop. A supervisor is ready when all its children are. After its
//!   first complete start, a `one_for_one` supervisor restarts a child without waiting for its
//!   siblings; `one_for_all` and `rest_for_one` restart the affected children in order.
//! * Children stop in reverse order, one at a time: SIGTERM to the service's processes, SIGKILL
//!   when the `shutdown` timeout passes (`brutal_kill`: SIGKILL at once; `infinity`: wait).
//! * An exit is normal when the code is 0 or the process died of SIGTERM; a readiness timeout,
//!   a missed `WATCHDOG=1` and a failed exec are abnormal. `permanent` children always restart,
//!   `transient` ones after abnormal exits, `temporary` ones never (and a temporary child stopped
//!   by a sibling's restart stays stopped).
//! * Restart backoff per service: the first restart after a run of at least the supervisor's
//!   `period` is immediate; the n-th consecutive one waits `restart_delay × 2^(n−2)`, at most
//!   `restart_delay_max`.
//! * Restart intensity: every restart is counted by the parent; more than `intensity` within
//!   `period` and the supervisor stops all its children (reverse order) and fails itself: its
//!   parent handles that as a child's abnormal exit. When the root fails,
//!   [`Supervisor::gave_up`] becomes true and PID 1 takes the configured fatal action.
//! * How backoff delays and the period interact: the period is measured on the supervisor's
//!   own clock, which stops while any service below it waits out a backoff delay (time spent
//!   running, starting or stopping counts; time spent only waiting to be restarted does not).
//!   Backoff spaces restarts out in real time to spare the device, but not for the count: a
//!   child that dies as soon as it starts makes `intensity + 1` restarts on that clock in an
//!   instant, however long its delays have grown, so the supervisor escalates exactly as OTP's
//!   would without backoff. A child that runs between crashes spends that time on the clock, and
//!   restarts spaced by more than `period / intensity` of running time never escalate, also as
//!   in OTP. Each supervisor's clock stops for backoffs anywhere below it, so escalation
//!   composes: a group that gives up because of a crash-looping child is, to its parent, a child
//!   failing at once, and the parent escalates in turn after its own `intensity + 1`. A crash
//!   loop thus ends, within a bounded number of restarts, in the fatal action.
//! * An `optional` service's failures stay its own: it is restarted alone (whatever its
//!   supervisor's strategy), its restarts are counted apart from its siblings' (against its
//!   supervisor's `intensity` and `period`, on the supervisor's clock), and past that the service
//!   alone is given up (state `failed`), never its supervisor. The supervisor starting again for
//!   another reason gives it a fresh try, and so does an operator's `start`.
//! * `ready_timeout` bounds the wait for readiness; `watchdog` bounds the time between
//!   `WATCHDOG=1` pings once ready (a miss sends SIGABRT, then SIGKILL after the shutdown
//!   timeout, and counts as an abnormal exit).
//! * Readiness for validation ([`Supervisor::readiness`]): `critical_ready_for_ms` is how long
//!   every critical service has been ready with no restart anywhere in the tree meanwhile, and
//!   `restarts_total` the restarts since boot, so an updater can require a stable period.

mod effects;
mod intensity;
mod report;
mod state;

use std::time::Duration;

pub use effects::{Control, ControlError, Effects, ExitStatus, Failure, Note, Sig, SpawnError};

use crate::clock::{Instant, format_duration};
use crate::config::{
    NodeId, NodeKind, Readiness, RestartType, Shutdown, StartMode, Strategy, Tree,
};
use crate::notify::Notify;
use report::Stability;
use state::{NodeState, Proc, Term};

/// The supervision tree's state.
pub struct Supervisor {
    tree: Tree,
    st: Vec<NodeState>,
    preorder: Vec<NodeId>,
    shutting_down: bool,
    gave_up: bool,
    generation: u64,
    stability: Stability,
}

impl Supervisor {
    /// A stopped tree.
    pub fn new(tree: Tree) -> Supervisor {
        let mut preorder = Vec::new();
        let mut stack = vec![0];
        while let Some(n) = stack.pop() {
            if tree.nodes[n].supervisor().is_some() {
                preorder.push(n);
            }
            stack.extend(tree.children(n).iter().rev());
        }
        let mut st = vec![NodeState::new(); tree.nodes.len()];
        for (id, n) in tree.nodes.iter().enumerate() {
            if n.service().is_some_and(|s| s.absent) {
                // Optional and not installed: as if it had run and finished.
                st[id].enabled = false;
                st[id].done = true;
            }
        }
        Supervisor {
            tree,
            st,
            preorder,
            shutting_down: false,
            gave_up: false,
            generation: 0,
            stability: Stability::default(),
        }
    }

    /// The tree's specification.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Starts the root supervisor.
    pub fn start(&mut self, now: Instant, fx: &mut dyn Effects) {
        self.advance(now);
        self.start_node(0, now, fx);
        self.settle(now, fx);
    }

    /// Whether every service has been started (and was ready) once since boot.
    pub fn all_started(&self) -> bool {
        self.st[0].started_once
    }

    /// Whether the root supervisor failed.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Whether nothing runs any more (after a shutdown or giving up).
    pub fn is_stopped(&self) -> bool {
        !self.st[0].running
    }

    /// Whether a shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The node running `pid`.
    pub fn find_pid(&self, pid: u32) -> Option<NodeId> {
        self.st.iter().position(|s| s.proc.pid() == Some(pid))
    }

    /// The current pid of a service.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.st[id].proc.pid()
    }

    /// Services waiting for a readiness path, with the path.
    pub fn waiting_paths(&self) -> Vec<(NodeId, std::path::PathBuf)> {
        self.tree
            .services()
            .filter(|&id| matches!(self.st[id].proc, Proc::Starting { .. }))
            .filter_map(|id| match &self.tree.nodes[id].service()?.readiness {
                Readiness::Path(p) => Some((id, p.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every enabled critical service has a live process (the hardware watchdog's rule).
    pub fn critical_alive(&self) -> bool {
        self.tree.services().all(|id| {
            let critical = self.tree.nodes[id].service().is_some_and(|s| s.critical);
            !critical
                || !self.st[id].enabled
                || (!self.st[id].paused
                    && matches!(self.st[id].proc, Proc::Starting { .. } | Proc::Up { .. }))
        })
    }

    fn bump(&mut self) {
        self.generation += 1;
    }

    fn is_service(&self, id: NodeId) -> bool {
        matches!(self.tree.nodes[id].kind, NodeKind::Service(_))
    }

    fn is_active(&self, id: NodeId) -> bool {
        if self.is_service(id) {
            self.st[id].proc != Proc::Down
        } else {
            self.st[id].running
        }
    }

    fn is_up(&self, id: NodeId) -> bool {
        if self.is_service(id) {
            return matches!(self.st[id].proc, Proc::Up { .. });
        }
        let s = &self.st[id];
        s.running
            && s.terminating.is_none()
            && s.stop_queue.is_empty()
            && self
                .tree
                .children(id)
                .iter()
                .all(|&c| !self.st[c].enabled || self.is_up(c))
    }

    fn after_ok(&self, id: NodeId) -> bool {
        self.tree.nodes[id]
            .after
            .iter()
            .all(|&a| self.is_up(a) || self.st[a].done)
    }

    fn strategy(&self, sup: NodeId) -> (Strategy, u32, Duration) {
        match &self.tree.nodes[sup].kind {
            NodeKind::Supervisor(s) => (s.strategy, s.intensity, s.period),
            NodeKind::Service(_) => (Strategy::OneForOne, 0, Duration::ZERO),
        }
    }

    /// Accounts the time up to `now` on every supervisor's intensity clock: each stops while a
    /// service below it waits out a backoff delay. Called first by every event.
    fn advance(&mut self, now: Instant) {
        let mut waiting: Vec<Option<Instant>> = vec![None; self.tree.nodes.len()];
        for id in self.tree.services() {
            let st = &self.st[id];
            if st.proc != Proc::Down || !st.enabled {
                continue;
            }
            let until = st.delay_until;
            let mut cur = self.tree.nodes[id].parent;
            while let Some(p) = cur {
                waiting[p] = Some(waiting[p].map_or(until, |w| w.max(until)));
                cur = self.tree.nodes[p].parent;
            }
        }
        for &s in &self.preorder {
            self.st[s].clock.advance(now, waiting[s]);
        }
    }

    /// Applies decisions until nothing changes, then notes how stable the tree is.
    fn settle(&mut self, now: Instant, fx: &mut dyn Effects) {
        self.reconcile(now, fx);
        let ready = self.critical_ready();
        self.stability.observe(ready, now);
    }

    /// Applies decisions until nothing changes.
    fn reconcile(&mut self, now: Instant, fx: &mut dyn Effects) {
        let limit = 4 * self.tree.nodes.len() + 8;
        for _ in 0..limit {
            let before = self.generation;
            for i in 0..self.preorder.len() {
                let s = self.preorder[i];
                self.step(s, now, fx);
            }
            if self.generation == before {
                return;
            }
        }
    }

    fn step(&mut self, s: NodeId, now: Instant, fx: &mut dyn Effects) {
        if !self.st[s].running {
            return;
        }
        while let Some(&h) = self.st[s].stop_queue.front() {
            if !self.is_active(h) {
                self.st[s].stop_queue.pop_front();
                self.bump();
                continue;
            }
            self.begin_stop(h, None, now, fx);
            return;
        }
        if let Some(term) = self.st[s].terminating {
            let active: Vec<NodeId> = self
                .tree
                .children(s)
                .iter()
                .rev()
                .copied()
                .filter(|&c| self.is_active(c))
                .collect();
            if !active.is_empty() {
                self.st[s].stop_queue.extend(active);
                self.bump();
                return;
            }
            let ran = self.st[s]
                .up_since
                .map(|t| now.since(t))
                .unwrap_or_default();
            let st = &mut self.st[s];
            st.terminating = None;
            st.running = false;
            st.started_once = false;
            st.up_since = None;
            self.bump();
            if term == Term::Escalate {
                self.st[s].last_exit = Some(Failure::Escalated.to_string());
                if s == 0 {
                    self.gave_up = true;
                    fx.note(Note::GaveUp);
                } else {
                    self.child_failed(s, Some(Failure::Escalated), true, ran, now, fx);
                }
            }
            return;
        }
        if self.shutting_down {
            return;
        }
        let (strategy, _, _) = self.strategy(s);
        let parallel = matches!(
            &self.tree.nodes[s].kind,
            NodeKind::Supervisor(sp) if sp.start == StartMode::Parallel
        );
        // Sequential: a child waits for the previous one (OTP), except the restart of a
        // one_for_one child, which nothing before it depends on. Parallel: `after` alone.
        let restarting_one_for_one = strategy == Strategy::OneForOne && self.st[s].started_once;
        let gate = !(parallel || restarting_one_for_one);
        let children: Vec<NodeId> = self.tree.children(s).to_vec();
        for c in children {
            if self.st[s].terminating.is_some() || !self.st[s].stop_queue.is_empty() {
                break;
            }
            if !self.st[c].enabled || self.is_up(c) {
                continue;
            }
            let blocked = self.is_active(c) || self.st[c].delay_until > now || !self.after_ok(c);
            if blocked {
                if gate {
                    break;
                }
                continue;
            }
            self.start_node(c, now, fx);
            if gate && !self.is_up(c) {
                break;
            }
        }
        if !self.st[s].started_once && self.is_up(s) {
            self.st[s].started_once = true;
            self.st[s].up_since = Some(now);
            self.bump();
        }
    }

    fn start_node(&mut self, c: NodeId, now: Instant, fx: &mut dyn Effects) {
        self.bump();
        let name = self.tree.nodes[c].name.clone();
        match &self.tree.nodes[c].kind {
            NodeKind::Supervisor(_) => {
                let st = &mut self.st[c];
                st.running = true;
                st.terminating = None;
                st.stop_queue.clear();
                st.restart_log.clear();
                st.started_once = false;
                for &k in self.tree.children(c) {
                    if self.tree.nodes[k].service().is_some_and(|s| s.absent) {
                        continue;
                    }
                    let ks = &mut self.st[k];
                    ks.enabled = true;
                    ks.done = false;
                    ks.given_up = false;
                    ks.restart_log.clear();
                    ks.consecutive = 0;
                    ks.delay_until = Instant(0);
                }
            }
            NodeKind::Service(spec) => match fx.spawn(c, &name, spec.as_ref()) {
                Ok(pid) => {
                    self.st[c].proc = match spec.readiness {
                        Readiness::Started => Proc::Up {
                            pid,
                            since: now,
                            wd_deadline: spec.watchdog.map(|w| now.after(w)),
                        },
                        _ => Proc::Starting {
                            pid,
                            since: now,
                            deadline: spec.ready_timeout.map(|t| now.after(t)),
                        },
                    };
                    self.st[c].status_text = None;
                    let ready = matches!(spec.readiness, Readiness::Started);
                    fx.note(Note::Started { name, pid, ready });
                }
                Err(error) => {
                    let error = error.to_string();
                    fx.note(Note::SpawnFailed {
                        name,
                        error: error.clone(),
                    });
                    self.st[c].last_exit = Some(format!("spawn failed: {error}"));
                    self.child_failed(
                        c,
                        Some(Failure::SpawnFailed(error)),
                        true,
                        Duration::ZERO,
                        now,
                        fx,
                    );
                }
            },
        }
    }

    /// A child ended on its own (or failed); apply the restart type, intensity and strategy.
    fn child_failed(
        &mut self,
        c: NodeId,
        failure: Option<Failure>,
        abnormal: bool,
        ran_for: Duration,
        now: Instant,
        fx: &mut dyn Effects,
    ) {
        self.bump();
        let Some(p) = self.tree.nodes[c].parent else {
            return;
        };
        let name = self.tree.nodes[c].name.clone();
        let ps = &self.st[p];
        if self.shutting_down
            || ps.terminating.is_some()
            || !ps.running
            || ps.stop_queue.contains(&c)
        {
            return;
        }
        let restart = match self.tree.nodes[c].restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal || failure.is_some(),
            RestartType::Temporary => false,
        };
        if !restart {
            self.st[c].enabled = false;
            self.st[c].done = true;
            fx.note(Note::NotRestarted { name });
            return;
        }
        let (strategy, intensity, period) = self.strategy(p);
        let at = self.st[p].clock.reading();
        let optional = self.tree.nodes[c].service().is_some_and(|s| s.optional);
        if optional {
            // Its failures stay its own: counted apart, and too many give it up alone.
            let restarts = self.st[c].restart_log.record(at, period);
            if restarts > intensity as usize {
                let st = &mut self.st[c];
                st.enabled = false;
                st.done = true;
                st.given_up = true;
                let why = format!(
                    "given up after {restarts} restarts within {}",
                    format_duration(period)
                );
                st.last_exit = Some(match st.last_exit.take() {
                    Some(e) => format!("{e}; {why}"),
                    None => why,
                });
                fx.note(Note::GivenUp {
                    name,
                    restarts,
                    period,
                });
                return;
            }
        }
        let restarts = if optional {
            0
        } else {
            self.st[p].restart_log.record(at, period)
        };
        if restarts > intensity as usize {
            let pname = self.tree.nodes[p].name.clone();
            fx.note(Note::Escalating {
                name: pname,
                restarts,
                period,
            });
            self.st[p].terminating = Some(Term::Escalate);
            let active: Vec<NodeId> = self
                .tree
                .children(p)
                .iter()
                .rev()
                .copied()
                .filter(|&k| self.is_active(k))
                .collect();
            self.st[p].stop_queue = active.into();
            return;
        }
        let st = &mut self.st[c];
        if ran_for >= period {
            st.consecutive = 0;
        }
        st.consecutive += 1;
        st.restarts += 1;
        let delay = match self.tree.nodes[c].service() {
            Some(spec) if st.consecutive >= 2 => {
                let factor = 1u32.checked_shl(st.consecutive - 2).unwrap_or(u32::MAX);
                spec.restart_delay
                    .saturating_mul(factor)
                    .min(spec.restart_delay_max)
            }
            _ => Duration::ZERO,
        };
        st.delay_until = now.after(delay);
        fx.note(Note::Restarting { name, delay });
        self.stability.restarted(now);
        let siblings: Vec<NodeId> = self.tree.children(p).to_vec();
        let pos = siblings.iter().position(|&k| k == c).unwrap_or(0);
        let affected: Vec<NodeId> = match strategy {
            _ if optional => Vec::new(),
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => siblings.iter().copied().filter(|&k| k != c).collect(),
            Strategy::RestForOne => siblings[pos + 1..].to_vec(),
        };
        for &k in affected.iter().rev() {
            if self.tree.nodes[k].restart == RestartType::Temporary {
                self.st[k].enabled = false;
                self.st[k].done = true;
            }
            if self.is_active(k) && !self.st[p].stop_queue.contains(&k) {
                self.st[p].stop_queue.push_back(k);
            }
        }
    }

    fn begin_stop(
        &mut self,
        n: NodeId,
        failure: Option<Failure>,
        now: Instant,
        fx: &mut dyn Effects,
    ) {
        let name = self.tree.nodes[n].name.clone();
        match &self.tree.nodes[n].kind {
            NodeKind::Supervisor(_) => {
                if self.st[n].running && self.st[n].terminating.is_none() {
                    self.st[n].terminating = Some(Term::Stop);
                    let active: Vec<NodeId> = self
                        .tree
                        .children(n)
                        .iter()
                        .rev()
                        .copied()
                        .filter(|&k| self.is_active(k))
                        .collect();
                    self.st[n].stop_queue = active.into();
                    self.bump();
                }
            }
            NodeKind::Service(spec) => {
                let (pid, since) = match self.st[n].proc {
                    Proc::Starting { pid, since, .. } | Proc::Up { pid, since, .. } => (pid, since),
                    Proc::Stopping { .. } | Proc::Down => return,
                };
                let failing = failure.is_some();
                let (mut sig, kill_at) = match spec.shutdown {
                    Shutdown::BrutalKill => (Sig::Kill, None),
                    Shutdown::Timeout(d) => (Sig::Term, Some(now.after(d))),
                    Shutdown::Infinity if failing => {
                        (Sig::Term, Some(now.after(Duration::from_secs(5))))
                    }
                    Shutdown::Infinity => (Sig::Term, None),
                };
                if failure == Some(Failure::Watchdog) && sig == Sig::Term {
                    sig = Sig::Abrt;
                }
                fx.note(Note::Stopping {
                    name: name.clone(),
                    sig,
                    failure: failure.clone(),
                });
                fx.signal(n, &name, pid, sig);
                self.st[n].proc = Proc::Stopping {
                    pid,
                    since,
                    kill_at,
                    failure,
                };
                self.bump();
            }
        }
    }

    /// A process ended. Returns whether it was one of the tree's services.
    pub fn on_exit(
        &mut self,
        pid: u32,
        status: ExitStatus,
        now: Instant,
        fx: &mut dyn Effects,
    ) -> bool {
        let Some(c) = self.find_pid(pid) else {
            return false;
        };
        self.advance(now);
        let name = self.tree.nodes[c].name.clone();
        let proc = std::mem::replace(&mut self.st[c].proc, Proc::Down);
        self.st[c].paused = false;
        self.bump();
        let (since, requested, failure) = match proc {
            Proc::Stopping { since, failure, .. } => (since, failure.is_none(), failure),
            Proc::Starting { since, .. } | Proc::Up { since, .. } => (since, false, None),
            Proc::Down => return false,
        };
        self.st[c].last_exit = Some(match &failure {
            Some(f) => format!("{f} ({status})"),
            None => status.to_string(),
        });
        fx.note(Note::Exited {
            name,
            pid,
            status,
            requested,
        });
        if !requested {
            let abnormal = failure.is_some() || !status.is_normal();
            self.child_failed(c, failure, abnormal, now.since(since), now, fx);
        }
        self.settle(now, fx);
        true
    }

    /// A service's process was stopped (SIGSTOP, SIGTSTP, a debugger) or continued. A paused
    /// service is not alive for the hardware watchdog rule, and its liveness deadline waits: it
    /// was frozen on purpose, not hung. Continuing starts a fresh liveness period.
    pub fn on_paused(&mut self, pid: u32, paused: bool, now: Instant, fx: &mut dyn Effects) {
        let Some(id) = self.find_pid(pid) else { return };
        if self.st[id].paused == paused {
            return;
        }
        self.st[id].paused = paused;
        let name = self.tree.nodes[id].name.clone();
        let wd = self.tree.nodes[id].service().and_then(|s| s.watchdog);
        if !paused {
            if let Proc::Up { wd_deadline, .. } = &mut self.st[id].proc {
                *wd_deadline = wd.map(|w| now.after(w));
            }
        }
        fx.note(Note::Paused { name, paused });
        self.bump();
    }

    /// A readiness path appeared.
    pub fn on_ready(&mut self, id: NodeId, now: Instant, fx: &mut dyn Effects) {
        self.on_notify(id, &[Notify::Ready], now, fx);
    }

    /// A service sent sd_notify assignments.
    pub fn on_notify(&mut self, id: NodeId, msgs: &[Notify], now: Instant, fx: &mut dyn Effects) {
        let Some(spec) = self.tree.nodes[id].service() else {
            return;
        };
        let wd = spec.watchdog;
        self.advance(now);
        let name = self.tree.nodes[id].name.clone();
        for m in msgs {
            match m {
                Notify::Ready => {
                    if let Proc::Starting { pid, since, .. } = self.st[id].proc {
                        self.st[id].proc = Proc::Up {
                            pid,
                            since,
                            wd_deadline: wd.map(|w| now.after(w)),
                        };
                        self.generation += 1;
                        fx.note(Note::Ready { name: name.clone() });
                    }
                }
                Notify::Watchdog => {
                    if let Proc::Up { wd_deadline, .. } = &mut self.st[id].proc {
                        *wd_deadline = wd.map(|w| now.after(w));
                    }
                }
                Notify::WatchdogTrigger => {
                    if matches!(self.st[id].proc, Proc::Up { .. } | Proc::Starting { .. }) {
                        self.begin_stop(id, Some(Failure::Watchdog), now, fx);
                    }
                }
                Notify::Status(s) => self.st[id].status_text = Some(s.clone()),
                Notify::ExtendTimeout(d) => {
                    if let Proc::Starting {
                        deadline: Some(dl), ..
                    } = &mut self.st[id].proc
                    {
                        *dl = (*dl).max(now.after(*d));
                    }
                }
            }
        }
        self.settle(now, fx);
    }

    /// Time passed: deadlines, backoffs.
    pub fn on_tick(&mut self, now: Instant, fx: &mut dyn Effects) {
        self.advance(now);
        let ids: Vec<NodeId> = self.tree.services().collect();
        for id in ids {
            let name = self.tree.nodes[id].name.clone();
            match self.st[id].proc.clone() {
                Proc::Starting {
                    deadline: Some(d), ..
                } if d <= now => {
                    self.begin_stop(id, Some(Failure::ReadyTimeout), now, fx);
                }
                Proc::Up {
                    wd_deadline: Some(d),
                    ..
                } if d <= now && !self.st[id].paused => {
                    self.begin_stop(id, Some(Failure::Watchdog), now, fx);
                }
                Proc::Stopping {
                    pid,
                    since,
                    kill_at: Some(k),
                    failure,
                } if k <= now => {
                    fx.note(Note::Killing { name: name.clone() });
                    fx.signal(id, &name, pid, Sig::Kill);
                    self.st[id].proc = Proc::Stopping {
                        pid,
                        since,
                        kill_at: None,
                        failure,
                    };
                }
                _ => {}
            }
        }
        self.settle(now, fx);
    }

    /// The next time [`Supervisor::on_tick`] has something to do.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        let mut consider = |t: Instant| best = Some(best.map_or(t, |b| b.min(t)));
        for id in self.tree.services() {
            let st = &self.st[id];
            match st.proc {
                Proc::Starting {
                    deadline: Some(d), ..
                } => consider(d),
                Proc::Up {
                    wd_deadline: Some(d),
                    ..
                } if !st.paused => consider(d),
                Proc::Stopping {
                    kill_at: Some(k), ..
                } => consider(k),
                Proc::Down if st.enabled && st.delay_until > now => consider(st.delay_until),
                _ => {}
            }
        }
        best
    }

    /// Stops everything, children before parents, siblings in reverse order.
    pub fn shutdown(&mut self, now: Instant, fx: &mut dyn Effects) {
        self.advance(now);
        self.shutting_down = true;
        self.begin_stop(0, None, now, fx);
        self.settle(now, fx);
    }

    /// Operator request on a node.
    pub fn control(
        &mut self,
        op: Control,
        name: &str,
        now: Instant,
        fx: &mut dyn Effects,
    ) -> Result<String, ControlError> {
        let id = self
            .tree
            .find(name)
            .ok_or_else(|| ControlError::NoSuchNode(name.to_string()))?;
        if id == 0 {
            return Err(ControlError::Root);
        }
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        if self.tree.nodes[id].service().is_some_and(|s| s.absent) {
            return Err(ControlError::NotInstalled(name.to_string()));
        }
        if let Some(p) = self.tree.nodes[id].parent {
            if !self.st[p].running && op != Control::Stop {
                return Err(ControlError::ParentStopped(self.tree.nodes[p].name.clone()));
            }
        }
        self.advance(now);
        let msg = match op {
            Control::Stop => {
                self.st[id].enabled = false;
                self.begin_stop(id, None, now, fx);
                format!("stopping {name}")
            }
            Control::Start | Control::Restart => {
                let st = &mut self.st[id];
                st.enabled = true;
                st.done = false;
                st.given_up = false;
                st.restart_log.clear();
                st.consecutive = 0;
                st.delay_until = now;
                if op == Control::Restart && self.is_active(id) {
                    self.begin_stop(id, None, now, fx);
                    format!("restarting {name}")
                } else if self.is_active(id) {
                    format!("{name} is already running")
                } else {
                    format!("starting {name}")
                }
            }
        };
        self.bump();
        self.settle(now, fx);
        Ok(msg)
    }
}

#[cfg(test)]
mod tests;
