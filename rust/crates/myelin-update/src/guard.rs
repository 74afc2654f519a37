//! The validation policy: Nerves' StartupGuard, as a pure state machine.
//!
//! A firmware booted for its trial must prove itself before it becomes the committed one. The
//! guard watches a trial from the moment the daemon starts (at boot, under myelin-init):
//!
//! * not a trial: nothing to do;
//! * with `auto_validate`, it asks PID 1 at every tick whether every critical service is ready,
//!   and once they have stayed ready for `stable_period` with no restart anywhere in the tree
//!   (see [`crate::stability`]) it asks for the `validate` task;
//! * without `auto_validate`, the application validates (D-Bus `Validate`);
//! * if the trial is still not validated when `timeout` has passed, it asks PID 1 for a reboot:
//!   the bootloader then returns to the previous firmware. A zero timeout never reboots.
//!
//! Events go in with the current time (any monotonic clock), actions come out; the daemon
//! carries the actions out and reports their results as events.

use std::time::Duration;

use crate::stability::{Readiness, Stability, Verdict};

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Validate as soon as every critical service is ready.
    pub auto_validate: bool,
    /// Reboot a trial still unvalidated after this long; zero: never.
    pub timeout: Duration,
    /// How long every critical service must stay ready, with no restart in the tree, before
    /// the trial is validated; zero: the first ready answer.
    pub stable_period: Duration,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The daemon started and read the boot state.
    Started {
        /// The running firmware is on trial.
        trial: bool,
    },
    /// A tick of the readiness poll interval.
    Tick,
    /// PID 1's answer: how ready the critical services are, or why it could not answer.
    Readiness(Result<Readiness, String>),
    /// The `validate` task ran.
    Validated(Result<(), String>),
    /// The trial ended some other way: the application validated, reverted or prevented the
    /// revert through the daemon.
    TrialEnded,
    /// Asking PID 1 for the reboot failed.
    RebootFailed(String),
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask PID 1 whether every critical service is ready.
    AskReadiness,
    /// Run the ops `validate` task.
    RunValidate,
    /// Ask PID 1 to reboot.
    RequestReboot {
        /// Why, for the log.
        reason: String,
    },
    /// Tell the log.
    Log(String),
}

/// Where the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to guard (not a trial, or the trial ended).
    Idle,
    /// Waiting for readiness (or for the application).
    Waiting,
    /// The `validate` task is running.
    Validating,
    /// The trial timed out; a reboot is requested.
    Rebooting,
}

/// The guard.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Policy,
    phase: Phase,
    started: Duration,
    asking: bool,
    last_problem: Option<String>,
    /// A reboot request failed; the next tick asks again.
    retry_reboot: bool,
    /// The streak of readiness seen so far.
    stability: Stability,
    /// "Waiting for a stable period" was logged for this trial.
    settling_said: bool,
}

impl Guard {
    /// A guard that has not seen [`Event::Started`] yet.
    pub fn new(policy: Policy) -> Guard {
        Guard {
            policy,
            phase: Phase::Idle,
            started: Duration::ZERO,
            asking: false,
            last_problem: None,
            retry_reboot: false,
            stability: Stability::new(policy.stable_period),
            settling_said: false,
        }
    }

    /// Where the guard is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Time left before the trial is rebooted, while waiting.
    pub fn remaining(&self, now: Duration) -> Option<Duration> {
        match self.phase {
            Phase::Waiting | Phase::Validating if !self.policy.timeout.is_zero() => {
                Some((self.started + self.policy.timeout).saturating_sub(now))
            }
            _ => None,
        }
    }

    fn timed_out(&self, now: Duration) -> bool {
        !self.policy.timeout.is_zero() && now >= self.started + self.policy.timeout
    }

    fn reboot(&mut self) -> Vec<Action> {
        self.phase = Phase::Rebooting;
        let reason = format!(
            "the trial firmware was not validated within {}: rebooting, the bootloader returns to the previous firmware",
            humantime::format_duration(self.policy.timeout)
        );
        vec![Action::RequestReboot { reason }]
    }

    /// Handles one event at time `now`.
    pub fn handle(&mut self, now: Duration, event: Event) -> Vec<Action> {
        match (self.phase, event) {
            (_, Event::Started { trial: false }) => {
                self.phase = Phase::Idle;
                vec![]
            }
            (_, Event::Started { trial: true }) => {
                self.phase = Phase::Waiting;
                self.started = now;
                self.asking = false;
                self.stability.reset();
                self.settling_said = false;
                let how = if self.policy.auto_validate {
                    "validating it once every critical service is ready"
                } else {
                    "waiting for the application to validate it"
                };
                let limit = if self.policy.timeout.is_zero() {
                    String::new()
                } else {
                    format!(
                        "; rebooting into the previous firmware if that has not happened within {}",
                        humantime::format_duration(self.policy.timeout)
                    )
                };
                vec![Action::Log(format!(
                    "the running firmware is on trial: {how}{limit}"
                ))]
            }
            (Phase::Waiting, Event::Tick) => {
                if self.timed_out(now) {
                    return self.reboot();
                }
                if self.policy.auto_validate && !self.asking {
                    self.asking = true;
                    return vec![Action::AskReadiness];
                }
                vec![]
            }
            (Phase::Waiting, Event::Readiness(answer)) => {
                self.asking = false;
                if answer.is_ok() {
                    self.last_problem = None;
                }
                match answer {
                    Ok(r) if self.policy.auto_validate => match self.stability.observe(now, r) {
                        Verdict::Stable => {
                            self.phase = Phase::Validating;
                            let line = format!(
                                "every critical service has been ready for {} with no restart: validating the firmware",
                                humantime::format_duration(self.policy.stable_period)
                            );
                            vec![Action::Log(line), Action::RunValidate]
                        }
                        Verdict::Settling { .. } if !self.settling_said => {
                            self.settling_said = true;
                            vec![Action::Log(format!(
                                "every critical service is ready: validating once they stay ready for {} with no restart",
                                humantime::format_duration(self.policy.stable_period)
                            ))]
                        }
                        _ => vec![],
                    },
                    Ok(_) => vec![],
                    // Said once per distinct problem, not at every tick.
                    Err(why) if self.last_problem.as_ref() == Some(&why) => vec![],
                    Err(why) => {
                        let line = format!("cannot ask myelin-init about readiness: {why}");
                        self.last_problem = Some(why);
                        vec![Action::Log(line)]
                    }
                }
            }
            (Phase::Validating, Event::Validated(Ok(()))) => {
                self.phase = Phase::Idle;
                vec![Action::Log("the firmware is validated".into())]
            }
            (Phase::Validating, Event::Validated(Err(why))) => {
                // Try again at the next tick, unless time is up.
                self.phase = Phase::Waiting;
                let mut actions = vec![Action::Log(format!(
                    "validating the firmware failed: {why}"
                ))];
                if self.timed_out(now) {
                    actions.extend(self.reboot());
                }
                actions
            }
            (Phase::Waiting | Phase::Validating, Event::TrialEnded) => {
                self.phase = Phase::Idle;
                vec![]
            }
            (Phase::Rebooting, Event::RebootFailed(why)) => {
                self.retry_reboot = true;
                vec![Action::Log(format!(
                    "asking myelin-init for a reboot failed: {why}; retrying"
                ))]
            }
            // PID 1 accepted the request: it stops this daemon soon. Ask again only after a
            // failure.
            (Phase::Rebooting, Event::Tick) if self.retry_reboot => {
                self.retry_reboot = false;
                vec![Action::RequestReboot {
                    reason: "retrying the reboot of the unvalidated trial firmware".into(),
                }]
            }
            // Late answers and events that do not apply to the current phase.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn guard(auto_validate: bool, timeout: Duration) -> Guard {
        Guard::new(Policy {
            auto_validate,
            timeout,
            stable_period: Duration::ZERO,
        })
    }

    fn is_log(a: &Action) -> bool {
        matches!(a, Action::Log(_))
    }

    /// The actions without the log lines.
    fn act(g: &mut Guard, now: Duration, e: Event) -> Vec<Action> {
        g.handle(now, e)
            .into_iter()
            .filter(|a| !is_log(a))
            .collect()
    }

    #[test]
    fn a_flapping_critical_service_is_never_validated() {
        let mut g = Guard::new(Policy {
            auto_validate: true,
            timeout: Duration::ZERO,
            stable_period: s(30),
        });
        g.handle(s(0), Event::Started { trial: true });
        // Ready for 5 s out of every 6.5 s, for an hour, polled every 500 ms.
        for tick in 1..7200u64 {
            let ms = tick * 500;
            let now = Duration::from_millis(ms);
            assert_eq!(act(&mut g, now, Event::Tick), vec![Action::AskReadiness]);
            let cycle = ms % 6500;
            let r = Readiness {
                critical_ready: cycle >= 1500,
                ready_for: (cycle >= 1500).then(|| Duration::from_millis(cycle - 1500)),
                restarts_total: ms / 6500,
            };
            let out = act(&mut g, now, Event::Readiness(Ok(r)));
            assert!(out.is_empty(), "at {ms} ms: {out:?}");
        }
        assert_eq!(g.phase(), Phase::Waiting);
        // Then it stops flapping: validated once it has been ready for 30 s.
        let base = s(3600);
        let steady = |for_s: u64| Readiness {
            critical_ready: true,
            ready_for: Some(s(for_s)),
            restarts_total: 600,
        };
        act(&mut g, base, Event::Tick);
        assert_eq!(act(&mut g, base, Event::Readiness(Ok(steady(0)))), vec![]);
        act(&mut g, base + s(29), Event::Tick);
        assert_eq!(
            act(&mut g, base + s(29), Event::Readiness(Ok(steady(29)))),
            vec![]
        );
        act(&mut g, base + s(30), Event::Tick);
        assert_eq!(
            act(&mut g, base + s(30), Event::Readiness(Ok(steady(30)))),
            vec![Action::RunValidate]
        );
    }

    #[test]
    fn not_a_trial_does_nothing() {
        let mut g = guard(true, s(60));
        assert!(g.handle(s(0), Event::Started { trial: false }).is_empty());
        for t in [1, 59, 60, 1000] {
            assert!(g.handle(s(t), Event::Tick).is_empty());
        }
        assert!(g.handle(s(2), Event::Readiness(Ok(true.into()))).is_empty());
        assert_eq!(g.phase(), Phase::Idle);
    }

    #[test]
    fn trial_and_ready_validates() {
        let mut g = guard(true, s(60));
        let start = g.handle(s(5), Event::Started { trial: true });
        assert!(start.iter().all(is_log) && !start.is_empty());
        assert_eq!(act(&mut g, s(6), Event::Tick), vec![Action::AskReadiness]);
        // One question at a time: no new question while the answer is outstanding.
        assert_eq!(act(&mut g, s(7), Event::Tick), vec![]);
        assert_eq!(
            act(&mut g, s(7), Event::Readiness(Ok(false.into()))),
            vec![]
        );
        assert_eq!(act(&mut g, s(8), Event::Tick), vec![Action::AskReadiness]);
        assert_eq!(
            act(&mut g, s(8), Event::Readiness(Ok(true.into()))),
            vec![Action::RunValidate]
        );
        assert_eq!(g.phase(), Phase::Validating);
        // Ticks while validating do nothing, even past the deadline.
        assert_eq!(act(&mut g, s(100), Event::Tick), vec![]);
        assert_eq!(act(&mut g, s(9), Event::Validated(Ok(()))), vec![]);
        assert_eq!(g.phase(), Phase::Idle);
        assert_eq!(act(&mut g, s(1000), Event::Tick), vec![]);
    }

    #[test]
    fn trial_and_timeout_reboots() {
        let mut g = guard(true, s(60));
        g.handle(s(10), Event::Started { trial: true });
        assert_eq!(g.remaining(s(40)), Some(s(30)));
        assert_eq!(act(&mut g, s(11), Event::Tick), vec![Action::AskReadiness]);
        assert_eq!(
            act(&mut g, s(12), Event::Readiness(Ok(false.into()))),
            vec![]
        );
        assert_eq!(act(&mut g, s(69), Event::Tick), vec![Action::AskReadiness]);
        assert_eq!(
            act(&mut g, s(69), Event::Readiness(Err("no socket".into()))),
            vec![]
        );
        let out = act(&mut g, s(70), Event::Tick);
        assert!(
            matches!(out.as_slice(), [Action::RequestReboot { .. }]),
            "{out:?}"
        );
        assert_eq!(g.phase(), Phase::Rebooting);
        // A late readiness answer changes nothing; an accepted reboot is not asked again; a
        // failed one is retried at the next tick.
        assert_eq!(
            act(&mut g, s(71), Event::Readiness(Ok(true.into()))),
            vec![]
        );
        assert_eq!(act(&mut g, s(71), Event::Tick), vec![]);
        assert_eq!(
            act(&mut g, s(71), Event::RebootFailed("refused".into())),
            vec![]
        );
        assert!(matches!(
            act(&mut g, s(72), Event::Tick).as_slice(),
            [Action::RequestReboot { .. }]
        ));
    }

    #[test]
    fn a_failed_validation_is_retried_until_the_deadline() {
        let mut g = guard(true, s(60));
        g.handle(s(0), Event::Started { trial: true });
        act(&mut g, s(1), Event::Tick);
        assert_eq!(
            act(&mut g, s(1), Event::Readiness(Ok(true.into()))),
            vec![Action::RunValidate]
        );
        assert_eq!(
            act(&mut g, s(2), Event::Validated(Err("env".into()))),
            vec![]
        );
        assert_eq!(g.phase(), Phase::Waiting);
        assert_eq!(act(&mut g, s(3), Event::Tick), vec![Action::AskReadiness]);
        assert_eq!(
            act(&mut g, s(3), Event::Readiness(Ok(true.into()))),
            vec![Action::RunValidate]
        );
        let out = act(&mut g, s(61), Event::Validated(Err("env".into())));
        assert!(
            matches!(out.as_slice(), [Action::RequestReboot { .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn without_auto_validate_only_the_application_validates() {
        let mut g = guard(false, s(60));
        g.handle(s(0), Event::Started { trial: true });
        // Never asks PID 1, never validates on its own.
        assert_eq!(act(&mut g, s(1), Event::Tick), vec![]);
        assert_eq!(act(&mut g, s(2), Event::Readiness(Ok(true.into()))), vec![]);
        // The application validated through the daemon: the trial is over, no reboot.
        assert_eq!(act(&mut g, s(30), Event::TrialEnded), vec![]);
        assert_eq!(act(&mut g, s(61), Event::Tick), vec![]);
        // Had it not, the deadline reboots.
        let mut g = guard(false, s(60));
        g.handle(s(0), Event::Started { trial: true });
        assert!(matches!(
            act(&mut g, s(60), Event::Tick).as_slice(),
            [Action::RequestReboot { .. }]
        ));
    }

    #[test]
    fn an_unreachable_init_is_reported_once() {
        let mut g = guard(true, s(60));
        g.handle(s(0), Event::Started { trial: true });
        let mut logs = 0;
        for t in 1..10 {
            g.handle(s(t), Event::Tick);
            logs += g
                .handle(s(t), Event::Readiness(Err("no socket".into())))
                .iter()
                .filter(|a| is_log(a))
                .count();
        }
        assert_eq!(logs, 1);
    }

    #[test]
    fn zero_timeout_never_reboots() {
        let mut g = guard(true, Duration::ZERO);
        g.handle(s(0), Event::Started { trial: true });
        assert_eq!(g.remaining(s(1)), None);
        assert_eq!(
            act(&mut g, s(100_000), Event::Tick),
            vec![Action::AskReadiness]
        );
        assert_eq!(
            act(&mut g, s(100_000), Event::Readiness(Ok(false.into()))),
            vec![]
        );
        assert_eq!(g.phase(), Phase::Waiting);
    }
}
