//! A daemon under test, started the way myelin-init starts a `notify = true` service: with
//! `NOTIFY_SOCKET` naming a datagram socket, and ready once it sends `READY=1` there. Its
//! standard error goes to a log file that [`Daemon::log`] reads and every panic here quotes.
//!
//! Waits are for events (the `READY=1` datagram, the exit); [`PATIENCE`] only bounds them so
//! a daemon that hangs fails the test instead of stalling it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a daemon may take to become ready or to stop before the test fails: long enough
/// for a loaded 2-core machine many times over. A hang guard, not a performance check.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Spawns `cmd` with `NOTIFY_SOCKET` set and its standard error in a log file; returns
    /// once it sent `READY=1`. The socket accepts datagrams from every user, so the daemon may
    /// run under any uid.
    ///
    /// # Panics
    /// When the daemon cannot be started, exits first, or sends nothing within [`PATIENCE`]:
    /// the message carries its log.
    pub fn start(mut cmd: Command) -> Daemon {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("cannot open the notify directory to other users");
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("cannot bind NOTIFY_SOCKET");
        std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666))
            .expect("cannot open NOTIFY_SOCKET to other users");
        // Short reads, so an exit is noticed while waiting for READY=1.
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("cannot set a read timeout");
        let log = dir.path().join("daemon.log");
        let stderr = std::fs::File::create(&log).expect("cannot create the daemon's log");
        let child = cmd
            .env("NOTIFY_SOCKET", &notify_path)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut daemon = Daemon {
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 512];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]);
                    if message.lines().any(|l| l == "READY=1") {
                        return daemon;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("NOTIFY_SOCKET: {e}; log:\n{}", daemon.log()),
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before READY=1; log:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no READY=1 from the daemon within {PATIENCE:?}; log:\n{}",
                daemon.log()
            );
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM and returns how the daemon ended and its whole log.
    ///
    /// # Panics
    /// When it is still running after [`PATIENCE`].
    pub fn terminate(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) with a pid this process started and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM within {PATIENCE:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM; the daemon must exit with status 0. Returns its whole log.
    ///
    /// # Panics
    /// When it does not, with its log.
    pub fn stop(self) -> String {
        let (status, log) = self.terminate();
        assert!(status.success(), "daemon exit status {status}; log:\n{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
