//! Reading and writing the environment where [`EnvConfig`] says it is: block devices or files.
//!
//! Every access takes the lock file libubootenv uses (`flock(LOCK_EX)`, see [`crate::lock`]), so
//! Myelin's programs and Debian's `fw_printenv`/`fw_setenv` serialize. A read that cannot open
//! the lock file (no `/var/lock` yet early in boot, an unprivileged user: the file is 0600) or
//! that waited too long proceeds without it: every copy is CRC-checked, so an unlocked read
//! still returns a state that was written completely. A write never proceeds without the lock,
//! and gives up after [`EnvConfig::lock_wait`] with an error naming the lock file.
//!
//! A write is planned in memory ([`plan_write`]), then issued as one `pwrite` of the whole copy
//! followed by `fsync`:
//!
//! * redundant: the copy that is *not* active is overwritten with `flags = active + 1`
//!   (wrapping). A corrupt copy is never active, so it is the one overwritten. A torn write
//!   leaves the active copy untouched, and the torn copy fails its CRC, so readers keep the
//!   complete old state.
//! * single: the only copy is overwritten in place. **This is not power-fail safe**: a torn write
//!   leaves no valid copy (U-Boot then falls back to its built-in environment).
//!
//! When no copy is valid, reads fail and writes refuse unless the caller supplies a base
//! environment to start from ([`Recovery::From`]), like libubootenv's default environment file.
//!
//! Lock files are opened write-only by writers and read-only by readers. Watchers (the myelin-kv
//! daemon) use that: `IN_CLOSE_WRITE` on the lock file means "someone may have written".

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::{EnvConfig, Location};
use crate::format::{self, Active, DecodeError, Decoded, EncodeError, Layout, Vars};
use crate::lock::{self, Access, EnvLock, LockError};

/// Why the environment could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The device or file holding a copy cannot be opened.
    #[error("cannot open environment device {path} for {purpose}: {source}")]
    Open {
        /// The device or file.
        path: PathBuf,
        /// "reading" or "writing".
        purpose: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// Reading, writing or syncing failed.
    #[error("cannot {op} {path} at {offset:#x}: {source}")]
    Io {
        /// "read", "write", "sync" or "seek".
        op: &'static str,
        /// The device or file.
        path: PathBuf,
        /// Byte offset of the access.
        offset: u64,
        /// What the system said.
        source: io::Error,
    },
    /// A copy does not lie inside its device.
    #[error(
        "environment copy {copy} ({location}) needs bytes up to {end:#x} but {path} has only {len:#x}"
    )]
    OutOfRange {
        /// 1 or 2.
        copy: usize,
        /// The configured location.
        location: String,
        /// The device or file.
        path: PathBuf,
        /// End of the copy (exclusive), or the offset if it is before the start of the device.
        end: i128,
        /// Size of the device.
        len: u64,
    },
    /// Once negative offsets are resolved, the copies share bytes.
    #[error(
        "environment copies overlap on {path} ({first:#x} and {second:#x}, {size:#x} bytes each)"
    )]
    Overlap {
        /// The device.
        path: PathBuf,
        /// Resolved offset of the first copy.
        first: u64,
        /// Resolved offset of the second copy.
        second: u64,
        /// Size of each copy.
        size: usize,
    },
    /// The lock file cannot be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A write was attempted without holding the write lock on the configured lock file.
    #[error("internal error: writing the environment without holding the lock {path}")]
    NotLocked {
        /// The lock file that should be held.
        path: PathBuf,
    },
    /// The only copy of a single environment is corrupt.
    #[error(
        "environment at {location} is corrupt ({source}). A single-copy environment has no second copy to fall back on: rewrite it from defaults (myelin-kv setenv -f <defaults file> ..., or --force-init to start empty)"
    )]
    Corrupt {
        /// The configured location.
        location: String,
        /// What is wrong with it.
        source: DecodeError,
    },
    /// Both copies of a redundant environment are corrupt.
    #[error(
        "both environment copies are corrupt (copy 1 at {first_location}: {first}; copy 2 at {second_location}: {second}). Rewrite it from defaults (myelin-kv setenv -f <defaults file> ..., or --force-init to start empty)"
    )]
    BothCorrupt {
        /// Location of the first copy.
        first_location: String,
        /// What is wrong with the first copy.
        first: DecodeError,
        /// Location of the second copy.
        second_location: String,
        /// What is wrong with the second copy.
        second: DecodeError,
    },
    /// The new variables cannot be encoded (bad name or value, too large).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl EnvError {
    /// True when no copy holds a valid environment (corrupt, torn or never written).
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            EnvError::Corrupt { .. } | EnvError::BothCorrupt { .. }
        )
    }

    /// True if the error happened while writing a copy, i.e. after validation and planning: the
    /// copy being written may be torn (a redundant environment still reads its old state).
    pub fn during_write(&self) -> bool {
        matches!(
            self,
            EnvError::Io {
                op: "write" | "sync",
                ..
            }
        )
    }
}

/// The state of one copy as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStatus {
    /// The CRC matches.
    Valid {
        /// The flags byte (redundant layout only).
        flags: Option<u8>,
    },
    /// The copy cannot be used.
    Invalid(DecodeError),
}

impl CopyStatus {
    /// True for a copy whose CRC matches.
    pub fn is_valid(&self) -> bool {
        matches!(self, CopyStatus::Valid { .. })
    }
}

/// The environment as read: its variables and the state of each copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Single or redundant.
    pub layout: Layout,
    /// Variables of the active copy.
    pub vars: Vars,
    /// The copy the variables come from ([`Active::First`] for a single environment).
    pub active: Active,
    /// One entry per copy, in configuration order.
    pub copies: Vec<CopyStatus>,
}

impl Snapshot {
    /// True if every copy is valid (a redundant environment can lose one copy and still read).
    pub fn all_copies_valid(&self) -> bool {
        self.copies.iter().all(CopyStatus::is_valid)
    }
}

/// What to do when no copy is valid.
#[derive(Debug, Clone, Copy, Default)]
pub enum Recovery<'a> {
    /// Fail with [`EnvError::Corrupt`] / [`EnvError::BothCorrupt`]; write nothing.
    #[default]
    Refuse,
    /// Start from these variables (a default environment, or empty to start afresh).
    From(&'a Vars),
}

/// The next write: which copy, and its complete new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Index of the copy to overwrite (0 or 1).
    pub copy: usize,
    /// The flags byte written (redundant layout only).
    pub flags: Option<u8>,
    /// The whole copy, `size` bytes, CRC included.
    pub block: Vec<u8>,
}

/// Decides where `vars` go, given what each copy decoded to. Pure: nothing is written.
///
/// Redundant: the inactive copy, with `flags = active + 1`; with no valid copy, the first copy
/// with flags 0. Single: the only copy.
pub fn plan_write(
    layout: Layout,
    copies: &[Result<Decoded, DecodeError>],
    vars: &Vars,
    size: usize,
) -> Result<Plan, EncodeError> {
    let (copy, flags) = match layout {
        Layout::Single => (0, None),
        Layout::Redundant => {
            let flags_of = |i: usize| copies.get(i).and_then(|c| c.as_ref().ok()?.flags);
            match format::choose_active(flags_of(0), flags_of(1)) {
                Some(active) => {
                    let current = flags_of(active.index()).unwrap_or(0);
                    (active.other().index(), Some(current.wrapping_add(1)))
                }
                None => (0, Some(0)),
            }
        }
    };
    let block = format::encode(vars, size, layout, flags.unwrap_or(0))?;
    Ok(Plan { copy, flags, block })
}

/// The headers (CRC and flags) of every copy: a cheap way to notice that something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<[u8; 5]>);

/// What [`Env::modify`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modified {
    /// Variables before the change (the recovery base if no copy was valid).
    pub before: Vars,
    /// Variables after the change.
    pub after: Vars,
    /// Index of the copy written, or `None` if nothing changed and every copy was valid.
    pub written: Option<usize>,
}

/// The environment described by an [`EnvConfig`], on its real devices or files.
#[derive(Debug, Clone)]
pub struct Env {
    config: EnvConfig,
}

/// A copy's device, opened, and where the copy starts once the offset is resolved.
struct OpenCopy {
    file: File,
    path: PathBuf,
    offset: u64,
}

impl Env {
    /// An environment at the locations of `config`. Nothing is opened yet.
    pub fn new(config: EnvConfig) -> Self {
        Env { config }
    }

    /// The configuration this environment uses.
    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// Reads the environment under the lock.
    pub fn read(&self) -> Result<Snapshot, EnvError> {
        let lock = self.lock(Access::Read)?;
        self.read_locked(&lock)
    }

    /// Reads the environment under a lock the caller took with [`Env::lock`].
    pub fn read_locked(&self, _lock: &EnvLock) -> Result<Snapshot, EnvError> {
        let opened = self.open_copies(false)?;
        let decoded = self.decode_copies(&opened)?;
        self.snapshot(decoded)
    }

    /// Reads the environment, or returns `defaults` (and `None` as snapshot) if no copy is valid.
    pub fn read_or(&self, defaults: &Vars) -> Result<(Vars, Option<Snapshot>), EnvError> {
        match self.read() {
            Ok(snapshot) => Ok((snapshot.vars.clone(), Some(snapshot))),
            Err(err) if err.is_unreadable() => Ok((defaults.clone(), None)),
            Err(err) => Err(err),
        }
    }

    /// Reads only the CRC and flags of each copy (10 bytes), without the lock.
    pub fn fingerprint(&self) -> Result<Fingerprint, EnvError> {
        let opened = self.open_copies(false)?;
        let mut headers = Vec::with_capacity(opened.len());
        for copy in &opened {
            let mut header = [0u8; 5];
            read_exact_at(copy, &mut header, 0)?;
            headers.push(header);
        }
        Ok(Fingerprint(headers))
    }

    /// Read-modify-write under the lock: `change` edits the current variables, and the result
    /// is written as one copy (see the module documentation). Nothing is written if `change`
    /// fails, if the result cannot be encoded, or if nothing changed and every copy is valid.
    pub fn modify<E, F>(&self, recovery: Recovery<'_>, change: F) -> Result<Modified, E>
    where
        F: FnOnce(&mut Vars) -> Result<(), E>,
        E: From<EnvError>,
    {
        let lock = self.lock(Access::Write)?;
        self.modify_locked(&lock, recovery, change)
    }

    /// [`Env::modify`] under a lock the caller took with [`Env::lock`]`(Access::Write)`.
    pub fn modify_locked<E, F>(
        &self,
        lock: &EnvLock,
        recovery: Recovery<'_>,
        change: F,
    ) -> Result<Modified, E>
    where
        F: FnOnce(&mut Vars) -> Result<(), E>,
        E: From<EnvError>,
    {
        if !lock.allows_writing() || lock.path() != self.config.lock_path {
            return Err(EnvError::NotLocked {
                path: self.config.lock_path.clone(),
            }
            .into());
        }
        let opened = self.open_copies(false)?;
        let decoded = self.decode_copies(&opened)?;
        drop(opened);
        let layout = self.config.layout();
        let (before, all_valid) = match self.snapshot(decoded.clone()) {
            Ok(snapshot) => (snapshot.vars.clone(), snapshot.all_copies_valid()),
            Err(err) if err.is_unreadable() => match recovery {
                Recovery::From(base) => (base.clone(), false),
                Recovery::Refuse => return Err(err.into()),
            },
            Err(err) => return Err(err.into()),
        };
        let mut after = before.clone();
        change(&mut after)?;
        if after == before && all_valid {
            return Ok(Modified {
                before,
                after,
                written: None,
            });
        }
        let plan =
            plan_write(layout, &decoded, &after, self.config.size()).map_err(EnvError::from)?;
        self.write_copy(plan.copy, &plan.block)?;
        Ok(Modified {
            before,
            after,
            written: Some(plan.copy),
        })
    }

    /// Replaces the whole environment with `vars` (one write, under the lock), whatever the
    /// copies hold now, corrupt or not.
    pub fn replace(&self, vars: &Vars) -> Result<Modified, EnvError> {
        self.modify(Recovery::From(&Vars::new()), |current: &mut Vars| {
            current.clone_from(vars);
            Ok::<(), EnvError>(())
        })
    }

    /// Takes the environment lock (bounded wait, see [`crate::lock`]). Callers that must not
    /// wait while holding something else (myelin-kv's state) take it first, then use
    /// [`Env::read_locked`] and [`Env::modify_locked`].
    pub fn lock(&self, access: Access) -> Result<EnvLock, EnvError> {
        Ok(lock::acquire(
            &self.config.lock_path,
            access,
            self.config.lock_wait,
        )?)
    }

    fn open_copies(&self, write: bool) -> Result<Vec<OpenCopy>, EnvError> {
        let copies = self.config.copies();
        let mut opened: Vec<OpenCopy> = Vec::with_capacity(copies.len());
        for (index, location) in copies.iter().enumerate() {
            let file = match opened.iter().find(|o| o.path == location.device) {
                Some(o) => o.file.try_clone().map_err(|source| EnvError::Open {
                    path: location.device.clone(),
                    purpose: purpose(write),
                    source,
                })?,
                None => open_device(&location.device, write)?,
            };
            let offset = resolve(&file, index, location)?;
            opened.push(OpenCopy {
                file,
                path: location.device.clone(),
                offset,
            });
        }
        if let [a, b] = opened.as_slice() {
            let size = self.config.size() as u64;
            if a.path == b.path && a.offset < b.offset + size && b.offset < a.offset + size {
                return Err(EnvError::Overlap {
                    path: a.path.clone(),
                    first: a.offset,
                    second: b.offset,
                    size: self.config.size(),
                });
            }
        }
        Ok(opened)
    }

    fn decode_copies(
        &self,
        opened: &[OpenCopy],
    ) -> Result<Vec<Result<Decoded, DecodeError>>, EnvError> {
        let layout = self.config.layout();
        let mut block = ReadBuffer::new(self.config.size());
        let mut decoded = Vec::with_capacity(opened.len());
        for copy in opened {
            read_exact_at(copy, &mut block, 0)?;
            decoded.push(format::decode(&block, layout));
        }
        Ok(decoded)
    }

    fn snapshot(&self, decoded: Vec<Result<Decoded, DecodeError>>) -> Result<Snapshot, EnvError> {
        let layout = self.config.layout();
        let location = |i: usize| self.config.copies()[i].to_string();
        let copies: Vec<CopyStatus> = decoded
            .iter()
            .map(|d| match d {
                Ok(d) => CopyStatus::Valid { flags: d.flags },
                Err(e) => CopyStatus::Invalid(e.clone()),
            })
            .collect();
        let flags =
            |d: &Result<Decoded, DecodeError>| d.as_ref().ok().map(|d| d.flags.unwrap_or(0));
        let active = match decoded.as_slice() {
            [Err(first), Err(second)] => {
                return Err(EnvError::BothCorrupt {
                    first_location: location(0),
                    first: first.clone(),
                    second_location: location(1),
                    second: second.clone(),
                });
            }
            // With at least one valid copy, U-Boot's rule always picks one.
            [first, second] => {
                format::choose_active(flags(first), flags(second)).unwrap_or(Active::First)
            }
            _ => Active::First,
        };
        let mut decoded = decoded;
        let vars = match decoded.swap_remove(active.index()) {
            Ok(d) => d.vars,
            Err(source) => {
                return Err(EnvError::Corrupt {
                    location: location(active.index()),
                    source,
                });
            }
        };
        Ok(Snapshot {
            layout,
            vars,
            active,
            copies,
        })
    }

    fn write_copy(&self, index: usize, block: &[u8]) -> Result<(), EnvError> {
        let location = &self.config.copies()[index];
        let file = open_device(&location.device, true)?;
        let offset = resolve(&file, index, location)?;
        let io = |op, source| EnvError::Io {
            op,
            path: location.device.clone(),
            offset,
            source,
        };
        file.write_all_at(block, offset)
            .map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))
    }
}

/// The buffer a copy is read into. Copies are read (not mapped) so that the CRC check and the
/// parse see the same bytes even if a writer that takes no lock is busy on the device. A fresh
/// 128 KiB heap buffer costs a page fault per 4 KiB page on first touch, which is most of a
/// `fw_printenv` run on a VM; an anonymous mapping with `MAP_POPULATE` gets its pages in one call.
enum ReadBuffer {
    Mapped(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl ReadBuffer {
    fn new(size: usize) -> Self {
        match memmap2::MmapOptions::new().len(size).populate().map_anon() {
            Ok(map) => ReadBuffer::Mapped(map),
            Err(_) => ReadBuffer::Heap(vec![0; size]),
        }
    }
}

impl std::ops::Deref for ReadBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadBuffer::Mapped(m) => m,
            ReadBuffer::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for ReadBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ReadBuffer::Mapped(m) => m,
            ReadBuffer::Heap(v) => v,
        }
    }
}

/// Reads the active variables of the environment `config` describes: the one call myelin-init
/// and myelin-update need.
pub fn read_vars(config: &EnvConfig) -> Result<Vars, EnvError> {
    Ok(Env::new(config.clone()).read()?.vars)
}

fn purpose(write: bool) -> &'static str {
    if write { "writing" } else { "reading" }
}

fn open_device(path: &Path, write: bool) -> Result<File, EnvError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|source| EnvError::Open {
            path: path.to_owned(),
            purpose: purpose(write),
            source,
        })
}

/// Turns a configured offset into an absolute one and checks the copy fits in the device.
fn resolve(file: &File, index: usize, location: &Location) -> Result<u64, EnvError> {
    // SEEK_END gives the size of block devices as well as of regular files.
    let mut handle = file;
    let len = handle
        .seek(SeekFrom::End(0))
        .map_err(|source| EnvError::Io {
            op: "seek",
            path: location.device.clone(),
            offset: 0,
            source,
        })?;
    let start = if location.offset < 0 {
        i128::from(len) + i128::from(location.offset)
    } else {
        i128::from(location.offset)
    };
    let end = start + location.size as i128;
    if start < 0 || end > i128::from(len) {
        return Err(EnvError::OutOfRange {
            copy: index + 1,
            location: location.to_string(),
            path: location.device.clone(),
            end: if start < 0 { start } else { end },
            len,
        });
    }
    Ok(start as u64)
}

fn read_exact_at(copy: &OpenCopy, buf: &mut [u8], at: u64) -> Result<(), EnvError> {
    let offset = copy.offset + at;
    copy.file
        .read_exact_at(buf, offset)
        .map_err(|source| EnvError::Io {
            op: "read",
            path: copy.path.clone(),
            offset,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{Flock, FlockArg};
    use std::time::Duration;

    const SIZE: usize = 0x400;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        env: Env,
    }

    impl Fixture {
        fn image(&self) -> Vec<u8> {
            std::fs::read(self.dir.path().join("env.img")).unwrap()
        }
        fn set_image(&self, bytes: &[u8]) {
            std::fs::write(self.dir.path().join("env.img"), bytes).unwrap();
        }
    }

    /// A file holding `copies` copies of SIZE bytes, starting at 0x200, all 0xFF (unwritten).
    fn fixture(layout: Layout) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("env.img");
        std::fs::write(&img, vec![0xFFu8; 0x200 + 2 * SIZE + 0x100]).unwrap();
        let first = Location::new(&img, 0x200, SIZE);
        let config = match layout {
            Layout::Single => EnvConfig::single(first),
            Layout::Redundant => {
                EnvConfig::redundant(first, Location::new(&img, 0x200 + SIZE as i64, SIZE)).unwrap()
            }
        }
        .with_lock_path(dir.path().join("lock"));
        Fixture {
            dir,
            env: Env::new(config),
        }
    }

    fn set(env: &Env, name: &str, value: &str) -> Result<Modified, EnvError> {
        env.modify(Recovery::Refuse, |v: &mut Vars| {
            v.insert(name.into(), value.into());
            Ok::<(), EnvError>(())
        })
    }

    fn write_copy(f: &Fixture, index: usize, v: &Vars, flags: u8, layout: Layout) {
        let mut img = f.image();
        let block = format::encode(v, SIZE, layout, flags).unwrap();
        let at = 0x200 + index * SIZE;
        img[at..at + SIZE].copy_from_slice(&block);
        f.set_image(&img);
    }

    #[test]
    fn redundant_writes_alternate_and_count_up() {
        let f = fixture(Layout::Redundant);
        write_copy(&f, 0, &vars(&[("a", "1")]), 1, Layout::Redundant);
        write_copy(&f, 1, &vars(&[("a", "1")]), 1, Layout::Redundant);
        let s = f.env.read().unwrap();
        assert_eq!(s.active, Active::First);
        assert!(s.all_copies_valid());

        let m = set(&f.env, "b", "2").unwrap();
        assert_eq!(m.written, Some(1));
        assert_eq!(m.before, vars(&[("a", "1")]));
        let s = f.env.read().unwrap();
        assert_eq!(s.active, Active::Second);
        assert_eq!(s.vars, vars(&[("a", "1"), ("b", "2")]));
        assert_eq!(s.copies[1], CopyStatus::Valid { flags: Some(2) });
        // The first copy still holds the old state, untouched.
        assert_eq!(
            format::decode(&f.image()[0x200..0x200 + SIZE], Layout::Redundant)
                .unwrap()
                .vars,
            vars(&[("a", "1")])
        );

        assert_eq!(set(&f.env, "c", "3").unwrap().written, Some(0));
        let s = f.env.read().unwrap();
        assert_eq!(s.active, Active::First);
        assert_eq!(s.copies[0], CopyStatus::Valid { flags: Some(3) });
    }

    #[test]
    fn flags_wrap_after_255() {
        let f = fixture(Layout::Redundant);
        write_copy(&f, 0, &vars(&[("n", "0")]), 254, Layout::Redundant);
        write_copy(&f, 1, &vars(&[("n", "0")]), 253, Layout::Redundant);
        for i in 1..=4u32 {
            set(&f.env, "n", &i.to_string()).unwrap();
            assert_eq!(f.env.read().unwrap().vars["n"], i.to_string());
        }
        let s = f.env.read().unwrap();
        // 254 -> 255 (copy 2) -> 0 (copy 1) -> 1 (copy 2) -> 2 (copy 1)
        assert_eq!(s.active, Active::First);
        assert_eq!(s.copies[0], CopyStatus::Valid { flags: Some(2) });
        assert_eq!(s.copies[1], CopyStatus::Valid { flags: Some(1) });
    }

    #[test]
    fn a_corrupt_copy_is_read_around_and_overwritten() {
        let f = fixture(Layout::Redundant);
        // Copy 2 has higher flags but a broken CRC: copy 1 is active.
        write_copy(&f, 0, &vars(&[("a", "old")]), 7, Layout::Redundant);
        write_copy(&f, 1, &vars(&[("a", "bad")]), 9, Layout::Redundant);
        let mut img = f.image();
        img[0x200 + SIZE + 20] ^= 0x55;
        f.set_image(&img);
        let s = f.env.read().unwrap();
        assert_eq!(s.active, Active::First);
        assert_eq!(s.vars, vars(&[("a", "old")]));
        assert!(matches!(
            s.copies[1],
            CopyStatus::Invalid(DecodeError::Crc { .. })
        ));
        // Even with no change, the corrupt copy is repaired.
        let m = set(&f.env, "a", "old").unwrap();
        assert_eq!(m.written, Some(1));
        let s = f.env.read().unwrap();
        assert!(s.all_copies_valid());
        assert_eq!(s.copies[1], CopyStatus::Valid { flags: Some(8) });
        // Now nothing changes and both are valid: no write at all.
        let before = f.image();
        assert_eq!(set(&f.env, "a", "old").unwrap().written, None);
        assert_eq!(f.image(), before);
    }

    #[test]
    fn both_corrupt_refuses_and_explains() {
        let f = fixture(Layout::Redundant);
        let before = f.image();
        let err = f.env.read().unwrap_err();
        assert!(err.is_unreadable());
        let msg = err.to_string();
        assert!(msg.contains("both environment copies are corrupt"), "{msg}");
        assert!(msg.contains("copy 1 at"), "{msg}");
        assert!(msg.contains("--force-init"), "{msg}");
        assert!(matches!(
            set(&f.env, "a", "1"),
            Err(EnvError::BothCorrupt { .. })
        ));
        assert_eq!(f.image(), before, "nothing may be written");

        let defaults = vars(&[("bootcmd", "boot")]);
        let (v, snap) = f.env.read_or(&defaults).unwrap();
        assert_eq!((v, snap), (defaults.clone(), None));
        let m = f
            .env
            .modify(Recovery::From(&defaults), |v: &mut Vars| {
                v.insert("a".into(), "1".into());
                Ok::<(), EnvError>(())
            })
            .unwrap();
        assert_eq!(m.written, Some(0));
        let s = f.env.read().unwrap();
        assert_eq!(s.vars, vars(&[("a", "1"), ("bootcmd", "boot")]));
        assert_eq!(s.copies[0], CopyStatus::Valid { flags: Some(0) });
        // The next write goes to the second copy and wins.
        assert_eq!(set(&f.env, "b", "2").unwrap().written, Some(1));
        assert_eq!(f.env.read().unwrap().active, Active::Second);
    }

    #[test]
    fn single_copy_in_place_and_corruption() {
        let f = fixture(Layout::Single);
        assert!(matches!(f.env.read(), Err(EnvError::Corrupt { .. })));
        assert!(matches!(
            set(&f.env, "a", "1"),
            Err(EnvError::Corrupt { .. })
        ));
        f.env.replace(&vars(&[("a", "1")])).unwrap();
        assert_eq!(set(&f.env, "b", "2").unwrap().written, Some(0));
        let img = f.image();
        assert_eq!(
            format::decode(&img[0x200..0x200 + SIZE], Layout::Single)
                .unwrap()
                .vars,
            vars(&[("a", "1"), ("b", "2")])
        );
        // Bytes outside the copy are untouched.
        assert!(img[..0x200].iter().all(|&b| b == 0xFF));
        assert!(img[0x200 + SIZE..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn bad_input_writes_nothing() {
        let f = fixture(Layout::Redundant);
        f.env.replace(&vars(&[("a", "1")])).unwrap();
        let before = f.image();
        // (An empty value is stored as `name=`, as fwup and mkenvimage store it.)
        for (name, value) in [("a=b", "1"), ("", "1"), ("tab\there", "1")] {
            let err = set(&f.env, name, value).unwrap_err();
            assert!(
                matches!(err, EnvError::Encode(EncodeError::Invalid(_))),
                "{err}"
            );
        }
        let err = set(&f.env, "big", &"x".repeat(SIZE)).unwrap_err();
        assert!(
            matches!(err, EnvError::Encode(EncodeError::TooLarge { .. })),
            "{err}"
        );
        assert_eq!(f.image(), before);
        // A failing change closure also writes nothing.
        let r = f.env.modify(Recovery::Refuse, |v: &mut Vars| {
            v.insert("z".into(), "1".into());
            Err(EnvError::Encode(EncodeError::TooLarge {
                needed: 0,
                available: 0,
            }))
        });
        assert!(r.is_err());
        assert_eq!(f.image(), before);
    }

    #[test]
    fn missing_device_and_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(
            EnvConfig::single(Location::new(dir.path().join("nope"), 0, SIZE))
                .with_lock_path(dir.path().join("lock")),
        );
        let err = env.read().unwrap_err();
        assert!(matches!(err, EnvError::Open { .. }));
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(set(&env, "a", "1").is_err());
        assert!(!dir.path().join("nope").exists());

        let img = dir.path().join("short");
        std::fs::write(&img, vec![0u8; SIZE]).unwrap();
        let env = Env::new(
            EnvConfig::single(Location::new(&img, 0x10, SIZE)).with_lock_path(dir.path().join("l")),
        );
        let err = env.read().unwrap_err();
        assert!(
            matches!(
                err,
                EnvError::OutOfRange {
                    copy: 1,
                    len: 0x400,
                    ..
                }
            ),
            "{err}"
        );
        let env = Env::new(
            EnvConfig::single(Location::new(&img, -0x800, SIZE))
                .with_lock_path(dir.path().join("l")),
        );
        assert!(matches!(env.read(), Err(EnvError::OutOfRange { .. })));
    }

    #[test]
    fn negative_offsets_count_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk");
        std::fs::write(&img, vec![0u8; 4 * SIZE]).unwrap();
        let config = EnvConfig::redundant(
            Location::new(&img, -2 * SIZE as i64, SIZE),
            Location::new(&img, -(SIZE as i64), SIZE),
        )
        .unwrap()
        .with_lock_path(dir.path().join("lock"));
        let env = Env::new(config);
        env.replace(&vars(&[("k", "v")])).unwrap();
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(
            format::decode(&bytes[2 * SIZE..3 * SIZE], Layout::Redundant)
                .unwrap()
                .vars,
            vars(&[("k", "v")])
        );
        // Mixed signs that resolve to the same bytes are caught once the size is known.
        let env = Env::new(
            EnvConfig::redundant(
                Location::new(&img, 0, SIZE),
                Location::new(&img, -4 * SIZE as i64, SIZE),
            )
            .unwrap()
            .with_lock_path(dir.path().join("lock")),
        );
        assert!(matches!(env.read(), Err(EnvError::Overlap { .. })));
    }

    #[test]
    fn fingerprint_changes_with_every_write() {
        let f = fixture(Layout::Redundant);
        f.env.replace(&vars(&[("a", "1")])).unwrap();
        let fp1 = f.env.fingerprint().unwrap();
        assert_eq!(f.env.fingerprint().unwrap(), fp1);
        set(&f.env, "a", "2").unwrap();
        assert_ne!(f.env.fingerprint().unwrap(), fp1);
    }

    #[test]
    fn writers_wait_for_the_lock() {
        let f = fixture(Layout::Redundant);
        f.env.replace(&vars(&[("a", "1")])).unwrap();
        let held = Flock::lock(
            File::create(f.dir.path().join("lock")).unwrap(),
            FlockArg::LockExclusive,
        )
        .unwrap();
        let untouched = f.env.fingerprint().unwrap();
        let env = f.env.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            set(&env, "a", "2").unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the write went ahead while the lock was held"
        );
        assert_eq!(f.env.fingerprint().unwrap(), untouched);
        drop(held);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        assert_eq!(f.env.read().unwrap().vars["a"], "2");
    }

    #[test]
    fn a_missing_lock_directory() {
        let f = fixture(Layout::Redundant);
        f.env.replace(&vars(&[("a", "1")])).unwrap();
        // /var/lock -> run/lock, with run/lock not created yet: readers go ahead unlocked,
        // writers create the directory behind the link.
        std::os::unix::fs::symlink("run/lock", f.dir.path().join("varlock")).unwrap();
        let config = f
            .env
            .config()
            .clone()
            .with_lock_path(f.dir.path().join("varlock/fw.lock"));
        let env = Env::new(config);
        assert_eq!(env.read().unwrap().vars["a"], "1");
        assert!(
            !f.dir.path().join("run").exists(),
            "a read must not create anything"
        );
        set(&env, "a", "2").unwrap();
        assert!(f.dir.path().join("run/lock/fw.lock").is_file());
        // A lock directory that cannot be created: writes refuse, naming the lock.
        std::fs::write(f.dir.path().join("file"), b"").unwrap();
        let config = f
            .env
            .config()
            .clone()
            .with_lock_path(f.dir.path().join("file/dir/lock"));
        let env = Env::new(config);
        let before = f.image();
        let err = set(&env, "a", "3").unwrap_err();
        assert!(matches!(err, EnvError::Lock { .. }), "{err}");
        assert!(err.to_string().contains("file/dir/lock"), "{err}");
        assert_eq!(f.image(), before);
    }

    #[test]
    fn plan_follows_uboot() {
        let d = |flags| {
            Ok(Decoded {
                flags: Some(flags),
                vars: Vars::new(),
            })
        };
        let bad = || Err(DecodeError::TooSmall { size: 0, min: 6 });
        let v = vars(&[("a", "1")]);
        let plan = |copies: &[Result<Decoded, DecodeError>]| {
            let p = plan_write(Layout::Redundant, copies, &v, 64).unwrap();
            (p.copy, p.flags)
        };
        assert_eq!(plan(&[d(1), d(1)]), (1, Some(2)));
        assert_eq!(plan(&[d(1), d(2)]), (0, Some(3)));
        assert_eq!(plan(&[d(255), d(0)]), (0, Some(1)));
        assert_eq!(plan(&[d(0), d(255)]), (1, Some(1)));
        assert_eq!(plan(&[d(200), d(1)]), (1, Some(201)));
        assert_eq!(plan(&[d(5), bad()]), (1, Some(6)));
        assert_eq!(plan(&[bad(), d(5)]), (0, Some(6)));
        assert_eq!(plan(&[bad(), bad()]), (0, Some(0)));
        let p = plan_write(Layout::Single, &[bad()], &v, 64).unwrap();
        assert_eq!((p.copy, p.flags), (0, None));
        assert_eq!(format::decode(&p.block, Layout::Single).unwrap().vars, v);
    }
}
