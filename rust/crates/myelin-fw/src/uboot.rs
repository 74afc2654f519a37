//! `uboot-environment` sections and the `uboot_*` functions, on top of
//! [`myelin_ubootenv::format`] (the environment block format itself lives there).
//!
//! An environment is `block-count` blocks at `block-offset`, with an optional second copy at
//! `block-offset-redund` (the redundant layout, with a flags byte). Reading picks the active
//! copy by U-Boot's rule. All changes a task makes are applied to one in-memory copy of the
//! variables and written when the applier commits, as one write:
//!
//! * normally, the whole environment goes to the copy that is **not** active, with its flags
//!   one above the active copy's, so a power cut at any moment leaves either the old or the new
//!   environment active, never a mix (fwup instead rewrites the copies once per call);
//! * after `uboot_clearenv` (or `uboot_recover` of a corrupt environment) the old contents do
//!   not matter, and both copies are written exactly as fwup leaves them: a clear writes both
//!   copies empty with flags 1, and each later call alternates copies (second, first, ...) with
//!   flags 2, 3, ...; so a `complete` image is byte-identical to fwup's.
//!
//! Setting a variable to the empty string removes it (U-Boot reads `name=` as a deletion).
//! `uboot_setenv`/`uboot_unsetenv` on an environment whose copies all fail their CRC are
//! errors, as in fwup; `uboot_recover` rewrites such an environment empty and leaves a valid
//! one alone.

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

impl Location {
    /// Reads and checks a `uboot-environment` section (fwup's rules).
    pub fn from_config(cfg: &UbootEnvironment) -> Result<Location, String> {
        let offset = cfg
            .block_offset
            .as_deref()
            .and_then(parse_c_uint)
            .ok_or("block-offset must be specified")?;
        let count = cfg.block_count;
        if count <= 0 || count >= i64::from(u16::MAX) || count == UNSET_COUNT {
            return Err(
                "block-count must be specified, greater than 0 and less than 2^16 - 1".into(),
            );
        }
        let redund = match cfg.block_offset_redund.as_deref() {
            None => None,
            Some(s) => Some(parse_c_uint(s).ok_or("block-offset-redund must be an integer")?),
        };
        if offset > u64::MAX / 1024 || redund.is_some_and(|r| r > u64::MAX / 1024) {
            return Err("block-offset is too large".into());
        }
        if let Some(r) = redund {
            let (l, rr) = (r, r + count as u64);
            let (a, b) = (offset, offset + count as u64);
            if (l >= a && l < b) || (rr > a && rr < b) {
                return Err("block-offset-redund can't overlap primary U-Boot environment".into());
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

    fn layout(&self) -> Layout {
        if self.redund.is_some() {
            Layout::Redundant
        } else {
            Layout::Single
        }
    }

    /// Byte ranges the environment occupies.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.offset, self.size as u64)];
        if let Some(r) = self.redund {
            v.push((r, self.size as u64));
        }
        v
    }
}

/// The environment as read from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Variables of the active copy.
    pub vars: Vars,
    /// Which copy is active (`First` for single environments).
    pub active: Active,
    /// Flags of the active copy (0 for single environments).
    pub flags: u8,
}

/// Reads the active copy, or `None` if no copy passes its CRC.
pub fn read(out: &mut Output<'_>, loc: &Location) -> io::Result<Option<Current>> {
    let mut first = vec![0u8; loc.size];
    out.read(&mut first, loc.offset)?;
    let d1 = format::decode(&first, loc.layout()).ok();
    let Some(r) = loc.redund else {
        return Ok(d1.map(|d| Current {
            vars: d.vars,
            active: Active::First,
            flags: 0,
        }));
    };
    let mut second = vec![0u8; loc.size];
    out.read(&mut second, r)?;
    let d2 = format::decode(&second, Layout::Redundant).ok();
    let f1 = d1.as_ref().and_then(|d| d.flags);
    let f2 = d2.as_ref().and_then(|d| d.flags);
    Ok(match format::choose_active(f1, f2) {
        None => None,
        Some(Active::First) => d1.map(|d| Current {
            vars: d.vars,
            active: Active::First,
            flags: f1.unwrap_or(0),
        }),
        Some(Active::Second) => d2.map(|d| Current {
            vars: d.vars,
            active: Active::Second,
            flags: f2.unwrap_or(0),
        }),
    })
}

#[derive(Debug, Clone)]
enum State {
    /// Nothing read or changed yet.
    Untouched,
    /// Read from the target; `vars` is the working copy.
    Loaded { base: Current, vars: Vars },
    /// Cleared during this task: fwup's write sequence is replayed.
    Cleared { vars: Vars, prev: Vars, ops: u32 },
}

/// Changes to one environment during a task.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Where it lives.
    pub loc: Location,
    state: State,
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

impl Txn {
    /// A transaction with nothing done yet.
    pub fn new(loc: Location) -> Self {
        Txn {
            loc,
            state: State::Untouched,
        }
    }

    /// Forgets everything (after the environment was overwritten by raw data), so the next
    /// call reads the target again.
    pub fn reset(&mut self) {
        self.state = State::Untouched;
    }

    fn vars_mut(
        &mut self,
        out: &mut Output<'_>,
    ) -> Result<(&mut Vars, Option<&mut Vars>, Option<&mut u32>), EnvError> {
        if let State::Untouched = self.state {
            let base = read(out, &self.loc)?.ok_or(EnvError::Corrupt(self.loc.offset))?;
            let vars = base.vars.clone();
            self.state = State::Loaded { base, vars };
        }
        match &mut self.state {
            State::Loaded { vars, .. } => Ok((vars, None, None)),
            State::Cleared { vars, prev, ops } => Ok((vars, Some(prev), Some(ops))),
            State::Untouched => Err(EnvError::Corrupt(self.loc.offset)),
        }
    }

    fn change(&mut self, out: &mut Output<'_>, f: impl FnOnce(&mut Vars)) -> Result<(), EnvError> {
        let (size, layout) = (self.loc.size, self.loc.layout());
        let (vars, prev, ops) = self.vars_mut(out)?;
        if let (Some(prev), Some(ops)) = (prev, ops) {
            *prev = vars.clone();
            *ops += 1;
        }
        f(vars);
        // Refuse now what could not be written later.
        format::encode(vars, size, layout, 0)?;
        Ok(())
    }

    /// `uboot_setenv`.
    pub fn set(&mut self, out: &mut Output<'_>, name: &str, value: &str) -> Result<(), EnvError> {
        format::check_name(name).map_err(format::EncodeError::from)?;
        self.change(out, |v| {
            if value.is_empty() {
                v.remove(name);
            } else {
                v.insert(name.to_owned(), value.to_owned());
            }
        })
    }

    /// `uboot_unsetenv`.
    pub fn unset(&mut self, out: &mut Output<'_>, name: &str) -> Result<(), EnvError> {
        self.change(out, |v| {
            v.remove(name);
        })
    }

    /// `uboot_clearenv`.
    pub fn clear(&mut self) {
        self.state = State::Cleared {
            vars: Vars::new(),
            prev: Vars::new(),
            ops: 0,
        };
    }

    /// `uboot_recover`: clears the environment only if no copy is valid.
    pub fn recover(&mut self, out: &mut Output<'_>) -> Result<(), EnvError> {
        match self.state {
            State::Untouched => match read(out, &self.loc)? {
                Some(base) => {
                    let vars = base.vars.clone();
                    self.state = State::Loaded { base, vars };
                }
                None => self.clear(),
            },
            State::Loaded { .. } | State::Cleared { .. } => {}
        }
        Ok(())
    }

    /// A variable's value as the task currently sees it.
    pub fn get(&mut self, out: &mut Output<'_>, name: &str) -> Result<Option<String>, EnvError> {
        let (vars, _, _) = self.vars_mut(out)?;
        Ok(vars.get(name).cloned())
    }

    /// The writes that make the target hold this transaction's result (empty if nothing
    /// changed), in the order they must be made.
    pub fn writes(&self) -> Result<Vec<(u64, Vec<u8>)>, EnvError> {
        let loc = &self.loc;
        match &self.state {
            State::Untouched => Ok(Vec::new()),
            State::Loaded { base, vars } => {
                if *vars == base.vars {
                    return Ok(Vec::new());
                }
                match loc.redund {
                    None => Ok(vec![(
                        loc.offset,
                        format::encode(vars, loc.size, Layout::Single, 0)?,
                    )]),
                    Some(r) => {
                        let target = match base.active.other() {
                            Active::First => loc.offset,
                            Active::Second => r,
                        };
                        let flags = base.flags.wrapping_add(1);
                        Ok(vec![(
                            target,
                            format::encode(vars, loc.size, Layout::Redundant, flags)?,
                        )])
                    }
                }
            }
            State::Cleared { vars, prev, ops } => match loc.redund {
                None => Ok(vec![(
                    loc.offset,
                    format::encode(vars, loc.size, Layout::Single, 0)?,
                )]),
                Some(r) => {
                    let n = *ops;
                    let empty = Vars::new();
                    // After n calls: call n went to the second copy if n is odd, with flags
                    // n + 1; the other copy holds the state before it (flags n, or the empty
                    // environment with flags 1 when n <= 1).
                    let (last_off, other_off) = if n % 2 == 1 {
                        (r, loc.offset)
                    } else {
                        (loc.offset, r)
                    };
                    if n == 0 {
                        let e = format::encode(&empty, loc.size, Layout::Redundant, 1)?;
                        return Ok(vec![(loc.offset, e.clone()), (r, e)]);
                    }
                    let other = if n == 1 {
                        format::encode(&empty, loc.size, Layout::Redundant, 1)?
                    } else {
                        format::encode(prev, loc.size, Layout::Redundant, n as u8)?
                    };
                    let last = format::encode(vars, loc.size, Layout::Redundant, (n + 1) as u8)?;
                    Ok(vec![(other_off, other), (last_off, last)])
                }
            },
        }
    }
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

    fn apply(t: &mut MemTarget, txn: &Txn) {
        let mut o = Output::new(t);
        o.defer("env", txn.writes().unwrap());
        o.commit_deferred().unwrap();
    }

    #[test]
    fn cleared_sequence_matches_fwup() {
        // The golden complete task: clear then four setenvs leaves copy 0 with flags 5 and
        // all four variables, copy 1 with flags 4 and the first three.
        let mut t = MemTarget::zeroed(0x8000);
        let mut txn = Txn::new(loc());
        {
            let mut o = Output::new(&mut t);
            txn.clear();
            txn.set(&mut o, "nerves_fw_active", "a").unwrap();
            txn.set(&mut o, "nerves_fw_validated", "1").unwrap();
            txn.set(&mut o, "a.nerves_fw_version", "1.0.0").unwrap();
            txn.set(&mut o, "a.nerves_fw_uuid", "x").unwrap();
        }
        apply(&mut t, &txn);
        assert_eq!(t.data[0x2004], 5);
        assert_eq!(t.data[0x4004], 4);
        assert_eq!(&t.data[0x2005..0x2015], b"a.nerves_fw_uuid");
        assert_eq!(&t.data[0x4005..0x4018], b"a.nerves_fw_version");
        let mut o = Output::new(&mut t);
        let cur = read(&mut o, &loc()).unwrap().unwrap();
        assert_eq!(cur.active, Active::First);
        assert_eq!(cur.vars.len(), 4);
    }

    #[test]
    fn later_changes_go_to_the_inactive_copy_in_one_write() {
        let mut t = MemTarget::zeroed(0x8000);
        let mut txn = Txn::new(loc());
        {
            let mut o = Output::new(&mut t);
            txn.clear();
            txn.set(&mut o, "a", "1").unwrap();
            txn.set(&mut o, "b", "2").unwrap();
        }
        apply(&mut t, &txn);
        // Copy 0 is active with flags 3.
        t.log.clear();
        let mut txn = Txn::new(loc());
        {
            let mut o = Output::new(&mut t);
            txn.unset(&mut o, "a").unwrap();
            txn.set(&mut o, "c", "3").unwrap();
            txn.set(&mut o, "empty", "").unwrap();
        }
        apply(&mut t, &txn);
        assert_eq!(t.log, vec![(0x4000, 0x2000)]);
        assert_eq!(t.data[0x4004], 4);
        let mut o = Output::new(&mut t);
        let cur = read(&mut o, &loc()).unwrap().unwrap();
        assert_eq!(cur.active, Active::Second);
        assert_eq!(
            cur.vars.into_iter().collect::<Vec<_>>(),
            vec![
                ("b".to_string(), "2".to_string()),
                ("c".to_string(), "3".to_string())
            ]
        );
    }

    #[test]
    fn corrupt_environment() {
        let mut t = MemTarget::zeroed(0x8000);
        let mut o = Output::new(&mut t);
        let mut txn = Txn::new(loc());
        assert!(matches!(
            txn.set(&mut o, "a", "1"),
            Err(EnvError::Corrupt(_))
        ));
        txn.recover(&mut o).unwrap();
        txn.set(&mut o, "a", "1").unwrap();
        assert_eq!(txn.writes().unwrap().len(), 2);
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
        assert!(Location::from_config(&cfg).unwrap_err().contains("overlap"));
        cfg.block_offset_redund = Some("32".into());
        assert_eq!(Location::from_config(&cfg).unwrap(), loc());
        cfg.block_count = UNSET_COUNT;
        assert!(Location::from_config(&cfg).is_err());
    }
}
