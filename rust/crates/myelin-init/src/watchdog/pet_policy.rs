//! When to pet the hardware watchdog: every `timeout / 2`, but only while the supervision loop
//! runs and every critical service is alive, except during the initial grace period and while
//! snoozed. At shutdown ([`PetPolicy::disarm`]) it is petted once more and then never again, so
//! a shutdown that hangs ends in a hardware reset.

use std::time::Duration;

use crate::clock::Instant;
use crate::control::PolicyStatus;

/// When to pet.
#[derive(Clone, Debug)]
pub struct PetPolicy {
    interval: Duration,
    grace_until: Instant,
    snooze_until: Instant,
    next_pet: Instant,
    last_pet: Option<Instant>,
    disarmed: bool,
}

impl PetPolicy {
    /// A policy for a watchdog with `timeout`, started at `now`: the first pet is due at once.
    pub fn new(now: Instant, timeout: Duration, grace: Duration) -> PetPolicy {
        PetPolicy {
            interval: (timeout / 2).max(Duration::from_millis(100)),
            grace_until: now.after(grace),
            snooze_until: now,
            next_pet: now,
            last_pet: None,
            disarmed: false,
        }
    }

    /// Whether to pet now, given whether the tree is healthy.
    pub fn due(&self, now: Instant, healthy: bool) -> bool {
        !self.disarmed && now >= self.next_pet && (healthy || self.forced(now))
    }

    fn forced(&self, now: Instant) -> bool {
        now < self.grace_until || now < self.snooze_until
    }

    /// Records a pet.
    pub fn petted(&mut self, now: Instant) {
        self.last_pet = Some(now);
        self.next_pet = now.after(self.interval);
    }

    /// When the loop must wake up for the next pet (health changes wake it anyway).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.disarmed {
            None
        } else if self.next_pet > now {
            Some(self.next_pet)
        } else if self.forced(now) {
            Some(now)
        } else {
            None
        }
    }

    /// Pets unconditionally until `now + d`.
    pub fn snooze(&mut self, now: Instant, d: Duration) {
        self.snooze_until = now.after(d);
    }

    /// No pet ever again (shutdown: the hardware finishes the job if it hangs).
    pub fn disarm(&mut self) {
        self.disarmed = true;
    }

    /// Petting again after a shutdown that deliberately ended in `hang`.
    pub fn rearm(&mut self) {
        self.disarmed = false;
    }

    /// Status for `myelinctl`.
    pub fn status(&self, now: Instant, healthy: bool) -> PolicyStatus {
        PolicyStatus {
            healthy,
            disarmed: self.disarmed,
            last_pet_ms_ago: self.last_pet.map(|t| now.since(t).as_millis() as u64),
            grace_left_ms: self.grace_until.since(now).as_millis() as u64,
            snooze_left_ms: self.snooze_until.since(now).as_millis() as u64,
            interval_ms: self.interval.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::{FakeWatchdog, Watchdog};

    #[test]
    fn pets_while_healthy_and_during_grace() {
        let t0 = Instant(1000);
        let mut p = PetPolicy::new(t0, Duration::from_secs(10), Duration::from_secs(30));
        // First pet at once, even unhealthy (grace).
        assert!(p.due(t0, false));
        p.petted(t0);
        assert!(!p.due(Instant(5999), true));
        assert_eq!(p.next_deadline(Instant(2000)), Some(Instant(6000)));
        assert!(p.due(Instant(6000), false), "grace forces pets");
        p.petted(Instant(6000));
        // After the grace period, only a healthy tree gets pets.
        let late = Instant(40_000);
        assert!(!p.due(late, false));
        assert_eq!(p.next_deadline(late), None);
        assert!(p.due(late, true));
    }

    #[test]
    fn snooze_and_disarm() {
        let t0 = Instant(0);
        let mut p = PetPolicy::new(t0, Duration::from_secs(4), Duration::ZERO);
        p.petted(t0);
        assert!(!p.due(Instant(2000), false));
        p.snooze(Instant(2000), Duration::from_secs(60));
        assert!(p.due(Instant(2000), false));
        assert!(p.due(Instant(61_999), false));
        assert!(!p.due(Instant(62_000), false));
        p.disarm();
        assert!(!p.due(Instant(62_000), true));
        assert_eq!(p.next_deadline(Instant(62_000)), None);
        let s = p.status(Instant(62_000), true);
        let mut q = p.clone();
        q.rearm();
        assert!(q.due(Instant(62_000), true));
        assert!(s.disarmed);
        assert_eq!(s.interval_ms, 2000);
        assert_eq!(s.last_pet_ms_ago, Some(62_000));
    }

    #[test]
    fn fake_records_pets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        let mut w = FakeWatchdog::open(&path, Some(Duration::from_secs(3))).unwrap();
        w.pet().unwrap();
        w.pet().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "open timeout=3000ms");
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("pet "));
        assert_eq!(w.timeout(), Duration::from_secs(3));
    }
}
