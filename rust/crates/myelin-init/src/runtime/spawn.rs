//! Starting a service's process: a clean slate whatever PID 1 inherited (every signal at its
//! default action, none blocked, a new session, only the configured environment), stdin on
//! /dev/null and stdout/stderr on pipes (or all three on the console terminal), and, with
//! cgroups, membership of the service's cgroup from before the exec.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::ServiceSpec;
use crate::supervisor::SpawnError;

/// What a start needs besides the service's specification.
pub(super) struct Launch<'a> {
    /// The service.
    pub spec: &'a ServiceSpec,
    /// Its `NOTIFY_SOCKET`.
    pub notify: &'a Path,
    /// Its cgroup's `cgroup.procs`, open for writing (with cgroups).
    pub cgroup: Option<&'a File>,
    /// The console terminal, for a `console = true` service.
    pub console: Option<File>,
}

/// A started process and the read ends of its output pipes (none on the console).
pub(super) struct Started {
    /// Its pid.
    pub pid: u32,
    /// stdout and stderr, to be logged.
    pub pipes: Option<(OwnedFd, OwnedFd)>,
}

fn prepare(what: &str) -> impl FnOnce(io::Error) -> SpawnError + '_ {
    move |source| SpawnError::Prepare {
        what: what.to_string(),
        source,
    }
}

/// Starts the process. The common case (no cgroup, no user switch, no terminal) goes through
/// posix_spawn, whose vfork-style clone does not copy PID 1's page tables; the rest through
/// fork and exec with the setup done in the child.
pub(super) fn launch(l: Launch<'_>) -> Result<Started, SpawnError> {
    let s = l.spec;
    if l.cgroup.is_none() && s.uid.is_none() && s.gid.is_none() && l.console.is_none() {
        return spawn_posix(s, l.notify);
    }
    let mut cmd = Command::new(&s.program);
    cmd.arg0(&s.argv[0])
        .args(&s.argv[1..])
        .env_clear()
        .envs(&s.env)
        .env("NOTIFY_SOCKET", l.notify)
        .current_dir(&s.cwd);
    if let Some(w) = s.watchdog {
        cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
    }
    let mut pipes = None;
    let console = l.console.is_some();
    if let Some(tty) = l.console {
        let dup = |f: &File| f.try_clone().map_err(prepare("the console"));
        cmd.stdin(Stdio::from(dup(&tty)?))
            .stdout(Stdio::from(dup(&tty)?))
            .stderr(Stdio::from(tty));
        if !s.env.contains_key("TERM") {
            cmd.env("TERM", "vt100");
        }
    } else {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| prepare("pipes")(e.into()))?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| prepare("pipes")(e.into()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        pipes = Some((out_r, err_r));
    }
    let cgroup = l.cgroup.map(|f| f.as_raw_fd());
    let (uid, gid) = (s.uid, s.gid);
    // SAFETY: only async-signal-safe calls (sigaction, sigprocmask, write, setsid, ioctl,
    // setgroups, setgid, setuid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            crate::signals::reset_for_exec()?;
            // Into the cgroup first: from here on, nothing the service starts can leave it.
            if let Some(fd) = cgroup {
                crate::tracking::join_cgroup(fd)?;
            }
            nix::unistd::setsid()?;
            if console {
                // The console becomes the shell's controlling terminal (job control).
                libc::ioctl(0, libc::TIOCSCTTY, 1);
            }
            // After joining the cgroup: its cgroup.procs is root's to write.
            if let Some(g) = gid {
                // PID 1 has no supplementary groups to drop; where setgroups is not allowed (a
                // user namespace) this changes nothing, so its failure does not matter.
                let _ = libc::setgroups(1, &g);
                if libc::setgid(g) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(u) = uid {
                if libc::setuid(u) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        program: s.program.clone(),
        source,
    })?;
    drop(cmd);
    Ok(Started {
        pid: child.id(),
        pipes,
    })
}

/// posix_spawn with a new session, an empty signal mask and every signal at its default.
fn spawn_posix(spec: &ServiceSpec, notify: &Path) -> Result<Started, SpawnError> {
    let cstr = |b: &[u8]| {
        CString::new(b)
            .map_err(|_| prepare("arguments")(io::Error::from(io::ErrorKind::InvalidInput)))
    };
    let program = cstr(spec.program.as_os_str().as_bytes())?;
    let cwd = cstr(spec.cwd.as_os_str().as_bytes())?;
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<CString> = Vec::with_capacity(spec.env.len() + 2);
    for (k, v) in &spec.env {
        if k != "NOTIFY_SOCKET" && k != "WATCHDOG_USEC" {
            env.push(cstr(format!("{k}={v}").as_bytes())?);
        }
    }
    let mut ns = b"NOTIFY_SOCKET=".to_vec();
    ns.extend_from_slice(notify.as_os_str().as_bytes());
    env.push(cstr(&ns)?);
    if let Some(w) = spec.watchdog {
        env.push(cstr(format!("WATCHDOG_USEC={}", w.as_micros()).as_bytes())?);
    }
    let null = File::open("/dev/null").map_err(prepare("/dev/null"))?;
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prepare("pipes")(e.into()))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prepare("pipes")(e.into()))?;
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut env_p: Vec<*mut libc::c_char> = env.iter().map(|a| a.as_ptr().cast_mut()).collect();
    env_p.push(std::ptr::null_mut());
    let mut pid: libc::pid_t = 0;
    let dfl = crate::signals::all_settable();
    // SAFETY: the attribute and file-action objects are initialised before use and destroyed
    // after; every pointer passed (program, argv, envp, cwd) is a NUL-terminated string that
    // outlives the call, and the argv/envp arrays are NULL-terminated.
    let rc = unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawn_file_actions_init(&mut fa);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        // Whatever PID 1 inherited ignored, the service gets the default action.
        libc::posix_spawnattr_setsigdefault(&mut attr, &dfl);
        let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
            | libc::c_int::from(libc::POSIX_SPAWN_SETSIGMASK)
            | libc::c_int::from(libc::POSIX_SPAWN_SETSIGDEF);
        libc::posix_spawnattr_setflags(&mut attr, flags as libc::c_short);
        libc::posix_spawn_file_actions_adddup2(&mut fa, null.as_raw_fd(), 0);
        libc::posix_spawn_file_actions_adddup2(&mut fa, out_w.as_raw_fd(), 1);
        libc::posix_spawn_file_actions_adddup2(&mut fa, err_w.as_raw_fd(), 2);
        libc::posix_spawn_file_actions_addchdir_np(&mut fa, cwd.as_ptr());
        let rc = libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &fa,
            &attr,
            argv_p.as_ptr(),
            env_p.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    drop((null, out_w, err_w));
    if rc != 0 {
        return Err(SpawnError::Exec {
            program: spec.program.clone(),
            source: io::Error::from_raw_os_error(rc),
        });
    }
    Ok(Started {
        pid: pid as u32,
        pipes: Some((out_r, err_r)),
    })
}
