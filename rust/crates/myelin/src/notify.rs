//! Readiness, liveness and status for a supervised application: the sd_notify protocol.
//!
//! myelin-init gives every service an `AF_UNIX` datagram socket, named in the service's
//! `NOTIFY_SOCKET` environment variable (a path, or `@name` for the abstract namespace, as
//! systemd does). A datagram is newline-separated `KEY=VALUE` assignments:
//!
//! | assignment | meaning to myelin-init |
//! |---|---|
//! | `READY=1` | the service is up: the next service of its group may start; a firmware on trial may be validated once all critical services are |
//! | `WATCHDOG=1` | the service is alive; needed at least every `watchdog` (init.toml) once ready |
//! | `WATCHDOG=trigger` | the service asks to be treated as hung (restarted) |
//! | `STATUS=text` | one line that `myelinctl status` shows |
//! | `EXTEND_TIMEOUT_USEC=n` | the readiness deadline is at least n µs from now |
//! | `STOPPING=1` | the service is shutting down (informational) |
//!
//! A service with a watchdog also gets `WATCHDOG_USEC` (its timeout in µs), as systemd passes it;
//! [`Watchdog`] reads it and pets at half that period, the margin systemd recommends. When the
//! process is not supervised (no `NOTIFY_SOCKET`, e.g. run by hand) every call here does nothing
//! and succeeds, so the same binary runs in both places.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Environment variable naming the supervisor's notification socket.
pub const SOCKET_VAR: &str = "NOTIFY_SOCKET";
/// Environment variable holding the watchdog timeout in microseconds.
pub const WATCHDOG_USEC_VAR: &str = "WATCHDOG_USEC";
/// Environment variable naming the process the watchdog timeout is meant for (optional).
pub const WATCHDOG_PID_VAR: &str = "WATCHDOG_PID";

/// A notification could not be delivered to the supervisor.
#[derive(Debug, thiserror::Error)]
#[error("cannot notify the supervisor on {socket}: {source}")]
pub struct Error {
    /// The socket, as `NOTIFY_SOCKET` named it.
    pub socket: String,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

/// One assignment of a notification datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`: startup is complete.
    Ready,
    /// `WATCHDOG=1`: still alive.
    Watchdog,
    /// `WATCHDOG=trigger`: treat this service as hung.
    WatchdogTrigger,
    /// `STATUS=...`: a one-line status text (newlines become spaces).
    Status(&'a str),
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `EXTEND_TIMEOUT_USEC=...`: more time to get ready.
    ExtendTimeout(Duration),
}

/// The datagram for a list of assignments.
pub fn encode(states: &[State<'_>]) -> String {
    let mut out = String::new();
    for s in states {
        match s {
            State::Ready => out.push_str("READY=1"),
            State::Watchdog => out.push_str("WATCHDOG=1"),
            State::WatchdogTrigger => out.push_str("WATCHDOG=trigger"),
            State::Stopping => out.push_str("STOPPING=1"),
            State::Status(text) => {
                // A newline would start another assignment: a status could forge READY=1.
                out.push_str("STATUS=");
                out.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
            }
            State::ExtendTimeout(d) => {
                out.push_str(&format!("EXTEND_TIMEOUT_USEC={}", d.as_micros()));
            }
        }
        out.push('\n');
    }
    out
}

/// A connection to the supervisor's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    name: String,
}

impl Notifier {
    /// The supervisor named in `NOTIFY_SOCKET`; `None` when the process is not supervised.
    pub fn from_env() -> Option<Result<Notifier, Error>> {
        let name = std::env::var_os(SOCKET_VAR).filter(|v| !v.is_empty())?;
        Some(Notifier::new(name))
    }

    /// A notifier for a socket path, or `@name` for an abstract socket.
    pub fn new(socket: impl Into<OsString>) -> Result<Notifier, Error> {
        let socket = socket.into();
        let name = socket.to_string_lossy().into_owned();
        let err = |source| Error {
            socket: name.clone(),
            source,
        };
        let bytes = socket.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(abs) => SocketAddr::from_abstract_name(abs),
            None => SocketAddr::from_pathname(&socket),
        }
        .map_err(err)?;
        let socket = UnixDatagram::unbound().map_err(err)?;
        Ok(Notifier { socket, addr, name })
    }

    /// Sends one datagram with these assignments.
    pub fn send(&self, states: &[State<'_>]) -> Result<(), Error> {
        let msg = encode(states);
        let err = |source| Error {
            socket: self.name.clone(),
            source,
        };
        let n = self
            .socket
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map_err(err)?;
        if n != msg.len() {
            return Err(err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes", msg.len()),
            )));
        }
        Ok(())
    }

    /// The socket this notifier sends to, as named.
    pub fn socket(&self) -> &str {
        &self.name
    }
}

/// Sends assignments to the supervisor named in the environment, if any.
pub fn notify(states: &[State<'_>]) -> Result<(), Error> {
    match Notifier::from_env() {
        Some(n) => n?.send(states),
        None => Ok(()),
    }
}

/// Tells the supervisor that startup is complete (`READY=1`).
///
/// Call it once the application does what it is for (e.g. after its first good sensor reading),
/// not merely once it started: services after it, and the validation of a firmware on trial,
/// wait for it.
pub fn ready() -> Result<(), Error> {
    notify(&[State::Ready])
}

/// Tells the supervisor that the application is alive (`WATCHDOG=1`).
pub fn watchdog() -> Result<(), Error> {
    notify(&[State::Watchdog])
}

/// Sets the one-line status text `myelinctl status` shows (`STATUS=`).
pub fn status(text: &str) -> Result<(), Error> {
    notify(&[State::Status(text)])
}

/// True when a supervisor listens (`NOTIFY_SOCKET` is set).
pub fn supervised() -> bool {
    std::env::var_os(SOCKET_VAR).is_some_and(|v| !v.is_empty())
}

/// The watchdog timeout the supervisor expects this process to honour, from `WATCHDOG_USEC`
/// (and `WATCHDOG_PID`, when set, must name this process).
pub fn watchdog_timeout() -> Option<Duration> {
    let usec = std::env::var(WATCHDOG_USEC_VAR).ok();
    let pid = std::env::var(WATCHDOG_PID_VAR).ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// The timeout `WATCHDOG_USEC`/`WATCHDOG_PID` give the process `me`, as sd_watchdog_enabled(3)
/// reads them: none when unset, zero, unparsable, or meant for another process.
pub fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Pets the supervisor's watchdog at half its timeout.
///
/// Call [`Watchdog::pet_if_due`] from the application's main loop, where a hang would stop it:
/// petting from a thread of its own would keep a wedged application alive.
#[derive(Debug)]
pub struct Watchdog {
    notifier: Notifier,
    timeout: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// The watchdog the environment configures; `None` without `NOTIFY_SOCKET` or
    /// `WATCHDOG_USEC` (the service has no watchdog in init.toml, or is not supervised).
    pub fn from_env() -> Option<Watchdog> {
        let timeout = watchdog_timeout()?;
        match Notifier::from_env()? {
            Ok(notifier) => Some(Watchdog::new(notifier, timeout)),
            Err(e) => {
                // The supervisor will restart this process for missing pets: say why.
                log::error!("watchdog of {timeout:?} expected, but {e}");
                None
            }
        }
    }

    /// A watchdog with this timeout on this notifier.
    pub fn new(notifier: Notifier, timeout: Duration) -> Watchdog {
        Watchdog {
            notifier,
            timeout,
            last: None,
        }
    }

    /// The supervisor's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often to pet: half the timeout.
    pub fn interval(&self) -> Duration {
        self.timeout / 2
    }

    /// Pets now (`WATCHDOG=1`).
    pub fn pet(&mut self) -> Result<(), Error> {
        self.notifier.send(&[State::Watchdog])?;
        self.last = Some(Instant::now());
        Ok(())
    }

    /// Pets if the last pet is at least [`Watchdog::interval`] old (or there was none); true if
    /// it did.
    pub fn pet_if_due(&mut self) -> Result<bool, Error> {
        if self.due_in().is_zero() {
            self.pet()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Time until the next pet is due (zero when it is due now): how long a loop may sleep.
    pub fn due_in(&self) -> Duration {
        match self.last {
            None => Duration::ZERO,
            Some(t) => self.interval().saturating_sub(t.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (dir, path, sock)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_are_what_myelin_init_parses() {
        use myelin_init::notify::{Notify, parse};
        let msg = encode(&[
            State::Ready,
            State::Status("reading 21.5 °C\nREADY=1"),
            State::ExtendTimeout(Duration::from_millis(1500)),
            State::Watchdog,
        ]);
        assert_eq!(
            parse(msg.as_bytes()),
            [
                Notify::Ready,
                Notify::Status("reading 21.5 °C READY=1".into()),
                Notify::ExtendTimeout(Duration::from_millis(1500)),
                Notify::Watchdog,
            ]
        );
        assert_eq!(
            parse(encode(&[State::WatchdogTrigger]).as_bytes()),
            [Notify::WatchdogTrigger]
        );
    }

    #[test]
    fn sends_to_a_socket_path() {
        let (_dir, path, sock) = listener();
        let n = Notifier::new(&path).unwrap();
        n.send(&[State::Ready, State::Status("up")]).unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("myelin-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notifier::new(format!("@{name}"))
            .unwrap()
            .send(&[State::Watchdog])
            .unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let err = Notifier::new(&path)
            .unwrap()
            .send(&[State::Ready])
            .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn watchdog_environment() {
        assert_eq!(
            parse_watchdog(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_watchdog(Some("500000"), Some("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_watchdog(Some("500000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn watchdog_pets_at_half_its_timeout() {
        let (_dir, path, sock) = listener();
        let mut w = Watchdog::new(Notifier::new(&path).unwrap(), Duration::from_secs(3600));
        assert_eq!(w.interval(), Duration::from_secs(1800));
        assert!(w.due_in().is_zero());
        assert!(w.pet_if_due().unwrap());
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        // Just petted: the next pet is due in about half an hour, not now.
        assert!(!w.pet_if_due().unwrap());
        assert!(w.due_in() > Duration::from_secs(1700));
        sock.set_nonblocking(true).unwrap();
        assert!(
            sock.recv(&mut [0u8; 64]).is_err(),
            "a second datagram was sent"
        );

        let mut quick = Watchdog::new(Notifier::new(&path).unwrap(), Duration::ZERO);
        assert!(quick.pet_if_due().unwrap());
        assert!(quick.pet_if_due().unwrap(), "a zero interval is always due");
    }
}
