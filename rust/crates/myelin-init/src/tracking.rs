//! Which processes belong to a service, so that stopping it stops all of them.
//!
//! With cgroup v2 (the kernel has it and `[init] cgroups` is on), every service runs in its own
//! cgroup, `<PID 1's cgroup>/services/<name>`: the child joins it between fork and exec, before
//! it can start anything, and nothing it starts can leave it (a daemon that double-forks and
//! calls `setsid` stays in it). SIGTERM goes to every process in the cgroup, SIGKILL through
//! `cgroup.kill` (Linux 5.14; to every process otherwise).
//!
//! Without cgroup v2, a service is its process group and session: it runs in a new session
//! whose id is its pid, SIGTERM and SIGKILL go to the process group, and what is left in the
//! session (processes that changed their group) is killed with the service. A process that
//! calls `setsid` itself leaves both and is not found; PID 1 says at start which tracking is in
//! use.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::mountinfo::MountEntry;

/// How services' processes are tracked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// One cgroup per service under this directory.
    Cgroup {
        /// `<PID 1's cgroup>/services`.
        base: PathBuf,
    },
    /// Process group and session; why cgroups are not used.
    ProcessGroup {
        /// The reason, for the log.
        why: String,
    },
}

/// Where PID 1's own cgroup directory is: the cgroup2 mount (preferring /sys/fs/cgroup) and the
/// `0::` line of /proc/self/cgroup. `None` if there is no cgroup2 mount or PID 1's cgroup is not
/// below the mount's root.
pub fn own_cgroup_dir(mounts: &[MountEntry], proc_self_cgroup: &str) -> Option<PathBuf> {
    let mount = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .min_by_key(|m| m.target != "/sys/fs/cgroup")?;
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    let root = mount.root.trim_end_matches('/');
    let rel = path.strip_prefix(root)?;
    if !(rel.is_empty() || rel.starts_with('/')) {
        return None;
    }
    Some(PathBuf::from(format!(
        "{}{rel}",
        mount.target.trim_end_matches('/')
    )))
}

impl Tracking {
    /// Chooses the tracking: cgroups if wanted and PID 1 can create `services` below its own
    /// cgroup.
    pub fn detect(wanted: bool) -> Tracking {
        if !wanted {
            return Tracking::ProcessGroup {
                why: "cgroups = false in [init]".into(),
            };
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map(|t| crate::mountinfo::parse_mountinfo(&t))
            .unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let Some(dir) = own_cgroup_dir(&mounts, &own) else {
            return Tracking::ProcessGroup {
                why: "no cgroup2 filesystem is mounted".into(),
            };
        };
        let ns = fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|l| l.to_string_lossy().into_owned());
        let base = dir.join(services_dir_name(ns.as_deref()));
        match fs::create_dir_all(&base) {
            Ok(()) => Tracking::Cgroup { base },
            Err(e) => Tracking::ProcessGroup {
                why: format!("cannot create {}: {e}", base.display()),
            },
        }
    }

    /// The line PID 1 logs about it.
    pub fn describe(&self) -> String {
        match self {
            Tracking::Cgroup { base } => format!(
                "process tracking: cgroup v2, one cgroup per service in {}",
                base.display()
            ),
            Tracking::ProcessGroup { why } => format!(
                "process tracking: process groups and sessions ({why}); a daemon that calls setsid escapes it"
            ),
        }
    }

    /// The directory of a service's cgroup.
    fn dir(&self, service: &str) -> Option<PathBuf> {
        match self {
            Tracking::Cgroup { base } => Some(base.join(service)),
            Tracking::ProcessGroup { .. } => None,
        }
    }

    /// Before a start: the service's cgroup exists, and its `cgroup.procs` open for the child to
    /// write itself into (`None` without cgroups).
    pub fn prepare(&self, service: &str) -> io::Result<Option<fs::File>> {
        let Some(dir) = self.dir(service) else {
            return Ok(None);
        };
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .map(Some)
    }

    /// Sends `sig` to every process of the service (main process `pid`), once each.
    pub fn signal(&self, service: &str, pid: u32, sig: libc::c_int) {
        if let Some(dir) = self.dir(service) {
            if sig == libc::SIGKILL && write_file(&dir.join("cgroup.kill"), b"1").is_ok() {
                // The main process too, in case it never made it into the cgroup.
                kill(pid, sig);
                return;
            }
            if let Ok(members) = read_pids(&dir.join("cgroup.procs")) {
                if members.contains(&pid) {
                    for m in members {
                        kill(m, sig);
                    }
                    return;
                }
                // Started outside its cgroup (it could not be prepared): its process group,
                // as without cgroups.
            }
        }
        // The process group, then what else is left in the session.
        if let Ok(p) = i32::try_from(pid) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            if unsafe { libc::kill(-p, sig) } < 0 {
                kill(pid, sig);
            }
        }
        for (m, pgrp) in session_members(pid) {
            if pgrp != pid {
                kill(m, sig);
            }
        }
    }
}

/// The kernel's inode number of the initial PID namespace (`PROC_PID_INIT_INO`).
const INITIAL_PID_NS: &str = "pid:[4026531836]";

/// The directory of the services' cgroups below PID 1's own: `services` for the system's PID 1;
/// in a PID namespace (a container, a test) `services-<namespace inode>`, because such a PID 1
/// shares its cgroup with whatever started it, and two of them must not share their services'
/// cgroups (each would signal the other's processes).
pub fn services_dir_name(pid_ns: Option<&str>) -> String {
    match pid_ns {
        Some(ns) if ns != INITIAL_PID_NS => {
            let inode: String = ns.chars().filter(char::is_ascii_digit).collect();
            format!("services-{inode}")
        }
        _ => "services".to_string(),
    }
}

fn kill(pid: u32, sig: libc::c_int) {
    // A member of a cgroup outside our PID namespace reads as pid 0; kill(0) would signal our
    // own process group, which is not a service's.
    if pid == 0 {
        return;
    }
    if let Ok(p) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(p, sig) };
    }
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(data)
}

fn read_pids(path: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(path)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Processes whose session id is `sid`, with their process group.
fn session_members(sid: u32) -> Vec<(u32, u32)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (pgrp, session) = stat_ids(&stat)?;
            (session == sid).then_some((pid, pgrp))
        })
        .collect()
}

/// The process group and session ids in a /proc/<pid>/stat line.
pub fn stat_ids(stat: &str) -> Option<(u32, u32)> {
    // pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ').skip(2);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// Between fork and exec: the child writes itself into its cgroup. Only async-signal-safe calls.
pub fn join_cgroup(procs: libc::c_int) -> io::Result<()> {
    // SAFETY: write(2) of a static buffer to a descriptor the parent opened.
    if unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(target: &str, root: &str, fstype: &str) -> MountEntry {
        MountEntry {
            source: "none".into(),
            target: target.into(),
            root: root.into(),
            fstype: fstype.into(),
            readonly: false,
        }
    }

    #[test]
    fn finds_its_own_cgroup_below_a_cgroup2_mount() {
        let mounts = [
            m("/sys/fs/cgroup/memory", "/", "cgroup"),
            m("/sys/fs/cgroup/unified", "/", "cgroup2"),
        ];
        assert_eq!(
            own_cgroup_dir(&mounts, "4:memory:/x\n0::/test/one\n"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/test/one"))
        );
        // The usual mount point wins; a namespace's root shows as "/".
        let mounts = [
            m("/other", "/", "cgroup2"),
            m("/sys/fs/cgroup", "/", "cgroup2"),
        ];
        assert_eq!(
            own_cgroup_dir(&mounts, "0::/\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A mount of a sub-tree, and a cgroup outside it.
        let mounts = [m("/cg", "/a", "cgroup2")];
        assert_eq!(
            own_cgroup_dir(&mounts, "0::/a/b\n"),
            Some(PathBuf::from("/cg/b"))
        );
        assert_eq!(own_cgroup_dir(&mounts, "0::/ab\n"), None);
        assert_eq!(own_cgroup_dir(&mounts, "0::/z\n"), None);
        assert_eq!(own_cgroup_dir(&[m("/c", "/", "cgroup")], "0::/\n"), None);
        assert_eq!(own_cgroup_dir(&mounts, "1:name=systemd:/\n"), None);
    }

    #[test]
    fn a_namespaced_pid1_gets_services_cgroups_of_its_own() {
        assert_eq!(services_dir_name(Some("pid:[4026531836]")), "services");
        assert_eq!(services_dir_name(None), "services");
        assert_eq!(
            services_dir_name(Some("pid:[4026532711]")),
            "services-4026532711"
        );
    }

    #[test]
    fn pid_zero_is_never_signalled() {
        // A cgroup member outside our PID namespace reads as 0: kill(0) would hit our own
        // process group, i.e. this test. If it did, the test process would die of SIGUSR2.
        kill(0, libc::SIGUSR2);
    }

    #[test]
    fn group_and_session_of_a_stat_line() {
        assert_eq!(stat_ids("42 (a b) c) S 1 41 40 0 -1"), Some((41, 40)));
        assert_eq!(stat_ids("garbage"), None);
        // Our own line parses. Its values are not compared with getpgrp/getsid: in a sandbox
        // whose group leader is outside our PID namespace, /proc shows 0 where getpgrp does not.
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_ids(&own).is_some(), "{own}");
    }

    #[test]
    fn without_cgroups_the_reason_is_said() {
        let t = Tracking::detect(false);
        assert!(
            t.describe().contains("cgroups = false in [init]"),
            "{}",
            t.describe()
        );
        assert!(t.prepare("x").unwrap().is_none());
    }
}
