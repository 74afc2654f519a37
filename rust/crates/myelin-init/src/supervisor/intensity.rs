//! Restart intensity on a supervisor's own clock, which stops while a restart below the
//! supervisor waits out its backoff delay (see the rules in [`super`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Instant;

/// A supervisor's intensity clock: monotonic time minus the time during which at least one
/// service below the supervisor was waiting out a restart backoff delay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct IntensityClock {
    /// Frozen milliseconds accounted so far.
    frozen_ms: u64,
    /// Accounted up to here.
    updated: Instant,
}

impl IntensityClock {
    /// Accounts the time up to `now`. `waiting_until` is the latest end of the backoff delays
    /// that were pending below the supervisor since the last call (the set of waiting services
    /// only changes at events, and every event advances the clock first).
    pub(super) fn advance(&mut self, now: Instant, waiting_until: Option<Instant>) {
        if let Some(end) = waiting_until {
            let stop = end.min(now);
            if stop > self.updated {
                self.frozen_ms += stop.0 - self.updated.0;
            }
        }
        self.updated = self.updated.max(now);
    }

    /// The clock's reading at the last [`IntensityClock::advance`], in milliseconds.
    pub(super) fn reading(&self) -> u64 {
        self.updated.0.saturating_sub(self.frozen_ms)
    }
}

/// Readings of an intensity clock at which restarts happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RestartLog(VecDeque<u64>);

impl RestartLog {
    /// Records a restart at clock reading `at`; returns how many restarts, this one included,
    /// lie within `period` of it.
    pub(super) fn record(&mut self, at: u64, period: Duration) -> usize {
        let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.0.push_back(at);
        while self
            .0
            .front()
            .is_some_and(|&t| t.saturating_add(period) <= at)
        {
            self.0.pop_front();
        }
        self.0.len()
    }

    /// Forgets every restart (a fresh start of the supervisor).
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stops_while_a_backoff_is_pending() {
        let mut c = IntensityClock::default();
        c.advance(Instant(1000), None);
        assert_eq!(c.reading(), 1000);
        // A delay of 5 s scheduled at 1000, the next event at 3000: 2 s frozen so far.
        c.advance(Instant(3000), Some(Instant(6000)));
        assert_eq!(c.reading(), 1000);
        // At 7000 the delay ended at 6000: 5 s frozen in all, 1 s of running time since.
        c.advance(Instant(7000), Some(Instant(6000)));
        assert_eq!(c.reading(), 2000);
        // Time never runs backwards.
        c.advance(Instant(6500), None);
        assert_eq!(c.reading(), 2000);
    }

    #[test]
    fn restarts_fall_out_of_the_period() {
        let mut l = RestartLog::default();
        let p = Duration::from_secs(5);
        assert_eq!(l.record(0, p), 1);
        assert_eq!(l.record(4999, p), 2);
        assert_eq!(l.record(5000, p), 2, "the one at 0 is exactly a period old");
        l.clear();
        assert_eq!(l.record(9000, p), 1);
    }
}
