//! The messages of the control protocol (see [`super`]) and their encoding.

use serde::{Deserialize, Serialize};

pub use crate::level::Level;

/// Version of this protocol.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/myelin/init.sock";

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version.
    pub v: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// Operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The supervision tree.
    Status,
    /// Readiness of every service.
    Readiness,
    /// The boot timeline: init's phases and each service's start and readiness.
    Boot,
    /// Start a stopped service or supervisor.
    Start {
        /// Node name.
        name: String,
    },
    /// Stop a service or supervisor (it stays stopped).
    Stop {
        /// Node name.
        name: String,
    },
    /// Stop then start again.
    Restart {
        /// Node name.
        name: String,
    },
    /// Log lines.
    Log {
        /// Only this service (`init` for PID 1's own messages).
        #[serde(default)]
        service: Option<String>,
        /// At most this many past lines (default: all kept).
        #[serde(default)]
        lines: Option<usize>,
        /// Only lines at least this severe (`warning`: emerg … warning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<Level>,
        /// Keep the connection open and stream new lines.
        #[serde(default)]
        follow: bool,
    },
    /// The previous boot's records kept by pstore (its console, a panic report): one
    /// [`Body::Record`] each, then [`Body::End`].
    PreviousBoot,
    /// Clean shutdown and reboot, optionally with a reboot(2) argument.
    Reboot {
        /// RESTART2 argument (RPi: `0 tryboot`).
        #[serde(default)]
        arg: Option<String>,
    },
    /// Reboot at once: no service stopped, nothing unmounted, no seed saved. For a factory
    /// reset, whose freshly erased blocks a clean unmount could write back.
    RebootNow,
    /// Clean shutdown and power off.
    Poweroff,
    /// Clean shutdown and halt.
    Halt,
    /// Pet the hardware watchdog unconditionally for the configured snooze time.
    WatchdogSnooze,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version.
    pub v: u32,
    /// Content.
    #[serde(flatten)]
    pub body: Body,
}

/// Response contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Answer to `status`.
    Status(Box<StatusReport>),
    /// Answer to `readiness`.
    Readiness(ReadinessReport),
    /// Answer to `boot`.
    Boot(BootTimeline),
    /// Success.
    Ok {
        /// What was done.
        message: String,
    },
    /// One log line.
    Log(LogEntry),
    /// One record of the previous boot (answer to `previous_boot`).
    Record(BootRecord),
    /// End of a log listing.
    End,
    /// Failure.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// A record the previous boot left in pstore, as the kernel wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// The kernel's name for it: `console-ramoops-0` (the console up to the reset),
    /// `dmesg-ramoops-N` (the kernel log at a panic or oops), `pmsg-ramoops-0`.
    pub name: String,
    /// Its text (invalid UTF-8 replaced).
    pub text: String,
}

/// How this boot went, on the monotonic clock (milliseconds since the kernel started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimeline {
    /// When PID 1 started: everything before is the kernel's (and the bootloader's hand-off).
    pub init_start_ms: u64,
    /// PID 1's own phases, in order.
    pub phases: Vec<BootPhase>,
    /// Each service's first start in this boot, in start order.
    pub services: Vec<ServiceBoot>,
    /// When every service was first ready at once ("all services ready"), if it happened.
    pub all_ready_ms: Option<u64>,
}

/// One of PID 1's boot phases (mounts, /data, hostname, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPhase {
    /// What it did.
    pub name: String,
    /// When it started.
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
}

/// A service's first start in this boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBoot {
    /// The service.
    pub name: String,
    /// When PID 1 started it.
    pub started_ms: u64,
    /// When it was first ready (READY=1, its ready path, or at once for a service without
    /// readiness); `None` if it never was.
    pub ready_ms: Option<u64>,
}

/// The whole of PID 1's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// myelin-init version.
    pub version: String,
    /// Milliseconds since PID 1 started its loop.
    pub uptime_ms: u64,
    /// `running`, `stopping`, `gave_up`, `safe_mode`.
    pub phase: String,
    /// The supervision tree.
    pub tree: NodeStatus,
    /// The hardware watchdog, if configured.
    #[serde(default)]
    pub watchdog: Option<WatchdogReport>,
    /// The data partition, if configured.
    #[serde(default)]
    pub data: Option<DataReport>,
}

/// What boot did with the data partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    /// `mounted` (as it was), `formatted` (it held no filesystem: first boot or factory reset),
    /// `repaired` (mounted after a filesystem check fixed it), `tmpfs_fallback` (unusable: the
    /// mount point is a tmpfs for this boot and the partition was left untouched).
    pub state: String,
    /// Block device.
    pub device: String,
    /// Filesystem type mounted (`tmpfs` in the fallback).
    pub fstype: String,
    /// Mount point.
    pub mountpoint: String,
    /// Why it is not simply `mounted`, in words.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Name.
    pub name: String,
    /// `supervisor` or `service`.
    pub kind: String,
    /// `running`, `starting`, `stopping`, `stopped`, `waiting`, `restarting`, `exited`,
    /// `paused`, `not installed` or `failed` (an optional service given up).
    pub state: String,
    /// Supervisors: the strategy.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Current process.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// Milliseconds since started.
    #[serde(default)]
    pub uptime_ms: Option<u64>,
    /// Ready (services) or completely started (supervisors).
    pub ready: bool,
    /// Needed by the hardware watchdog.
    pub critical: bool,
    /// Last `STATUS=` text.
    #[serde(default)]
    pub status: Option<String>,
    /// How the last process ended (`exit 1`, `signal 9`, `watchdog timeout`, ...).
    #[serde(default)]
    pub last_exit: Option<String>,
    /// Children, in start order.
    #[serde(default)]
    pub children: Vec<NodeStatus>,
}

/// The hardware watchdog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogReport {
    /// Device path.
    pub device: String,
    /// Driver identity.
    pub identity: String,
    /// Hardware timeout.
    pub timeout_ms: u64,
    /// `watchdog` if the last reset was the watchdog's, else `power_on`.
    pub last_boot: String,
    /// Petting state.
    pub policy: PolicyStatus,
}

/// Readiness of the services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// Every enabled service is ready.
    pub all_ready: bool,
    /// Every critical service is ready.
    pub critical_ready: bool,
    /// How long every critical service has been continuously ready with no restart anywhere in
    /// the tree meanwhile, in milliseconds; `None` while a critical service is not ready.
    #[serde(default)]
    pub critical_ready_for_ms: Option<u64>,
    /// Restarts in the whole tree since boot (services and supervisors).
    #[serde(default)]
    pub restarts_total: u64,
    /// Each service.
    pub services: Vec<ServiceReadiness>,
}

/// Readiness of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReadiness {
    /// Name.
    pub name: String,
    /// Ready.
    pub ready: bool,
    /// Critical.
    pub critical: bool,
    /// State, as in [`NodeStatus::state`].
    pub state: String,
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A service's standard output.
    Stdout,
    /// A service's standard error.
    Stderr,
    /// PID 1's own message.
    Init,
}

/// One logged line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Sequence number, increasing by one per line ever logged.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the epoch.
    pub time_ms: i64,
    /// Service name (`init` for PID 1).
    pub service: String,
    /// Process id, 0 for PID 1's own messages.
    pub pid: u32,
    /// Source stream.
    pub stream: Stream,
    /// Priority.
    pub level: Level,
    /// The line, without its newline.
    pub text: String,
}

/// The hardware watchdog policy's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Every critical service alive.
    pub healthy: bool,
    /// Shutdown started: no more pets.
    pub disarmed: bool,
    /// Milliseconds since the last pet.
    pub last_pet_ms_ago: Option<u64>,
    /// Remaining initial grace.
    pub grace_left_ms: u64,
    /// Remaining snooze.
    pub snooze_left_ms: u64,
    /// Pet interval.
    pub interval_ms: u64,
}

/// Name PID 1's own messages carry in the log.
pub const INIT_SERVICE: &str = "init";

/// Most connections open at once.
pub const MAX_CLIENTS: usize = 32;

/// Most connections of one user open at once.
pub const MAX_CLIENTS_PER_UID: usize = 8;

/// Serialises a message as one line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|e| {
        format!("{{\"v\":1,\"type\":\"error\",\"message\":\"{e}\"}}").into_bytes()
    });
    v.push(b'\n');
    v
}

/// Wraps a body in a response of the current version.
pub fn response(body: Body) -> Response {
    Response {
        v: PROTOCOL_VERSION,
        body,
    }
}

/// Parses a request line, checking the version.
pub fn decode_request(line: &[u8]) -> Result<Request, RequestError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let v: Version = serde_json::from_slice(line)?;
    if v.v != PROTOCOL_VERSION {
        return Err(RequestError::Version(v.v));
    }
    Ok(serde_json::from_slice(line)?)
}

/// Why a request line was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a known operation with the right fields.
    #[error("bad request: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another protocol version.
    #[error("unsupported protocol version {0} (this init speaks {PROTOCOL_VERSION})")]
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = Request {
            v: 1,
            op: Op::Restart { name: "kv".into() },
        };
        assert_eq!(
            String::from_utf8(encode(&r)).unwrap(),
            "{\"v\":1,\"op\":\"restart\",\"name\":\"kv\"}\n"
        );
        assert_eq!(
            decode_request(b"{\"v\":1,\"op\":\"status\"}").unwrap().op,
            Op::Status
        );
        assert_eq!(
            decode_request(b"{\"v\":1,\"op\":\"log\",\"follow\":true}")
                .unwrap()
                .op,
            Op::Log {
                service: None,
                lines: None,
                level: None,
                follow: true
            }
        );
        assert_eq!(
            decode_request(b"{\"v\":1,\"op\":\"reboot\",\"arg\":\"0 tryboot\"}")
                .unwrap()
                .op,
            Op::Reboot {
                arg: Some("0 tryboot".into())
            }
        );
        assert!(
            decode_request(b"{\"v\":2,\"op\":\"status\"}")
                .unwrap_err()
                .to_string()
                .contains("unsupported protocol version 2")
        );
        assert!(
            decode_request(b"{\"v\":1,\"op\":\"explode\"}")
                .unwrap_err()
                .to_string()
                .starts_with("bad request")
        );
        assert!(decode_request(b"nonsense").is_err());
        let ok = response(Body::Ok {
            message: "done".into(),
        });
        assert_eq!(
            String::from_utf8(encode(&ok)).unwrap(),
            "{\"v\":1,\"type\":\"ok\",\"message\":\"done\"}\n"
        );
        let back: Response = serde_json::from_slice(&encode(&response(Body::End))).unwrap();
        assert_eq!(back.body, Body::End);
        assert_eq!(
            decode_request(b"{\"v\":1,\"op\":\"previous_boot\"}")
                .unwrap()
                .op,
            Op::PreviousBoot
        );
        let record = response(Body::Record(BootRecord {
            name: "dmesg-ramoops-0".into(),
            text: "Kernel panic\n".into(),
        }));
        assert_eq!(
            String::from_utf8(encode(&record)).unwrap(),
            "{\"v\":1,\"type\":\"record\",\"name\":\"dmesg-ramoops-0\",\"text\":\"Kernel panic\\n\"}\n"
        );
    }

    #[test]
    fn unknown_response_fields_are_ignored() {
        let r: Response =
            serde_json::from_str("{\"v\":1,\"type\":\"ok\",\"message\":\"m\",\"extra\":42}")
                .unwrap();
        assert_eq!(
            r.body,
            Body::Ok {
                message: "m".into()
            }
        );
    }

    #[test]
    fn new_fields_have_defaults_for_older_peers() {
        // A readiness answer from an init before critical_ready_for_ms and restarts_total.
        let r: Response = serde_json::from_str(
            "{\"v\":1,\"type\":\"readiness\",\"all_ready\":true,\"critical_ready\":true,\"services\":[]}",
        )
        .unwrap();
        let Body::Readiness(r) = r.body else { panic!() };
        assert_eq!((r.critical_ready_for_ms, r.restarts_total), (None, 0));
        // A log request without a level is what older clients send; with one, it is named.
        let op = Op::Log {
            service: None,
            lines: None,
            level: Some(Level::Warning),
            follow: false,
        };
        let line = encode(&Request { v: 1, op });
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"v\":1,\"op\":\"log\",\"service\":null,\"lines\":null,\"level\":\"warning\",\"follow\":false}\n"
        );
    }
}
