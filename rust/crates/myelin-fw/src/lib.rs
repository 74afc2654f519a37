//! myelin-fw: an fwup-compatible firmware packager and applier.
//!
//! A firmware update is a `.fw` file: a ZIP archive holding a signed `meta.conf` (the compiled
//! fwup.conf) and the resources it writes. This crate creates such archives from fwup.conf
//! files ([`create()`]), checks and describes them ([`verify()`], [`metadata()`], [`list()`]),
//! and applies one of their tasks to a block device or image file ([`apply()`]), streaming,
//! with bounded memory, checking every hash and writing the slot switch last.
//!
//! Modules, one per concept (each module's documentation specifies what it implements):
//! [`config`] (the language), [`meta`] (meta.conf), [`archive`] (the ZIP container),
//! [`sign`] (keys, signatures, UUID), [`create`](mod@create), [`apply`](mod@apply),
//! [`delta`] (delta archives),
//! [`funcs`] (task functions), [`target`] and [`output`] (where data goes), [`mbr`], [`gpt`],
//! [`fat`], [`uboot`], [`vcdiff`] (delta resources), [`progress`] (including `--framing`),
//! [`system`] (the running system's side effects) and [`burn`] (finding an SD card on a host).

pub mod apply;
pub mod archive;
pub mod burn;
pub mod config;
pub mod create;
pub mod delta;
pub mod envop;
pub mod error;
pub mod fat;
pub mod funcs;
pub mod gpt;
pub mod hash;
pub mod mbr;
pub mod meta;
pub mod output;
pub mod progress;
pub mod sign;
pub mod system;
pub mod target;
pub mod uboot;
pub mod vcdiff;

pub use apply::{
    Applied, ApplyOptions, Opened, Verified, apply, apply_opened, list, metadata, open,
    open_seekable, verify,
};
pub use config::{Config, Vars};
pub use create::{CreateOptions, Created, create, create_file};
pub use error::Error;
pub use progress::Event;
pub use sign::{PrivateKey, PublicKey};
pub use system::{Fixed, Host, System};
pub use target::{FileTarget, MemTarget, MinimizeWrites, Target};
