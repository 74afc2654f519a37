//! A copy of a program that any user can run, for tests that run it as another user.
//!
//! Test binaries live under the checkout, which may sit in a directory only its owner can enter
//! (a clone in `mktemp -d` is mode 0700): run as `nobody` from there, exec fails with EACCES
//! before the program says anything. A test must not depend on where the checkout is, so it
//! runs a copy placed in a directory everyone can enter.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A program copied into a world-readable temporary directory, removed on drop.
pub struct SharedExe {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SharedExe {
    /// Copies `program` (mode 0755) into a new directory (mode 0755) under the temp dir.
    pub fn copy(program: &Path) -> io::Result<SharedExe> {
        let dir = tempfile::Builder::new().prefix("myelin-exe").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let name = program
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", program.display())))?;
        let path = dir.path().join(name);
        fs::copy(program, &path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(SharedExe { _dir: dir, path })
    }

    /// Where the copy is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
