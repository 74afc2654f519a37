//! Slots, the `status` task's verdict, and the per-slot metadata in the U-Boot environment.
//!
//! Every board's ops `status` task reports one line through `info()`:
//!
//! | line | meaning |
//! |---|---|
//! | `a`, `b` | running that slot, committed, nothing pending |
//! | `a->b`, `b->a` | running the first slot; the next boot (or the next failed boot) runs the second |
//! | `a (b reverted)` | running `a` after `b` was installed but failed its trial (x86_64 only) |
//!
//! A trial is recognised by the environment, the same way on every board: the running slot's
//! `<slot>.nerves_fw_validated` is `0`.

use std::collections::BTreeMap;
use std::fmt;

use myelin_ubootenv::Vars;
use serde::Serialize;

/// One of the two firmware slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// `"a"` or `"b"`, as the environment spells it.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Parses `"a"` or `"b"`.
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// `<slot>.<key>`: the environment key of a per-slot variable.
    pub fn key(self, key: &str) -> String {
        format!("{}.{key}", self.name())
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `status` task's verdict, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootStatus {
    /// The slot the system runs from.
    pub running: Slot,
    /// The slot the next boot (or the next failed boot) runs, when it is the other one.
    pub next: Option<Slot>,
    /// The slot that failed its trial, when the board reports it.
    pub reverted: Option<Slot>,
}

/// A `status` line that is none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected status {0:?} (expected a, b, a->b, b->a or \"a (b reverted)\")")]
pub struct StatusError(pub String);

impl BootStatus {
    /// Parses one `status` line.
    pub fn parse(line: &str) -> Result<BootStatus, StatusError> {
        let bad = || StatusError(line.to_owned());
        let line = line.trim();
        let (head, detail) = match line.split_once(' ') {
            Some((h, d)) => (h, Some(d.trim())),
            None => (line, None),
        };
        let (running, next) = match head.split_once("->") {
            Some((from, to)) => {
                let (from, to) = (
                    Slot::parse(from).ok_or_else(bad)?,
                    Slot::parse(to).ok_or_else(bad)?,
                );
                if from == to {
                    return Err(bad());
                }
                (from, Some(to))
            }
            None => (Slot::parse(head).ok_or_else(bad)?, None),
        };
        let reverted = match detail {
            None => None,
            Some(d) => {
                let inner = d
                    .strip_prefix('(')
                    .and_then(|d| d.strip_suffix(" reverted)"))
                    .and_then(Slot::parse)
                    .ok_or_else(bad)?;
                if inner == running {
                    return Err(bad());
                }
                Some(inner)
            }
        };
        Ok(BootStatus {
            running,
            next,
            reverted,
        })
    }

    /// Finds the verdict among the messages of a `status` run (the last line that parses).
    pub fn from_messages(messages: &[String]) -> Result<BootStatus, StatusError> {
        messages
            .iter()
            .rev()
            .find_map(|m| BootStatus::parse(m).ok())
            .ok_or_else(|| StatusError(messages.join("; ")))
    }
}

/// The metadata keys a slot carries (`<slot>.nerves_fw_<key>`), as exposed on D-Bus and in JSON.
pub const METADATA_KEYS: [&str; 9] = [
    "product",
    "description",
    "version",
    "platform",
    "architecture",
    "author",
    "vcs_identifier",
    "misc",
    "uuid",
];

/// What the environment says about one slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// `<slot>.nerves_fw_validated == "1"`.
    pub validated: bool,
    /// `<slot>.nerves_fw_<key>` for each of [`METADATA_KEYS`] that is set.
    pub metadata: BTreeMap<String, String>,
}

impl SlotInfo {
    /// Reads a slot's variables.
    pub fn from_env(vars: &Vars, slot: Slot) -> SlotInfo {
        let metadata = METADATA_KEYS
            .iter()
            .filter_map(|k| {
                vars.get(&slot.key(&format!("nerves_fw_{k}")))
                    .map(|v| (k.to_string(), v.clone()))
            })
            .collect();
        SlotInfo {
            validated: validated(vars, slot) == Some(true),
            metadata,
        }
    }

    /// The firmware version, if recorded.
    pub fn version(&self) -> Option<&str> {
        self.metadata.get("version").map(String::as_str)
    }

    /// The firmware UUID, if recorded.
    pub fn uuid(&self) -> Option<&str> {
        self.metadata.get("uuid").map(String::as_str)
    }
}

/// `<slot>.nerves_fw_validated`: `Some(true)` for `1`, `Some(false)` for `0`, `None` if unset
/// or anything else.
pub fn validated(vars: &Vars, slot: Slot) -> Option<bool> {
    match vars
        .get(&slot.key("nerves_fw_validated"))
        .map(String::as_str)
    {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    }
}

/// Whether the running slot is on trial: its `nerves_fw_validated` is `0`.
pub fn is_trial(vars: &Vars, running: Slot) -> bool {
    validated(vars, running) == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = BootStatus::parse("a").unwrap();
        assert_eq!((s.running, s.next, s.reverted), (Slot::A, None, None));
        let s = BootStatus::parse("b->a\n").unwrap();
        assert_eq!(
            (s.running, s.next, s.reverted),
            (Slot::B, Some(Slot::A), None)
        );
        let s = BootStatus::parse("a (b reverted)").unwrap();
        assert_eq!(
            (s.running, s.next, s.reverted),
            (Slot::A, None, Some(Slot::B))
        );
        for bad in [
            "",
            "c",
            "a->a",
            "a->",
            "ab",
            "a (a reverted)",
            "a (b)",
            "Slot a validated",
        ] {
            assert!(BootStatus::parse(bad).is_err(), "{bad:?} parsed");
        }
        let msgs = vec!["Upgrading".to_string(), "b".to_string()];
        assert_eq!(BootStatus::from_messages(&msgs).unwrap().running, Slot::B);
        let e = BootStatus::from_messages(&["nonsense".into()]).unwrap_err();
        assert!(e.to_string().contains("nonsense"));
    }

    #[test]
    fn slot_metadata_and_trial() {
        let vars: Vars = [
            ("a.nerves_fw_validated", "1"),
            ("a.nerves_fw_version", "1.0.0"),
            ("a.nerves_fw_uuid", "u-a"),
            ("b.nerves_fw_validated", "0"),
            ("b.nerves_fw_version", "2.0.0"),
            ("b.nerves_fw_product", "P"),
            ("nerves_fw_active", "b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let a = SlotInfo::from_env(&vars, Slot::A);
        assert!(a.validated);
        assert_eq!((a.version(), a.uuid()), (Some("1.0.0"), Some("u-a")));
        let b = SlotInfo::from_env(&vars, Slot::B);
        assert!(!b.validated);
        assert_eq!(b.metadata.get("product").map(String::as_str), Some("P"));
        assert!(is_trial(&vars, Slot::B));
        assert!(!is_trial(&vars, Slot::A));
        // Unset is not a trial: a Nerves-era environment without per-slot flags.
        assert!(!is_trial(&Vars::new(), Slot::A));
    }
}
