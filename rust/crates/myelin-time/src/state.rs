//! The pure core: from NTP reports and clock readings to what must be done.
//!
//! [`TimeState`] holds what myelin-time publishes (synchronized, last sync, stratum, offset)
//! and turns each input into [`Action`]s that the daemon carries out through
//! [`crate::sys`]'s traits. Nothing here reads a clock or touches a device, so every rule is
//! tested with plain numbers:
//!
//! * at start, an RTC that is ahead of the clock (and not below the floor) sets the clock;
//!   a clock below the build-time floor is raised to it;
//! * `step`, `stratum` and `periodic` reports with a stratum of 1 to 15 mean synchronized: the
//!   time file is saved and the RTC written; `unsync`, or a stratum of 16, mean not;
//! * a report that leaves the clock below the floor (a bogus server) is undone: the clock goes
//!   back to the floor and the state is not synchronized;
//! * every save interval the time file is refreshed, so a power cut loses at most that much of
//!   the floor; never with a clock below the floor;
//! * the built-in client's samples step the clock when the offset is large, never below the floor.

use std::collections::BTreeMap;

/// Stratum meaning "not synchronized".
pub const UNSYNC_STRATUM: u32 = 16;

/// Offsets up to this many seconds are left alone by the built-in client (busybox ntpd's
/// threshold before it steps rather than slews is of the same order).
pub const STEP_THRESHOLD: f64 = 0.128;

/// A busybox ntpd `-S` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtpEvent {
    /// The clock was stepped.
    Step,
    /// The stratum changed (first sync, or lost: 16).
    Stratum,
    /// Every 11 minutes while running.
    Periodic,
    /// Synchronization lost.
    Unsync,
}

impl NtpEvent {
    /// Parses the script's argument.
    pub fn parse(s: &str) -> Option<NtpEvent> {
        Some(match s {
            "step" => NtpEvent::Step,
            "stratum" => NtpEvent::Stratum,
            "periodic" => NtpEvent::Periodic,
            "unsync" => NtpEvent::Unsync,
            _ => return None,
        })
    }
}

/// One report of the NTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What happened.
    pub event: NtpEvent,
    /// The clock's stratum after it, if known.
    pub stratum: Option<u32>,
    /// The measured offset in seconds, if known.
    pub offset: Option<f64>,
}

/// Why a hook report is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not one of ntpd's events.
    #[error("unknown ntpd event {0:?}")]
    Event(String),
    /// A variable that is not a number.
    #[error("ntpd variable {name}={value:?} is not a number")]
    Number {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

impl Report {
    /// A report from the hook's argument and ntpd's environment (`stratum`, `offset`,
    /// `freq_drift_ppm`, `poll_interval`).
    pub fn from_hook(event: &str, vars: &BTreeMap<String, String>) -> Result<Report, ReportError> {
        let event = NtpEvent::parse(event).ok_or_else(|| ReportError::Event(event.into()))?;
        let stratum = match vars.get("stratum") {
            Some(v) => Some(v.trim().parse::<u32>().map_err(|_| ReportError::Number {
                name: "stratum",
                value: v.clone(),
            })?),
            None => None,
        };
        let offset = match vars.get("offset") {
            Some(v) => Some(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|o| o.is_finite())
                    .ok_or_else(|| ReportError::Number {
                        name: "offset",
                        value: v.clone(),
                    })?,
            ),
            None => None,
        };
        Ok(Report {
            event,
            stratum,
            offset,
        })
    }
}

/// Something to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the clock to this time (seconds since the epoch).
    SetClock(f64),
    /// Write the clock to the RTC.
    WriteRtc,
    /// Save the time file (its mtime becomes the next boot's floor).
    SaveTimeFile,
}

/// What myelin-time knows about the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeState {
    /// The build-time floor.
    pub floor: i64,
    /// Whether NTP has set or confirmed the clock.
    pub synchronized: bool,
    /// When it last did (seconds since the epoch; 0: never).
    pub last_sync: i64,
    /// Stratum of the last report.
    pub stratum: u32,
    /// Offset of the last report.
    pub offset: f64,
    /// Whether the board has an RTC to write.
    pub has_rtc: bool,
}

impl TimeState {
    /// Nothing known yet.
    pub fn new(floor: i64, has_rtc: bool) -> TimeState {
        TimeState {
            floor,
            synchronized: false,
            last_sync: 0,
            stratum: UNSYNC_STRATUM,
            offset: 0.0,
            has_rtc,
        }
    }

    /// At start: the clock `now` and what the RTC says, if it could be read.
    pub fn start(&mut self, now: f64, rtc: Option<i64>) -> Vec<Action> {
        match rtc {
            // The RTC kept time while the power was off: trust it over a floor, which is older.
            Some(r) if r >= self.floor && (r as f64) > now + 1.0 => {
                vec![Action::SetClock(r as f64)]
            }
            _ if now < self.floor as f64 => vec![Action::SetClock(self.floor as f64)],
            _ => Vec::new(),
        }
    }

    /// An NTP report; `now` is the clock read after it (ntpd has already stepped it).
    pub fn report(&mut self, r: &Report, now: f64) -> Vec<Action> {
        if let Some(o) = r.offset {
            self.offset = o;
        }
        if r.event == NtpEvent::Unsync {
            self.synchronized = false;
            self.stratum = UNSYNC_STRATUM;
            return Vec::new();
        }
        if let Some(s) = r.stratum {
            self.stratum = s;
        }
        if now < self.floor as f64 {
            // A server that puts us before the build cannot be right.
            self.synchronized = false;
            return vec![Action::SetClock(self.floor as f64)];
        }
        if !(1..UNSYNC_STRATUM).contains(&self.stratum) {
            self.synchronized = false;
            return Vec::new();
        }
        self.synchronized = true;
        self.last_sync = now as i64;
        let mut actions = vec![Action::SaveTimeFile];
        if self.has_rtc {
            actions.push(Action::WriteRtc);
        }
        actions
    }

    /// A sample of the built-in client: the server's `stratum` and the measured `offset`.
    /// Steps the clock when the offset is large, then handles it as ntpd's report would be.
    pub fn sample(&mut self, stratum: u32, offset: f64, now: f64) -> Vec<Action> {
        if !(1..UNSYNC_STRATUM).contains(&stratum) {
            // A server that is not synchronized itself must not set our clock.
            self.synchronized = false;
            self.stratum = UNSYNC_STRATUM;
            return Vec::new();
        }
        let target = now + offset;
        if target < self.floor as f64 {
            // Refused before touching the clock: the server is wrong, not us.
            self.synchronized = false;
            self.offset = offset;
            return Vec::new();
        }
        let mut actions = Vec::new();
        let (event, after) = if offset.abs() > STEP_THRESHOLD {
            actions.push(Action::SetClock(target));
            (NtpEvent::Step, target)
        } else {
            (NtpEvent::Periodic, now)
        };
        let r = Report {
            event,
            stratum: Some(stratum),
            offset: Some(offset),
        };
        actions.extend(self.report(&r, after));
        actions
    }

    /// The save timer: refresh the time file unless the clock is below the floor.
    pub fn tick(&mut self, now: f64) -> Vec<Action> {
        if now < self.floor as f64 {
            return Vec::new();
        }
        vec![Action::SaveTimeFile]
    }

    /// Stopping: the same rule as the timer, a last save.
    pub fn stop(&mut self, now: f64) -> Vec<Action> {
        self.tick(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: i64 = 1_800_000_000;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn hook_reports_parse_and_bad_ones_are_named() {
        let r = Report::from_hook("step", &vars(&[("stratum", "3"), ("offset", "-12.5")]))
            .expect("valid");
        assert_eq!(r.event, NtpEvent::Step);
        assert_eq!(r.stratum, Some(3));
        assert_eq!(r.offset, Some(-12.5));
        let r = Report::from_hook("unsync", &vars(&[])).expect("no vars is fine");
        assert_eq!((r.stratum, r.offset), (None, None));
        assert_eq!(
            Report::from_hook("leap", &vars(&[])),
            Err(ReportError::Event("leap".into()))
        );
        let e = Report::from_hook("step", &vars(&[("stratum", "x")])).unwrap_err();
        assert!(e.to_string().contains("stratum=\"x\""), "{e}");
        assert!(Report::from_hook("step", &vars(&[("offset", "nan")])).is_err());
    }

    #[test]
    fn start_trusts_an_rtc_ahead_and_raises_a_clock_below_the_floor() {
        let mut s = TimeState::new(FLOOR, true);
        let f = FLOOR as f64;
        assert_eq!(
            s.start(f, Some(FLOOR + 500)),
            vec![Action::SetClock(f + 500.0)]
        );
        // A dead RTC battery (1970) is ignored; the clock is already past the floor.
        assert_eq!(s.start(f + 10.0, Some(0)), vec![]);
        // Below the floor with an RTC below it too: the floor.
        assert_eq!(s.start(5.0, Some(7)), vec![Action::SetClock(f)]);
        // An RTC behind the clock never moves it back.
        assert_eq!(s.start(f + 100.0, Some(FLOOR + 50)), vec![]);
        assert!(!s.synchronized);
    }

    #[test]
    fn reports_drive_synchronized_and_each_sync_saves_and_writes_the_rtc() {
        let mut s = TimeState::new(FLOOR, true);
        let now = FLOOR as f64 + 1e6;
        let step = Report {
            event: NtpEvent::Step,
            stratum: Some(2),
            offset: Some(3600.0),
        };
        assert_eq!(
            s.report(&step, now),
            vec![Action::SaveTimeFile, Action::WriteRtc]
        );
        assert!(s.synchronized);
        assert_eq!((s.last_sync, s.stratum, s.offset), (now as i64, 2, 3600.0));
        let unsync = Report {
            event: NtpEvent::Unsync,
            stratum: None,
            offset: None,
        };
        assert_eq!(s.report(&unsync, now + 10.0), vec![]);
        assert!(!s.synchronized);
        assert_eq!(s.stratum, UNSYNC_STRATUM);
        assert_eq!(s.last_sync, now as i64, "the last sync is kept");
        let lost = Report {
            event: NtpEvent::Stratum,
            stratum: Some(16),
            offset: None,
        };
        assert_eq!(s.report(&lost, now + 20.0), vec![]);
        assert!(!s.synchronized);
        let periodic = Report {
            event: NtpEvent::Periodic,
            stratum: Some(1),
            offset: Some(0.001),
        };
        let mut no_rtc = TimeState::new(FLOOR, false);
        assert_eq!(no_rtc.report(&periodic, now), vec![Action::SaveTimeFile]);
        assert!(no_rtc.synchronized);
    }

    #[test]
    fn a_step_below_the_floor_is_undone() {
        let mut s = TimeState::new(FLOOR, true);
        let step = Report {
            event: NtpEvent::Step,
            stratum: Some(1),
            offset: Some(-1e9),
        };
        assert_eq!(
            s.report(&step, 1000.0),
            vec![Action::SetClock(FLOOR as f64)]
        );
        assert!(!s.synchronized);
        assert_eq!(s.last_sync, 0);
    }

    #[test]
    fn samples_step_large_offsets_only_and_never_below_the_floor() {
        let mut s = TimeState::new(FLOOR, false);
        let now = FLOOR as f64;
        assert_eq!(
            s.sample(2, 86_400.0, now),
            vec![Action::SetClock(now + 86_400.0), Action::SaveTimeFile]
        );
        assert!(s.synchronized);
        assert_eq!(s.last_sync, (now + 86_400.0) as i64);
        assert_eq!(s.sample(2, 0.01, now), vec![Action::SaveTimeFile]);
        // Back in time is fine while above the floor...
        assert_eq!(
            s.sample(2, -100.0, now + 1000.0),
            vec![Action::SetClock(now + 900.0), Action::SaveTimeFile]
        );
        // ...but not below it.
        assert_eq!(s.sample(2, -2000.0, now + 1000.0), vec![]);
        assert!(!s.synchronized);
        // A server that is not synchronized itself does not make us so.
        let mut s = TimeState::new(FLOOR, false);
        assert_eq!(s.sample(16, 5000.0, now), vec![]);
        assert!(!s.synchronized);
    }

    #[test]
    fn the_timer_saves_only_a_clock_above_the_floor() {
        let mut s = TimeState::new(FLOOR, false);
        assert_eq!(s.tick(FLOOR as f64 + 1.0), vec![Action::SaveTimeFile]);
        assert_eq!(s.tick(FLOOR as f64 - 1.0), vec![]);
        assert_eq!(s.stop(FLOOR as f64 - 1.0), vec![]);
    }
}
