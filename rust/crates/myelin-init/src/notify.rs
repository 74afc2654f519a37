//! The sd_notify protocol, as spoken by services to PID 1.
//!
//! Every service gets its own `AF_UNIX` datagram socket, `<run_dir>/notify/<name>`, named in its
//! `NOTIFY_SOCKET` environment variable, so any process of the service may notify (shell scripts
//! through a helper, forked workers) and no message can be attributed to the wrong service.
//! A datagram holds newline-separated `KEY=VALUE` assignments; those understood are:
//!
//! | assignment | effect |
//! |---|---|
//! | `READY=1` | the service is ready: the next sibling may start |
//! | `WATCHDOG=1` | liveness ping, needed at least every `watchdog` once ready |
//! | `WATCHDOG=trigger` | the service asks to be treated as hung |
//! | `STATUS=text` | free-form status shown by `myelinctl status` |
//! | `EXTEND_TIMEOUT_USEC=n` | the readiness deadline is at least n µs from now |
//! | `STOPPING=1`, `RELOADING=1`, `MAINPID=n`, others | ignored |
//!
//! Services with a watchdog also get `WATCHDOG_USEC` in their environment, as systemd passes it,
//! so `sd_watchdog_enabled()` in existing libraries works.

use std::time::Duration;

/// One understood assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notify {
    /// `READY=1`.
    Ready,
    /// `WATCHDOG=1`.
    Watchdog,
    /// `WATCHDOG=trigger`.
    WatchdogTrigger,
    /// `STATUS=...`.
    Status(String),
    /// `EXTEND_TIMEOUT_USEC=...`.
    ExtendTimeout(Duration),
}

/// Longest `STATUS=` text kept.
pub const STATUS_MAX: usize = 256;

/// Parses one datagram.
pub fn parse(datagram: &[u8]) -> Vec<Notify> {
    let text = String::from_utf8_lossy(datagram);
    text.split('\n')
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            match (k, v) {
                ("READY", "1") => Some(Notify::Ready),
                ("WATCHDOG", "1") => Some(Notify::Watchdog),
                ("WATCHDOG", "trigger") => Some(Notify::WatchdogTrigger),
                ("STATUS", s) => Some(Notify::Status(s.chars().take(STATUS_MAX).collect())),
                ("EXTEND_TIMEOUT_USEC", n) => n
                    .parse()
                    .ok()
                    .map(|us| Notify::ExtendTimeout(Duration::from_micros(us))),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_assignments() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=serving 3 clients\n"),
            [Notify::Ready, Notify::Status("serving 3 clients".into())]
        );
        assert_eq!(parse(b"WATCHDOG=1"), [Notify::Watchdog]);
        assert_eq!(
            parse(b"WATCHDOG=trigger\nMAINPID=5\nREADY=0\n"),
            [Notify::WatchdogTrigger]
        );
        assert_eq!(
            parse(b"EXTEND_TIMEOUT_USEC=2500000"),
            [Notify::ExtendTimeout(Duration::from_millis(2500))]
        );
        assert_eq!(parse(b"EXTEND_TIMEOUT_USEC=x\ngarbage\n\xff"), []);
        assert_eq!(
            parse(format!("STATUS={}", "x".repeat(1000)).as_bytes()),
            [Notify::Status("x".repeat(STATUS_MAX))]
        );
    }
}
