//! myelin-init's control protocol: PID 1 and `myelinctl` (or any root client), over the Unix stream socket
//! `<run_dir>/init.sock` (`/run/myelin/init.sock`; mode 0600, and PID 1 also checks that the
//! peer is root with `SO_PEERCRED`).
//!
//! Each message is one JSON object on one line (`\n`-terminated), in both directions. A request
//! carries the protocol version `v` (currently 1) and an `op`:
//!
//! ```text
//! {"v":1,"op":"status"}                      -> {"v":1,"type":"status",...}
//! {"v":1,"op":"readiness"}                   -> {"v":1,"type":"readiness","critical_ready":true,...}
//! {"v":1,"op":"boot"}                        -> {"v":1,"type":"boot","init_start_ms":412,...}
//! {"v":1,"op":"start","name":"kv"}           -> {"v":1,"type":"ok","message":"..."}
//! {"v":1,"op":"stop","name":"kv"}            (same)
//! {"v":1,"op":"restart","name":"kv"}         (same)
//! {"v":1,"op":"reboot","arg":"0 tryboot"}    -> ok, then PID 1 shuts down
//! {"v":1,"op":"poweroff"} / {"v":1,"op":"halt"}
//! {"v":1,"op":"watchdog_snooze"}             -> ok
//! {"v":1,"op":"log","service":"kv","lines":50,"level":"warning","follow":true}
//!                                            -> {"v":1,"type":"log",...} per line, then
//!                                               {"v":1,"type":"end"} unless following
//! ```
//!
//! Any failure is `{"v":1,"type":"error","message":"..."}`; a request with another `v` gets
//! such an error naming the supported version, and a `log` request naming a service the tree
//! does not have gets one naming the service. Several requests may be sent on one connection,
//! one at a time. New fields may be added to requests and responses (with defaults, so older
//! peers keep working); both sides ignore fields they do not know.
//!
//! Connections are bounded: PID 1 closes one that has been idle (no request, nothing to send,
//! not following the log) for `[init] control_idle_timeout`, and at most
//! [`MAX_CLIENTS_PER_UID`] connections of one user (and [`MAX_CLIENTS`] in all) are open at once;
//! at the limit the connection idle the longest makes room for the new one, so clients that
//! hang on to connections cannot lock out a readiness query.
//!
//! This module only needs serde and the standard library, so `myelinctl` and other clients can
//! use it as is: [`protocol`] holds the messages, [`client`] the blocking client.

pub mod client;
pub mod protocol;

pub use client::Client;
pub use protocol::*;
