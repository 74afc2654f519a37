//! Myelin-init: PID 1 with OTP-style supervision, a hardware watchdog and a clean shutdown.
//!
//! The crate is a library with a thin binary on top. The logic is pure and tested against
//! golden traces; the effects sit behind small traits at the edge:
//!
//! * [`config`]: the TOML configuration (format specification in its doc comment).
//! * [`supervisor`]: the supervision tree as a state machine (OTP strategies, restart types,
//!   intensity, ordered start and stop, readiness, liveness); effects through
//!   [`supervisor::Effects`].
//! * [`boot`] and [`shutdown`]: PID 1's boot duties and final sequence, through [`sys::Sys`].
//! * [`watchdog`]: the hardware watchdog and when to pet it.
//! * [`log`]: service output capture (ring buffer, kmsg).
//! * [`notify`]: the sd_notify protocol; [`control`]: the `myelinctl` protocol.
//! * [`runtime`]: the event loop that ties them together in PID 1.

pub mod boot;
pub mod clock;
pub mod config;
pub mod control;
pub mod hostname;
pub mod log;
pub mod notify;
pub mod rootdisk;
pub mod runtime;
pub mod seed;
pub mod serial;
pub mod shutdown;
pub mod supervisor;
pub mod sys;
pub mod watchdog;

/// Version of this myelin-init.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build time (seconds since the epoch), the clock floor.
pub const BUILD_TIME: i64 = {
    let s = env!("MYELIN_BUILD_TIME").as_bytes();
    let mut i = 0;
    let mut v: i64 = 0;
    while i < s.len() {
        v = v * 10 + (s[i] - b'0') as i64;
        i += 1;
    }
    v
};
