//! Reconnect delays: doubling from a minimum to a maximum, each with random extra jitter, as
//! NervesHubLink does (1 s doubling to 60 s, up to 50 % added). The jitter spreads a fleet's
//! reconnects after a server restart, so the server does not see them all in the same second.

use std::time::Duration;

/// A source of randomness for jitter (a fixed sequence in tests).
pub trait Random {
    /// A value in `[0, 1)`.
    fn unit(&mut self) -> f64;
}

/// The OS's random numbers.
#[derive(Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn unit(&mut self) -> f64 {
        // A failing getrandom only loses the jitter, never the reconnect.
        let v = getrandom::u32().unwrap_or(0);
        f64::from(v) / (f64::from(u32::MAX) + 1.0)
    }
}

/// The reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The first delay.
    pub min: Duration,
    /// The largest delay before jitter.
    pub max: Duration,
    /// Up to this fraction of a delay is added (0 to 1).
    pub jitter: f64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

impl Policy {
    /// The largest delay this policy can ever produce.
    pub fn bound(&self) -> Duration {
        self.max.mul_f64(1.0 + self.jitter.clamp(0.0, 1.0))
    }
}

/// Where in the sequence of attempts a connection is.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    attempt: u32,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(policy: Policy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, random: &mut dyn Random) -> Duration {
        let base = self
            .policy
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.policy.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.policy.jitter.clamp(0.0, 1.0) * random.unit().clamp(0.0, 1.0);
        base + base.mul_f64(jitter)
    }

    /// After a connection that worked (the device channel joined): start over.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always the same value.
    struct Fixed(f64);
    impl Random for Fixed {
        fn unit(&mut self) -> f64 {
            self.0
        }
    }

    #[test]
    fn doubles_to_the_maximum_without_jitter() {
        let mut b = Backoff::new(Policy::default());
        let delays: Vec<u64> = (0..9)
            .map(|_| b.next_delay(&mut Fixed(0.0)).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(&mut Fixed(0.0)), Duration::from_secs(1));
    }

    #[test]
    fn jitter_adds_up_to_its_fraction_and_stays_bounded() {
        let policy = Policy::default();
        let mut b = Backoff::new(policy);
        assert_eq!(b.next_delay(&mut Fixed(0.5)), Duration::from_millis(1250));
        for _ in 0..1000 {
            let d = b.next_delay(&mut Fixed(0.999_999));
            assert!(d <= policy.bound(), "{d:?}");
        }
        assert!(b.next_delay(&mut Fixed(0.999_999)) > Duration::from_secs(89));
    }

    #[test]
    fn os_random_is_in_range_and_varies() {
        let mut r = OsRandom;
        let values: Vec<f64> = (0..64).map(|_| r.unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.iter().any(|v| *v != values[0]));
    }
}
