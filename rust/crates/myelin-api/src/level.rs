//! Syslog priorities: what PID 1's log ring stores for every line, what the `<N>` prefix of a
//! service's line names (sd-daemon(3)), and what `myelinctl log --level` filters on.

use serde::{Deserialize, Serialize};

/// Syslog priority; a smaller value is more severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// System is unusable.
    Emerg = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical.
    Crit = 2,
    /// Error.
    Err = 3,
    /// Warning.
    Warning = 4,
    /// Normal but significant.
    Notice = 5,
    /// Informational.
    Info = 6,
    /// Debug.
    Debug = 7,
}

/// Every level, most severe first.
pub const ALL: [Level; 8] = [
    Level::Emerg,
    Level::Alert,
    Level::Crit,
    Level::Err,
    Level::Warning,
    Level::Notice,
    Level::Info,
    Level::Debug,
];

impl Level {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Err => "err",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// The level of an sd-daemon prefix digit (`b'0'` … `b'7'`).
    pub fn from_digit(d: u8) -> Option<Level> {
        ALL.get(usize::from(d.checked_sub(b'0')?)).copied()
    }

    /// Parses a name as `myelinctl log --level` takes it: the syslog names, their usual
    /// spellings (`error`, `warn`, `critical`, `emergency`) or the digit.
    pub fn parse(name: &str) -> Option<Level> {
        let n = name.trim().to_ascii_lowercase();
        if let [d] = n.as_bytes() {
            return Level::from_digit(*d);
        }
        Some(match n.as_str() {
            "emerg" | "emergency" | "panic" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" | "critical" => Level::Crit,
            "err" | "error" => Level::Err,
            "warning" | "warn" => Level::Warning,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    /// Whether a line of this level passes a filter at `threshold` (at or above its severity).
    pub fn passes(self, threshold: Level) -> bool {
        self <= threshold
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_digits_and_order() {
        for (i, l) in ALL.iter().enumerate() {
            assert_eq!(*l as usize, i);
            assert_eq!(Level::parse(l.name()), Some(*l));
            assert_eq!(Level::from_digit(b'0' + i as u8), Some(*l));
        }
        assert_eq!(Level::from_digit(b'8'), None);
        assert_eq!(Level::from_digit(b'/'), None);
        assert_eq!(Level::parse("Warn"), Some(Level::Warning));
        assert_eq!(Level::parse("error"), Some(Level::Err));
        assert_eq!(Level::parse("3"), Some(Level::Err));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Err.passes(Level::Warning));
        assert!(Level::Warning.passes(Level::Warning));
        assert!(!Level::Notice.passes(Level::Warning));
    }
}
