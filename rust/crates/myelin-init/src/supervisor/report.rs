//! What the supervisor tells `myelinctl` and myelin-update: the tree with each node's state,
//! and readiness, with how long the critical services have been stable.

use super::Supervisor;
use super::state::Proc;
use crate::clock::Instant;
use crate::config::NodeId;
use crate::control::{NodeStatus, ReadinessReport, ServiceReadiness};

/// How long the critical services have been continuously ready with no restart in the tree.
#[derive(Clone, Debug, Default)]
pub(super) struct Stability {
    /// Since when every critical service has been ready (`None`: not all are).
    critical_since: Option<Instant>,
    /// The last restart anywhere in the tree.
    last_restart: Option<Instant>,
}

impl Stability {
    /// A restart happened.
    pub(super) fn restarted(&mut self, now: Instant) {
        self.last_restart = Some(now);
    }

    /// Notes, after an event, whether every critical service is ready.
    pub(super) fn observe(&mut self, critical_ready: bool, now: Instant) {
        match (critical_ready, self.critical_since) {
            (true, None) => self.critical_since = Some(now),
            (false, _) => self.critical_since = None,
            (true, Some(_)) => {}
        }
    }

    /// Milliseconds of stability at `now`.
    pub(super) fn ready_for_ms(&self, now: Instant) -> Option<u64> {
        let since = self.critical_since?;
        let since = self.last_restart.map_or(since, |r| r.max(since));
        Some(now.since(since).as_millis() as u64)
    }
}

impl Supervisor {
    pub(super) fn state_name(&self, id: NodeId, now: Instant) -> &'static str {
        let st = &self.st[id];
        if !self.is_service(id) {
            return if !st.running {
                "stopped"
            } else if st.terminating.is_some() {
                "stopping"
            } else if self.is_up(id) {
                "running"
            } else {
                "starting"
            };
        }
        if st.paused && st.proc != Proc::Down {
            return "paused";
        }
        match st.proc {
            Proc::Starting { .. } => "starting",
            Proc::Up { .. } => "running",
            Proc::Stopping { .. } => "stopping",
            Proc::Down if self.tree.nodes[id].service().is_some_and(|s| s.absent) => {
                "not installed"
            }
            Proc::Down if st.given_up => "failed",
            Proc::Down if st.done => "exited",
            Proc::Down if !st.enabled => "stopped",
            Proc::Down if st.delay_until > now => "restarting",
            Proc::Down => "waiting",
        }
    }

    /// The tree for `myelinctl status`.
    pub fn status(&self, now: Instant) -> NodeStatus {
        self.node_status(0, now)
    }

    fn node_status(&self, id: NodeId, now: Instant) -> NodeStatus {
        let node = &self.tree.nodes[id];
        let st = &self.st[id];
        let (pid, since) = match st.proc {
            Proc::Starting { pid, since, .. }
            | Proc::Up { pid, since, .. }
            | Proc::Stopping { pid, since, .. } => (Some(pid), Some(since)),
            Proc::Down => (None, st.up_since),
        };
        NodeStatus {
            name: node.name.clone(),
            kind: if self.is_service(id) {
                "service"
            } else {
                "supervisor"
            }
            .into(),
            state: self.state_name(id, now).into(),
            strategy: node.supervisor().map(|s| s.strategy.name().to_string()),
            pid,
            restarts: st.restarts,
            uptime_ms: since.map(|s| now.since(s).as_millis() as u64),
            ready: self.is_up(id),
            critical: node.service().is_some_and(|s| s.critical),
            status: st.status_text.clone(),
            last_exit: st.last_exit.clone(),
            children: self
                .tree
                .children(id)
                .iter()
                .map(|&c| self.node_status(c, now))
                .collect(),
        }
    }

    /// Every critical service is ready.
    pub(super) fn critical_ready(&self) -> bool {
        self.tree
            .services()
            .filter(|&id| self.tree.nodes[id].service().is_some_and(|s| s.critical))
            .all(|id| self.is_up(id))
    }

    /// Restarts in the whole tree since boot.
    pub fn restarts_total(&self) -> u64 {
        self.st.iter().map(|s| u64::from(s.restarts)).sum()
    }

    /// Readiness of every service.
    pub fn readiness(&self, now: Instant) -> ReadinessReport {
        let services: Vec<ServiceReadiness> = self
            .tree
            .services()
            .map(|id| ServiceReadiness {
                name: self.tree.nodes[id].name.clone(),
                ready: self.is_up(id),
                critical: self.tree.nodes[id].service().is_some_and(|s| s.critical),
                state: self.state_name(id, now).into(),
            })
            .collect();
        let enabled = |s: &&ServiceReadiness| {
            self.tree
                .find(&s.name)
                .is_some_and(|id| self.st[id].enabled)
        };
        let critical_ready = self.critical_ready();
        ReadinessReport {
            all_ready: services.iter().filter(enabled).all(|s| s.ready),
            critical_ready,
            critical_ready_for_ms: critical_ready
                .then(|| self.stability.ready_for_ms(now).unwrap_or(0)),
            restarts_total: self.restarts_total(),
            services,
        }
    }
}
