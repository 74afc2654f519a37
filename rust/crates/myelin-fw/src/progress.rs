//! Progress of an apply, and fwup's `--framing` protocol.
//!
//! Progress is counted in fwup's units so that percentages match fwup's: one unit per byte a
//! resource writes (holes included for `fat_write`), 512 per `fat_*`, `mbr_write` and
//! `reboot_param` call, the environment size (both copies) per `uboot_*` call, 2 × 33 × 512
//! per `gpt_write`, the byte count of `raw_memset` (reported per 512-byte block), one per
//! 128 KiB of `trim`. A percentage is reported only when it increases; 100 is reported only
//! once everything is written and synced.
//!
//! Framing (`--framing`): every message on stdout is a 4-byte big-endian length followed by
//! that many bytes: a 2-byte type, a 2-byte big-endian code, then text. `PR` carries the
//! percentage as its code, `OK` (code 0) ends a success, `ER` (code 0, message) a failure,
//! `WN` an informational message (`info()`). On input, with `-i -`, the archive arrives the
//! same way: length-prefixed chunks, a zero length ending the stream.

use std::io::{self, Read, Write};

/// What an apply reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Overall progress, 0..=100 (or the caller's low..=high range).
    Percent(u16),
    /// A message from `info()` or a warning.
    Info(String),
}

/// Receives [`Event`]s.
pub type Callback<'a> = &'a mut dyn FnMut(Event);

/// fwup's progress arithmetic.
pub struct Tracker<'a> {
    total: u64,
    current: u64,
    last: i32,
    low: u16,
    range: u16,
    callback: Option<Callback<'a>>,
}

impl<'a> Tracker<'a> {
    /// A tracker reporting between `low` and `high` percent to `callback`.
    pub fn new(low: u16, high: u16, callback: Option<Callback<'a>>) -> Self {
        Tracker {
            total: 0,
            current: 0,
            last: -1,
            low,
            range: high.saturating_sub(low),
            callback,
        }
    }

    /// Sets the number of units the task will report.
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// The total set by [`Tracker::set_total`].
    pub fn total(&self) -> u64 {
        self.total
    }

    fn emit(&mut self, percent: u16) {
        if i32::from(percent) <= self.last {
            return;
        }
        self.last = i32::from(percent);
        if let Some(cb) = self.callback.as_mut() {
            cb(Event::Percent(percent));
        }
    }

    /// Adds `units` and reports the new percentage if it grew (never 100 before the end).
    pub fn report(&mut self, units: u64) {
        self.current = self.current.saturating_add(units).min(self.total);
        let mut pct = self.low;
        if self.total > 0 {
            let amt =
                (u128::from(self.current) * u128::from(self.range) / u128::from(self.total)) as u16;
            pct += amt.min(self.range.saturating_sub(1));
        }
        self.emit(pct);
    }

    /// Reports completion.
    pub fn complete(&mut self) {
        self.emit(self.low + self.range);
    }

    /// Passes a message on.
    pub fn info(&mut self, msg: &str) {
        if let Some(cb) = self.callback.as_mut() {
            cb(Event::Info(msg.to_owned()));
        }
    }
}

/// Writes one framed message.
pub fn write_frame(w: &mut dyn Write, kind: &[u8; 2], code: u16, text: &str) -> io::Result<()> {
    let len = (text.len() + 4) as u32;
    let mut msg = Vec::with_capacity(text.len() + 8);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(kind);
    msg.extend_from_slice(&code.to_be_bytes());
    msg.extend_from_slice(text.as_bytes());
    w.write_all(&msg)?;
    w.flush()
}

/// Reads an archive sent in frames (see the module documentation).
pub struct FramedReader<R> {
    inner: R,
    remaining: u32,
    done: bool,
}

impl<R: Read> FramedReader<R> {
    /// Wraps a framed stream.
    pub fn new(inner: R) -> Self {
        FramedReader {
            inner,
            remaining: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for FramedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut len = [0u8; 4];
            self.inner.read_exact(&mut len)?;
            self.remaining = u32::from_be_bytes(len);
            if self.remaining == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "input ended although the framing announced more bytes",
            ));
        }
        self.remaining -= n as u32;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_follow_fwup() {
        let mut seen = Vec::new();
        let mut cb = |e: Event| {
            if let Event::Percent(p) = e {
                seen.push(p)
            }
        };
        let mut t = Tracker::new(0, 100, Some(&mut cb));
        t.report(0);
        t.set_total(1000);
        t.report(5);
        t.report(20);
        t.report(975);
        t.report(10);
        t.complete();
        let _ = t;
        assert_eq!(seen, vec![0, 2, 99, 100]);
    }

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        write_frame(&mut out, b"PR", 42, "").unwrap();
        write_frame(&mut out, b"ER", 0, "oops").unwrap();
        assert_eq!(out, b"\0\0\0\x04PR\0\x2a\0\0\0\x08ER\0\0oops");
        let framed = b"\0\0\0\x03abc\0\0\0\x02de\0\0\0\0trailing";
        let mut r = FramedReader::new(&framed[..]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"abcde");
        let mut r = FramedReader::new(&b"\0\0\0\x05ab"[..]);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }
}
