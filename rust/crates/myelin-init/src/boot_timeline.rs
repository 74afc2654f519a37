//! The boot timeline: when PID 1 started, how long each of its boot phases took, and when each
//! service was first started and first ready. `myelinctl boot` prints it (the `boot` request of
//! the control protocol); it is what boot-time work is measured with.
//!
//! Times are the monotonic clock in milliseconds (CLOCK_BOOTTIME: since the kernel started), so
//! the kernel's share is [`BootTimeline::init_start_ms`] itself. Only the first start and the
//! first readiness of a service count: a restart later is supervision, not boot.

use std::collections::HashMap;

use crate::clock::Instant;
use crate::control::{BootPhase, BootTimeline, ServiceBoot};
use crate::supervisor::Note;

/// Records the timeline as boot goes.
#[derive(Debug, Default)]
pub struct Recorder {
    timeline: BootTimeline,
    /// Index into `timeline.services` by name.
    index: HashMap<String, usize>,
    /// The phase under way: its name and start.
    open: Option<(String, u64)>,
}

impl Recorder {
    /// A recorder for a PID 1 that started at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            timeline: BootTimeline {
                init_start_ms: start.0,
                ..BootTimeline::default()
            },
            ..Recorder::default()
        }
    }

    /// Ends the phase under way (if any) at `now` and starts `name`.
    pub fn phase(&mut self, name: &str, now: Instant) {
        self.end_phase(now);
        self.open = Some((name.to_string(), now.0));
    }

    /// Ends the phase under way at `now`.
    pub fn end_phase(&mut self, now: Instant) {
        if let Some((name, start_ms)) = self.open.take() {
            self.timeline.phases.push(BootPhase {
                name,
                start_ms,
                end_ms: now.0.max(start_ms),
            });
        }
    }

    /// Takes what the supervisor reports: first starts and first readiness.
    pub fn note(&mut self, note: &Note, now: Instant) {
        match note {
            Note::Started { name, ready, .. } if !self.index.contains_key(name) => {
                self.index
                    .insert(name.clone(), self.timeline.services.len());
                self.timeline.services.push(ServiceBoot {
                    name: name.clone(),
                    started_ms: now.0,
                    ready_ms: ready.then_some(now.0),
                });
            }
            Note::Ready { name } => {
                if let Some(&i) = self.index.get(name) {
                    let s = &mut self.timeline.services[i];
                    s.ready_ms.get_or_insert(now.0);
                }
            }
            _ => {}
        }
    }

    /// Every service is ready ("all services ready"); only the first time counts.
    pub fn all_ready(&mut self, now: Instant) {
        self.timeline.all_ready_ms.get_or_insert(now.0);
    }

    /// The timeline so far.
    pub fn timeline(&self) -> BootTimeline {
        let mut t = self.timeline.clone();
        // A phase still under way shows up to now as unfinished (its end is its start).
        if let Some((name, start_ms)) = &self.open {
            t.phases.push(BootPhase {
                name: name.clone(),
                start_ms: *start_ms,
                end_ms: *start_ms,
            });
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_services_and_readiness_are_first_occurrences() {
        let mut r = Recorder::new(Instant(400));
        r.phase("pseudo filesystems", Instant(401));
        r.phase("data partition", Instant(420));
        r.end_phase(Instant(900));
        r.note(
            &Note::Started {
                name: "kv".into(),
                pid: 10,
                ready: false,
            },
            Instant(905),
        );
        r.note(
            &Note::Started {
                name: "app".into(),
                pid: 11,
                ready: false,
            },
            Instant(906),
        );
        r.note(&Note::Ready { name: "kv".into() }, Instant(950));
        // A restart and a second READY do not move the first ones.
        r.note(
            &Note::Started {
                name: "kv".into(),
                pid: 12,
                ready: false,
            },
            Instant(2000),
        );
        r.note(&Note::Ready { name: "kv".into() }, Instant(2100));
        // Readiness of a service never started (cannot happen) is ignored, not a panic.
        r.note(
            &Note::Ready {
                name: "ghost".into(),
            },
            Instant(960),
        );
        // A service without a readiness protocol is ready when it starts.
        r.note(
            &Note::Started {
                name: "shell".into(),
                pid: 13,
                ready: true,
            },
            Instant(970),
        );
        r.all_ready(Instant(1000));
        r.all_ready(Instant(3000));
        let t = r.timeline();
        assert_eq!(t.init_start_ms, 400);
        let phases: Vec<_> = t
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.start_ms, p.end_ms))
            .collect();
        assert_eq!(
            phases,
            [
                ("pseudo filesystems", 401, 420),
                ("data partition", 420, 900)
            ]
        );
        let services: Vec<_> = t
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.started_ms, s.ready_ms))
            .collect();
        assert_eq!(
            services,
            [
                ("kv", 905, Some(950)),
                ("app", 906, None),
                ("shell", 970, Some(970))
            ]
        );
        assert_eq!(t.all_ready_ms, Some(1000));
    }

    #[test]
    fn a_phase_under_way_is_shown_unfinished() {
        let mut r = Recorder::new(Instant(0));
        r.phase("mounts", Instant(5));
        let t = r.timeline();
        assert_eq!(t.phases.len(), 1);
        assert_eq!((t.phases[0].start_ms, t.phases[0].end_ms), (5, 5));
    }
}
