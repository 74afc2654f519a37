//! myelin-hub: the NervesHub device client.
//!
//! A Myelin device speaks NervesHub's device protocol as NervesHubLink 2.x does, so a Nerves
//! fleet and a Myelin fleet share one server: a WebSocket to `/socket/websocket` (device
//! certificate, mTLS) or `/device-socket/websocket` (shared secret, signed `x-nh-*` headers)
//! carrying Phoenix Channels v2 frames; the `device` topic joined with the running firmware's
//! metadata; heartbeats; updates installed through `org.myelin.Update1` with progress reported;
//! the remote console (a shell in a PTY, [`console`]) and health reports ([`health`]).
//!
//! The protocol is pure and tested on its own ([`frame`], [`channel`], [`message`], [`auth`],
//! [`meta`], [`backoff`], [`policy`]); [`client`] runs it over a socket, with the device's side
//! effects behind [`client::Device`].

pub mod auth;
pub mod backoff;
pub mod bus;
pub mod channel;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod frame;
pub mod health;
pub mod message;
pub mod meta;
pub mod policy;
pub mod tls;
