//! First boot after a Nerves device was upgraded to Myelin: the single-copy Nerves environment
//! becomes Myelin's redundant one, without losing a variable and safe against power cuts.
//!
//! Nerves keeps one copy (rpi: 8 KiB at byte 0x2000; x86_64: 8 KiB at 0x100000; bbb: 128 KiB at
//! 0x100000). Myelin's first copy starts at the same offset and its second copy follows it:
//!
//! ```text
//! Nerves          [CRC | data ...................]                       (single, N bytes)
//! Myelin          [CRC | flags | data ...........][CRC | flags | data ...] (two copies of M >= N)
//!                  copy 1 (shares the Nerves bytes) copy 2 (free space on a Nerves disk)
//! ```
//!
//! The conversion is **one write, to copy 2 only**: the Nerves variables, re-encoded in the
//! redundant layout. Copy 1 keeps the Nerves bytes, which fail the redundant CRC (the flags byte
//! shifts the data), so redundant readers (Myelin, fwup, libubootenv) take copy 2, and Myelin's
//! next ordinary write goes to copy 1 as it would for any torn copy. Why this order:
//!
//! * a cut while copy 2 is written leaves the Nerves copy untouched: the environment still reads
//!   (as Nerves), and the next boot converts again;
//! * until Myelin writes the environment itself (its first `validate`), the Nerves copy stays
//!   valid, so a trial that fails and returns to Nerves finds every key where Nerves looks.
//!
//! A valid Nerves copy always wins over copy 2: Myelin never writes copy 2 twice in a row while
//! copy 1 still holds the Nerves layout, so a valid Nerves copy means "Nerves has been the last
//! writer" (e.g. the trial reverted to Nerves, which then changed its keys, and a later migration
//! boots Myelin again). [`plan_migration`] is the pure decision; [`migrate`] reads and writes a
//! real device under the libubootenv lock; callers log what it returns.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::config::{EnvConfig, Location};
use crate::format::{self, DecodeError, EncodeError, Layout, Vars};

/// Where a migrated board describes the Nerves environment (one line, `fw_env.config` syntax).
pub const NERVES_CONFIG_PATH: &str = "/etc/myelin/nerves-env.config";

/// Flags byte of the converted copy 2. Any value works (copy 1 is invalid in the redundant
/// layout); 1 is what a freshly written pair would hold after its first update.
pub const CONVERTED_FLAGS: u8 = 1;

/// What the first boot has to do with the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// No valid Nerves environment where Myelin's first copy starts: a native Myelin device, or
    /// one whose converted environment Myelin has written since. Nothing to do.
    NotNerves,
    /// Copy 2 already holds exactly the Nerves variables.
    Converted(Vars),
    /// Write `block` as copy 2 (`vars` are the Nerves variables it holds).
    Write {
        /// The variables carried over, all of them.
        vars: Vars,
        /// The complete copy 2, in the redundant layout.
        block: Vec<u8>,
    },
}

/// Why the conversion cannot run or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The two configurations do not describe a Nerves copy under Myelin's first copy.
    #[error("Nerves environment {nerves} does not fit Myelin's layout: {problem}")]
    Layout {
        /// The Nerves location.
        nerves: String,
        /// What does not fit.
        problem: &'static str,
    },
    /// The Nerves variables do not fit into Myelin's copy (the flags byte takes one more byte);
    /// nothing was written, the Nerves copy still holds them.
    #[error("cannot convert the Nerves environment: {0}")]
    Encode(#[from] EncodeError),
    /// Opening, reading, writing or syncing the device failed.
    #[error("cannot {op} {path} at {offset:#x}: {source}")]
    Io {
        /// "open", "read", "write" or "sync".
        op: &'static str,
        /// The device or file.
        path: PathBuf,
        /// Byte offset of the access.
        offset: u64,
        /// What the system said.
        source: io::Error,
    },
    /// The libubootenv lock cannot be taken.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Decides the conversion from the bytes at the Nerves location (`nerves`, the Nerves size) and
/// Myelin's copy 2 (`second`, Myelin's size). Pure: nothing is read or written.
pub fn plan_migration(nerves: &[u8], second: &[u8]) -> Result<Migration, EncodeError> {
    let Ok(decoded) = format::decode(nerves, Layout::Single) else {
        return Ok(Migration::NotNerves);
    };
    let block = format::encode(
        &decoded.vars,
        second.len(),
        Layout::Redundant,
        CONVERTED_FLAGS,
    )?;
    if block == second {
        return Ok(Migration::Converted(decoded.vars));
    }
    Ok(Migration::Write {
        vars: decoded.vars,
        block,
    })
}

/// The variables a reader should see at any moment of a migration: a valid Nerves copy first
/// (see the module documentation), else the redundant pair by U-Boot's rule. `None` if nothing
/// is valid. Pure.
pub fn read_migrating(nerves: &[u8], first: &[u8], second: &[u8]) -> Option<Vars> {
    if let Ok(d) = format::decode(nerves, Layout::Single) {
        return Some(d.vars);
    }
    let decode = |b: &[u8]| format::decode(b, Layout::Redundant).ok();
    let (a, b) = (decode(first), decode(second));
    let active = format::choose_active(
        a.as_ref().and_then(|d| d.flags),
        b.as_ref().and_then(|d| d.flags),
    )?;
    [a, b]
        .into_iter()
        .nth(active.index())
        .flatten()
        .map(|d| d.vars)
}

/// Checks that `nerves` is a single copy starting where Myelin's copy 1 starts, no larger than
/// it, on the same device, with explicit (non-negative) offsets.
fn check_layout(config: &EnvConfig, nerves: &Location) -> Result<(), MigrateError> {
    let problem = |problem| MigrateError::Layout {
        nerves: nerves.to_string(),
        problem,
    };
    let [first, second] = config.copies() else {
        return Err(problem("Myelin's environment is not redundant"));
    };
    if nerves.device != first.device || nerves.offset != first.offset {
        return Err(problem("it does not start where Myelin's first copy does"));
    }
    if nerves.offset < 0 || second.offset < 0 {
        return Err(problem("offsets counted from the end of the device"));
    }
    if nerves.size > first.size {
        return Err(problem("it is larger than Myelin's copies"));
    }
    Ok(())
}

/// Converts the Nerves environment at `nerves` to the redundant one `config` describes (see the
/// module documentation), under the lock. Returns what was found and done.
pub fn migrate(config: &EnvConfig, nerves: &Location) -> Result<Migration, MigrateError> {
    check_layout(config, nerves)?;
    let _lock = lock(config)?;
    let second = &config.copies()[1];
    let nerves_bytes = read_at(nerves)?;
    let second_bytes = read_at(second)?;
    let plan = plan_migration(&nerves_bytes, &second_bytes)?;
    if let Migration::Write { block, .. } = &plan {
        let offset = second.offset as u64;
        let io = |op, source| MigrateError::Io {
            op,
            path: second.device.clone(),
            offset,
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&second.device)
            .map_err(|e| io("open", e))?;
        file.write_all_at(block, offset)
            .map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
    }
    Ok(plan)
}

fn read_at(location: &Location) -> Result<Vec<u8>, MigrateError> {
    let offset = location.offset as u64;
    let io = |op, source| MigrateError::Io {
        op,
        path: location.device.clone(),
        offset,
        source,
    };
    let file = File::open(&location.device).map_err(|e| io("open", e))?;
    let mut buf = vec![0; location.size];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| io("read", e))?;
    Ok(buf)
}

/// The lock file every environment writer takes (the same one [`crate::Env`] and libubootenv
/// use), so a `fw_setenv` cannot interleave with the conversion.
fn lock(config: &EnvConfig) -> Result<Flock<File>, MigrateError> {
    let path = &config.lock_path;
    let failed = |source| MigrateError::Lock {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        // Early in boot /var/lock may point into a /run that was just mounted.
        std::fs::create_dir_all(dir).or_else(|e| match std::fs::metadata(dir) {
            Ok(_) => Ok(()),
            Err(_) => Err(failed(e)),
        })?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
        .map_err(failed)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(failed(io::Error::from(errno))),
        }
    }
}

/// Decodes the Nerves copy alone: for tools that report what a migration would carry over.
pub fn decode_nerves(nerves: &[u8]) -> Result<Vars, DecodeError> {
    format::decode(nerves, Layout::Single).map(|d| d.vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::plan_write;

    /// A disk as the test sees it: the Nerves copy at 0 (`n` bytes), Myelin's copies at 0 and
    /// `m` (`m` bytes each), like rpi (n = m = 8 KiB) or x86_64 (n = 8 KiB, m = 128 KiB).
    struct Disk {
        bytes: Vec<u8>,
        n: usize,
        m: usize,
    }

    impl Disk {
        fn nerves(vars: &Vars, n: usize, m: usize) -> Disk {
            // Whatever was on the disk before: 0xff as after fwup's raw_memset.
            let mut bytes = vec![0xff; 2 * m];
            let env = format::encode(vars, n, Layout::Single, 0).unwrap();
            bytes[..n].copy_from_slice(&env);
            Disk { bytes, n, m }
        }
        fn nerves_copy(&self) -> &[u8] {
            &self.bytes[..self.n]
        }
        fn first(&self) -> &[u8] {
            &self.bytes[..self.m]
        }
        fn second(&self) -> &[u8] {
            &self.bytes[self.m..]
        }
        fn read(&self) -> Option<Vars> {
            read_migrating(self.nerves_copy(), self.first(), self.second())
        }
        /// The reader Myelin's tools use once migrated: the redundant pair only.
        fn read_redundant(&self) -> Option<Vars> {
            let decoded =
                [self.first(), self.second()].map(|b| format::decode(b, Layout::Redundant));
            let flags = |i: usize| decoded[i].as_ref().ok().and_then(|d| d.flags);
            let active = format::choose_active(flags(0), flags(1))?;
            decoded[active.index()].clone().ok().map(|d| d.vars)
        }
        /// The write the conversion plans, if any: (offset, block).
        fn migration_write(&self) -> Option<(usize, Vec<u8>)> {
            match plan_migration(self.nerves_copy(), self.second()).unwrap() {
                Migration::Write { block, .. } => Some((self.m, block)),
                _ => None,
            }
        }
        /// Myelin's ordinary write of `vars` (what myelin-kv or fwup's uboot_setenv does).
        fn myelin_write(&self, vars: &Vars) -> (usize, Vec<u8>) {
            let copies =
                [self.first(), self.second()].map(|b| format::decode(b, Layout::Redundant));
            let plan = plan_write(Layout::Redundant, &copies, vars, self.m).unwrap();
            (plan.copy * self.m, plan.block)
        }
        /// Applies the first `cut` bytes of a write (a power cut after them).
        fn torn(&self, (offset, block): &(usize, Vec<u8>), cut: usize) -> Disk {
            let mut bytes = self.bytes.clone();
            bytes[*offset..*offset + cut].copy_from_slice(&block[..cut]);
            Disk {
                bytes,
                n: self.n,
                m: self.m,
            }
        }
        fn apply(&self, write: &(usize, Vec<u8>)) -> Disk {
            self.torn(write, write.1.len())
        }
    }

    fn nerves_vars() -> Vars {
        [
            ("a.nerves_fw_architecture", "arm"),
            ("a.nerves_fw_description", ""),
            ("a.nerves_fw_platform", "rpi4"),
            ("a.nerves_fw_validated", "1"),
            ("app_key", "keep-me"),
            ("empty_key", ""),
            ("nerves_fw_devpath", "/dev/mmcblk0"),
            ("nerves_serial_number", "MYL0001"),
            ("wifi_ssid", "home"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Byte counts after which a write of `len` bytes is cut: every byte of the header and the
    /// first sector, then every sector boundary and the last byte.
    fn cuts(len: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..=600.min(len)).collect();
        v.extend((512..len).step_by(512));
        v.push(len - 1);
        v.push(len);
        v
    }

    fn every_cut_keeps_all_keys(n: usize, m: usize) {
        let keys = nerves_vars();
        let disk = Disk::nerves(&keys, n, m);
        assert_eq!(disk.read(), Some(keys.clone()));
        let write = disk
            .migration_write()
            .expect("a Nerves disk needs converting");
        assert_eq!(write.0, m, "the conversion writes copy 2 only");
        for cut in cuts(write.1.len()) {
            let cut_disk = disk.torn(&write, cut);
            assert_eq!(cut_disk.read(), Some(keys.clone()), "cut after {cut} bytes");
            // The Nerves copy is never touched: Nerves itself still reads every key.
            assert_eq!(
                cut_disk.nerves_copy(),
                disk.nerves_copy(),
                "cut after {cut}"
            );
            // The next boot converts (again) and ends in the same state.
            let next = match cut_disk.migration_write() {
                Some(w) => cut_disk.apply(&w),
                None => {
                    // The rest of the block was padding the disk already held.
                    assert!(
                        cut_disk.second() == write.1,
                        "cut after {cut}: no redo planned"
                    );
                    cut_disk
                }
            };
            assert_eq!(next.read_redundant(), Some(keys.clone()), "cut after {cut}");
            assert_eq!(
                next.migration_write(),
                None,
                "converted once, stays converted"
            );
        }
    }

    #[test]
    fn rpi_layout_every_cut_keeps_all_keys() {
        every_cut_keeps_all_keys(8192, 8192);
    }

    #[test]
    fn x86_64_layout_every_cut_keeps_all_keys() {
        every_cut_keeps_all_keys(8192, 131_072);
    }

    #[test]
    fn bbb_layout_every_cut_keeps_all_keys() {
        every_cut_keeps_all_keys(131_072, 131_072);
    }

    #[test]
    fn first_myelin_write_after_conversion_retires_the_nerves_copy_safely() {
        let keys = nerves_vars();
        let disk = Disk::nerves(&keys, 8192, 8192);
        let converted = disk.apply(&disk.migration_write().unwrap());
        let mut validated = keys.clone();
        validated.insert("b.nerves_fw_validated".into(), "1".into());
        let write = converted.myelin_write(&validated);
        assert_eq!(
            write.0, 0,
            "Myelin's next write goes to copy 1, over the Nerves copy"
        );
        for cut in cuts(write.1.len()) {
            let cut_disk = converted.torn(&write, cut);
            let seen = cut_disk.read().unwrap();
            assert!(
                seen == keys || seen == validated,
                "cut after {cut}: {seen:?}"
            );
            // Whatever a torn copy 1 holds, a later boot never converts stale Nerves bytes
            // over Myelin's newer state.
            if let Some(w) = cut_disk.migration_write() {
                assert_eq!(cut_disk.apply(&w).read_redundant(), Some(keys.clone()));
            }
        }
        let done = converted.apply(&write);
        assert_eq!(done.read(), Some(validated.clone()));
        assert_eq!(done.migration_write(), None);
        assert_eq!(
            plan_migration(done.nerves_copy(), done.second()).unwrap(),
            Migration::NotNerves
        );
    }

    #[test]
    fn nerves_as_last_writer_wins_over_a_stale_conversion() {
        // Converted, the trial reverted to Nerves, Nerves changed a key, Myelin boots again.
        let keys = nerves_vars();
        let disk = Disk::nerves(&keys, 8192, 8192);
        let converted = disk.apply(&disk.migration_write().unwrap());
        let mut newer = keys.clone();
        newer.insert("wifi_ssid".into(), "office".into());
        let mut again = Disk::nerves(&newer, 8192, 8192);
        again.bytes[8192..].copy_from_slice(converted.second());
        assert_eq!(again.read(), Some(newer.clone()));
        let redone = again.apply(&again.migration_write().unwrap());
        assert_eq!(redone.read_redundant(), Some(newer));
    }

    #[test]
    fn native_myelin_environment_is_left_alone() {
        let keys = nerves_vars();
        let mut bytes = vec![0xff; 16384];
        let env = format::encode(&keys, 8192, Layout::Redundant, 3).unwrap();
        bytes[..8192].copy_from_slice(&env);
        assert_eq!(
            plan_migration(&bytes[..8192], &bytes[8192..]).unwrap(),
            Migration::NotNerves
        );
    }

    #[test]
    fn a_full_nerves_environment_is_refused_and_kept() {
        // 8 KiB single copy filled to the last byte: one byte too many for the redundant layout.
        let mut keys = Vars::new();
        keys.insert("k".into(), "v".repeat(8192 - 4 - 1 - 3));
        let env = format::encode(&keys, 8192, Layout::Single, 0).unwrap();
        let err = plan_migration(&env, &[0xff; 8192]).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::TooLarge {
                needed: 8188,
                available: 8187
            }
        ));
    }

    #[test]
    fn real_image_file_is_converted_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let keys = nerves_vars();
        let disk = Disk::nerves(&keys, 8192, 131_072);
        let mut bytes = vec![0u8; 4096];
        bytes.extend_from_slice(&disk.bytes);
        std::fs::write(&image, &bytes).unwrap();
        let config = EnvConfig::redundant(
            Location::new(&image, 4096, 131_072),
            Location::new(&image, 4096 + 131_072, 131_072),
        )
        .unwrap()
        .with_lock_path(dir.path().join("lock/fw_printenv.lock"));
        let nerves = Location::new(&image, 4096, 8192);
        assert!(matches!(
            migrate(&config, &nerves).unwrap(),
            Migration::Write { .. }
        ));
        assert_eq!(crate::read_vars(&config).unwrap(), keys);
        assert_eq!(
            migrate(&config, &nerves).unwrap(),
            Migration::Converted(keys)
        );
        let wrong = Location::new(&image, 8192, 8192);
        assert!(matches!(
            migrate(&config, &wrong),
            Err(MigrateError::Layout { .. })
        ));
    }
}
