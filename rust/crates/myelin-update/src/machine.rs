//! The install state machine, pure: requests and results go in, the state changes and the
//! side effects the daemon must carry out come out.
//!
//! ```text
//!            Install                  apply ok
//!   idle ─────────────► installing ─────────────► installed ──Reboot──► rebooting
//!   failed ◄────────── (apply error, cancel)          │ (auto_reboot feeds Reboot)
//!   installed/failed ──Install──► installing          └──Install──► installing
//! ```
//!
//! One install at a time: `Install` while installing is refused with [`Refused::Busy`], and so
//! are the firmware operations (revert, ...) that would change what the install is switching
//! to. Validating the running firmware is not refused ([`Machine::check_validation`]).

use serde::Serialize;

/// The daemon's state, as the `State` property spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Nothing happening.
    Idle,
    /// An install is streaming.
    Installing,
    /// An install succeeded; the new firmware runs after the next reboot.
    Installed,
    /// The last install failed (see `LastError`).
    Failed,
    /// A reboot was requested.
    Rebooting,
}

impl State {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Installing => "installing",
            State::Installed => "installed",
            State::Failed => "failed",
            State::Rebooting => "rebooting",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client asked for an install.
    Install {
        /// What is installed (path, URL, or `fd`), for messages.
        source: String,
    },
    /// Progress of the running install, 0–100.
    Progress(u8),
    /// The running install ended.
    Finished(Result<(), String>),
    /// A client asked to cancel the running install.
    Cancel,
    /// A client (or `auto_reboot`) asked for a reboot.
    Reboot,
    /// Asking PID 1 for the reboot failed.
    RebootFailed(String),
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start applying the source's `upgrade` task.
    StartApply,
    /// Make the running apply stop (it then finishes with an error).
    AbortApply,
    /// Record the install (the last-install record) before anything else happens.
    WriteRecord,
    /// Ask PID 1 to reboot.
    RequestReboot,
    /// Feed [`Event::Reboot`] next (`auto_reboot`), once the install's end is published.
    Reboot,
    /// Tell clients the install ended (`Completed` signal).
    Completed {
        /// It succeeded.
        success: bool,
        /// What happened.
        message: String,
    },
}

/// A request that cannot be carried out now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An install is running.
    #[error("an install is already running")]
    Busy,
    /// Nothing to cancel.
    #[error("no install is running")]
    NotInstalling,
    /// A reboot is under way.
    #[error("a reboot is under way")]
    Rebooting,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    progress: u8,
    last_error: String,
    source: String,
    cancelling: bool,
    auto_reboot: bool,
    before_reboot: State,
}

impl Machine {
    /// An idle machine.
    pub fn new(auto_reboot: bool) -> Machine {
        Machine {
            state: State::Idle,
            progress: 0,
            last_error: String::new(),
            source: String::new(),
            cancelling: false,
            auto_reboot,
            before_reboot: State::Idle,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Progress of the running or last install, 0–100.
    pub fn progress(&self) -> u8 {
        self.progress
    }

    /// Why the last install (or reboot request) failed; empty after a success.
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    /// The source of the running or last install.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Refuses a firmware operation (validate, revert, ...) that must not run now.
    pub fn check_operation(&self) -> Result<(), Refused> {
        match self.state {
            State::Installing => Err(Refused::Busy),
            State::Rebooting => Err(Refused::Rebooting),
            _ => Ok(()),
        }
    }

    /// Refuses validating the running firmware only while rebooting. An install in progress
    /// does not stop it: it writes the inactive slot and the environment last, under the
    /// environment lock and re-reading it first, so the validation is kept; refusing would let
    /// a stalled download make the trial miss its validation and be rolled back.
    pub fn check_validation(&self) -> Result<(), Refused> {
        match self.state {
            State::Rebooting => Err(Refused::Rebooting),
            _ => Ok(()),
        }
    }

    fn reboot(&mut self) -> Vec<Action> {
        self.before_reboot = self.state;
        self.state = State::Rebooting;
        vec![Action::RequestReboot]
    }

    /// Handles one event.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Action>, Refused> {
        match event {
            Event::Install { source } => {
                self.check_operation()?;
                self.state = State::Installing;
                self.progress = 0;
                self.last_error.clear();
                self.source = source;
                self.cancelling = false;
                Ok(vec![Action::StartApply])
            }
            Event::Progress(p) => {
                if self.state == State::Installing {
                    self.progress = p.min(100).max(self.progress);
                }
                Ok(vec![])
            }
            Event::Finished(result) => {
                if self.state != State::Installing {
                    return Ok(vec![]);
                }
                match result {
                    Ok(()) => {
                        self.state = State::Installed;
                        self.progress = 100;
                        let mut actions = vec![
                            Action::WriteRecord,
                            Action::Completed {
                                success: true,
                                message: format!("installed {}", self.source),
                            },
                        ];
                        if self.auto_reboot {
                            actions.push(Action::Reboot);
                        }
                        Ok(actions)
                    }
                    Err(why) => {
                        self.state = State::Failed;
                        self.last_error = if self.cancelling {
                            format!("cancelled ({why})")
                        } else {
                            why
                        };
                        Ok(vec![Action::Completed {
                            success: false,
                            message: self.last_error.clone(),
                        }])
                    }
                }
            }
            Event::Cancel => {
                if self.state != State::Installing {
                    return Err(Refused::NotInstalling);
                }
                if self.cancelling {
                    return Ok(vec![]);
                }
                self.cancelling = true;
                Ok(vec![Action::AbortApply])
            }
            Event::Reboot => match self.state {
                State::Installing => Err(Refused::Busy),
                State::Rebooting => Ok(vec![Action::RequestReboot]),
                _ => Ok(self.reboot()),
            },
            Event::RebootFailed(why) => {
                if self.state == State::Rebooting {
                    self.state = self.before_reboot;
                    self.last_error = format!("cannot reboot: {why}");
                }
                Ok(vec![])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(m: &mut Machine) -> Vec<Action> {
        m.handle(Event::Install {
            source: "http://host/x.fw".into(),
        })
        .unwrap()
    }

    #[test]
    fn a_successful_install_waits_for_the_reboot() {
        let mut m = Machine::new(false);
        assert_eq!(install(&mut m), vec![Action::StartApply]);
        assert_eq!(m.state(), State::Installing);
        m.handle(Event::Progress(40)).unwrap();
        m.handle(Event::Progress(30)).unwrap();
        assert_eq!(m.progress(), 40, "progress never goes back");
        let actions = m.handle(Event::Finished(Ok(()))).unwrap();
        assert_eq!(actions[0], Action::WriteRecord);
        assert!(matches!(
            actions[1],
            Action::Completed { success: true, .. }
        ));
        assert_eq!(actions.len(), 2);
        assert_eq!((m.state(), m.progress()), (State::Installed, 100));
        assert_eq!(
            m.handle(Event::Reboot).unwrap(),
            vec![Action::RequestReboot]
        );
        assert_eq!(m.state(), State::Rebooting);
    }

    #[test]
    fn auto_reboot_reboots_after_recording() {
        let mut m = Machine::new(true);
        install(&mut m);
        let actions = m.handle(Event::Finished(Ok(()))).unwrap();
        assert_eq!(actions.first(), Some(&Action::WriteRecord));
        assert_eq!(actions.last(), Some(&Action::Reboot));
        // "installed" is a state of its own, published before the reboot is asked for.
        assert_eq!(m.state(), State::Installed);
        assert_eq!(
            m.handle(Event::Reboot).unwrap(),
            vec![Action::RequestReboot]
        );
        assert_eq!(m.state(), State::Rebooting);
        // PID 1 refused: back to installed, with the reason.
        m.handle(Event::RebootFailed("no init".into())).unwrap();
        assert_eq!(m.state(), State::Installed);
        assert!(m.last_error().contains("no init"));
    }

    #[test]
    fn one_install_at_a_time() {
        let mut m = Machine::new(false);
        install(&mut m);
        assert_eq!(
            m.handle(Event::Install {
                source: "other".into()
            }),
            Err(Refused::Busy)
        );
        assert_eq!(m.check_operation(), Err(Refused::Busy));
        // A running (perhaps stalled) install never blocks validating the running firmware.
        assert_eq!(m.check_validation(), Ok(()));
        assert_eq!(m.handle(Event::Reboot), Err(Refused::Busy));
        assert_eq!(m.source(), "http://host/x.fw");
    }

    #[test]
    fn failure_and_cancel_set_last_error() {
        let mut m = Machine::new(false);
        install(&mut m);
        let actions = m
            .handle(Event::Finished(Err("hash mismatch in rootfs.img".into())))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Completed {
                success: false,
                message: "hash mismatch in rootfs.img".into()
            }]
        );
        assert_eq!(m.state(), State::Failed);
        assert_eq!(m.last_error(), "hash mismatch in rootfs.img");
        assert_eq!(m.check_operation(), Ok(()));

        // A new install clears the error; cancel aborts it and says so.
        install(&mut m);
        assert_eq!(m.last_error(), "");
        assert_eq!(m.progress(), 0);
        assert_eq!(m.handle(Event::Cancel).unwrap(), vec![Action::AbortApply]);
        assert_eq!(
            m.handle(Event::Cancel).unwrap(),
            vec![],
            "a second cancel is a no-op"
        );
        m.handle(Event::Finished(Err("reading the source: cancelled".into())))
            .unwrap();
        assert_eq!(m.state(), State::Failed);
        assert!(
            m.last_error().starts_with("cancelled"),
            "{}",
            m.last_error()
        );
        assert_eq!(m.handle(Event::Cancel), Err(Refused::NotInstalling));
    }

    #[test]
    fn stray_results_are_ignored() {
        let mut m = Machine::new(false);
        assert_eq!(m.handle(Event::Finished(Ok(()))).unwrap(), vec![]);
        m.handle(Event::Progress(50)).unwrap();
        assert_eq!((m.state(), m.progress()), (State::Idle, 0));
        assert_eq!(State::Installed.name(), "installed");
    }

    #[test]
    fn nothing_runs_during_a_reboot() {
        let mut m = Machine::new(false);
        m.handle(Event::Reboot).unwrap();
        assert_eq!(m.check_operation(), Err(Refused::Rebooting));
        assert_eq!(
            m.handle(Event::Install { source: "x".into() }),
            Err(Refused::Rebooting)
        );
    }
}
