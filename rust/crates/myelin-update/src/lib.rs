//! Myelin-update: the A/B firmware updater daemon (`org.myelin.Update1`).
//!
//! It installs fwup-compatible `.fw` files into the slot that is not running (from a path, a
//! client's stdin, or HTTP(S), streamed), validates a trial firmware once every critical
//! service is ready (or asks for a reboot so the bootloader returns to the previous one), and
//! runs the board's ops tasks (validate, revert, prevent-revert, factory-reset, status).
//!
//! Pure core: [`machine`] (installs) and [`guard`] (validation policy) take events and return
//! actions; [`record::assess`] tells what became of the last install. Side effects sit behind
//! traits: [`fw::Firmware`] (myelin-fw, used only in [`fw`]), [`system::EnvSource`] (the U-Boot
//! environment), [`system::Init`] (PID 1's readiness and reboot).
//!
//! * [`config`]: the configuration file, `/etc/myelin/update.toml`.
//! * [`slot`]: slots, the `status` verdict, per-slot metadata.
//! * [`source`]: paths, file descriptors and HTTP(S) downloads as blocking readers.
//! * [`service`]: the D-Bus service and the daemon.
//! * [`client`]: the D-Bus client API (the CLI and `myelinctl fw` use it).
//! * [`cli`]: the command line.
//!
//! Feature `daemon` (default) builds the daemon, the command line and the modules with side
//! effects (`fw`, `source`, `system`, `service`, `cli`). Without it (`default-features = false`)
//! the library is [`client`] and the pure core, with no HTTP, TLS, myelin-fw or myelin-init
//! inside: what `myelinctl fw ...` needs.

#[cfg(feature = "daemon")]
pub mod cli;
pub use myelin_api::update as client;
pub mod coalesce;
pub mod config;
#[cfg(feature = "daemon")]
pub mod fw;
pub mod guard;
pub mod machine;
pub mod record;
pub mod rollback;
#[cfg(feature = "daemon")]
pub mod service;
pub mod slot;
#[cfg(feature = "daemon")]
pub mod source;
pub mod stability;
#[cfg(feature = "daemon")]
pub mod system;
