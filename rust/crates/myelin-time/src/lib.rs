//! Myelin-time: the daemon that owns the clock (`org.myelin.Time1`), Myelin's nerves_time.
//!
//! * NTP through busybox ntpd, run as a child with the servers of [`config`] and those DHCP
//!   leases offer (myelin-net's `ntpsrv` option); ntpd's `-S` hook ([`ntpd`]) reports each
//!   step, stratum change, periodic check and loss back to the daemon. Where busybox has no
//!   ntpd applet, a built-in SNTP client ([`sntp`]) does the same job more simply.
//! * A `synchronized` state, the last sync and the servers on D-Bus (the contract is
//!   `myelin_api::time`), shown by `myelinctl status`.
//! * The time file (whose mtime is myelin-init's clock floor at the next boot) saved after
//!   every sync and periodically, the RTC read at start and written after each sync where the
//!   board has one, and the clock never set below the build time.
//!
//! The rules are in [`state`] (pure, tested with numbers); the side effects are behind the
//! traits of [`sys`]; [`daemon`] wires them to the bus, ntpd and the timers.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod ntpd;
pub mod servers;
pub mod sntp;
pub mod state;
pub mod sys;

/// Build time (seconds since the epoch): a floor even without the build-time file.
pub use myelin_api::floor::BUILD_TIME;
