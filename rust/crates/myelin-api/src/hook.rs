//! The hook contract: how a program that a daemon's busybox child runs on each event reports
//! back to the daemon (myelin-net's udhcpc `-s` script, myelin-time's ntpd `-S` script).
//!
//! The child runs its script with the event as the only argument and the details in its
//! environment. The script is the daemon's own binary, reached through a symlink whose file
//! name ([`Hook::name`]) the binary recognizes in `argv[0]`. It sends one JSON datagram,
//! `{"event": ..., "vars": {...}}` (a [`Report`] holding those of [`Hook::vars`] that are set),
//! to the Unix datagram socket named in the environment variable [`Hook::socket_env`], which the
//! child inherited from the daemon, and exits: status 0 once the report is sent, 1 otherwise.
//! The daemon binds that socket ([`Listener::bind`]) before it starts the child.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// One hook, as its daemon defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// The file name the binary is run under: a symlink to it in the daemon's run directory.
    pub name: &'static str,
    /// The environment variable that names the daemon's socket.
    pub socket_env: &'static str,
    /// The child's environment variables worth forwarding.
    pub vars: &'static [&'static str],
}

/// One hook report, as sent over the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The script's argument.
    pub event: String,
    /// The variables of [`Hook::vars`] that were set.
    pub vars: BTreeMap<String, String>,
}

impl Report {
    /// The value of variable `name`, if it was set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

impl Hook {
    /// When `args[0]`'s file name is this hook's, runs the hook with `args[1]` as the event and
    /// returns its exit status; otherwise `None`, and the binary parses its own command line.
    pub fn run_if_called(&self, args: &[OsString]) -> Option<ExitCode> {
        let called = args.first().and_then(|a| Path::new(a).file_name())?;
        if called != self.name {
            return None;
        }
        let event = args
            .get(1)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(self.main(&event))
    }

    /// The report of `event`, with this hook's variables taken from the environment.
    pub fn report(&self, event: &str) -> Report {
        self.report_from(event, |k| std::env::var(k).ok())
    }

    fn report_from(&self, event: &str, var: impl Fn(&str) -> Option<String>) -> Report {
        Report {
            event: event.to_owned(),
            vars: self
                .vars
                .iter()
                .filter_map(|k| var(k).map(|v| ((*k).to_owned(), v)))
                .collect(),
        }
    }

    /// The hook's main: reports `event` and the environment to the daemon.
    pub fn main(&self, event: &str) -> ExitCode {
        let report = self.report(event);
        let Some(socket) = std::env::var_os(self.socket_env) else {
            log::error!("{}: {} is not set", self.name, self.socket_env);
            return ExitCode::FAILURE;
        };
        match send(Path::new(&socket), &report) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!(
                    "{}: cannot report {event} to {}: {e}",
                    self.name,
                    Path::new(&socket).display()
                );
                ExitCode::FAILURE
            }
        }
    }
}

/// Sends `report` as one datagram to the daemon's socket at `socket`.
pub fn send(socket: &Path, report: &Report) -> io::Result<()> {
    let json = serde_json::to_vec(report).map_err(io::Error::other)?;
    std::os::unix::net::UnixDatagram::unbound()?.send_to(&json, socket)?;
    Ok(())
}

/// Points the hook's symlink `hook` at `program`, replacing what an earlier run left there.
pub fn link(program: &Path, hook: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(hook);
    std::os::unix::fs::symlink(program, hook)
}

/// The daemon's end of the hook socket.
#[cfg(feature = "dbus")]
#[derive(Debug)]
pub struct Listener {
    socket: tokio::net::UnixDatagram,
    buf: Vec<u8>,
}

#[cfg(feature = "dbus")]
impl Listener {
    /// Binds the socket at `path`, replacing a stale one an earlier run left.
    pub fn bind(path: &Path) -> io::Result<Listener> {
        let _ = std::fs::remove_file(path);
        Ok(Listener {
            socket: tokio::net::UnixDatagram::bind(path)?,
            // udhcpc's variables (static routes, search lists) stay far below a datagram's
            // 64 KiB; a longer one would be cut and then refused as malformed.
            buf: vec![0; 65536],
        })
    }

    /// Receives the next report; a malformed datagram is logged and skipped. Cancel-safe: a
    /// report that is not returned stays in the socket.
    pub async fn recv(&mut self) -> io::Result<Report> {
        loop {
            let n = self.socket.recv(&mut self.buf).await?;
            match serde_json::from_slice::<Report>(&self.buf[..n]) {
                Ok(r) => return Ok(r),
                Err(e) => log::warn!("ignoring a malformed hook report: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: Hook = Hook {
        name: "myelin-test-hook",
        socket_env: "MYELIN_API_TEST_HOOK_SOCKET",
        vars: &["interface", "stratum"],
    };

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_hooks_name_runs_the_hook() {
        assert_eq!(
            HOOK.run_if_called(&args(&["/usr/bin/myelin-test", "x"])),
            None
        );
        assert_eq!(HOOK.run_if_called(&args(&["myelin-test-hook-2"])), None);
        assert_eq!(HOOK.run_if_called(&[]), None);
        // Called by its name with no socket to report to, the hook fails.
        assert_eq!(
            HOOK.run_if_called(&args(&["/run/x/myelin-test-hook", "bound"])),
            Some(ExitCode::FAILURE)
        );
    }

    #[test]
    fn report_takes_the_hooks_variables_that_are_set() {
        let env = |k: &str| {
            ["interface", "ip"]
                .contains(&k)
                .then(|| format!("{k}-value"))
        };
        let r = HOOK.report_from("bound", env);
        assert_eq!(r.event, "bound");
        assert_eq!(r.var("interface"), Some("interface-value"));
        // `ip` is set but not one of the hook's variables; the other one is not set.
        assert_eq!(r.vars.len(), 1);
    }

    #[cfg(feature = "dbus")]
    #[tokio::test]
    async fn reports_cross_the_socket_and_malformed_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.sock");
        std::fs::write(&path, "stale").unwrap();
        let mut listener = Listener::bind(&path).unwrap();
        let r = Report {
            event: "bound".into(),
            vars: [("interface".to_owned(), "eth0".to_owned())].into(),
        };
        let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
        c.send_to(b"not json", &path).unwrap();
        send(&path, &r).unwrap();
        assert_eq!(listener.recv().await.unwrap(), r);
    }

    #[test]
    fn link_replaces_an_old_hook() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join(HOOK.name);
        std::fs::write(&hook, "old").unwrap();
        link(Path::new("/bin/true"), &hook).unwrap();
        assert_eq!(std::fs::read_link(&hook).unwrap(), Path::new("/bin/true"));
    }
}
