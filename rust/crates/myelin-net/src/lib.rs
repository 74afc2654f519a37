//! Myelin-net: the network manager daemon (`org.myelin.Network1`).
//!
//! The logic is pure and separate from the side effects:
//! * [`config`]: the configuration format (`/etc/myelin/net.toml`, JSON at run time) and its
//!   validation; [`persist`]: runtime configs under `/data`.
//! * [`tech`]: each technology as a function from config to a [`tech::Plan`].
//! * [`check`]: the connectivity state machine and probe; [`route`]: the routing calculator;
//!   [`resolv`]: resolv.conf.
//! * [`wpa`]: wpa_supplicant's control socket.
pub mod check;
pub mod config;
pub mod persist;
pub mod resolv;
pub mod route;
pub mod tech;
pub mod wpa;
