//! Batches of changes, applied to the environment as one write, and the difference between two
//! states of it (what the `Changed` signal carries).

use std::collections::BTreeMap;

use myelin_ubootenv::format::{NameError, Vars, check_name, check_value};
use myelin_ubootenv::text::TextEntry;

/// One change to one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set `name` to `value` (which must not be empty).
    Set {
        /// Variable name.
        name: String,
        /// New value.
        value: String,
    },
    /// Remove `name`; removing a variable that does not exist is not an error.
    Unset {
        /// Variable name.
        name: String,
    },
}

impl Change {
    /// The variable this change is about.
    pub fn name(&self) -> &str {
        match self {
            Change::Set { name, .. } | Change::Unset { name } => name,
        }
    }
}

/// An ordered list of changes: later changes to the same name win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    changes: Vec<Change>,
}

/// Why `fw_setenv`-style arguments cannot be turned into a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// No variable name at all.
    #[error("no variable name given")]
    Empty,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds "set `name` to `value`".
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.changes.push(Change::Set {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Adds "remove `name`".
    pub fn unset(&mut self, name: impl Into<String>) -> &mut Self {
        self.changes.push(Change::Unset { name: name.into() });
        self
    }

    /// The changes, in order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// True if the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// `fw_setenv` arguments: `name value [name value ...] [name]`. A lone trailing name, or an
    /// empty value, removes the variable (libubootenv's rules).
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Batch, ArgsError> {
        if args.is_empty() {
            return Err(ArgsError::Empty);
        }
        let mut batch = Batch::new();
        for pair in args.chunks(2) {
            match pair {
                [name, value] if !value.as_ref().is_empty() => {
                    batch.set(name.as_ref(), value.as_ref());
                }
                [name, ..] => {
                    batch.unset(name.as_ref());
                }
                [] => {}
            }
        }
        Ok(batch)
    }

    /// A `fw_setenv -s` script, parsed by [`myelin_ubootenv::text::parse`]: `name=` removes.
    pub fn from_script(entries: &[TextEntry]) -> Batch {
        let mut batch = Batch::new();
        for entry in entries {
            if entry.value.is_empty() {
                batch.unset(&entry.name);
            } else {
                batch.set(&entry.name, &entry.value);
            }
        }
        batch
    }

    /// Appends the changes of `other`.
    pub fn extend(&mut self, other: Batch) -> &mut Self {
        self.changes.extend(other.changes);
        self
    }

    /// Checks every name and value before anything is read or written.
    pub fn validate(&self) -> Result<(), NameError> {
        for change in &self.changes {
            match change {
                Change::Set { name, value } => {
                    check_name(name)?;
                    check_value(name, value)?;
                }
                Change::Unset { name } => check_name(name)?,
            }
        }
        Ok(())
    }

    /// Applies the changes to `vars`, in order.
    pub fn apply(&self, vars: &mut Vars) {
        for change in &self.changes {
            match change {
                Change::Set { name, value } => {
                    vars.insert(name.clone(), value.clone());
                }
                Change::Unset { name } => {
                    vars.remove(name);
                }
            }
        }
    }
}

/// What changed between two states of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Variables added or given a new value, with their new value.
    pub set: BTreeMap<String, String>,
    /// Variables that disappeared.
    pub removed: Vec<String>,
}

impl Diff {
    /// The difference from `old` to `new`.
    pub fn between(old: &Vars, new: &Vars) -> Diff {
        let set = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        Diff { set, removed }
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fw_setenv_argument_rules() {
        let b = Batch::from_args(&["a", "1", "b", "", "c"]).unwrap();
        assert_eq!(
            b.changes(),
            &[
                Change::Set {
                    name: "a".into(),
                    value: "1".into()
                },
                Change::Unset { name: "b".into() },
                Change::Unset { name: "c".into() },
            ]
        );
        assert_eq!(Batch::from_args::<&str>(&[]), Err(ArgsError::Empty));
        // Values may look like options or hold blanks and '='.
        let b = Batch::from_args(&["x", "-5 a=b"]).unwrap();
        let mut v = Vars::new();
        b.apply(&mut v);
        assert_eq!(v, vars(&[("x", "-5 a=b")]));
    }

    #[test]
    fn later_changes_win_and_validation_names_the_culprit() {
        let mut b = Batch::new();
        b.set("a", "1").unset("a").set("b", "1").set("b", "2");
        let mut v = vars(&[("a", "0"), ("keep", "k")]);
        b.apply(&mut v);
        assert_eq!(v, vars(&[("b", "2"), ("keep", "k")]));
        assert!(b.validate().is_ok());

        let mut bad = Batch::new();
        bad.set("ok", "1").set("a=b", "1");
        assert!(matches!(bad.validate(), Err(NameError::BadNameChar { .. })));
        let mut bad = Batch::new();
        bad.set("ok", "");
        assert!(matches!(bad.validate(), Err(NameError::EmptyValue(_))));
        let mut bad = Batch::new();
        bad.unset("");
        assert_eq!(bad.validate(), Err(NameError::EmptyName));
    }

    #[test]
    fn scripts_delete_with_empty_values() {
        let entries = myelin_ubootenv::text::parse(b"a=1\nb=\n").unwrap();
        let b = Batch::from_script(&entries);
        let mut v = vars(&[("b", "x")]);
        b.apply(&mut v);
        assert_eq!(v, vars(&[("a", "1")]));
    }

    #[test]
    fn diffs() {
        let old = vars(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let new = vars(&[("a", "1"), ("b", "20"), ("d", "4")]);
        let d = Diff::between(&old, &new);
        assert_eq!(d.set, vars(&[("b", "20"), ("d", "4")]));
        assert_eq!(d.removed, vec!["c".to_string()]);
        assert!(Diff::between(&old, &old).is_empty());
    }
}
