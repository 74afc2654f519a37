//! Errors of the library's operations.

use crate::archive::ArchiveError;
use crate::config::ConfigError;
use crate::sign::KeyError;
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
    /// A task function failed, or called `error()`.
    #[error("{0}")]
    Task(String),
    /// A feature of fwup that Myelin does not implement (delta updates, encryption, ...).
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
                | Error::Config(_)
        )
    }
}
