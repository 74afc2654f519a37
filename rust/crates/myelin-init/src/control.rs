//! The control protocol between PID 1 and `myelinctl`, over the Unix stream socket
//! `<run_dir>/init.sock` (`/run/myelin/init.sock`; mode 0600, and PID 1 also checks that the
//! peer is root with `SO_PEERCRED`).
//!
//! Each message is one JSON object on one line (`\n`-terminated), in both directions. A request
//! carries the protocol version `v` (currently 1) and an `op`:
//!
//! ```text
//! {"v":1,"op":"status"}                      -> {"v":1,"type":"status",...}
//! {"v":1,"op":"readiness"}                   -> {"v":1,"type":"readiness","critical_ready":true,...}
//! {"v":1,"op":"start","name":"kv"}           -> {"v":1,"type":"ok","message":"..."}
//! {"v":1,"op":"stop","name":"kv"}            (same)
//! {"v":1,"op":"restart","name":"kv"}         (same)
//! {"v":1,"op":"reboot","arg":"0 tryboot"}    -> ok, then PID 1 shuts down
//! {"v":1,"op":"poweroff"} / {"v":1,"op":"halt"}
//! {"v":1,"op":"watchdog_snooze"}             -> ok
//! {"v":1,"op":"log","service":"kv","lines":50,"follow":true}
//!                                            -> {"v":1,"type":"log",...} per line, then
//!                                               {"v":1,"type":"end"} unless following
//! ```
//!
//! Any failure is `{"v":1,"type":"error","message":"..."}`; a request with another `v` gets
//! such an error naming the supported version. Several requests may be sent on one connection,
//! one at a time. New fields may be added to responses; clients ignore unknown fields.
//!
//! This module only needs serde and the standard library, so `myelinctl` and other clients can
//! use it as is.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::log::{Entry as LogEntry, Level, Stream};
pub use crate::watchdog::PolicyStatus;

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
        /// Keep the connection open and stream new lines.
        #[serde(default)]
        follow: bool,
    },
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
    /// Success.
    Ok {
        /// What was done.
        message: String,
    },
    /// One log line.
    Log(LogEntry),
    /// End of a log listing.
    End,
    /// Failure.
    Error {
        /// What went wrong.
        message: String,
    },
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
}

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Name.
    pub name: String,
    /// `supervisor` or `service`.
    pub kind: String,
    /// `running`, `starting`, `stopping`, `stopped`, `waiting`, `restarting` or `exited`.
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
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let v: Version = serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))?;
    if v.v != PROTOCOL_VERSION {
        return Err(format!(
            "unsupported protocol version {} (this init speaks {PROTOCOL_VERSION})",
            v.v
        ));
    }
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

/// A connection to PID 1.
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the control socket.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let s = UnixStream::connect(path)?;
        Ok(Client {
            reader: BufReader::new(s),
        })
    }

    /// Limits how long one answer may take (`None`: forever, for `log --follow`).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }

    /// Sends a request without reading the answer.
    pub fn send(&mut self, op: Op) -> io::Result<()> {
        self.reader.get_mut().write_all(&encode(&Request {
            v: PROTOCOL_VERSION,
            op,
        }))
    }

    /// Reads the next message; `None` when PID 1 closed the connection.
    pub fn receive(&mut self) -> io::Result<Option<Body>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let r: Response = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad response from init: {e}"),
            )
        })?;
        Ok(Some(r.body))
    }

    /// Sends a request and reads one answer; an `error` answer becomes an `Err`.
    pub fn call(&mut self, op: Op) -> io::Result<Body> {
        self.send(op)?;
        match self.receive()? {
            Some(Body::Error { message }) => Err(io::Error::other(message)),
            Some(b) => Ok(b),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "init closed the connection",
            )),
        }
    }
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
                .contains("unsupported protocol version 2")
        );
        assert!(
            decode_request(b"{\"v\":1,\"op\":\"explode\"}")
                .unwrap_err()
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
}
