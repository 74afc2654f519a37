//! A recording [`Sys`] over an in-memory filesystem, for golden-trace tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use super::{MountEntry, MountFlags, RebootCmd, Sys};
use crate::config::RLimit;
use crate::level::Level;

/// Records every call as one line of text.
#[derive(Default)]
pub struct FakeSys {
    /// The trace.
    pub trace: Vec<String>,
    /// Files and their contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Directories.
    pub dirs: BTreeSet<String>,
    /// Current mounts.
    pub mount_table: Vec<MountEntry>,
    /// mount targets whose next mounts fail with these errnos, one per mount.
    pub fail_mount: BTreeMap<String, Vec<i32>>,
    /// Files whose reads fail with this errno.
    pub read_error: BTreeMap<String, i32>,
    /// Targets that come up read-only when mounted.
    pub mount_readonly: BTreeSet<String>,
    /// Exit codes of `run`, by program, in the order of the runs (the last one repeats).
    pub run_exit: BTreeMap<String, Vec<i32>>,
    /// Clock.
    pub now: i64,
    /// mtimes.
    pub mtimes: BTreeMap<String, i64>,
    /// Device of "/".
    pub root_dev: (u32, u32),
    /// `random` pretends the pool is not initialised.
    pub rng_uninitialised: bool,
    /// Processes left that `reap_all` waits for before TERM/KILL.
    pub stubborn: bool,
    /// Targets whose umount fails with EBUSY.
    pub busy: BTreeSet<String>,
}

impl FakeSys {
    fn t(&mut self, s: String) {
        self.trace.push(s);
    }
    /// Adds a file.
    pub fn file(&mut self, path: &str, data: &str) {
        self.files.insert(path.into(), data.as_bytes().to_vec());
    }
    /// Adds a file of bytes (a block device's content).
    pub fn bytes(&mut self, path: &str, data: Vec<u8>) {
        self.files.insert(path.into(), data);
    }
    /// Takes the trace recorded so far.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }
}

fn nf() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl Sys for FakeSys {
    fn log(&mut self, level: Level, msg: &str) {
        self.t(format!("log {}: {msg}", level.name()));
    }
    fn mount(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        self.t(format!(
            "mount {source} {target} {fstype} {flags} \"{data}\""
        ));
        if let Some(errs) = self.fail_mount.get_mut(target) {
            if !errs.is_empty() {
                return Err(io::Error::from_raw_os_error(errs.remove(0)));
            }
        }
        if flags.0 & libc::MS_REMOUNT != 0 {
            return Ok(());
        }
        let readonly = flags.0 & libc::MS_RDONLY != 0 || self.mount_readonly.contains(target);
        self.mount_table.push(MountEntry {
            source: source.into(),
            target: target.into(),
            root: "/".into(),
            fstype: fstype.into(),
            readonly,
        });
        Ok(())
    }
    fn umount(&mut self, target: &str, detach: bool) -> io::Result<()> {
        self.t(format!(
            "umount {target}{}",
            if detach { " (detach)" } else { "" }
        ));
        if self.busy.contains(target) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        match self.mount_table.iter().rposition(|m| m.target == target) {
            Some(i) => {
                self.mount_table.remove(i);
                Ok(())
            }
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
    fn mounts(&mut self) -> io::Result<Vec<MountEntry>> {
        Ok(self.mount_table.clone())
    }
    fn mkdir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        if !self.dirs.contains(path) {
            self.t(format!("mkdir {path} {mode:o}"));
            self.dirs.insert(path.into());
        }
        Ok(())
    }
    fn symlink(&mut self, target: &str, link: &str) -> io::Result<()> {
        self.t(format!("symlink {link} -> {target}"));
        self.files.entry(link.into()).or_default();
        Ok(())
    }
    fn exists(&mut self, path: &str) -> bool {
        self.files.contains_key(path) || self.dirs.contains(path)
    }
    fn secure_dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.t(format!("secure_dir {path} {mode:o} root"));
        self.dirs.insert(path.into());
        Ok(())
    }
    fn read_prefix(&mut self, path: &str, len: usize) -> io::Result<Vec<u8>> {
        if let Some(&e) = self.read_error.get(path) {
            return Err(io::Error::from_raw_os_error(e));
        }
        let data = self.files.get(path).ok_or_else(nf)?;
        Ok(data[..len.min(data.len())].to_vec())
    }
    fn read_file(&mut self, path: &str) -> io::Result<Vec<u8>> {
        if let Some(&e) = self.read_error.get(path) {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.files.get(path).cloned().ok_or_else(nf)
    }
    fn read_dir(&mut self, path: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut v: BTreeSet<String> = BTreeSet::new();
        for k in self.files.keys().chain(self.dirs.iter()) {
            if let Some(rest) = k.strip_prefix(&prefix) {
                if let Some(first) = rest.split('/').next() {
                    if !first.is_empty() {
                        v.insert(first.to_string());
                    }
                }
            }
        }
        if v.is_empty() && !self.dirs.contains(path) {
            return Err(nf());
        }
        Ok(v.into_iter().collect())
    }
    fn write_file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.t(format!(
            "write {path} \"{}\"",
            String::from_utf8_lossy(data)
        ));
        Ok(())
    }
    fn replace_file(&mut self, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.t(format!("replace {path} {} bytes mode {mode:o}", data.len()));
        self.files.insert(path.into(), data.to_vec());
        Ok(())
    }
    fn remove_file(&mut self, path: &str) -> io::Result<()> {
        self.t(format!("remove {path}"));
        self.files.remove(path).map(|_| ()).ok_or_else(nf)
    }
    fn mtime(&mut self, path: &str) -> io::Result<i64> {
        self.mtimes.get(path).copied().ok_or_else(nf)
    }
    fn device_of(&mut self, _path: &str) -> io::Result<(u32, u32)> {
        Ok(self.root_dev)
    }
    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.t(format!("sethostname {name}"));
        Ok(())
    }
    fn realtime(&mut self) -> i64 {
        self.now
    }
    fn set_realtime(&mut self, secs: i64) -> io::Result<()> {
        self.t(format!("settime {secs}"));
        self.now = secs;
        Ok(())
    }
    fn set_rlimit(&mut self, resource: &str, limit: RLimit) -> io::Result<()> {
        self.t(format!(
            "setrlimit {resource} {:?} {:?}",
            limit.soft, limit.hard
        ));
        Ok(())
    }
    fn interface_up(&mut self, name: &str) -> io::Result<()> {
        self.t(format!("ifup {name}"));
        Ok(())
    }
    fn console(&mut self, path: &str) -> io::Result<()> {
        self.t(format!("console {path}"));
        Ok(())
    }
    fn run(&mut self, argv: &[&str]) -> io::Result<i32> {
        self.t(format!("run {}", argv.join(" ")));
        // Exit codes are used in order; the last one stays.
        Ok(match self.run_exit.get_mut(argv[0]) {
            Some(codes) if codes.len() > 1 => codes.remove(0),
            Some(codes) => codes.first().copied().unwrap_or(0),
            None => 0,
        })
    }
    fn add_entropy(&mut self, data: &[u8], credit: bool) -> io::Result<()> {
        self.t(format!("add_entropy {} bytes credit={credit}", data.len()));
        Ok(())
    }
    fn random(&mut self, n: usize) -> io::Result<(Vec<u8>, bool)> {
        self.t(format!("random {n}"));
        Ok((vec![0x5a; n], !self.rng_uninitialised))
    }
    fn ctrl_alt_del(&mut self, immediate: bool) -> io::Result<()> {
        self.t(format!("ctrl_alt_del immediate={immediate}"));
        Ok(())
    }
    fn kill_all(&mut self, sig: i32) -> io::Result<()> {
        self.t(format!("kill -1 {sig}"));
        Ok(())
    }
    fn reap_all(&mut self, timeout: Duration) -> bool {
        self.t(format!("reap_all {}ms", timeout.as_millis()));
        let gone = !self.stubborn;
        self.stubborn = false;
        gone
    }
    fn sync(&mut self) {
        self.t("sync".into());
    }
    fn close_stdio(&mut self) {
        self.t("close stdio".into());
    }
    fn reboot(&mut self, cmd: &RebootCmd) -> io::Error {
        self.t(format!("reboot {cmd}"));
        io::Error::from_raw_os_error(libc::EPERM)
    }
}
