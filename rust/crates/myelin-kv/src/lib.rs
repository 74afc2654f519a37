//! Myelin-kv: the U-Boot environment as a power-fail-safe key/value store.
//!
//! * [`batch`]: changes applied as one write, and diffs between states.
//! * [`store`]: the store on a [`myelin_ubootenv::Env`], and a tracker that notices writes by
//!   other programs.
//! * [`cli`]: the `myelin-kv` / `fw_printenv` / `fw_setenv` command line.
//! * [`nerves`]: converting a migrated Nerves device's environment on its first boot.
//! * `service` and `client` (feature `dbus`): the `org.myelin.KV1` D-Bus service and a proxy.

pub mod batch;
pub mod cli;
#[cfg(feature = "dbus")]
pub use myelin_api::kv as client;
pub mod nerves;
#[cfg(feature = "dbus")]
pub mod service;
pub mod store;

pub use batch::{Batch, Change, Diff};
pub use store::{KvError, Store, Tracker, Update};
