//! Log capture: service output split into lines, kept in a bounded in-memory ring and copied to
//! the kernel log (`/dev/kmsg`) under a rate limit.
//!
//! * The ring holds at most `ring_bytes` (text, service name, the entry and allocator overhead);
//!   the oldest lines go first, so a crash loop costs a bounded amount of memory.
//! * A line longer than `line_max` bytes is cut there (the rest becomes further lines).
//! * A line starting with an sd-daemon priority prefix (`<0>` … `<7>`) gets that priority and
//!   loses the prefix; otherwise stdout is `info` and stderr `notice`.
//! * kmsg records are `<P>name[pid]: text`, with `P` = facility daemon (3) × 8 + priority. A
//!   token bucket (`kmsg_rate` per second, `kmsg_burst` at once) limits them; the number of
//!   dropped records is reported once the bucket refills.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::clock::Instant;

/// Syslog priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// System is unusable.
    Emerg = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical.
    Crit = 2,
    /// Error.
    Err = 3,
    /// Warning.
    Warning = 4,
    /// Normal but significant.
    Notice = 5,
    /// Informational.
    Info = 6,
    /// Debug.
    Debug = 7,
}

impl Level {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Err => "err",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn from_digit(d: u8) -> Option<Level> {
        Some(match d {
            b'0' => Level::Emerg,
            b'1' => Level::Alert,
            b'2' => Level::Crit,
            b'3' => Level::Err,
            b'4' => Level::Warning,
            b'5' => Level::Notice,
            b'6' => Level::Info,
            b'7' => Level::Debug,
            _ => return None,
        })
    }
}

/// Where a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A service's standard output.
    Stdout,
    /// A service's standard error.
    Stderr,
    /// PID 1's own message.
    Init,
}

/// One logged line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, increasing by one per line ever logged.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the epoch.
    pub time_ms: i64,
    /// Service name (`init` for PID 1).
    pub service: String,
    /// Process id, 0 for PID 1's own messages.
    pub pid: u32,
    /// Source stream.
    pub stream: Stream,
    /// Priority.
    pub level: Level,
    /// The line, without its newline.
    pub text: String,
}

/// What a line costs besides its text and service name: the entry itself and the allocator's
/// share of its two strings.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 32;

fn entry_cost(e: &Entry) -> usize {
    e.text.len() + e.service.len() + ENTRY_OVERHEAD
}

/// The bounded in-memory log.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
    budget: usize,
    next_seq: u64,
}

impl Ring {
    /// An empty ring holding at most `budget` bytes.
    pub fn new(budget: usize) -> Ring {
        Ring {
            entries: VecDeque::new(),
            bytes: 0,
            budget,
            next_seq: 1,
        }
    }

    /// Appends a line, evicting the oldest ones beyond the budget; its sequence number.
    pub fn push(&mut self, mut e: Entry) -> u64 {
        e.seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += entry_cost(&e);
        self.entries.push_back(e);
        while self.bytes > self.budget && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= entry_cost(&old);
            }
        }
        self.next_seq - 1
    }

    /// Bytes in use.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of lines held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Lines with `seq >= from`, oldest first.
    pub fn since(&self, from: u64) -> impl Iterator<Item = &Entry> {
        let first = self.entries.front().map(|e| e.seq).unwrap_or(self.next_seq);
        let skip = from.saturating_sub(first) as usize;
        self.entries.iter().skip(skip)
    }

    /// The last `n` lines matching `filter`, oldest first.
    pub fn tail(&self, n: usize, filter: impl Fn(&Entry) -> bool) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self
            .entries
            .iter()
            .rev()
            .filter(|e| filter(e))
            .take(n)
            .collect();
        v.reverse();
        v
    }
}

/// Splits a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter cutting lines at `max` bytes.
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds bytes; complete lines are passed to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(String)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_capped(&data[..i], out);
                    out(String::from_utf8_lossy(&self.buf).into_owned());
                    self.buf.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.push_capped(data, out);
                    data = &[];
                }
            }
        }
    }

    fn push_capped(&mut self, mut data: &[u8], out: &mut impl FnMut(String)) {
        while self.buf.len() + data.len() > self.max {
            let room = self.max - self.buf.len();
            self.buf.extend_from_slice(&data[..room]);
            out(String::from_utf8_lossy(&self.buf).into_owned());
            self.buf.clear();
            data = &data[room..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Some(s)
    }
}

/// Strips an sd-daemon `<N>` priority prefix.
pub fn split_priority(line: &str) -> (Option<Level>, &str) {
    let b = line.as_bytes();
    if b.len() >= 3 && b[0] == b'<' && b[2] == b'>' {
        if let Some(l) = Level::from_digit(b[1]) {
            return (Some(l), &line[3..]);
        }
    }
    (None, line)
}

/// Token bucket for kmsg.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
    dropped: u64,
}

impl RateLimit {
    /// `rate` per second, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: None,
            dropped: 0,
        }
    }

    /// Whether one more record may go out at `now`; if so, also how many were dropped before it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let dt = now.since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

/// Writes to PID 1's stderr (the console) without ever panicking: a console that cannot keep up
/// (non-blocking, see [`console_nonblocking`]) or is gone loses the text, which kmsg and the
/// ring still have.
pub fn console_write(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Makes PID 1's stderr non-blocking, so a slow or flow-controlled serial console can never
/// stall the event loop.
pub fn console_nonblocking() {
    use std::os::fd::BorrowedFd;
    // SAFETY: fd 2 stays open for the life of the process (or the call fails harmlessly).
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

/// PID 1's logger: ring, kmsg and console.
pub struct Logger {
    /// The ring.
    pub ring: Ring,
    kmsg_path: String,
    kmsg: Option<File>,
    kmsg_failed: bool,
    limit: RateLimit,
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
        self.record(now, "init", 0, Stream::Init, level, msg);
    }

    /// Logs a line of service output.
    pub fn service_line(
        &mut self,
        now: Instant,
        service: &str,
        pid: u32,
        stream: Stream,
        line: &str,
    ) {
        let (prio, text) = split_priority(line);
        let level = prio.unwrap_or(if stream == Stream::Stderr {
            Level::Notice
        } else {
            Level::Info
        });
        self.record(now, service, pid, stream, level, text);
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
        let who = if pid == 0 && service == "init" {
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

    /// Forgets the kmsg descriptor (after /dev was mounted, to reopen the real device).
    pub fn reopen_kmsg(&mut self) {
        self.kmsg = None;
        self.kmsg_failed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Entry {
        Entry {
            seq: 0,
            time_ms: 0,
            service: "svc".into(),
            pid: 7,
            stream: Stream::Stdout,
            level: Level::Info,
            text: text.into(),
        }
    }

    #[test]
    fn ring_stays_within_budget() {
        let mut r = Ring::new(4096);
        for i in 0..10_000 {
            r.push(entry(&format!("line {i} {}", "x".repeat(i % 100))));
            assert!(r.bytes() <= 4096);
        }
        let last: Vec<u64> = r.since(0).map(|e| e.seq).collect();
        assert_eq!(*last.last().unwrap(), 10_000);
        assert!(last.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(r.len() > 10 && r.len() < 100, "{}", r.len());
        // Asking from an evicted sequence number starts at the oldest kept line.
        assert_eq!(r.since(5).next().unwrap().seq, last[0]);
        assert_eq!(r.since(10_000).count(), 1);
        assert_eq!(r.since(10_001).count(), 0);
    }

    #[test]
    fn tail_filters() {
        let mut r = Ring::new(1 << 20);
        for i in 0..10 {
            let mut e = entry(&i.to_string());
            e.service = if i % 2 == 0 {
                "even".into()
            } else {
                "odd".into()
            };
            r.push(e);
        }
        let t: Vec<&str> = r
            .tail(3, |e| e.service == "odd")
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(t, ["5", "7", "9"]);
    }

    #[test]
    fn splitter_cuts_and_joins() {
        let mut s = LineSplitter::new(8);
        let mut lines = Vec::new();
        s.feed(b"hello\nwor", &mut |l| lines.push(l));
        s.feed(b"ld\n0123456789abcdefXY\n\n", &mut |l| lines.push(l));
        s.feed(b"tail", &mut |l| lines.push(l));
        assert_eq!(lines, ["hello", "world", "01234567", "89abcdef", "XY", ""]);
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn priority_prefix() {
        assert_eq!(split_priority("<3>boom"), (Some(Level::Err), "boom"));
        assert_eq!(split_priority("<9>x"), (None, "<9>x"));
        assert_eq!(split_priority("<3"), (None, "<3"));
    }

    #[test]
    fn rate_limit_counts_drops() {
        let mut l = RateLimit::new(10, 3);
        let t = Instant(1000);
        assert_eq!(l.admit(t), Some(0));
        assert_eq!(l.admit(t), Some(0));
        assert_eq!(l.admit(t), Some(0));
        assert_eq!(l.admit(t), None);
        assert_eq!(l.admit(t), None);
        // 100 ms later one token is back and the two drops are reported.
        assert_eq!(l.admit(Instant(1100)), Some(2));
        assert_eq!(l.admit(Instant(1100)), None);
    }

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
        log.service_line(
            t,
            "kv",
            42,
            Stream::Stderr,
            "<4>disk almost full, really quite full",
        );
        log.init(t, Level::Err, "kv exited");
        log.service_line(t, "kv", 42, Stream::Stdout, "dropped");
        log.service_line(Instant(1000), "kv", 43, Stream::Stdout, "hi");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "<28>kv[42]: disk almost full\n<27>myelin-init: kv exited\n\
             <28>myelin-init: 1 log lines not copied to kmsg (rate limit)\n<30>kv[43]: hi\n"
        );
        assert_eq!(log.ring.len(), 4);
        assert_eq!(log.ring.tail(1, |_| true)[0].text, "hi");
    }
}
