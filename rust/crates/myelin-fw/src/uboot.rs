//! `uboot-environment` sections and the `uboot_*` functions, on top of
//! [`myelin_ubootenv::format`] (the environment block format itself lives there).
//!
//! An environment is `block-count` blocks at `block-offset`, with an optional second copy at
//! `block-offset-redund` (the redundant layout, with a flags byte).
//!
//! **Every call is one environment write, as in fwup**, so that the bytes left on the disk are
//! fwup's: each `uboot_setenv`/`uboot_unsetenv` reads the environment as fwup does, changes it,
//! and writes it back with flags one above the copy it read, to the copy fwup writes:
//!
//! * reading a redundant environment: with `delta = flags2 - flags1` (wrapping), the first copy
//!   is tried first when `delta` is 0 or at least 128, else the second; the copy read decides
//!   the flags; the write goes to the *other* copy, and to both when neither decodes;
//! * a single environment is read and rewritten in place;
//! * `uboot_clearenv` writes both copies empty with flags 1; `uboot_recover` does the same only
//!   when no copy decodes, and leaves a valid environment alone;
//! * variables are written sorted by name, empty values included (`name=` is kept, as fwup and
//!   U-Boot's `mkenvimage` keep it).
//!
//! The calls of a task only change an in-memory copy of the environment's blocks ([`Copies`]);
//! the applier writes the result when it commits. How it reaches the disk is Myelin's choice,
//! not fwup's (fwup writes each call's block through its cache): [`safe_writes`] orders the
//! writes so that a power cut at any moment leaves U-Boot reading either the old or the new
//! environment, never an intermediate one, and the final bytes are still fwup's.
//!
//! `uboot_setenv`/`uboot_unsetenv` on an environment whose copies all fail their CRC are
//! errors, as in fwup.

use crate::config::UbootEnvironment;
use crate::config::model::{UNSET_COUNT, parse_c_uint};
use crate::output::Output;
use myelin_ubootenv::format::{self, Active, Layout, Vars};
use std::io;

/// Where an environment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Byte offset of the first copy.
    pub offset: u64,
    /// Size of one copy in bytes.
    pub size: usize,
    /// Byte offset of the second copy, for redundant environments.
    pub redund: Option<u64>,
}

/// Why a `uboot-environment` section is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// No `block-offset`.
    #[error("block-offset must be specified")]
    NoOffset,
    /// `block-count` missing or out of range.
    #[error("block-count must be specified, greater than 0 and less than 2^16 - 1")]
    BadCount,
    /// `block-offset-redund` is not a number.
    #[error("block-offset-redund must be an integer")]
    BadRedund,
    /// An offset does not fit.
    #[error("block-offset is too large")]
    TooLarge,
    /// The two copies overlap.
    #[error("block-offset-redund can't overlap primary U-Boot environment")]
    Overlap,
}

impl Location {
    /// Reads and checks a `uboot-environment` section (fwup's rules).
    pub fn from_config(cfg: &UbootEnvironment) -> Result<Location, LocationError> {
        let offset = cfg
            .block_offset
            .as_deref()
            .and_then(parse_c_uint)
            .ok_or(LocationError::NoOffset)?;
        let count = cfg.block_count;
        if count <= 0 || count >= i64::from(u16::MAX) || count == UNSET_COUNT {
            return Err(LocationError::BadCount);
        }
        let redund = match cfg.block_offset_redund.as_deref() {
            None => None,
            Some(s) => Some(parse_c_uint(s).ok_or(LocationError::BadRedund)?),
        };
        if offset > u64::MAX / 1024 || redund.is_some_and(|r| r > u64::MAX / 1024) {
            return Err(LocationError::TooLarge);
        }
        if let Some(r) = redund {
            let (l, rr) = (r, r + count as u64);
            let (a, b) = (offset, offset + count as u64);
            if (l >= a && l < b) || (rr > a && rr < b) {
                return Err(LocationError::Overlap);
            }
        }
        Ok(Location {
            offset: offset * 512,
            size: count as usize * 512,
            redund: redund.map(|r| r * 512),
        })
    }

    /// Bytes written by one call, for progress (both copies when redundant).
    pub fn progress_units(&self) -> u64 {
        self.size as u64 * if self.redund.is_some() { 2 } else { 1 }
    }

    /// Whether the environment has two copies.
    pub fn layout(&self) -> Layout {
        if self.redund.is_some() {
            Layout::Redundant
        } else {
            Layout::Single
        }
    }

    /// Byte ranges the environment occupies, copy by copy.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.offset, self.size as u64)];
        if let Some(r) = self.redund {
            v.push((r, self.size as u64));
        }
        v
    }

    /// The end of the last copy, in bytes.
    pub fn end(&self) -> u64 {
        self.ranges()
            .iter()
            .map(|(o, l)| o.saturating_add(*l))
            .max()
            .unwrap_or(0)
    }
}

/// The raw blocks of an environment's copies (one or two).
pub type Copies = Vec<Vec<u8>>;

/// Reads the copies' blocks as the target holds them (pending writes included).
pub fn read_copies(out: &mut Output<'_>, loc: &Location) -> io::Result<Copies> {
    let mut copies = Vec::new();
    for (off, len) in loc.ranges() {
        let mut b = vec![0u8; len as usize];
        out.read(&mut b, off)?;
        copies.push(b);
    }
    Ok(copies)
}

/// The environment as fwup reads it: the variables, the flags of the copy read, and the
/// copies the next write goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Variables of the copy read.
    pub vars: Vars,
    /// Its flags (0 for a single environment).
    pub flags: u8,
    /// Which copies fwup's next write goes to (first, second).
    pub write: (bool, bool),
}

/// Why an environment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// No copy has a valid CRC.
    #[error("U-Boot environment at byte {0} is corrupt (CRC32 mismatch)")]
    Corrupt(u64),
    /// The variables do not fit or a name is not allowed.
    #[error(transparent)]
    Encode(#[from] format::EncodeError),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Decodes the copies by fwup's rules; `Err` with the write targets fwup would use for a
/// clean environment when no copy decodes.
pub fn fwup_read(loc: &Location, copies: &Copies) -> Result<Read, EnvError> {
    let layout = loc.layout();
    let decode = |b: &[u8]| format::decode(b, layout).ok().map(|d| d.vars);
    if loc.redund.is_none() {
        return decode(&copies[0])
            .map(|vars| Read {
                vars,
                flags: 0,
                write: (true, false),
            })
            .ok_or(EnvError::Corrupt(loc.offset));
    }
    let (f1, f2) = (copies[0][format::CRC_LEN], copies[1][format::CRC_LEN]);
    let delta = f2.wrapping_sub(f1);
    let (first, second) = if delta == 0 || delta >= 128 {
        (0, 1)
    } else {
        (1, 0)
    };
    let flags = [f1, f2];
    if let Some(vars) = decode(&copies[first]) {
        return Ok(Read {
            vars,
            flags: flags[first],
            write: if second == 1 {
                (false, true)
            } else {
                (true, false)
            },
        });
    }
    if let Some(vars) = decode(&copies[second]) {
        return Ok(Read {
            vars,
            flags: flags[second],
            write: if first == 1 {
                (false, true)
            } else {
                (true, false)
            },
        });
    }
    Err(EnvError::Corrupt(loc.offset))
}

/// Writes `vars` the way fwup writes after reading with `flags`, into the copies `write`
/// selects.
pub fn fwup_write(
    loc: &Location,
    copies: &mut Copies,
    vars: &Vars,
    flags: u8,
    write: (bool, bool),
) -> Result<(), EnvError> {
    let block = format::encode(vars, loc.size, loc.layout(), flags.wrapping_add(1))?;
    if write.0 {
        copies[0].clone_from(&block);
    }
    if write.1 && copies.len() > 1 {
        copies[1] = block;
    }
    Ok(())
}

/// `uboot_setenv` / `uboot_unsetenv`: one read-change-write of the copies.
pub fn change(
    loc: &Location,
    copies: &mut Copies,
    f: impl FnOnce(&mut Vars),
) -> Result<(), EnvError> {
    let mut read = fwup_read(loc, copies)?;
    f(&mut read.vars);
    fwup_write(loc, copies, &read.vars, read.flags, read.write)
}

/// `uboot_clearenv`: both copies empty, flags 1.
pub fn clear(loc: &Location, copies: &mut Copies) -> Result<(), EnvError> {
    fwup_write(loc, copies, &Vars::new(), 0, (true, true))
}

/// `uboot_recover`: clears the environment only if no copy decodes.
pub fn recover(loc: &Location, copies: &mut Copies) -> Result<(), EnvError> {
    match fwup_read(loc, copies) {
        Ok(_) => Ok(()),
        Err(EnvError::Corrupt(_)) => clear(loc, copies),
        Err(e) => Err(e),
    }
}

/// The variables of the copy U-Boot boots with, and which copy that is; `None` if no copy is
/// valid.
pub fn active(loc: &Location, copies: &Copies) -> Option<(Active, Vars)> {
    let layout = loc.layout();
    let d: Vec<_> = copies
        .iter()
        .map(|b| format::decode(b, layout).ok())
        .collect();
    if loc.redund.is_none() {
        return d[0].clone().map(|x| (Active::First, x.vars));
    }
    let flags = |i: usize| d[i].as_ref().and_then(|x| x.flags);
    let which = format::choose_active(flags(0), flags(1))?;
    d[which.index()].clone().map(|x| (which, x.vars))
}

/// The writes that take the disk from `disk` to `cur`, ordered so that U-Boot reads the old
/// or the new environment whenever they are cut short (each write followed by a sync):
///
/// * only the copy that stays inactive changes: one write;
/// * the copy that ends up active is inactive now: write it (the switch), then the other;
/// * the copy that ends up active is the active one now: first copy the new block to the
///   other copy (the switch: equal flags, equal contents), then rewrite the active copy, then
///   give the other copy its final bytes.
pub fn safe_writes(loc: &Location, disk: &Copies, cur: &Copies) -> Vec<(u64, Vec<u8>)> {
    let offsets: Vec<u64> = loc.ranges().iter().map(|(o, _)| *o).collect();
    let changed: Vec<bool> = disk.iter().zip(cur).map(|(d, c)| d != c).collect();
    if !changed.iter().any(|&c| c) {
        return Vec::new();
    }
    if loc.redund.is_none() {
        return vec![(offsets[0], cur[0].clone())];
    }
    let Some((fin, _)) = active(loc, cur) else {
        // Nothing valid will be left either way: write in order.
        return (0..2)
            .filter(|&i| changed[i])
            .map(|i| (offsets[i], cur[i].clone()))
            .collect();
    };
    let l = fin.index();
    let o = 1 - l;
    if !changed[l] {
        return vec![(offsets[o], cur[o].clone())];
    }
    let now = active(loc, disk).map(|(a, _)| a.index());
    let mut w = Vec::new();
    if now != Some(l) {
        w.push((offsets[l], cur[l].clone()));
        if changed[o] {
            w.push((offsets[o], cur[o].clone()));
        }
    } else {
        w.push((offsets[o], cur[l].clone()));
        w.push((offsets[l], cur[l].clone()));
        if cur[o] != cur[l] {
            w.push((offsets[o], cur[o].clone()));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemTarget;

    fn loc() -> Location {
        Location {
            offset: 0x2000,
            size: 0x2000,
            redund: Some(0x4000),
        }
    }

    fn blank() -> Copies {
        vec![vec![0u8; 0x2000], vec![0u8; 0x2000]]
    }

    fn set(c: &mut Copies, k: &str, v: &str) {
        change(&loc(), c, |vars| {
            vars.insert(k.into(), v.into());
        })
        .unwrap();
    }

    #[test]
    fn calls_alternate_copies_as_fwup_does() {
        // The golden complete task: clear then four setenvs leaves copy 0 with flags 5 and
        // all four variables, copy 1 with flags 4 and the first three.
        let mut c = blank();
        clear(&loc(), &mut c).unwrap();
        set(&mut c, "nerves_fw_active", "a");
        set(&mut c, "nerves_fw_validated", "1");
        set(&mut c, "a.nerves_fw_version", "1.0.0");
        set(&mut c, "a.nerves_fw_uuid", "x");
        assert_eq!(c[0][4], 5);
        assert_eq!(c[1][4], 4);
        assert_eq!(&c[0][5..21], b"a.nerves_fw_uuid");
        assert_eq!(&c[1][5..24], b"a.nerves_fw_version");
        let (which, vars) = active(&loc(), &c).unwrap();
        assert_eq!(which, Active::First);
        assert_eq!(vars.len(), 4);
        // An empty value is kept as `name=`; an unset of a missing name still writes.
        set(&mut c, "bootdir", "");
        assert_eq!(c[1][4], 6);
        assert_eq!(active(&loc(), &c).unwrap().1["bootdir"], "");
        change(&loc(), &mut c, |v| {
            v.remove("nothing");
        })
        .unwrap();
        assert_eq!(c[0][4], 7);
    }

    #[test]
    fn writes_keep_the_old_or_the_new_environment_at_every_cut() {
        let mut disk = blank();
        clear(&loc(), &mut disk).unwrap();
        set(&mut disk, "v", "old");
        for calls in 1..=4 {
            let mut cur = disk.clone();
            for i in 0..calls {
                set(&mut cur, "v", &format!("mid{i}"));
            }
            set(&mut cur, "v", "new");
            let writes = safe_writes(&loc(), &disk, &cur);
            // Replay every prefix of the writes, and every torn write (half a block).
            let mut state = disk.clone();
            let read = |s: &Copies| active(&loc(), s).map(|(_, v)| v["v"].clone());
            for (off, bytes) in &writes {
                let i = usize::from(*off == 0x4000);
                let mut torn = state.clone();
                torn[i][..0x1000].copy_from_slice(&bytes[..0x1000]);
                let seen = read(&torn).unwrap();
                assert!(
                    seen == "old" || seen == "new",
                    "{calls}: torn write shows {seen}"
                );
                state[i].clone_from(bytes);
                let seen = read(&state).unwrap();
                assert!(seen == "old" || seen == "new", "{calls}: {seen}");
            }
            assert_eq!(state, cur, "the final bytes are fwup's");
        }
    }

    #[test]
    fn corrupt_environment() {
        let mut c = blank();
        assert!(matches!(
            change(&loc(), &mut c, |_| {}),
            Err(EnvError::Corrupt(_))
        ));
        recover(&loc(), &mut c).unwrap();
        assert_eq!((c[0][4], c[1][4]), (1, 1));
        let before = c.clone();
        recover(&loc(), &mut c).unwrap();
        assert_eq!(c, before);
    }

    #[test]
    fn reads_through_the_output() {
        let mut t = MemTarget::zeroed(0x8000);
        let mut o = Output::new(&mut t);
        let copies = read_copies(&mut o, &loc()).unwrap();
        assert_eq!(copies.len(), 2);
        assert!(fwup_read(&loc(), &copies).is_err());
    }

    #[test]
    fn config_checks() {
        let mut cfg = UbootEnvironment {
            name: "e".into(),
            span: crate::config::model::nowhere(),
            block_offset: Some("16".into()),
            block_count: 16,
            block_offset_redund: Some("20".into()),
        };
        assert_eq!(Location::from_config(&cfg), Err(LocationError::Overlap));
        cfg.block_offset_redund = Some("32".into());
        assert_eq!(Location::from_config(&cfg).unwrap(), loc());
        cfg.block_count = UNSET_COUNT;
        assert!(Location::from_config(&cfg).is_err());
    }
}
