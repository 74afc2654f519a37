//! Myelin-net: the network manager daemon (`org.myelin.Network1`).
//!
//! The logic is pure and separate from the side effects:
//! * [`config`]: the configuration format (`/etc/myelin/net.toml`, JSON at run time) and its
//!   validation; [`persist`]: runtime configs under `/data`.
//! * [`tech`]: each technology as a function from config to a [`tech::Plan`].
//! * [`check`]: the connectivity state machine and probe; [`route`]: the routing calculator;
//!   [`resolv`]: resolv.conf.
//! * [`wpa`]: wpa_supplicant's control socket; [`dhcp`]: the udhcpc hook and leases.
//!
//! The side effects sit behind small edges: [`netlink`] (rtnetlink), [`process`] (supervised
//! programs), [`mdns`]. [`manager`] is the event loop that combines them; [`service`] publishes
//! it on D-Bus and [`client`] is the client side (myelinctl, `myelin-net status`). Those, and
//! the I/O halves of [`check`], [`dhcp`] and [`wpa`], need the default feature `daemon`.
//!
//! Diagnostics are `log` records (the daemon installs `myelin_api::logger`); errors are typed
//! and keep their causes, which [`report::report`] puts on one line.

pub mod check;
#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "daemon")]
pub use myelin_api::net::client;
pub mod config;
pub mod dhcp;
#[cfg(feature = "daemon")]
pub use myelin_api::net::key_input;
#[cfg(feature = "daemon")]
pub mod manager;
#[cfg(feature = "daemon")]
pub mod mdns;
#[cfg(feature = "daemon")]
pub mod netlink;
pub mod persist;
#[cfg(feature = "daemon")]
pub mod process;
pub mod report;
pub mod resolv;
pub mod route;
#[cfg(feature = "daemon")]
pub mod service;
pub mod tech;
pub mod wpa;
