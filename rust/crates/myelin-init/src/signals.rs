//! The signals PID 1 takes through its signalfd, and the clean slate every child gets.
//!
//! PID 1 blocks the signals it handles (SIGCHLD, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPWR,
//! SIGHUP) and reads them from a signalfd; whatever dispositions and mask it inherited (a
//! launcher may have ignored SIGINT or SIGHUP), its children start with every signal at its
//! default action and none blocked.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The signals PID 1 handles.
pub fn handled() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        s.add(sig);
    }
    s
}

/// Signals whose disposition can be set (all but SIGKILL and SIGSTOP), up to SIGRTMAX.
fn settable() -> impl Iterator<Item = libc::c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// The set of every settable signal, for posix_spawn's `POSIX_SPAWN_SETSIGDEF`.
pub fn all_settable() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in settable() {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// In a child between fork and exec: every signal back to its default action, none blocked.
/// Only async-signal-safe calls (sigaction, sigprocmask).
pub fn reset_for_exec() -> std::io::Result<()> {
    // SAFETY: sigaction with SIG_DFL on a zeroed struct; failures for signals the C library
    // reserves (its internal real-time ones) are ignored on purpose.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for s in settable() {
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// At PID 1's start: block the handled signals (to PID 1, an unblocked signal without a handler
/// is lost) and give them their default action, in case a launcher ignored them (an ignored
/// signal would never reach the signalfd).
pub fn take_over() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None);
    // SAFETY: sigaction with SIG_DFL for signals that are blocked and read from a signalfd.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in handled().iter() {
            libc::sigaction(sig as libc::c_int, &sa, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settable_signal_is_in_the_default_set() {
        let set = all_settable();
        // SAFETY: sigismember on an initialised set.
        let has = |s| unsafe { libc::sigismember(&set, s) } == 1;
        for s in [
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGTERM,
            libc::SIGRTMIN(),
        ] {
            assert!(has(s), "{s}");
        }
        assert!(!has(libc::SIGKILL) && !has(libc::SIGSTOP));
    }
}
