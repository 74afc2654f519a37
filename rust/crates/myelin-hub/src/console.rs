//! The remote console: a shell in a PTY for an operator the server authenticated.
//!
//! On the wire it is NervesHubLink 2.x's console: the device joins the `console` topic (with
//! `console_version` and `device_api_version`) on the same socket as `device`; the server pushes
//! `dn` `{"data": text}` (keystrokes), `window_size` `{"height": rows, "width": cols}` and
//! `restart` `{}`; the device pushes `up` `{"data": text}` (what the terminal printed). The first
//! message starts the shell, as NervesHubLink starts IEx on demand. Where NervesHubLink runs IEx,
//! Myelin runs a command (default `/bin/sh -l`) in a real PTY as the daemon's user (root): the
//! server authenticated the operator. `file-data*` events (uploads) are not supported.
//!
//! Output is read in batches of up to [`OUTPUT_BATCH`] bytes (whatever the PTY holds, not a
//! frame per byte) and only when the connection loop is ready to send it, so a flooding shell
//! blocks on the PTY instead of growing a buffer. Input waits in a queue bounded by
//! [`INPUT_LIMIT`]; beyond it keystrokes are dropped (the shell is not reading anyway).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::unix::AsyncFd;

use crate::message::BadMessage;

/// The console topic.
pub const CONSOLE_TOPIC: &str = "console";
/// The console protocol revision NervesHubLink 2.x announces.
pub const CONSOLE_VERSION: &str = "2.0.0";
/// The most bytes one `up` message carries.
pub const OUTPUT_BATCH: usize = 16 * 1024;
/// The most input bytes waiting for the shell to read them.
pub const INPUT_LIMIT: usize = 64 * 1024;
/// How long a hung-up shell has to exit before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(5);

/// A server message on the console topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Keystrokes.
    Data(String),
    /// The operator's terminal size.
    WindowSize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// End the shell and start a new one.
    Restart,
}

/// Parses a push on the console topic; `Ok(None)` for an event this client does not handle.
pub fn parse(event: &str, payload: &Value) -> Result<Option<Input>, BadMessage> {
    let bad = |reason: &str| BadMessage {
        event: event.to_owned(),
        reason: reason.to_owned(),
    };
    match event {
        "dn" => payload
            .get("data")
            .and_then(Value::as_str)
            .map(|d| Some(Input::Data(d.to_owned())))
            .ok_or_else(|| bad("field data: expected a string")),
        "window_size" => {
            let dim = |k: &str| {
                payload
                    .get(k)
                    .and_then(Value::as_u64)
                    .and_then(|v| u16::try_from(v).ok())
                    .filter(|v| *v > 0)
            };
            match (dim("height"), dim("width")) {
                (Some(rows), Some(cols)) => Ok(Some(Input::WindowSize { rows, cols })),
                _ => Err(bad("fields height, width: expected integers 1..=65535")),
            }
        }
        "restart" => Ok(Some(Input::Restart)),
        _ => Ok(None),
    }
}

/// `up`'s payload.
pub fn output(text: &str) -> Value {
    json!({ "data": text })
}

/// The console join's payload.
pub fn join_payload() -> Value {
    json!({
        "console_version": CONSOLE_VERSION,
        "device_api_version": crate::meta::DEVICE_API_VERSION,
    })
}

/// What a running shell did.
#[derive(Debug)]
pub enum Event {
    /// The terminal printed this.
    Output(String),
    /// The shell exited (reaped) with this status; no more output will come.
    Exited(ExitStatus),
}

/// Decodes PTY bytes as UTF-8 across batch boundaries: a character split between two reads is
/// held back for the next; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and returns the text complete so far.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        // An incomplete character at the end: wait for its other bytes.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }
}

/// A shell running in a PTY.
#[derive(Debug)]
pub struct Shell {
    master: AsyncFd<OwnedFd>,
    child: tokio::process::Child,
    pid: Pid,
    input: Vec<u8>,
    decoder: Utf8Stream,
    exited: Option<ExitStatus>,
    hung_up: bool,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Shell {
    /// Starts `command` on a new PTY of this size, as a session leader with the PTY as its
    /// controlling terminal.
    pub fn spawn(command: &[String], rows: u16, cols: u16) -> io::Result<Shell> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty console command"))?;
        let pty = openpty(&winsize(rows, cols), None)?;
        let mut flags = OFlag::from_bits_retain(fcntl(&pty.master, FcntlArg::F_GETFL)?);
        flags.insert(OFlag::O_NONBLOCK);
        fcntl(&pty.master, FcntlArg::F_SETFL(flags))?;
        // Close-on-exec is a descriptor flag (F_SETFD), not a status flag: F_SETFL ignores
        // O_CLOEXEC. A shell holding the master would keep its own terminal from hanging up
        // and hand it to every program it starts.
        fcntl(&pty.master, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::from(pty.slave.try_clone()?))
            .stdout(Stdio::from(pty.slave.try_clone()?))
            .stderr(Stdio::from(pty.slave))
            .env("TERM", "xterm-256color")
            // A safety net only: close() ends the shell and reaps it.
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (setsid, ioctl) on its already set-up stdin.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own, so job control works and the hangup reaches it.
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // The parent's copies of the slave fd closed with `cmd`'s Stdio when it spawned.
        drop(cmd);
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| io::Error::other("the shell exited at once"))?;
        // SAFETY: an OwnedFd keeps the same open descriptor until the AsyncFd drops it.
        let master = unsafe { AsyncFd::register(pty.master) }.map_err(|e| e.into_parts().1)?;
        Ok(Shell {
            master,
            child,
            pid,
            input: Vec::new(),
            decoder: Utf8Stream::default(),
            exited: None,
            hung_up: false,
        })
    }

    /// The shell's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Queues keystrokes; `false` if the queue is full and they were dropped.
    pub fn input(&mut self, data: &[u8]) -> bool {
        if self.input.len() + data.len() > INPUT_LIMIT {
            return false;
        }
        self.input.extend_from_slice(data);
        true
    }

    /// Sets the terminal size (the kernel sends SIGWINCH to the foreground job).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next output batch or the exit. Cancel-safe: nothing read is lost if the future is
    /// dropped, so it can be one branch of a `select!`.
    pub async fn next(&mut self) -> io::Result<Event> {
        loop {
            if let Some(status) = self.exited {
                // Output the shell printed before it exited comes first.
                let batch =
                    read_batch(self.master.get_ref(), &mut self.decoder, &mut self.hung_up)?;
                return match batch {
                    Some(text) if !text.is_empty() => Ok(Event::Output(text)),
                    Some(_) => continue,
                    None => Ok(Event::Exited(status)),
                };
            }
            let want_write = !self.input.is_empty();
            tokio::select! {
                status = self.child.wait() => self.exited = Some(status?),
                guard = self.master.readable(), if !self.hung_up => {
                    let mut guard = guard?;
                    let batch = read_batch(self.master.get_ref(), &mut self.decoder, &mut self.hung_up)?;
                    if batch.is_none() && !self.hung_up {
                        guard.clear_ready();
                    }
                    if let Some(text) = batch.filter(|t| !t.is_empty()) {
                        return Ok(Event::Output(text));
                    }
                }
                guard = self.master.writable(), if want_write => {
                    let mut guard = guard?;
                    let before = self.input.len();
                    write_some(self.master.get_ref(), &mut self.input)?;
                    if self.input.len() == before {
                        guard.clear_ready();
                    }
                }
            }
        }
    }

    /// Ends the shell: hangs up its session (SIGHUP, as a terminal closing does), kills it if
    /// it outlives [`HANGUP_GRACE`], reaps it and closes the PTY. Returns how it ended.
    pub async fn close(self) -> Option<ExitStatus> {
        let Shell {
            master,
            mut child,
            pid,
            exited,
            ..
        } = self;
        if let Some(status) = exited {
            return Some(status);
        }
        // The shell leads its own process group: hang up all of it.
        if let Err(e) = killpg(pid, Signal::SIGHUP) {
            log::debug!("console: SIGHUP to {pid}: {e}");
        }
        let _ = killpg(pid, Signal::SIGCONT);
        // Closing the master hangs up the terminal for anything else in the session.
        drop(master);
        match tokio::time::timeout(HANGUP_GRACE, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                log::warn!("console: the shell ignored the hangup; killing it");
                let _ = killpg(pid, Signal::SIGKILL);
                child.wait().await.ok()
            }
        }
    }
}

/// Reads what the PTY holds now, up to one batch; `None` if nothing (or hung up).
fn read_batch(
    master: &OwnedFd,
    decoder: &mut Utf8Stream,
    hung_up: &mut bool,
) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; OUTPUT_BATCH];
    let mut n = 0;
    while n < buf.len() {
        match nix::unistd::read(master, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::EAGAIN) => break,
            Err(Errno::EINTR) => continue,
            // Every slave fd is closed: the shell (and its children) are gone.
            Err(Errno::EIO) => {
                *hung_up = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(decoder.decode(&buf[..n])))
}

/// Writes as much queued input as the PTY takes now.
fn write_some(master: &OwnedFd, input: &mut Vec<u8>) -> io::Result<()> {
    match nix::unistd::write(master, input) {
        Ok(k) => {
            input.drain(..k);
            Ok(())
        }
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_messages() {
        assert_eq!(
            parse("dn", &json!({"data": "ls\r"})),
            Ok(Some(Input::Data("ls\r".into())))
        );
        assert_eq!(
            parse("window_size", &json!({"height": 40, "width": 120})),
            Ok(Some(Input::WindowSize {
                rows: 40,
                cols: 120
            }))
        );
        assert_eq!(parse("restart", &json!({})), Ok(Some(Input::Restart)));
        assert_eq!(parse("file-data/start", &json!({})), Ok(None));
        let e = parse("dn", &json!({"data": 3})).unwrap_err();
        assert!(e.to_string().contains("data"), "{e}");
        let e = parse("window_size", &json!({"height": 0, "width": 80})).unwrap_err();
        assert!(e.to_string().contains("height"), "{e}");
        let e = parse("window_size", &json!({"height": 70000, "width": 80})).unwrap_err();
        assert!(e.to_string().contains("height"), "{e}");
    }

    async fn output_until(shell: &mut Shell, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            match shell.next().await.unwrap() {
                Event::Output(t) => text.push_str(&t),
                Event::Exited(s) => panic!("the shell exited ({s}) before printing {needle:?}"),
            }
        }
        text
    }

    #[tokio::test]
    async fn a_shell_that_ignores_the_hangup_is_killed_and_reaped() {
        let command = [
            "/bin/sh",
            "-c",
            "trap '' HUP; echo ready-$((1+1)); sleep 1000",
        ]
        .map(String::from);
        let mut shell = Shell::spawn(&command, 24, 80).unwrap();
        let pid = shell.pid();
        // Input beyond the bound is refused, not buffered.
        assert!(shell.input(&vec![b' '; INPUT_LIMIT]));
        assert!(!shell.input(b"x"));
        tokio::time::timeout(Duration::from_secs(60), output_until(&mut shell, "ready-2"))
            .await
            .expect("the shell printed nothing for 60 s");
        let status = shell.close().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error() {
        let e = Shell::spawn(&["/nonexistent/shell".to_owned()], 24, 80).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(Shell::spawn(&[], 24, 80).is_err());
    }

    #[test]
    fn utf8_split_across_batches_is_kept_whole() {
        let mut d = Utf8Stream::default();
        let euro = "€".as_bytes();
        assert_eq!(d.decode(&[b'a', euro[0]]), "a");
        assert_eq!(d.decode(&euro[1..]), "€");
        assert_eq!(d.decode(&[0xff, b'b']), "\u{fffd}b");
    }
}
