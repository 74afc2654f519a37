//! The side of PID 1 the supervisor acts through ([`Effects`]): each service's notify socket,
//! its start, its signals through the process tracking, and the capture of its output.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use super::spawn::{Launch, launch};
use super::{KIND_NOTIFY, KIND_PIPE};
use crate::clock::Instant;
use crate::config::{NodeId, ServiceSpec, Tree};
use crate::level::Level;
use crate::log::{LineSplitter, Logger, Stream};
use crate::supervisor::{Effects, Note, Sig, SpawnError};
use crate::tracking::Tracking;

/// One output pipe of a service.
pub(super) struct Pipe {
    fd: fs::File,
    name: String,
    pid: u32,
    stream: Stream,
    split: LineSplitter,
    keep: Option<Level>,
}

/// PID 1's means of acting on services.
pub(super) struct Io {
    pub epoll: Epoll,
    pub log: Logger,
    pub now: Instant,
    pub notify: HashMap<NodeId, UnixDatagram>,
    pub pipes: HashMap<u64, Pipe>,
    pub tracking: Tracking,
    notify_dir: PathBuf,
    console: PathBuf,
    next_pipe: u64,
    names: Vec<String>,
    keep: Vec<Option<Level>>,
    /// The boot timeline, fed by the supervisor's notes.
    pub timeline: crate::boot_timeline::Recorder,
}

impl Io {
    pub(super) fn new(
        epoll: Epoll,
        log: Logger,
        now: Instant,
        tree: &Tree,
        (notify_dir, console): (PathBuf, PathBuf),
        tracking: Tracking,
    ) -> Io {
        Io {
            epoll,
            log,
            now,
            notify: HashMap::new(),
            pipes: HashMap::new(),
            tracking,
            notify_dir,
            console,
            next_pipe: 0,
            names: tree.nodes.iter().map(|n| n.name.clone()).collect(),
            keep: tree
                .nodes
                .iter()
                .map(|n| n.service().and_then(|s| s.log_level.keeps()))
                .collect(),
            timeline: crate::boot_timeline::Recorder::default(),
        }
    }

    fn notify_socket(&mut self, id: NodeId, spec: &ServiceSpec) -> io::Result<PathBuf> {
        let path = self.notify_dir.join(&self.names[id]);
        if let Some(s) = self.notify.get(&id) {
            // Drop whatever the previous instance left unread.
            let mut buf = [0u8; 512];
            while s.recv(&mut buf).is_ok() {}
            return Ok(path);
        }
        let _ = fs::remove_file(&path);
        let s = UnixDatagram::bind(&path)?;
        s.set_nonblocking(true)?;
        if spec.uid.is_some() || spec.gid.is_some() {
            let _ = nix::unistd::chown(
                &path,
                spec.uid.map(nix::unistd::Uid::from_raw),
                spec.gid.map(nix::unistd::Gid::from_raw),
            );
        }
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        self.epoll.add(
            s.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, KIND_NOTIFY | id as u64),
        )?;
        self.notify.insert(id, s);
        Ok(path)
    }

    fn add_pipe(&mut self, fd: OwnedFd, node: NodeId, pid: u32, stream: Stream) -> io::Result<()> {
        let token = KIND_PIPE | self.next_pipe;
        self.next_pipe += 1;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        self.epoll
            .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        let max = self.log.line_max();
        self.pipes.insert(
            token,
            Pipe {
                fd: fs::File::from(fd),
                name: self.names[node].clone(),
                pid,
                stream,
                split: LineSplitter::new(max),
                keep: self.keep[node],
            },
        );
        Ok(())
    }

    fn start(&mut self, id: NodeId, spec: &ServiceSpec) -> Result<u32, SpawnError> {
        let prep = |what: &str| {
            let what = what.to_string();
            move |source| SpawnError::Prepare { what, source }
        };
        let notify = self
            .notify_socket(id, spec)
            .map_err(prep("its notify socket"))?;
        for d in &spec.create_dirs {
            fs::create_dir_all(d).map_err(prep(&d.display().to_string()))?;
            if spec.uid.is_some() || spec.gid.is_some() {
                nix::unistd::chown(
                    d,
                    spec.uid.map(nix::unistd::Uid::from_raw),
                    spec.gid.map(nix::unistd::Gid::from_raw),
                )
                .map_err(|e| prep(&d.display().to_string())(e.into()))?;
            }
        }
        let cgroup = match self.tracking.prepare(&self.names[id]) {
            Ok(c) => c,
            Err(e) => {
                // Better a service tracked by its process group than none at all.
                let msg = format!(
                    "{}: cannot prepare its cgroup ({e}); starting it without one",
                    self.names[id]
                );
                self.log.init(self.now, Level::Warning, &msg);
                None
            }
        };
        let console = if spec.console {
            Some(crate::terminal::open_tty(&self.console).map_err(prep("the console"))?)
        } else {
            None
        };
        let started = launch(Launch {
            spec,
            notify: &notify,
            cgroup: cgroup.as_ref(),
            console,
        })?;
        if let Some((out, err)) = started.pipes {
            self.add_pipe(out, id, started.pid, Stream::Stdout)
                .map_err(prep("its output pipe"))?;
            self.add_pipe(err, id, started.pid, Stream::Stderr)
                .map_err(prep("its output pipe"))?;
        }
        Ok(started.pid)
    }

    /// Kills whatever a service left behind when its main process `pid` ended.
    pub(super) fn kill_leftovers(&self, id: NodeId, pid: u32) {
        self.tracking.signal(&self.names[id], pid, libc::SIGKILL);
    }

    /// Reads what a pipe has; `true` at end of file.
    pub(super) fn read_pipe(&mut self, token: u64) -> bool {
        let Some(p) = self.pipes.get_mut(&token) else {
            return true;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut lines: Vec<String> = Vec::new();
        let mut eof = false;
        for _ in 0..16 {
            match p.fd.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => p.split.feed(&buf[..n], &mut |l| lines.push(l)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            lines.extend(p.split.finish());
        }
        let (name, pid, stream, keep) = (p.name.clone(), p.pid, p.stream, p.keep);
        for l in lines {
            self.log
                .service_line(self.now, (&name, pid, stream), keep, &l);
        }
        if eof {
            if let Some(p) = self.pipes.remove(&token) {
                let _ = self.epoll.delete(p.fd.as_fd());
            }
        }
        eof
    }

    /// Drains every pipe (before the final sequence).
    pub(super) fn drain_pipes(&mut self) {
        let tokens: Vec<u64> = self.pipes.keys().copied().collect();
        for t in tokens {
            self.read_pipe(t);
        }
    }

    /// The notify socket of a node, if it has one.
    pub(super) fn notify_of(&self, id: NodeId) -> Option<&UnixDatagram> {
        self.notify.get(&id)
    }
}

impl Effects for Io {
    fn spawn(&mut self, id: NodeId, _name: &str, spec: &ServiceSpec) -> Result<u32, SpawnError> {
        self.start(id, spec)
    }

    fn signal(&mut self, id: NodeId, _name: &str, pid: u32, sig: Sig) {
        match sig {
            Sig::Term => self.tracking.signal(&self.names[id], pid, libc::SIGTERM),
            Sig::Kill => self.tracking.signal(&self.names[id], pid, libc::SIGKILL),
            Sig::Abrt => {
                if let Ok(p) = i32::try_from(pid) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(p, libc::SIGABRT) };
                }
            }
        }
    }

    fn note(&mut self, note: Note) {
        self.timeline.note(&note, self.now);
        let level = note.level();
        self.log.init(self.now, level, &note.to_string());
    }
}
