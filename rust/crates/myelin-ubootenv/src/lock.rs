//! The environment lock: the file libubootenv and U-Boot's `fw_setenv` `flock` around every
//! access, taken by every Myelin writer too (myelin-kv, myelin-fw's `uboot_*` calls, so
//! myelin-update's installs), with a bounded wait.
//!
//! **Why the file is 0600 and its owner is checked.** `flock(LOCK_EX)` works on a descriptor
//! opened read-only, so a lock file any user can open (0644, as `fw_setenv` creates it with
//! umask 022) lets any user hold the lock forever and stop every update. A writer therefore
//! creates the file mode 0600, repairs a wider mode it finds (a file `fw_setenv` created), and
//! refuses a file owned by someone else (created by another user in a world-writable
//! directory). With the directory root's and not writable by others (myelin-init makes
//! `/run/lock` 0755 root at boot, before any service starts), nobody but root can open the
//! file, so nobody but root can take the lock. `O_NOFOLLOW` keeps a planted symlink from
//! redirecting the open.
//!
//! Readers never create the file and open it read-only: an unprivileged reader (which cannot
//! open a 0600 file) and a reader that waited too long proceed unlocked, which is safe because
//! every copy is CRC-checked.
//!
//! Writers open the file write-only, so its `IN_CLOSE_WRITE` tells watchers (the myelin-kv
//! daemon) that someone may have written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How long a writer waits for the lock by default before giving up with [`LockError::Busy`].
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(15);

/// Why the environment lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file (or its directory) cannot be opened or created.
    #[error("cannot open the environment lock file {path}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Another process held the lock for the whole wait.
    #[error(
        "the environment lock file {path} is held by {holder} (waited {waited_ms} ms): another environment writer (fw_setenv, myelin-kv, myelin-update) is running or stuck"
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as far as /proc/locks tells (`pid N (comm)`), or "another process".
        holder: String,
        /// How long this process waited.
        waited_ms: u128,
    },
    /// The lock file is not one only its owner can use.
    #[error(
        "the environment lock file {path} is owned by uid {owner}, not uid {expected}: another user could hold the lock forever. Remove it (only root may create it)"
    )]
    ForeignOwner {
        /// The lock file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The uid of this process.
        expected: u32,
    },
    /// The path is not a regular file (a directory, a device, a symlink).
    #[error("the environment lock file {path} is not a regular file")]
    NotAFile {
        /// The lock file.
        path: PathBuf,
    },
    /// `flock` failed for another reason than contention.
    #[error("cannot lock {path}: {source}")]
    Flock {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// What the lock is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading: never creates the file, proceeds unlocked when it cannot lock.
    Read,
    /// Writing: creates the file 0600 if needed and fails when it cannot lock.
    Write,
}

/// A held environment lock (or, for a reader, possibly none). Released when dropped.
#[derive(Debug)]
pub struct EnvLock {
    held: Option<Flock<File>>,
    path: PathBuf,
    access: Access,
}

impl EnvLock {
    /// Whether the lock is actually held (a reader may proceed without it).
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Whether this lock allows writing (taken for [`Access::Write`] and held).
    pub fn allows_writing(&self) -> bool {
        self.access == Access::Write && self.held.is_some()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock at `path` for `access`, waiting at most `wait`.
pub fn acquire(path: &Path, access: Access, wait: Duration) -> Result<EnvLock, LockError> {
    let unlocked = || EnvLock {
        held: None,
        path: path.to_owned(),
        access,
    };
    let file = match access {
        Access::Write => open_for_writing(path)?,
        Access::Read => match open_for_reading(path) {
            Ok(file) => file,
            // An unlocked read is still consistent: every copy is CRC-checked.
            Err(_) => return Ok(unlocked()),
        },
    };
    match wait_for(file, path, wait) {
        Ok(held) => Ok(EnvLock {
            held: Some(held),
            path: path.to_owned(),
            access,
        }),
        Err(e @ LockError::Busy { .. }) if access == Access::Read => {
            log::warn!("{e}; reading without the lock (every copy is CRC-checked)");
            Ok(unlocked())
        }
        Err(e) => Err(e),
    }
}

fn open_err(path: &Path) -> impl FnOnce(io::Error) -> LockError + '_ {
    move |source| LockError::Open {
        path: path.to_owned(),
        source,
    }
}

fn open_for_reading(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc_nofollow())
        .open(path)
}

fn open_for_writing(path: &Path) -> Result<File, LockError> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(path)
    };
    let file = match open() {
        // Early in boot /var/lock may point into a /run that was just mounted.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_lock_dir(path).map_err(open_err(path))?;
            open()
        }
        other => other,
    }
    .map_err(open_err(path))?;
    let meta = file.metadata().map_err(open_err(path))?;
    if !meta.is_file() {
        return Err(LockError::NotAFile {
            path: path.to_owned(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(LockError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            expected: me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        // Typically created by fw_setenv (0666 & ~umask). Anyone who opened it while it was
        // readable keeps that descriptor, so say so.
        log::warn!(
            "environment lock file {} had mode {:o}: narrowed to 0600 so that other users cannot hold it",
            path.display(),
            meta.mode() & 0o7777
        );
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(open_err(path))?;
    }
    Ok(file)
}

/// `O_NOFOLLOW`: a symlink planted at the lock path is refused instead of followed.
fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Polls `LOCK_EX | LOCK_NB` until `wait` has passed; polling (not a blocking `flock` with a
/// signal) keeps this plain POSIX and free of process-wide signal state.
fn wait_for(file: File, path: &Path, wait: Duration) -> Result<Flock<File>, LockError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((f, Errno::EINTR)) => file = f,
            Err((f, Errno::EWOULDBLOCK)) => {
                let waited = start.elapsed();
                if waited >= wait {
                    return Err(LockError::Busy {
                        path: path.to_owned(),
                        holder: holder(&f).unwrap_or_else(|| "another process".into()),
                        waited_ms: waited.as_millis(),
                    });
                }
                std::thread::sleep(pause.min(wait - waited));
                pause = (pause * 2).min(Duration::from_millis(20));
                file = f;
            }
            Err((_, errno)) => {
                return Err(LockError::Flock {
                    path: path.to_owned(),
                    source: io::Error::from(errno),
                });
            }
        }
    }
}

/// Who holds the lock on `file`, from /proc/locks (`pid N (comm)`), if Linux says.
fn holder(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_in(&locks, meta.dev(), meta.ino())?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("pid {pid} ({})", comm.trim()))
}

/// Finds the pid holding a FLOCK on inode `ino` of device `dev` in /proc/locks text.
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a "->" line is a waiter.
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let id: Vec<&str> = fields.get(5)?.split(':').collect();
        let [ma, mi, i] = id.as_slice() else {
            return None;
        };
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        same.then(|| fields.get(4)?.parse().ok()).flatten()
    })
}

/// Creates the lock file's directory (0755: only root may create lock files in it),
/// following a dangling symlink (`/var/lock -> /run/lock`).
fn create_lock_dir(lock: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = lock.parent() else {
        return Ok(());
    };
    let target = match std::fs::read_link(dir) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => dir.parent().unwrap_or(Path::new("/")).join(t),
        Err(_) => dir.to_owned(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_creates_the_file_0600_and_narrows_a_wider_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fw_printenv.lock");
        let lock = acquire(&path, Access::Write, Duration::ZERO).unwrap();
        assert!(lock.allows_writing());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(lock);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _lock = acquire(&path, Access::Write, Duration::ZERO).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_busy_lock_fails_a_writer_naming_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw_printenv.lock");
        let _held = acquire(&path, Access::Write, Duration::ZERO).unwrap();
        let err = acquire(&path, Access::Write, Duration::from_millis(30)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Busy { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        // The holder is this very process (where the kernel has /proc/locks).
        if std::fs::read_to_string("/proc/locks").is_ok_and(|l| l.contains("FLOCK")) {
            assert!(
                msg.contains(&format!("pid {}", std::process::id())),
                "{msg}"
            );
        }
        // A reader goes ahead unlocked instead.
        let read = acquire(&path, Access::Read, Duration::from_millis(10)).unwrap();
        assert!(!read.is_held());
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("fw_printenv.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = acquire(&path, Access::Write, Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Open { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn a_lock_file_owned_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw_printenv.lock");
        std::fs::write(&path, b"").unwrap();
        let me = nix::unistd::geteuid();
        if !me.is_root() {
            // Only root can give a file away; as a user, check the refusal of root's file.
            panic!("this test needs root to chown a file to another user (run as root)");
        }
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = acquire(&path, Access::Write, Duration::ZERO).unwrap_err();
        assert!(
            matches!(err, LockError::ForeignOwner { owner: 65534, .. }),
            "{err}"
        );
    }

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 77 08:01:1234 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 00:2a:1234 0 EOF\n";
        let dev = nix::sys::stat::makedev(8, 1);
        assert_eq!(holder_in(text, dev, 1234), Some(4242));
        assert_eq!(holder_in(text, dev, 1235), None);
    }
}
