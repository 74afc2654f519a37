//! Log capture: service output split into lines, kept in a bounded in-memory ring and copied to
//! the kernel log (`/dev/kmsg`) under a rate limit.
//!
//! * The ring ([`ring`]) holds at most `ring_bytes`; the oldest lines go first.
//! * A line longer than `line_max` bytes is cut there ([`line_splitter`]).
//! * A line starting with an sd-daemon priority prefix (`<0>` … `<7>`, [`priority_prefix`]) gets
//!   that priority and loses the prefix; otherwise stdout is `info` and stderr `notice`. Every
//!   line keeps its priority in the ring, and `myelinctl log --level` filters on it.
//! * A service's `log_level` drops its lines less severe than that level before they reach the
//!   ring or kmsg (it also tells the service, as `MYELIN_LOG`, not to write them).
//! * kmsg records are `<P>name[pid]: text`, with `P` = facility daemon (3) × 8 + priority. A
//!   token bucket ([`rate_limit`]: `kmsg_rate` per second, `kmsg_burst` at once) limits them;
//!   the number of dropped records is reported once the bucket refills.
//! * PID 1's own messages (service `init`) carry their priority too; those at or above
//!   `console_level` also go to the console ([`console`]).
//! * Every kept line is also written to pstore's `/dev/pmsg0` when the kernel has it (ramoops
//!   keeps it in RAM across a reset, see [`crate::boot::pstore`]): no rate limit there, since it
//!   is a ring in RAM that costs the kernel's log and console nothing, and the lines a reset
//!   cuts off are often the ones the rate limit would drop.

pub mod console;
pub mod line_splitter;
pub mod priority_prefix;
pub mod rate_limit;
pub mod ring;

use std::fs::{File, OpenOptions};
use std::io::Write;

pub use console::{console_nonblocking, console_write};
pub use line_splitter::LineSplitter;
pub use priority_prefix::split_priority;
pub use rate_limit::RateLimit;
pub use ring::Ring;

use crate::clock::Instant;
pub use crate::control::{INIT_SERVICE, LogEntry as Entry, Stream};
pub use crate::level::Level;

/// PID 1's logger: ring, kmsg and console.
pub struct Logger {
    /// The ring.
    pub ring: Ring,
    kmsg_path: String,
    kmsg: Option<File>,
    kmsg_failed: bool,
    limit: RateLimit,
    pmsg: Sink,
    line_max: usize,
    /// Copy PID 1's own messages at or above this priority to stderr (the console).
    pub console_level: Level,
}

impl Logger {
    /// A logger per `[log]`.
    pub fn new(cfg: &crate::config::LogConfig) -> Logger {
        Logger {
            ring: Ring::new(cfg.ring_bytes),
            kmsg_path: cfg.kmsg.clone(),
            kmsg: None,
            kmsg_failed: false,
            limit: RateLimit::new(cfg.kmsg_rate, cfg.kmsg_burst),
            pmsg: Sink::new(&cfg.pmsg),
            line_max: cfg.line_max,
            console_level: cfg.console_level,
        }
    }

    /// Longest line kept.
    pub fn line_max(&self) -> usize {
        self.line_max
    }

    /// Logs one of PID 1's own messages.
    pub fn init(&mut self, now: Instant, level: Level, msg: &str) {
        if level <= self.console_level {
            console_write(&format!("myelin-init: {msg}\n"));
        }
        self.record(now, INIT_SERVICE, 0, Stream::Init, level, msg);
    }

    /// Logs a line of service output, unless it is less severe than `keep` (the service's
    /// `log_level`; `None` keeps nothing). Returns whether it was kept.
    pub fn service_line(
        &mut self,
        now: Instant,
        source: (&str, u32, Stream),
        keep: Option<Level>,
        line: &str,
    ) -> bool {
        let (service, pid, stream) = source;
        let (prio, text) = split_priority(line);
        let level = prio.unwrap_or(if stream == Stream::Stderr {
            Level::Notice
        } else {
            Level::Info
        });
        if !keep.is_some_and(|k| level.passes(k)) {
            return false;
        }
        self.record(now, service, pid, stream, level, text);
        true
    }

    fn record(
        &mut self,
        now: Instant,
        service: &str,
        pid: u32,
        stream: Stream,
        level: Level,
        text: &str,
    ) {
        let mut text = text.to_string();
        if text.len() > self.line_max {
            let mut cut = self.line_max;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let time_ms = crate::clock::unix_millis();
        self.kmsg_write(now, service, pid, level, &text);
        self.pmsg_write(now, service, pid, level, &text);
        self.ring.push(Entry {
            seq: 0,
            time_ms,
            service: service.to_string(),
            pid,
            stream,
            level,
            text,
        });
    }

    fn kmsg_write(&mut self, now: Instant, service: &str, pid: u32, level: Level, text: &str) {
        if self.kmsg_path.is_empty() || self.kmsg_failed {
            return;
        }
        let Some(dropped) = self.limit.admit(now) else {
            return;
        };
        if self.kmsg.is_none() {
            match OpenOptions::new()
                .append(true)
                .create(false)
                .open(&self.kmsg_path)
            {
                Ok(f) => self.kmsg = Some(f),
                Err(_) => {
                    // Before /dev exists, or a read-only test path: the ring and console remain.
                    return;
                }
            }
        }
        let Some(f) = self.kmsg.as_mut() else { return };
        if dropped > 0 {
            let _ = f.write_all(
                format!(
                    "<{}>myelin-init: {dropped} log lines not copied to kmsg (rate limit)\n",
                    3 * 8 + Level::Warning as u8
                )
                .as_bytes(),
            );
        }
        let who = if pid == 0 && service == INIT_SERVICE {
            "myelin-init".to_string()
        } else if pid == 0 {
            service.to_string()
        } else {
            format!("{service}[{pid}]")
        };
        let mut rec = format!("<{}>{who}: {text}", 3 * 8 + level as u8);
        if rec.len() > 976 {
            let mut cut = 976;
            while !rec.is_char_boundary(cut) {
                cut -= 1;
            }
            rec.truncate(cut);
        }
        rec.push('\n');
        if f.write_all(rec.as_bytes()).is_err() {
            self.kmsg = None;
        }
    }

    fn pmsg_write(&mut self, now: Instant, service: &str, pid: u32, level: Level, text: &str) {
        let who = if pid == 0 {
            service.to_string()
        } else {
            format!("{service}[{pid}]")
        };
        // The kernel's timestamp style: the console record it sits next to reads the same.
        let line = format!(
            "[{:5}.{:03}] {who}: {}: {text}\n",
            now.0 / 1000,
            now.0 % 1000,
            level.name()
        );
        self.pmsg.write(line.as_bytes());
    }

    /// Forgets the kmsg and pmsg descriptors (after /dev was mounted, to reopen the devices).
    pub fn reopen_kmsg(&mut self) {
        self.kmsg = None;
        self.kmsg_failed = false;
        self.pmsg.reopen();
    }
}

/// A device opened on first use; given up on until [`Sink::reopen`] when it cannot be opened
/// (a kernel without it, /dev not mounted yet) or a write fails.
struct Sink {
    path: String,
    file: Option<File>,
    failed: bool,
}

impl Sink {
    fn new(path: &str) -> Sink {
        Sink {
            path: path.to_string(),
            file: None,
            failed: path.is_empty(),
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if self.file.is_none() {
            match OpenOptions::new().write(true).open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(data).is_err() {
                self.file = None;
                self.failed = true;
            }
        }
    }

    fn reopen(&mut self) {
        self.file = None;
        self.failed = self.path.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "").unwrap();
        let cfg = crate::config::LogConfig {
            kmsg: path.to_string_lossy().into_owned(),
            kmsg_rate: 1,
            kmsg_burst: 2,
            line_max: 16,
            ..Default::default()
        };
        let mut log = Logger::new(&cfg);
        log.console_level = Level::Emerg;
        let t = Instant(0);
        let info = Some(Level::Info);
        log.service_line(
            t,
            ("kv", 42, Stream::Stderr),
            info,
            "<4>disk almost full, really quite full",
        );
        log.init(t, Level::Err, "kv exited");
        log.service_line(t, ("kv", 42, Stream::Stdout), info, "dropped");
        log.service_line(Instant(1000), ("kv", 43, Stream::Stdout), info, "hi");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "<28>kv[42]: disk almost full\n<27>myelin-init: kv exited\n\
             <28>myelin-init: 1 log lines not copied to kmsg (rate limit)\n<30>kv[43]: hi\n"
        );
        assert_eq!(log.ring.len(), 4);
        assert_eq!(log.ring.tail(1, |_| true)[0].text, "hi");
    }

    #[test]
    fn every_kept_line_reaches_pmsg_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let pmsg = dir.path().join("pmsg0");
        std::fs::write(&pmsg, "").unwrap();
        let mut log = Logger::new(&crate::config::LogConfig {
            kmsg: String::new(),
            kmsg_rate: 1,
            kmsg_burst: 1,
            pmsg: pmsg.to_string_lossy().into_owned(),
            ..Default::default()
        });
        log.console_level = Level::Emerg;
        let info = Some(Level::Info);
        log.service_line(Instant(12_345), ("kv", 42, Stream::Stderr), info, "<4>odd");
        log.init(
            Instant(12_346),
            Level::Notice,
            "dbus was stopped by a signal",
        );
        log.service_line(Instant(12_347), ("kv", 42, Stream::Stdout), None, "dropped");
        assert_eq!(
            std::fs::read_to_string(&pmsg).unwrap(),
            "[   12.345] kv[42]: warning: odd\n[   12.346] init: notice: dbus was stopped by a signal\n"
        );
    }

    #[test]
    fn a_missing_pmsg_device_costs_nothing_and_is_retried_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let pmsg = dir.path().join("pmsg0");
        let mut log = Logger::new(&crate::config::LogConfig {
            kmsg: String::new(),
            pmsg: pmsg.to_string_lossy().into_owned(),
            ..Default::default()
        });
        log.console_level = Level::Emerg;
        log.init(Instant(1), Level::Notice, "before /dev");
        assert!(!pmsg.exists());
        std::fs::write(&pmsg, "").unwrap();
        log.init(Instant(2), Level::Notice, "still given up");
        log.reopen_kmsg();
        log.init(Instant(3), Level::Notice, "after /dev");
        assert_eq!(
            std::fs::read_to_string(&pmsg).unwrap(),
            "[    0.003] init: notice: after /dev\n"
        );
        assert_eq!(log.ring.len(), 3);
    }

    #[test]
    fn service_log_level_drops_less_severe_lines() {
        let mut log = Logger::new(&crate::config::LogConfig {
            kmsg: String::new(),
            ..Default::default()
        });
        let t = Instant(0);
        let src = ("kv", 7, Stream::Stderr);
        let warn = Some(Level::Warning);
        assert!(log.service_line(t, src, warn, "<3>broken"));
        assert!(log.service_line(t, src, warn, "<4>odd"));
        assert!(!log.service_line(t, src, warn, "<6>chatter"));
        // Unprefixed stderr is notice: below warning.
        assert!(!log.service_line(t, src, warn, "plain"));
        assert!(!log.service_line(t, src, None, "<0>even this"));
        let kept: Vec<(Level, &str)> = log
            .ring
            .since(0)
            .map(|e| (e.level, e.text.as_str()))
            .collect();
        assert_eq!(kept, [(Level::Err, "broken"), (Level::Warning, "odd")]);
    }
}
