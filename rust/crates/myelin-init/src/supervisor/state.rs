//! What the supervisor remembers about each node between events.

use std::collections::VecDeque;

use super::effects::Failure;
use super::intensity::{IntensityClock, RestartLog};
use crate::clock::Instant;

/// A service's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Proc {
    /// None.
    Down,
    /// Started, not ready yet.
    Starting {
        pid: u32,
        since: Instant,
        deadline: Option<Instant>,
    },
    /// Ready.
    Up {
        pid: u32,
        since: Instant,
        wd_deadline: Option<Instant>,
    },
    /// Asked to stop.
    Stopping {
        pid: u32,
        since: Instant,
        kill_at: Option<Instant>,
        failure: Option<Failure>,
    },
}

impl Proc {
    /// The process id, if there is a process.
    pub(super) fn pid(&self) -> Option<u32> {
        match *self {
            Proc::Starting { pid, .. } | Proc::Up { pid, .. } | Proc::Stopping { pid, .. } => {
                Some(pid)
            }
            Proc::Down => None,
        }
    }
}

/// Why a supervisor stops all its children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Term {
    /// Asked to (shutdown, operator).
    Stop,
    /// Its restart intensity was exceeded: it fails once its children are stopped.
    Escalate,
}

/// The state of one node.
#[derive(Clone, Debug)]
pub(super) struct NodeState {
    /// Wanted running (an operator stop or a finished temporary child clears it).
    pub enabled: bool,
    /// Ended for good (temporary child, transient after a normal exit, given up).
    pub done: bool,
    /// An optional service that restarted too often.
    pub given_up: bool,
    pub proc: Proc,
    /// Restarts after failures, since boot.
    pub restarts: u32,
    /// Consecutive quick restarts (the backoff exponent).
    pub consecutive: u32,
    /// No restart before this (backoff).
    pub delay_until: Instant,
    pub last_exit: Option<String>,
    pub status_text: Option<String>,
    /// Supervisors: started and not stopped.
    pub running: bool,
    /// Supervisors: restarts of their children; optional services: their own restarts.
    pub restart_log: RestartLog,
    /// Supervisors: the clock their intensity is counted on.
    pub clock: IntensityClock,
    pub stop_queue: VecDeque<usize>,
    pub terminating: Option<Term>,
    pub started_once: bool,
    pub up_since: Option<Instant>,
    pub paused: bool,
}

impl NodeState {
    pub(super) fn new() -> NodeState {
        NodeState {
            enabled: true,
            done: false,
            given_up: false,
            proc: Proc::Down,
            restarts: 0,
            consecutive: 0,
            delay_until: Instant(0),
            last_exit: None,
            status_text: None,
            running: false,
            restart_log: RestartLog::default(),
            clock: IntensityClock::default(),
            stop_queue: VecDeque::new(),
            terminating: None,
            started_once: false,
            up_since: None,
            paused: false,
        }
    }
}
