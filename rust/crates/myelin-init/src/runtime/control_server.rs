//! PID 1's side of the control socket (the protocol is [`crate::control`]): connections,
//! their bounds (root only, idle timeout, per-user and total caps with eviction of the
//! connection idle the longest), and the answers to requests.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use super::KIND_CLIENT;
use super::event_loop::{Phase, Runtime};
use crate::clock::Instant;
use crate::control::{self, Body, BootRecord, INIT_SERVICE, MAX_CLIENTS, MAX_CLIENTS_PER_UID, Op};
use crate::level::Level;
use crate::log::{Entry, Ring};
use crate::shutdown::Action;
use crate::supervisor::Control;

const CLIENT_IN_MAX: usize = 64 * 1024;
const CLIENT_OUT_MAX: usize = 1024 * 1024;

/// What a `log --follow` connection wants.
struct Follow {
    service: Option<String>,
    level: Option<Level>,
    next: u64,
}

impl Follow {
    fn wants(&self, e: &Entry) -> bool {
        wanted(&self.service, self.level, e)
    }
}

fn wanted(service: &Option<String>, level: Option<Level>, e: &Entry) -> bool {
    service.as_ref().is_none_or(|s| &e.service == s) && level.is_none_or(|l| e.level.passes(l))
}

struct Conn {
    stream: UnixStream,
    uid: u32,
    input: Vec<u8>,
    output: Vec<u8>,
    follow: Option<Follow>,
    want_write: bool,
    closing: bool,
    last_active: Instant,
}

/// The control socket and its connections.
pub(super) struct Clients {
    listener: Option<UnixListener>,
    conns: HashMap<u64, Conn>,
    next: u64,
    idle_timeout: Duration,
}

impl Clients {
    pub(super) fn new(listener: Option<UnixListener>, idle_timeout: Duration) -> Clients {
        Clients {
            listener,
            conns: HashMap::new(),
            next: 0,
            idle_timeout,
        }
    }

    /// Accepts what waits, root only, making room at the caps.
    pub(super) fn accept(&mut self, epoll: &Epoll, now: Instant) {
        loop {
            let Some(l) = &self.listener else { return };
            let Ok((stream, _)) = l.accept() else { return };
            let uid =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|c| c.uid())
                    .unwrap_or(u32::MAX);
            if uid != 0 {
                let _ = (&stream).write_all(&control::encode(&control::response(Body::Error {
                    message: "permission denied: root only".into(),
                })));
                continue;
            }
            if self.conns.values().filter(|c| c.uid == uid).count() >= MAX_CLIENTS_PER_UID {
                self.evict(epoll, Some(uid));
            }
            if self.conns.len() >= MAX_CLIENTS {
                self.evict(epoll, None);
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next;
            self.next += 1;
            if epoll
                .add(
                    stream.as_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, KIND_CLIENT | id),
                )
                .is_err()
            {
                continue;
            }
            self.conns.insert(
                id,
                Conn {
                    stream,
                    uid,
                    input: Vec::new(),
                    output: Vec::new(),
                    follow: None,
                    want_write: false,
                    closing: false,
                    last_active: now,
                },
            );
        }
    }

    /// Closes the connection (of `uid`, or of anyone) idle the longest, a follower only if
    /// nothing else is open, to make room for a new one.
    fn evict(&mut self, epoll: &Epoll, uid: Option<u32>) {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| uid.is_none_or(|u| c.uid == u))
            .min_by_key(|(_, c)| (c.follow.is_some(), c.last_active))
            .map(|(&id, _)| id);
        if let Some(id) = victim {
            self.say_goodbye(id, "closed to make room for a newer connection");
            self.close(epoll, id);
        }
    }

    fn say_goodbye(&mut self, id: u64, why: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            let msg = control::encode(&control::response(Body::Error {
                message: why.to_string(),
            }));
            let _ = (&c.stream).write_all(&msg);
        }
    }

    /// Reads what a connection sent: its complete request lines, and whether it hung up.
    fn read(&mut self, id: u64, now: Instant) -> (Vec<Vec<u8>>, bool) {
        let Some(c) = self.conns.get_mut(&id) else {
            return (Vec::new(), false);
        };
        let mut hung_up = false;
        let mut buf = [0u8; 4096];
        loop {
            match (&c.stream).read(&mut buf) {
                Ok(0) => {
                    hung_up = true;
                    break;
                }
                Ok(n) => {
                    c.input.extend_from_slice(&buf[..n]);
                    if c.input.len() > CLIENT_IN_MAX {
                        hung_up = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        while let Some(pos) = c.input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.input.drain(..=pos).collect();
            lines.push(line[..line.len() - 1].to_vec());
        }
        if !lines.is_empty() {
            c.last_active = now;
        }
        (lines, hung_up)
    }

    /// Queues a message and writes what the socket takes.
    pub(super) fn send(&mut self, epoll: &Epoll, id: u64, body: Body, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.output
                .extend_from_slice(&control::encode(&control::response(body)));
        }
        self.flush(epoll, id, now);
    }

    pub(super) fn flush(&mut self, epoll: &Epoll, id: u64, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        while !c.output.is_empty() {
            match (&c.stream).write(&c.output) {
                Ok(0) => break,
                Ok(n) => {
                    c.output.drain(..n);
                    c.last_active = now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closing = true;
                    break;
                }
            }
        }
        let want = !c.output.is_empty();
        if c.output.len() > CLIENT_OUT_MAX {
            c.closing = true;
        }
        if want != c.want_write {
            c.want_write = want;
            let flags = if want {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = epoll.modify(
                c.stream.as_fd(),
                &mut EpollEvent::new(flags, KIND_CLIENT | id),
            );
        }
        if c.closing {
            self.close(epoll, id);
        }
    }

    pub(super) fn close(&mut self, epoll: &Epoll, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            let _ = epoll.delete(c.stream.as_fd());
        }
    }

    /// Closes connections idle (not following the log) for the idle timeout.
    pub(super) fn expire_idle(&mut self, epoll: &Epoll, now: Instant) {
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.follow.is_none() && c.last_active.after(self.idle_timeout) <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.say_goodbye(id, "closed: idle");
            self.close(epoll, id);
        }
    }

    /// When the next connection goes idle.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| c.follow.is_none())
            .map(|c| c.last_active.after(self.idle_timeout))
            .min()
    }

    /// Sends followers the lines logged since they last got some.
    pub(super) fn stream_logs(&mut self, epoll: &Epoll, ring: &Ring, now: Instant) {
        let next = ring.next_seq();
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.follow.as_ref().is_some_and(|f| f.next != next))
            .map(|(&k, _)| k)
            .collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let Some(f) = &mut c.follow else { continue };
            for e in ring.since(f.next).filter(|e| f.wants(e)) {
                c.output
                    .extend_from_slice(&control::encode(&control::response(Body::Log(e.clone()))));
            }
            f.next = next;
            self.flush(epoll, id, now);
        }
    }

    fn set_follow(&mut self, id: u64, follow: Follow) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.follow = Some(follow);
        }
    }
}

impl Runtime {
    /// A connection is readable or writable.
    pub(super) fn on_client(&mut self, id: u64, flags: EpollFlags) {
        let now = self.now();
        let (lines, hung_up) = if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP) {
            self.clients.read(id, now)
        } else {
            (Vec::new(), false)
        };
        for line in lines {
            let body = match control::decode_request(&line) {
                Ok(req) => self.handle(id, req.op),
                Err(e) => vec![Body::Error {
                    message: e.to_string(),
                }],
            };
            for b in body {
                self.clients.send(&self.io.epoll, id, b, now);
            }
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.clients.flush(&self.io.epoll, id, now);
        }
        if hung_up {
            // A half-closed client may still want its answers: flush, then forget it.
            self.clients.flush(&self.io.epoll, id, now);
            self.clients.close(&self.io.epoll, id);
        }
    }

    fn handle(&mut self, client: u64, op: Op) -> Vec<Body> {
        let now = self.now();
        let ok = |m: String| vec![Body::Ok { message: m }];
        match op {
            Op::Status => vec![Body::Status(Box::new(self.status(now)))],
            Op::Readiness => vec![Body::Readiness(self.sup.readiness(now))],
            Op::Boot => vec![Body::Boot(self.io.timeline.timeline())],
            Op::Start { name } | Op::Stop { name } | Op::Restart { name }
                if matches!(self.phase, Phase::Hung) =>
            {
                vec![Body::Error {
                    message: format!("cannot control {name}: the system is halted (hang)"),
                }]
            }
            Op::Start { name } => self.control(Control::Start, &name),
            Op::Stop { name } => self.control(Control::Stop, &name),
            Op::Restart { name } => self.control(Control::Restart, &name),
            Op::Log {
                service,
                lines,
                level,
                follow,
            } => self.log_request(client, service, lines, level, follow),
            Op::PreviousBoot => self.previous_boot(),
            Op::Reboot { arg } => {
                let msg = ok(format!(
                    "rebooting{}",
                    arg.as_ref().map(|a| format!(" ({a})")).unwrap_or_default()
                ));
                self.reply_then_shutdown(client, msg, Action::Reboot(arg))
            }
            Op::RebootNow => {
                let now = self.now();
                self.clients.send(
                    &self.io.epoll,
                    client,
                    Body::Ok {
                        message: "rebooting now, without stopping services".into(),
                    },
                    now,
                );
                self.reboot_now();
                Vec::new()
            }
            Op::Poweroff => {
                self.reply_then_shutdown(client, ok("powering off".into()), Action::Poweroff)
            }
            Op::Halt => self.reply_then_shutdown(client, ok("halting".into()), Action::Halt),
            Op::WatchdogSnooze => self.snooze(now),
        }
    }

    fn log_request(
        &mut self,
        client: u64,
        service: Option<String>,
        lines: Option<usize>,
        level: Option<Level>,
        follow: bool,
    ) -> Vec<Body> {
        if let Some(s) = &service {
            let known = s == INIT_SERVICE
                || self
                    .sup
                    .tree()
                    .find(s)
                    .is_some_and(|id| self.sup.tree().nodes[id].service().is_some());
            if !known {
                let what = match self.sup.tree().find(s) {
                    Some(_) => {
                        format!("`{s}` is a supervisor; its services log under their own names")
                    }
                    None => format!("no service named `{s}` (`myelinctl status` lists them)"),
                };
                return vec![Body::Error { message: what }];
            }
        }
        let ring = &self.io.log.ring;
        let all: Vec<&Entry> = ring
            .since(0)
            .filter(|e| wanted(&service, level, e))
            .collect();
        let skip = all.len().saturating_sub(lines.unwrap_or(usize::MAX));
        let mut out: Vec<Body> = all[skip..]
            .iter()
            .map(|e| Body::Log((*e).clone()))
            .collect();
        if follow {
            let next = ring.next_seq();
            self.clients.set_follow(
                client,
                Follow {
                    service,
                    level,
                    next,
                },
            );
        } else {
            out.push(Body::End);
        }
        out
    }

    /// The records boot moved out of pstore ([`crate::boot::pstore`]), read from the archive.
    fn previous_boot(&self) -> Vec<Body> {
        let Some(dir) = &self.boot.pstore_archive else {
            return vec![Body::Error {
                message: "init.toml keeps no previous-boot records (boot.pstore_archive)".into(),
            }];
        };
        let mut names: Vec<_> = match std::fs::read_dir(dir) {
            Ok(d) => d
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => {
                return vec![Body::Error {
                    message: format!("cannot read {}: {e}", dir.display()),
                }];
            }
        };
        names.sort();
        let mut out: Vec<Body> = names
            .into_iter()
            .filter_map(|name| {
                let text = std::fs::read(dir.join(&name)).ok()?;
                Some(Body::Record(BootRecord {
                    name,
                    text: String::from_utf8_lossy(&text).into_owned(),
                }))
            })
            .collect();
        out.push(Body::End);
        out
    }

    fn reply_then_shutdown(&mut self, client: u64, reply: Vec<Body>, action: Action) -> Vec<Body> {
        let now = self.now();
        for b in reply {
            self.clients.send(&self.io.epoll, client, b, now);
        }
        if matches!(self.phase, Phase::Hung) {
            self.phase = Phase::Running;
            self.finish(action);
        } else {
            self.request_shutdown(action, "control socket");
        }
        Vec::new()
    }

    fn control(&mut self, op: Control, name: &str) -> Vec<Body> {
        let now = self.now();
        match self.sup.control(op, name, now, &mut self.io) {
            Ok(message) => {
                self.io
                    .log
                    .init(now, Level::Notice, &format!("operator: {message}"));
                vec![Body::Ok { message }]
            }
            Err(e) => vec![Body::Error {
                message: e.to_string(),
            }],
        }
    }
}
