//! busybox ntpd: its command line, and the `-S` hook through which it reports.
//!
//! ntpd runs its script with the event as the only argument (`step`, `stratum`, `periodic`,
//! `unsync`) and `stratum`, `offset`, `freq_drift_ppm` and `poll_interval` in the environment.
//! The script is myelin-time itself, reached through a symlink named [`HOOK_NAME`]: it reports
//! to the socket named in [`HOOK_SOCKET_ENV`] (which ntpd inherited from the daemon) as
//! [`myelin_api::hook`] describes ([`HOOK`]).

use std::path::Path;

use myelin_api::hook::Hook;

/// Name the hook is reached under (a symlink to this binary in the run directory).
pub const HOOK_NAME: &str = "myelin-time-ntpd-hook";
/// Environment variable naming the daemon's hook socket.
pub const HOOK_SOCKET_ENV: &str = "MYELIN_TIME_HOOK_SOCKET";

/// ntpd's variables worth forwarding.
const VARS: &[&str] = &["stratum", "offset", "freq_drift_ppm", "poll_interval"];

/// ntpd's hook: its `-S` script, reporting to the daemon.
pub const HOOK: Hook = Hook {
    name: HOOK_NAME,
    socket_env: HOOK_SOCKET_ENV,
    vars: VARS,
};

/// ntpd's argv: the configured prefix, foreground, the hook, one `-p` per server.
pub fn argv(prefix: &[String], hook: &Path, servers: &[String]) -> Vec<String> {
    let mut argv = prefix.to_vec();
    argv.extend([
        "-n".into(),
        "-S".into(),
        hook.to_string_lossy().into_owned(),
    ]);
    for s in servers {
        argv.push("-p".into());
        argv.push(s.clone());
    }
    argv
}

/// Whether `program` (a path, or a name looked up in `$PATH`) exists.
pub fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).exists()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_has_foreground_hook_and_peers() {
        let a = argv(
            &["busybox".into(), "ntpd".into()],
            Path::new("/run/myelin-time/myelin-time-ntpd-hook"),
            &["10.0.2.2:11123".into(), "pool.ntp.org".into()],
        );
        assert_eq!(
            a.join(" "),
            "busybox ntpd -n -S /run/myelin-time/myelin-time-ntpd-hook -p 10.0.2.2:11123 -p pool.ntp.org"
        );
    }

    #[test]
    fn programs_are_found_by_path_or_name() {
        assert!(program_exists("/bin/sh"));
        assert!(program_exists("sh"));
        assert!(!program_exists("/nonexistent/ntpd"));
        assert!(!program_exists("myelin-no-such-program"));
    }
}
