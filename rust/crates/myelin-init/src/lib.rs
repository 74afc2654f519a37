//! Myelin-init: PID 1 with OTP-style supervision, a hardware watchdog and a clean shutdown.
//!
//! The kernel starts `/sbin/init` (this binary); it mounts what a device needs, supervises the
//! services of `/etc/myelin/init.toml` the way OTP supervises processes, pets the hardware
//! watchdog while the critical ones live, and on `reboot`/`poweroff`/`halt` (busybox's signals,
//! or `myelinctl`) stops everything in reverse order before calling `reboot(2)`.
//!
//! ```text
//! myelin-init [--config PATH] [--kmsg PATH]   as PID 1 (refuses otherwise)
//! myelin-init --check [--config PATH]         validate a configuration, exit 0/1
//! ```
//!
//! The configuration path can also come from the kernel command line as `myelin_config=PATH`
//! (the kernel passes it to init in the environment).
//!
//! The crate is a library with a thin binary on top. The logic is pure and tested against
//! golden traces; the effects sit behind small traits at the edge:
//!
//! * [`config`]: the TOML configuration (the format's specification is its doc comment).
//! * [`supervisor`]: the supervision tree as a state machine (OTP strategies, restart types,
//!   intensity, ordered start and stop, readiness, liveness); effects through
//!   [`supervisor::Effects`].
//! * [`boot`] and [`shutdown`]: PID 1's boot duties and final sequence, through [`sys::Sys`]
//!   ([`sys::LinuxSys`] on the device, a recording fake in the tests); [`rootdisk`],
//!   [`serial`], [`hostname`] and [`seed`] are parts of boot.
//! * [`watchdog`]: the hardware watchdog ([`watchdog::Watchdog`]) and when to pet it.
//! * [`log`]: service output capture (bounded ring, rate-limited kmsg, non-blocking console).
//! * [`notify`]: the sd_notify protocol; [`control`]: the `myelinctl` protocol and client.
//! * [`runtime`]: the single-threaded epoll loop that ties them together in PID 1, and safe
//!   mode for configurations that cannot be used.
//! * [`clock`]: monotonic time as the state machines see it.
//!
//! Tests: unit tests (`cargo test -p myelin-init --lib`) need nothing special; `tests/pid1` runs
//! the real binary as PID 1 in user+PID+mount namespaces (`unshare`), `tests/data_partition`
//! formats a real loop device (root). `scripts/bench init` measures restart latency, memory and
//! binary size.

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
