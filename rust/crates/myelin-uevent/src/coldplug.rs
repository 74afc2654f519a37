//! Coldplug: the devices that appeared before anyone listened.
//!
//! The kernel announced them while the root filesystem was not even mounted. Each one still has
//! a `uevent` file under `/sys/devices` that holds what its `add` event carried (`MODALIAS`,
//! `DEVNAME`, `DRIVER`, ...), and a `subsystem` link. [`walk`] reads them all and returns the
//! `add` events, so the daemon loads the same modules it would have loaded had it been running.
//!
//! Reading is chosen over writing `add` into every `uevent` file (udev's trigger): it needs no
//! round trip through the kernel, announces nothing twice to other listeners, and a device
//! that goes away meanwhile is just one unreadable file. Symbolic links (`subsystem`, `driver`,
//! `device`, `port`) are never followed: sysfs is full of cycles through them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::event::{ParseError, Uevent};

/// Why a device or the whole walk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    /// A directory or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A `uevent` file did not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: ParseError,
    },
}

/// What a walk found: the `add` events, and the devices it could not read (logged, not fatal:
/// one bad device must not keep the others' modules from loading).
#[derive(Debug, Default)]
pub struct Walk {
    /// One `add` event per device, parents before children, siblings by name.
    pub events: Vec<Uevent>,
    /// Devices that could not be read.
    pub errors: Vec<ColdplugError>,
}

/// Reads every device under `<sysfs>/devices`. Fails only if that directory cannot be read.
pub fn walk(sysfs: &Path) -> Result<Walk, ColdplugError> {
    let top = sysfs.join("devices");
    let mut found = Walk::default();
    let entries = read_dir_sorted(&top).map_err(|source| ColdplugError::Io {
        path: top.clone(),
        source,
    })?;
    let mut stack: Vec<PathBuf> = entries.into_iter().rev().collect();
    while let Some(dir) = stack.pop() {
        visit(sysfs, &dir, &mut found);
        match read_dir_sorted(&dir) {
            Ok(children) => stack.extend(children.into_iter().rev()),
            // Gone meanwhile (an unplugged device): nothing to load for it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => found.errors.push(ColdplugError::Io { path: dir, source }),
        }
    }
    Ok(found)
}

/// The subdirectories of `dir` (not links), sorted by name.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // file_type() does not follow links, which is the point.
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Adds the device at `dir` to `found` if it has a `uevent` file.
fn visit(sysfs: &Path, dir: &Path, found: &mut Walk) {
    let file = dir.join("uevent");
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        // Not a device (a "power" or "queue" attribute group), or gone meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(source) => {
            found.errors.push(ColdplugError::Io { path: file, source });
            return;
        }
    };
    let Ok(rel) = dir.strip_prefix(sysfs) else {
        return;
    };
    let devpath = format!("/{}", rel.to_string_lossy());
    let subsystem = fs::read_link(dir.join("subsystem"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    match Uevent::from_sysfs(&devpath, subsystem.as_deref(), &text) {
        Ok(event) => found.events.push(event),
        Err(source) => found
            .errors
            .push(ColdplugError::Parse { path: file, source }),
    }
}
