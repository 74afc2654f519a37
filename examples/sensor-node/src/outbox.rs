//! The offline buffer: readings wait here until the broker has acknowledged them.
//!
//! A reading leaves the outbox only when the broker acknowledges it (QoS 1 PUBACK), never when
//! it was merely handed to the client: a connection that drops between the two would lose it.
//! One reading is in flight at a time, so an acknowledgement always names the oldest reading,
//! and the order on the broker is the order of the readings. At the bound, the oldest reading
//! is dropped (and counted): the newest data is what a sensor's consumer wants most.

use std::collections::VecDeque;

use crate::reading::Reading;

/// Bounded queue of readings not yet acknowledged by the broker.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Reading>,
    capacity: usize,
    in_flight: bool,
    dropped: u64,
    acked: u64,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` readings (at least one).
    pub fn new(capacity: usize) -> Outbox {
        let capacity = capacity.max(1);
        Outbox {
            queue: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            in_flight: false,
            dropped: 0,
            acked: 0,
        }
    }

    /// Queues a reading; returns the one dropped to make room, if any.
    ///
    /// The reading in flight is never the one dropped: its acknowledgement may be on its way.
    pub fn push(&mut self, reading: Reading) -> Option<Reading> {
        let mut dropped = None;
        if self.queue.len() >= self.capacity {
            let victim = if self.in_flight && self.queue.len() > 1 {
                1
            } else {
                0
            };
            if victim == 0 {
                self.in_flight = false;
            }
            dropped = self.queue.remove(victim);
            self.dropped += 1;
        }
        self.queue.push_back(reading);
        dropped
    }

    /// The reading to publish now: the oldest, when none is in flight. Marks it in flight.
    pub fn next_to_send(&mut self) -> Option<&Reading> {
        if self.in_flight {
            return None;
        }
        let next = self.queue.front()?;
        self.in_flight = true;
        Some(next)
    }

    /// The broker acknowledged the reading in flight: it leaves the outbox.
    pub fn acked(&mut self) -> Option<Reading> {
        if !self.in_flight {
            return None;
        }
        self.in_flight = false;
        self.acked += 1;
        self.queue.pop_front()
    }

    /// The connection dropped (or the publish failed): the reading in flight is sent again.
    pub fn connection_lost(&mut self) {
        self.in_flight = false;
    }

    /// Readings waiting, the one in flight included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a reading is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Readings dropped at the bound since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Readings acknowledged since start.
    pub fn acked_count(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(seq: u64) -> Reading {
        Reading {
            seq,
            celsius: 20.0,
            time_ms: seq,
        }
    }

    #[test]
    fn one_in_flight_in_order() {
        let mut o = Outbox::new(10);
        o.push(r(1));
        o.push(r(2));
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(1));
        assert_eq!(o.next_to_send(), None, "one at a time");
        assert_eq!(o.acked().map(|r| r.seq), Some(1));
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(2));
        assert_eq!(o.acked().map(|r| r.seq), Some(2));
        assert!(o.is_empty());
        assert_eq!(o.acked(), None, "a stray acknowledgement removes nothing");
        assert_eq!(o.acked_count(), 2);
    }

    #[test]
    fn a_lost_connection_sends_the_reading_again() {
        let mut o = Outbox::new(10);
        o.push(r(1));
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(1));
        o.connection_lost();
        // The broker is away for a while: readings wait, nothing is lost.
        for seq in 2..=5 {
            o.push(r(seq));
        }
        let mut delivered = vec![];
        while let Some(next) = o.next_to_send() {
            let seq = next.seq;
            assert_eq!(o.acked().map(|r| r.seq), Some(seq));
            delivered.push(seq);
        }
        assert_eq!(delivered, [1, 2, 3, 4, 5]);
        assert_eq!(o.dropped(), 0);
    }

    #[test]
    fn the_bound_drops_the_oldest_but_not_the_one_in_flight() {
        let mut o = Outbox::new(3);
        for seq in 1..=3 {
            assert_eq!(o.push(r(seq)), None);
        }
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(1));
        // Full: 2 goes, 1 stays in flight.
        assert_eq!(o.push(r(4)).map(|r| r.seq), Some(2));
        assert_eq!(o.len(), 3);
        assert_eq!(o.acked().map(|r| r.seq), Some(1));
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(3));
        o.connection_lost();
        // Nothing in flight: the oldest goes.
        assert_eq!(o.push(r(5)), None);
        assert_eq!(o.push(r(6)).map(|r| r.seq), Some(3));
        assert_eq!(o.dropped(), 2);
        let rest: Vec<u64> = o.queue.iter().map(|r| r.seq).collect();
        assert_eq!(rest, [4, 5, 6]);
    }

    #[test]
    fn capacity_one_replaces_the_in_flight_reading() {
        let mut o = Outbox::new(0);
        o.push(r(1));
        assert!(o.next_to_send().is_some());
        assert_eq!(o.push(r(2)).map(|r| r.seq), Some(1));
        assert!(!o.in_flight(), "the new reading has not been sent");
        assert_eq!(o.next_to_send().map(|r| r.seq), Some(2));
    }
}
