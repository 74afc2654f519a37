//! Myelin-uevent: hotplug for Myelin devices. It loads the kernel modules devices need (at boot
//! and when they are plugged in) and announces devices on D-Bus (`org.myelin.Device1`), so
//! that an application can wait for "a USB serial adapter appeared".
//!
//! It runs as its own service under myelin-init, which stays small and synchronous. The logic
//! is pure and separate from the side effects:
//! * [`event`]: the kernel's uevent format (netlink messages, sysfs `uevent` files);
//! * [`coldplug`]: the devices already present, read from `/sys/devices`;
//! * [`plan`]: which aliases to hand to modprobe, batched and asked once each.
//!
//! The side effects sit behind small edges, with the `daemon` feature (default): [`netlink`]
//! (the kernel's uevent socket, an [`service::EventSource`]), [`modprobe`] (the
//! [`modprobe::Modprobe`] call), and [`service`], the loop that joins them and publishes the
//! device table and its signals on the bus.

pub mod coldplug;
pub mod event;
pub mod plan;

#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "daemon")]
pub mod modprobe;
#[cfg(feature = "daemon")]
pub mod netlink;
#[cfg(feature = "daemon")]
pub mod service;

pub use event::{Action, ParseError, Uevent};
