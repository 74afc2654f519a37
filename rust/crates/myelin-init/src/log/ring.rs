//! The bounded in-memory log: at most `ring_bytes` (text, service name, the entry and allocator
//! overhead); the oldest lines go first, so a crash loop costs a bounded amount of memory.

use std::collections::VecDeque;

use crate::control::LogEntry as Entry;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Stream;
    use crate::level::Level;

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
}
