//! What the supervision state machine says and asks for: the effects it needs ([`Effects`]),
//! the notes it logs, and the errors at its boundaries.

use std::fmt;
use std::time::Duration;

use crate::clock::format_duration;
use crate::config::{NodeId, ServiceSpec};
use crate::level::Level;

/// Signals the supervisor sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM to every process of the service.
    Term,
    /// SIGKILL to every process of the service.
    Kill,
    /// SIGABRT to the main process (watchdog timeout, for a core dump).
    Abrt,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Code 0 or SIGTERM.
    pub fn is_normal(self) -> bool {
        matches!(
            self,
            ExitStatus::Code(0) | ExitStatus::Signal(libc::SIGTERM)
        )
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Why a child is considered failed even if its exit looked normal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not ready within `ready_timeout`.
    ReadyTimeout,
    /// No `WATCHDOG=1` in time, or `WATCHDOG=trigger`.
    Watchdog,
    /// The process could not be started (the error, in words).
    SpawnFailed(String),
    /// A child supervisor exceeded its restart intensity.
    Escalated,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ReadyTimeout => f.write_str("readiness timeout"),
            Failure::Watchdog => f.write_str("watchdog timeout"),
            Failure::SpawnFailed(e) => write!(f, "spawn failed: {e}"),
            Failure::Escalated => f.write_str("restart intensity exceeded"),
        }
    }
}

/// Something worth logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A service was started.
    Started {
        /// Service.
        name: String,
        /// Its pid.
        pid: u32,
        /// Whether it counts as ready from its start (no readiness protocol).
        ready: bool,
    },
    /// A service became ready.
    Ready {
        /// Service.
        name: String,
    },
    /// A service's process ended.
    Exited {
        /// Service.
        name: String,
        /// Its pid.
        pid: u32,
        /// How.
        status: ExitStatus,
        /// Whether PID 1 had asked it to stop.
        requested: bool,
    },
    /// A service could not be started.
    SpawnFailed {
        /// Service.
        name: String,
        /// Why.
        error: String,
    },
    /// A service is being stopped.
    Stopping {
        /// Service.
        name: String,
        /// Signal sent.
        sig: Sig,
        /// Why, if it failed.
        failure: Option<Failure>,
    },
    /// A stop timed out: SIGKILL.
    Killing {
        /// Service.
        name: String,
    },
    /// A child will be restarted.
    Restarting {
        /// Child.
        name: String,
        /// After this delay.
        delay: Duration,
    },
    /// A child ended for good.
    NotRestarted {
        /// Child.
        name: String,
    },
    /// A supervisor exceeded its intensity and stops everything.
    Escalating {
        /// Supervisor.
        name: String,
        /// Restarts counted.
        restarts: usize,
        /// Within this window.
        period: Duration,
    },
    /// The root supervisor failed.
    GaveUp,
    /// An optional service restarted too often and is given up, alone.
    GivenUp {
        /// Service.
        name: String,
        /// Restarts counted.
        restarts: usize,
        /// Within this window.
        period: Duration,
    },
    /// A service's process was stopped or continued by a signal.
    Paused {
        /// Service.
        name: String,
        /// Stopped (`true`) or continued.
        paused: bool,
    },
}

impl Note {
    /// Log priority.
    pub fn level(&self) -> Level {
        match self {
            Note::Started { .. } | Note::Ready { .. } | Note::Stopping { failure: None, .. } => {
                Level::Info
            }
            Note::Exited {
                requested: true, ..
            }
            | Note::NotRestarted { .. } => Level::Info,
            Note::Exited { status, .. } if status.is_normal() => Level::Notice,
            Note::Escalating { .. } | Note::GaveUp => Level::Crit,
            Note::GivenUp { .. } => Level::Err,
            _ => Level::Warning,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Started { name, pid, .. } => write!(f, "{name} started (pid {pid})"),
            Note::Ready { name } => write!(f, "{name} ready"),
            Note::Exited {
                name,
                pid,
                status,
                requested,
            } => {
                write!(
                    f,
                    "{name} (pid {pid}) ended: {status}{}",
                    if *requested { " (stopped)" } else { "" }
                )
            }
            Note::SpawnFailed { name, error } => write!(f, "{name} could not start: {error}"),
            Note::Stopping { name, sig, failure } => match failure {
                Some(why) => write!(f, "{name}: {why}, sending {sig:?}"),
                None => write!(f, "stopping {name} ({sig:?})"),
            },
            Note::Killing { name } => write!(f, "{name} did not stop in time: SIGKILL"),
            Note::Restarting { name, delay } => {
                write!(f, "restarting {name} in {}", format_duration(*delay))
            }
            Note::NotRestarted { name } => write!(f, "{name} will not be restarted"),
            Note::Escalating {
                name,
                restarts,
                period,
            } => write!(
                f,
                "supervisor {name}: {restarts} restarts within {}, stopping all its children and giving up",
                format_duration(*period)
            ),
            Note::GaveUp => f.write_str("the root supervisor gave up"),
            Note::GivenUp {
                name,
                restarts,
                period,
            } => write!(
                f,
                "{name}: {restarts} restarts within {}, giving it up (optional: nothing else is stopped)",
                format_duration(*period)
            ),
            Note::Paused { name, paused: true } => {
                write!(f, "{name} was stopped by a signal (paused)")
            }
            Note::Paused {
                name,
                paused: false,
            } => write!(f, "{name} continued"),
        }
    }
}

/// The supervisor's side effects.
pub trait Effects {
    /// Starts a service (its own session, process group and cgroup); its pid.
    fn spawn(&mut self, id: NodeId, name: &str, spec: &ServiceSpec) -> Result<u32, SpawnError>;
    /// Sends a signal to a service (every process it started, or the main process for
    /// [`Sig::Abrt`]).
    fn signal(&mut self, id: NodeId, name: &str, pid: u32, sig: Sig);
    /// Reports a decision.
    fn note(&mut self, note: Note);
}

/// Operator requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Enable and start.
    Start,
    /// Stop and disable.
    Stop,
    /// Stop, then start.
    Restart,
}

/// Why a service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Something needed before the exec (a directory, its notify socket, pipes, its cgroup).
    #[error("cannot prepare {what}: {source}")]
    Prepare {
        /// What was being prepared.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be executed.
    #[error("{}: {source}", program.display())]
    Exec {
        /// The program.
        program: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why an operator request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No node has that name.
    #[error("no service or supervisor named `{0}`")]
    NoSuchNode(String),
    /// The root is not controlled this way.
    #[error("the root supervisor cannot be controlled; use reboot")]
    Root,
    /// A shutdown is under way.
    #[error("shutting down")]
    ShuttingDown,
    /// An optional service that is not installed.
    #[error("`{0}` is not installed")]
    NotInstalled(String),
    /// Its supervisor is stopped.
    #[error("supervisor `{0}` is not running")]
    ParentStopped(String),
}
