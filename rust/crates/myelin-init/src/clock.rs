//! Time as the supervisor sees it: a monotonic millisecond counter behind a trait, so the pure
//! state machines can be driven by tests with a hand-moved clock.

use std::time::Duration;

/// A point on the monotonic clock, in milliseconds since an arbitrary origin (boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// This instant plus `d`, saturating.
    pub fn after(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Source of the current time.
pub trait Clock {
    /// Current monotonic time.
    fn now(&self) -> Instant;
    /// Current wall-clock time in seconds since the Unix epoch.
    fn realtime(&self) -> i64;
}

/// The system clocks: `CLOCK_BOOTTIME` (monotonic, counts suspend) and `CLOCK_REALTIME`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .or_else(|_| nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC));
        match ts {
            Ok(ts) => {
                let ms = ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000;
                Instant(ms)
            }
            Err(_) => Instant(0),
        }
    }

    fn realtime(&self) -> i64 {
        unix_millis() / 1000
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 before 1970).
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats a duration the way the configuration writes them (`250ms`, `5s`, `2m`, `1h`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses `250ms`, `5s`, `1.5s`, `2m`, `1h` (a number and a unit, no spaces).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || frac.contains('.') || frac.len() > 6 {
        return None;
    }
    // Integer arithmetic in microseconds: "1.5s" is exactly 1500 ms.
    let int: u64 = int.parse().ok()?;
    let frac_num: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_den = 10u64.pow(frac.len() as u32);
    let us = int
        .checked_mul(unit_ms * 1000)?
        .checked_add(frac_num * unit_ms * 1000 / frac_den)?;
    Some(Duration::from_millis(us / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5 s"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration("0.25s"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.2.3s"), None);
        assert_eq!(parse_duration(".5s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn instants_saturate() {
        let t = Instant(10);
        assert_eq!(t.after(Duration::from_millis(5)), Instant(15));
        assert_eq!(Instant(3).since(t), Duration::ZERO);
        assert_eq!(
            Instant(u64::MAX).after(Duration::from_secs(1)),
            Instant(u64::MAX)
        );
    }
}
