//! Errors of the library's operations. Each keeps its cause (`source()`), so a caller such as
//! myelin-update can report the whole chain.

use crate::archive::ArchiveError;
use crate::config::ConfigError;
use crate::fat::FatError;
use crate::gpt::GptError;
use crate::mbr::MbrError;
use crate::sign::KeyError;
use crate::uboot::{EnvError, LocationError};
use crate::vcdiff::VcdiffError;
use std::io;

/// Why creating, reading or applying an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (fwup.conf or meta.conf) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ZIP container is truncated or corrupt.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A public key was given but the archive is not signed.
    #[error("Expecting signed firmware archive.")]
    Unsigned,
    /// The signature matches none of the public keys.
    #[error("Firmware archive's meta.conf fails digital signature verification.")]
    BadSignature,
    /// A key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No task matches the requested name whose requirements are met.
    #[error(
        "Couldn't find applicable task '{0}'. If task is available, the task's requirements may not be met."
    )]
    NoTask(String),
    /// A resource is missing, has the wrong size, or fails its BLAKE2b-256 check.
    #[error("{resource}: {message}")]
    Resource {
        /// Resource name.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// A delta resource cannot be applied (bad delta, or not made from what the device holds).
    #[error("{resource}: {source}")]
    Delta {
        /// Resource name.
        resource: String,
        /// Why.
        #[source]
        source: VcdiffError,
    },
    /// Something the task would write lies outside the target (checked before writing).
    #[error(
        "{what} ends at byte {end}, past the end of the target ({size} bytes); nothing was written"
    )]
    OutOfRange {
        /// The function or area.
        what: String,
        /// Its end in bytes.
        end: u64,
        /// The target's size.
        size: u64,
    },
    /// A FAT function failed.
    #[error("{func}: {source}")]
    Fat {
        /// The function and its arguments.
        func: String,
        /// Why.
        #[source]
        source: FatError,
    },
    /// The U-Boot environment lock could not be taken before writing the environment.
    #[error("{0}; the environment was not written")]
    EnvLock(#[from] myelin_ubootenv::LockError),
    /// A `uboot_*` function failed.
    #[error("{func}: {source}")]
    Env {
        /// The function.
        func: String,
        /// Why.
        #[source]
        source: EnvError,
    },
    /// A `uboot-environment` section is unusable.
    #[error("uboot-environment '{name}': {source}")]
    EnvLocation {
        /// Section name.
        name: String,
        /// Why.
        #[source]
        source: LocationError,
    },
    /// An `mbr` section cannot be written to this target.
    #[error("mbr_write: {0}")]
    Mbr(#[from] MbrError),
    /// A `gpt` section cannot be written to this target.
    #[error("gpt_write: {0}")]
    Gpt(#[from] GptError),
    /// A task function failed, or called `error()`.
    #[error("{0}")]
    Task(String),
    /// A feature of fwup that Myelin does not implement (encryption, a newer fwup, ...).
    #[error("{0}")]
    Unsupported(String),
    /// Reading or writing a file or device failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether the archive itself was at fault (corrupt, unsigned, wrong key, bad resource),
    /// as opposed to the target or the environment.
    pub fn is_bad_archive(&self) -> bool {
        matches!(
            self,
            Error::Archive(_)
                | Error::Unsigned
                | Error::BadSignature
                | Error::Resource { .. }
                | Error::Delta { .. }
                | Error::Config(_)
        )
    }
}
