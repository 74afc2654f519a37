//! The `uboot_*` calls of a task, recorded so they can be replayed on the environment as it is
//! when the task commits.
//!
//! A task reads an environment once and changes an in-memory copy; an upgrade writes it minutes
//! later, after streaming the rootfs. Another writer (myelin-kv, `fw_setenv`) may have changed
//! the environment meanwhile: writing the copy as read would silently drop that change. So the
//! applier takes the environment lock, re-reads the copies, and when they differ from what the
//! task read, replays the task's calls on top of them (see `Engine::make_durable`). When
//! nothing changed, the bytes written are exactly fwup's.

use crate::uboot::{self, Copies, EnvError, Location};

/// One `uboot_*` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvOp {
    /// `uboot_setenv(env, name, value)`.
    Set {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `uboot_unsetenv(env, name)`.
    Unset {
        /// Variable name.
        name: String,
    },
    /// `uboot_clearenv(env)`.
    Clear,
    /// `uboot_recover(env)`.
    Recover,
}

impl EnvOp {
    /// Applies the call to the copies, as fwup does (one read-change-write per call).
    pub fn apply(&self, loc: &Location, copies: &mut Copies) -> Result<(), EnvError> {
        match self {
            EnvOp::Set { name, value } => uboot::change(loc, copies, |v| {
                v.insert(name.clone(), value.clone());
            }),
            EnvOp::Unset { name } => uboot::change(loc, copies, |v| {
                v.remove(name);
            }),
            EnvOp::Clear => uboot::clear(loc, copies),
            EnvOp::Recover => uboot::recover(loc, copies),
        }
    }
}

/// Replays `ops` on `fresh` (the copies as they are now); the copies the task should write.
pub fn replay(loc: &Location, fresh: &Copies, ops: &[EnvOp]) -> Result<Copies, EnvError> {
    let mut cur = fresh.clone();
    for op in ops {
        op.apply(loc, &mut cur)?;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_ubootenv::format::{self, Layout, Vars};

    #[test]
    fn a_replay_keeps_a_change_made_by_someone_else() {
        let loc = Location {
            offset: 0,
            size: 1024,
            redund: Some(1024),
        };
        let block = |vars: &[(&str, &str)], flags| {
            let v: Vars = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            format::encode(&v, 1024, Layout::Redundant, flags).unwrap()
        };
        // What another writer left: its variable in the newer copy.
        let fresh = vec![
            block(&[("a", "1")], 1),
            block(&[("a", "1"), ("kv", "x")], 2),
        ];
        let ops = [
            EnvOp::Set {
                name: "a".into(),
                value: "2".into(),
            },
            EnvOp::Unset {
                name: "gone".into(),
            },
        ];
        let cur = replay(&loc, &fresh, &ops).unwrap();
        let (_, vars) = uboot::active(&loc, &cur).unwrap();
        assert_eq!(vars.get("a").map(String::as_str), Some("2"));
        assert_eq!(vars.get("kv").map(String::as_str), Some("x"));
    }
}
