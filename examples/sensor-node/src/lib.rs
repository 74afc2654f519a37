//! sensor-node: Myelin's example product. A TMP102 read over I2C every interval, a status LED,
//! readings published over MQTT with an offline buffer, and a local page. See README.md.
//!
//! The pure parts (configuration, checking readings, the buffer, the page) are in modules of
//! their own with unit tests; the parts that talk to hardware and the network are thin.

pub mod app;
pub mod config;
pub mod mqtt;
pub mod outbox;
pub mod page;
pub mod reading;
pub mod sensor;
pub mod web;
