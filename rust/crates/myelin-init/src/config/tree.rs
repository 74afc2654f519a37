//! The supervision tree as the configuration describes it: supervisors, services and the
//! settings of each, after validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::clock::parse_duration;
use crate::level::Level;

/// Index of a node in [`Tree::nodes`]; the root supervisor is 0.
pub type NodeId = usize;

/// OTP restart strategy of a supervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that died.
    #[default]
    OneForOne,
    /// Stop all other children (reverse order), restart all (in order).
    OneForAll,
    /// Stop the children after the dead one (reverse order), restart them in order.
    RestForOne,
}

/// How a supervisor starts its children (first start and restarts alike).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// OTP's way: each child waits for the previous one to be ready (and for its `after`).
    #[default]
    Sequential,
    /// Each child waits only for its `after` nodes: independent services start together. The
    /// order still decides what `rest_for_one` restarts and the reverse order of stopping.
    Parallel,
}

impl Strategy {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

/// OTP restart type of a child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always restarted.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (not code 0, not killed by SIGTERM).
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a service is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGKILL at once.
    BrutalKill,
    /// SIGTERM, then SIGKILL after this long.
    Timeout(Duration),
    /// SIGTERM, then wait forever.
    Infinity,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::Timeout(Duration::from_secs(5))
    }
}

impl<'de> Deserialize<'de> for Shutdown {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "brutal_kill" => Ok(Shutdown::BrutalKill),
            "infinity" => Ok(Shutdown::Infinity),
            other => parse_duration(other).map(Shutdown::Timeout).ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid shutdown \"{s}\": expected \"brutal_kill\", \"infinity\" or a duration like \"5s\""
                ))
            }),
        }
    }
}

/// When a service counts as ready (and the next sibling may start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// As soon as it has been started (exec succeeded).
    Started,
    /// When it sends `READY=1` on `NOTIFY_SOCKET`.
    Notify,
    /// When this path exists; if it is a Unix socket, when it accepts a connection.
    Path(PathBuf),
}

/// A user or group, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    /// Numeric id.
    Id(u32),
    /// Name to look up in /etc/passwd or /etc/group.
    Name(String),
}

impl<'de> Deserialize<'de> for IdOrName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdOrName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a numeric id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::custom(format!("id {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::custom(format!("id {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdOrName, E> {
                if v.is_empty() {
                    return Err(E::custom("empty name"));
                }
                Ok(IdOrName::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// How much a service logs: its `log_level`, passed to it as `MYELIN_LOG` (myelin-api's
/// logger reads it) and applied by PID 1 to the lines it keeps of that service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors (and worse).
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation: info, notice, warnings and errors.
    #[default]
    Info,
    /// Everything, debug included.
    Debug,
    /// Everything, trace included (the ring keeps it as debug).
    Trace,
}

impl LogLevel {
    /// Names accepted in init.toml and `MYELIN_LOG` (the same as myelin-api's logger takes).
    pub const NAMES: &'static str = "off, error, warn (warning), info (notice), debug, trace";

    /// Parses a level name.
    pub fn parse(name: &str) -> Option<LogLevel> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "off" => LogLevel::Off,
            "error" | "err" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" | "notice" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The value of `MYELIN_LOG` for the service.
    pub fn env_value(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The least severe priority PID 1 keeps from the service; `None`: keep nothing.
    pub fn keeps(self) -> Option<Level> {
        match self {
            LogLevel::Off => None,
            LogLevel::Error => Some(Level::Err),
            LogLevel::Warn => Some(Level::Warning),
            LogLevel::Info => Some(Level::Info),
            LogLevel::Debug | LogLevel::Trace => Some(Level::Debug),
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LogLevel::parse(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid log_level \"{s}\": expected one of {}",
                LogLevel::NAMES
            ))
        })
    }
}

/// A supervisor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorSpec {
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restarts allowed within `period`.
    pub intensity: u32,
    /// Window of the intensity count (on the supervisor's clock, see [`crate::supervisor`]).
    pub period: Duration,
    /// Whether a child waits for its previous sibling.
    pub start: StartMode,
    /// Children in start order.
    pub children: Vec<NodeId>,
}

/// A service: one supervised OS process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// argv; `argv[0]` is what the program sees.
    pub argv: Vec<String>,
    /// Executable actually run (`argv[0]` resolved through PATH by the environment check).
    pub program: PathBuf,
    /// Environment (complete: nothing is inherited from PID 1).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// User as written.
    pub user: Option<IdOrName>,
    /// Group as written.
    pub group: Option<IdOrName>,
    /// Resolved uid.
    pub uid: Option<u32>,
    /// Resolved gid.
    pub gid: Option<u32>,
    /// How it is stopped.
    pub shutdown: Shutdown,
    /// When it counts as ready.
    pub readiness: Readiness,
    /// Deadline for readiness.
    pub ready_timeout: Option<Duration>,
    /// WATCHDOG=1 interval.
    pub watchdog: Option<Duration>,
    /// The hardware watchdog depends on it.
    pub critical: bool,
    /// Backoff base.
    pub restart_delay: Duration,
    /// Backoff cap.
    pub restart_delay_max: Duration,
    /// stdin/stdout/stderr on the console terminal (a login shell), not captured.
    pub console: bool,
    /// A missing executable skips the service instead of failing the configuration, and its
    /// failures stay its own: too many restarts give the service up alone.
    pub optional: bool,
    /// Set by the environment check: optional and not installed.
    pub absent: bool,
    /// Directories created (mode 0755, owned by the service's user) before each start.
    pub create_dirs: Vec<PathBuf>,
    /// How much it logs (`MYELIN_LOG`) and how much of it PID 1 keeps.
    pub log_level: LogLevel,
}

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A supervisor.
    Supervisor(SupervisorSpec),
    /// A service.
    Service(Box<ServiceSpec>),
}

/// A node of the supervision tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// Parent supervisor (`None` for the root).
    pub parent: Option<NodeId>,
    /// How the parent treats its exit.
    pub restart: RestartType,
    /// Nodes that must be ready before this one starts.
    pub after: Vec<NodeId>,
    /// Supervisor or service.
    pub kind: NodeKind,
}

impl NodeSpec {
    /// The service spec, if this node is a service.
    pub fn service(&self) -> Option<&ServiceSpec> {
        match &self.kind {
            NodeKind::Service(s) => Some(s),
            NodeKind::Supervisor(_) => None,
        }
    }
    /// The supervisor spec, if this node is a supervisor.
    pub fn supervisor(&self) -> Option<&SupervisorSpec> {
        match &self.kind {
            NodeKind::Supervisor(s) => Some(s),
            NodeKind::Service(_) => None,
        }
    }
}

/// The supervision tree; `nodes[0]` is the root supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// All nodes; parents before children.
    pub nodes: Vec<NodeSpec>,
}

impl Tree {
    /// Looks a node up by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
    /// Children of a node (empty for services).
    pub fn children(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[id].kind {
            NodeKind::Supervisor(s) => &s.children,
            NodeKind::Service(_) => &[],
        }
    }
    /// Ids of all services.
    pub fn services(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].service().is_some())
    }
    /// Whether `id` is `ancestor` or below it.
    pub fn is_within(&self, mut id: NodeId, ancestor: NodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match self.nodes[id].parent {
                Some(p) => id = p,
                None => return false,
            }
        }
    }
}

/// Whether `name` is a valid node name: `[A-Za-z0-9][A-Za-z0-9_.@-]*`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_names_are_what_myelin_api_reads() {
        for name in [
            "off", "error", "err", "warn", "warning", "info", "notice", "debug", "trace",
        ] {
            let l = LogLevel::parse(name).unwrap();
            // What init passes as MYELIN_LOG, the shared logger understands.
            assert!(
                myelin_api::logger::parse_level(l.env_value()).is_some(),
                "{name}"
            );
            assert!(myelin_api::logger::parse_level(name).is_some(), "{name}");
        }
        assert_eq!(LogLevel::parse("loud"), None);
        assert_eq!(LogLevel::Warn.keeps(), Some(Level::Warning));
        assert_eq!(LogLevel::Off.keeps(), None);
        assert_eq!(LogLevel::default().env_value(), "info");
    }
}
