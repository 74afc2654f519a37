//! Myelin-api: every contract between Myelin's processes, and nothing else.
//!
//! Daemons, `myelinctl`, the `myelin` app crate and the fleet client all speak to each other
//! through the definitions here, so a name, an error or a field is written once.
//!
//! * [`init`]: myelin-init's control protocol (status, readiness, logs, start/stop, reboot) and
//!   its blocking client; [`level`] the log levels it stores and filters by.
//! * [`kv`], [`net`], [`time`], [`update`], [`device`]: for each D-Bus service, its bus name, object path and
//!   interface, the zbus client proxies, and the types and calls its clients share.
//! * [`hub`]: myelin-hub's status file, which `myelinctl hub status` reads.
//! * [`floor`]: the clock floor (the build time) that PID 1 and myelin-time both keep.
//! * [`hook`]: how the script a daemon's busybox child runs (udhcpc's, ntpd's) reports to it.
//! * [`service`]: a daemon's runtime, bus connection, readiness and SIGTERM, written once.
//! * [`logger`]: leveled log records on standard error with the sd-daemon priority prefix
//!   (`<3>` … `<7>`) that myelin-init's log ring parses and `myelinctl log --level` filters.
#[cfg(feature = "dbus")]
pub mod device;
pub mod floor;
pub mod hook;
pub mod hub;
pub mod init;
#[cfg(feature = "dbus")]
pub mod kv;
pub mod level;
pub mod logger;
#[cfg(feature = "dbus")]
pub mod net;
#[cfg(feature = "dbus")]
pub mod service;
#[cfg(feature = "dbus")]
pub mod time;
#[cfg(feature = "dbus")]
pub mod update;
