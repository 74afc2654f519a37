//! The fwup configuration language (fwup.conf, and meta.conf inside archives).
//!
//! Reading a file happens in three steps, one module each:
//!
//! 1. [`lexer`]: tokens, with `${VAR}` substitution as the file is scanned;
//! 2. [`parser`]: statements (options, sections, calls), running `define`, `define!`,
//!    `define-eval`, `define-eval!` and `include` as they are met;
//! 3. [`model`]: the statements checked against fwup's schema and turned into a typed
//!    [`Config`]. Unknown options, unknown functions and bad arguments are errors that name
//!    the file and line when creating an archive; when reading an archive's meta.conf,
//!    unknown options are skipped (newer fwup versions may add some), as fwup does.
//!
//! Variables come from the process environment (or the map the caller passes) and from the
//! definitions; the environment wins over `define` (not over `define!`). When creating,
//! `FWUP_META_UUID` and `FWUP_META_NICKNAME` are set to the literal text `${FWUP_META_UUID}`
//! and `${FWUP_META_NICKNAME}` so that they survive into meta.conf and are substituted when the
//! archive is applied, once the UUID (a hash of meta.conf itself) is known.

pub mod eval;
pub mod lexer;
pub mod model;
pub mod parser;

pub use model::{
    Call, Config, Event, FileResource, Gpt, GptPartition, Mbr, MbrPartition, Meta, OnResource,
    Osii, Task, UbootEnvironment,
};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// File name as given (or `meta.conf`).
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u32,
}

impl Span {
    /// A span at `line` of `file`.
    pub fn new(file: Arc<str>, line: u32) -> Self {
        Span { file, line }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A configuration that cannot be read, with the place at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is.
    pub span: Option<Span>,
    /// What the problem is.
    pub message: String,
}

impl ConfigError {
    /// An error without a position.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            span: None,
            message: message.into(),
        }
    }

    /// An error at `span`.
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        ConfigError {
            span: Some(span),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{span}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The variables `${...}` reads and `define` sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    map: BTreeMap<String, String>,
}

impl Vars {
    /// The process environment (variables that are not UTF-8 are left out).
    pub fn from_env() -> Self {
        Vars {
            map: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Variables from `pairs`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Vars {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.map.insert(name.to_owned(), value.to_owned());
    }
}
