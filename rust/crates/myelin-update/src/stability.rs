//! When a trial firmware counts as stable: every critical service continuously ready for a
//! configurable period, with no restart anywhere in the supervision tree meanwhile.
//!
//! A crash-looping service is ready for a moment between restarts; validating at such a moment
//! (what "every critical service is ready" alone did) commits a firmware that churns forever.
//! PID 1 reports how long the critical services have been ready with no restart in the tree
//! (`critical_ready_for_ms`) and the restarts since boot (`restarts_total`); this module also
//! keeps its own observation, so that a restart between two polls, an init that does not
//! report the duration, or a report that goes backwards all restart the count.

use std::time::Duration;

/// One readiness answer from PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Every critical service is ready now.
    pub critical_ready: bool,
    /// How long they have been, with no restart in the tree (None: not reported).
    pub ready_for: Option<Duration>,
    /// Restarts in the whole tree since boot.
    pub restarts_total: u64,
}

impl From<bool> for Readiness {
    /// A bare "ready or not" (an init that reports nothing more).
    fn from(critical_ready: bool) -> Self {
        Readiness {
            critical_ready,
            ready_for: None,
            restarts_total: 0,
        }
    }
}

/// What an observation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A critical service is not ready.
    NotReady,
    /// Ready, but not for long enough yet.
    Settling {
        /// How long the services have been stable so far.
        stable_for: Duration,
    },
    /// Ready for at least the required period with no restart: validate.
    Stable,
}

/// The streak of continuous readiness seen so far.
#[derive(Debug, Clone)]
pub struct Stability {
    required: Duration,
    /// Start of the current streak (on the caller's clock) and the restart count it began with.
    streak: Option<(Duration, u64)>,
    /// When the previous answer came.
    last: Option<Duration>,
}

impl Stability {
    /// Requires `required` of continuous readiness (zero: the first ready answer is enough).
    pub fn new(required: Duration) -> Self {
        Stability {
            required,
            streak: None,
            last: None,
        }
    }

    /// The required stable period.
    pub fn required(&self) -> Duration {
        self.required
    }

    /// Forgets the streak (a new trial).
    pub fn reset(&mut self) {
        self.streak = None;
        self.last = None;
    }

    /// Takes one answer at time `now` (any monotonic clock).
    pub fn observe(&mut self, now: Duration, r: Readiness) -> Verdict {
        let last = self.last.replace(now);
        if !r.critical_ready {
            self.streak = None;
            return Verdict::NotReady;
        }
        // What PID 1 says about the past; without it, only what this process saw counts.
        let reported_start = r.ready_for.map(|d| now.saturating_sub(d));
        let start = match self.streak {
            // Same streak: PID 1 may still move its start later (a readiness loss between
            // polls without a restart), never earlier.
            Some((start, restarts)) if restarts == r.restarts_total => {
                reported_start.map_or(start, |r| start.max(r))
            }
            // Something restarted since the previous answer: the streak began after it.
            Some(_) => reported_start.unwrap_or(now).max(last.unwrap_or(now)),
            // First answer (or the first ready one).
            None => reported_start.unwrap_or(now),
        };
        self.streak = Some((start, r.restarts_total));
        let stable_for = now.saturating_sub(start);
        if stable_for >= self.required {
            Verdict::Stable
        } else {
            Verdict::Settling { stable_for }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ready(for_s: u64, restarts: u64) -> Readiness {
        Readiness {
            critical_ready: true,
            ready_for: Some(s(for_s)),
            restarts_total: restarts,
        }
    }

    #[test]
    fn a_flapping_critical_service_is_never_stable() {
        // Restarted every 6.5 s and ready 1.5 s later (the dropbear-like loop of issue 9),
        // polled every 250 ms for an hour: ready for 5 s at most, never the 30 s required.
        let mut st = Stability::new(s(30));
        let mut ready_answers = 0;
        for tick in 0..(3600 * 4u64) {
            let ms = tick * 250;
            let cycle = ms % 6500;
            let r = if cycle < 1500 {
                false.into()
            } else {
                ready_answers += 1;
                Readiness {
                    critical_ready: true,
                    ready_for: Some(Duration::from_millis(cycle - 1500)),
                    restarts_total: ms / 6500,
                }
            };
            let now = Duration::from_millis(ms);
            assert_ne!(st.observe(now, r), Verdict::Stable, "validated at {ms} ms");
        }
        assert!(
            ready_answers > 10_000,
            "the service was ready most of the time"
        );
    }

    #[test]
    fn a_restart_between_polls_starts_the_count_again() {
        let mut st = Stability::new(s(30));
        assert_eq!(
            st.observe(s(100), ready(5, 1)),
            Verdict::Settling { stable_for: s(5) }
        );
        assert_eq!(
            st.observe(s(120), ready(25, 1)),
            Verdict::Settling { stable_for: s(25) }
        );
        // Something restarted since the previous answer, though the duration reported says
        // otherwise: the streak starts after the previous answer at the earliest.
        assert_eq!(
            st.observe(s(121), ready(26, 2)),
            Verdict::Settling { stable_for: s(1) }
        );
        // PID 1 moves the start later (readiness lost between polls): followed.
        assert_eq!(
            st.observe(s(122), ready(0, 2)),
            Verdict::Settling { stable_for: s(0) }
        );
        // Not ready for a moment: starts again.
        assert_eq!(st.observe(s(123), false.into()), Verdict::NotReady);
        assert_eq!(
            st.observe(s(124), ready(1, 2)),
            Verdict::Settling { stable_for: s(1) }
        );
        assert_eq!(
            st.observe(s(150), ready(27, 2)),
            Verdict::Settling { stable_for: s(27) }
        );
        assert_eq!(st.observe(s(153), ready(30, 2)), Verdict::Stable);
    }

    #[test]
    fn an_init_without_durations_needs_the_period_observed_here() {
        let mut st = Stability::new(s(10));
        assert_eq!(
            st.observe(s(100), true.into()),
            Verdict::Settling { stable_for: s(0) }
        );
        assert_eq!(
            st.observe(s(105), true.into()),
            Verdict::Settling { stable_for: s(5) }
        );
        assert_eq!(st.observe(s(110), true.into()), Verdict::Stable);
        // Zero: the first ready answer validates, as before.
        assert_eq!(
            Stability::new(Duration::ZERO).observe(s(1), true.into()),
            Verdict::Stable
        );
    }
}
