//! The token bucket that bounds how many lines reach the kernel log.

use crate::clock::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
