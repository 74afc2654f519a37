//! Myelin-init: PID 1 with OTP-style supervision, a hardware watchdog and a clean shutdown.
//!
//! The kernel starts `/sbin/init` (this binary); it mounts what a device needs, supervises the
//! services of `/etc/myelin/init.toml` (and its drop-ins, `init.d/*.toml`) the way OTP
//! supervises processes, pets the hardware watchdog while the critical ones live, and on
//! `reboot`/`poweroff`/`halt` (busybox's signals, or `myelinctl`) stops everything in reverse
//! order before calling `reboot(2)`.
//!
//! ```text
//! myelin-init [--config PATH] [--kmsg PATH]   as PID 1 (refuses otherwise)
//! myelin-init --check [FILE] [--root DIR]     validate a configuration, exit 0/1
//! ```
//!
//! The crate is a library with a thin binary on top. The logic is pure and tested against
//! golden traces; the effects sit behind small traits at the edge. The modules, from the
//! leaves up (each uses only those above it):
//!
//! * [`level`], [`clock`], [`mount_options`], [`mountinfo`], [`hostname`], [`notify`]: small
//!   vocabularies (syslog priorities, monotonic time, mount(8) options, the mount table,
//!   hostname patterns, the sd_notify protocol).
//! * [`control`]: the `myelinctl` protocol (messages and the blocking client).
//! * [`config`]: the TOML configuration (the format's specification is its doc comment).
//! * [`log`]: service output capture (bounded ring, rate-limited kmsg, non-blocking console).
//! * [`watchdog`]: the hardware watchdog ([`watchdog::Watchdog`]) and when to pet it.
//! * [`sys`]: PID 1's side effects at boot and shutdown ([`sys::LinuxSys`] on the device, a
//!   recording fake in the tests); [`terminal`], [`signals`], [`fw_env`], [`ready_path`] and
//!   [`tracking`] (which processes belong to a service: cgroup v2 or process groups) are edges
//!   of the same kind.
//! * [`supervisor`]: the supervision tree as a state machine (OTP strategies, restart types,
//!   intensity on a clock that backoff does not advance, ordered start and stop, readiness,
//!   liveness); effects through [`supervisor::Effects`].
//! * [`boot`] and [`shutdown`]: PID 1's boot duties and final sequence, through [`sys::Sys`];
//!   [`rootdisk`], [`serial_number`], [`hostname`] and [`rng_seed`] are parts of boot, and
//!   [`boot::data`] is the data partition.
//! * [`runtime`]: PID 1 as a program: arguments, boot, the single-threaded epoll loop that ties
//!   everything together, the control socket's server side, and safe mode for configurations
//!   that cannot be used.
//!
//! Tests: unit tests (`cargo test -p myelin-init --lib`) need nothing special; `tests/pid1` runs
//! the real binary as PID 1 in user+PID+mount+cgroup namespaces (`unshare`), with a private
//! /run; `tests/data_partition` uses real loop devices (root). `scripts/bench init` measures
//! restart latency, memory and binary size.

pub mod boot;
pub mod boot_timeline;
pub mod clock;
pub mod config;
pub use myelin_api::init as control;
pub mod fw_env;
pub mod hostname;
pub use myelin_api::level;
pub mod log;
pub mod mount_options;
pub mod mountinfo;
pub mod notify;
pub mod ready_path;
pub mod rng_seed;
pub mod rootdisk;
pub mod runtime;
pub mod serial_number;
pub mod shutdown;
pub mod signals;
pub mod supervisor;
pub mod sys;
pub mod terminal;
pub mod tracking;
pub mod watchdog;

/// Version of this myelin-init.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build time (seconds since the epoch), the clock floor.
pub use myelin_api::floor::BUILD_TIME;
