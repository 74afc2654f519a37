//! The U-Boot environment: its on-disk format, `fw_env.config`, and safe reads and writes on
//! block devices and image files.
//!
//! Shared by every Myelin program that touches the environment: myelin-kv (the key/value store),
//! myelin-fw (`uboot_setenv` and friends in fwup tasks), myelin-init (serial number) and
//! myelin-update (slot metadata).

pub mod format;

pub use format::{Active, DecodeError, EncodeError, Layout, NameError, Vars};
