//! Hostname patterns: a `printf` subset applied to the device's serial number.
//!
//! A pattern is literal text with at most a few conversions of the serial number:
//!
//! | conversion | meaning |
//! |---|---|
//! | `%s` | the whole serial number |
//! | `%.Ns` | its first N characters |
//! | `%-.Ns` | its last N characters |
//! | `%%` | a literal `%` |
//!
//! so `myelin-%-.4s` with serial `0000000012ab34cd` gives `myelin-34cd`. The result is lowercased
//! and reduced to the characters a hostname may hold (`a-z`, `0-9`, `-`, `.`), at most 64 bytes;
//! an empty result leaves the hostname alone.

/// Serial number used when no source has one.
pub const DEFAULT_SERIAL: &str = "00000000";

/// Why a hostname pattern cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `%.` without digits.
    #[error("`%.` needs a number in `{0}`")]
    MissingLength(String),
    /// A conversion other than `s`.
    #[error("unsupported conversion in `{0}`: use %s, %.Ns, %-.Ns or %%")]
    Unsupported(String),
    /// `%-s`: the last how many characters?
    #[error("`%-s` needs a length (`%-.4s`) in `{0}`")]
    RightWithoutLength(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Lit(&'a str),
    Percent,
    Serial { left: bool, max: Option<usize> },
}

fn parse(pattern: &str) -> Result<Vec<Piece<'_>>, PatternError> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('%') {
        if i > 0 {
            out.push(Piece::Lit(&rest[..i]));
        }
        let spec = &rest[i + 1..];
        if let Some(r) = spec.strip_prefix('%') {
            out.push(Piece::Percent);
            rest = r;
            continue;
        }
        let (right, spec) = match spec.strip_prefix('-') {
            Some(s) => (true, s),
            None => (false, spec),
        };
        let (max, spec) = match spec.strip_prefix('.') {
            Some(s) => {
                let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let n: usize = s[..digits]
                    .parse()
                    .map_err(|_| PatternError::MissingLength(pattern.to_string()))?;
                (Some(n), &s[digits..])
            }
            None => (None, spec),
        };
        let Some(spec) = spec.strip_prefix('s') else {
            return Err(PatternError::Unsupported(pattern.to_string()));
        };
        if right && max.is_none() {
            return Err(PatternError::RightWithoutLength(pattern.to_string()));
        }
        out.push(Piece::Serial { left: !right, max });
        rest = spec;
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest));
    }
    Ok(out)
}

/// Checks a pattern without applying it.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    parse(pattern).map(|_| ())
}

/// Applies `pattern` to `serial` and cleans the result up; `None` if nothing usable is left.
pub fn format(pattern: &str, serial: &str) -> Option<String> {
    let pieces = parse(pattern).ok()?;
    let chars: Vec<char> = serial.chars().collect();
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Lit(l) => s.push_str(l),
            Piece::Percent => s.push('%'),
            Piece::Serial { left, max } => {
                let n = max.unwrap_or(chars.len()).min(chars.len());
                let part: String = if left {
                    chars[..n].iter().collect()
                } else {
                    chars[chars.len() - n..].iter().collect()
                };
                s.push_str(&part);
            }
        }
    }
    let clean: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(
            format("myelin-%-.4s", "0000000012AB34CD").as_deref(),
            Some("myelin-34cd")
        );
        assert_eq!(
            format("myelin-%.4s", "0000000012AB34CD").as_deref(),
            Some("myelin-0000")
        );
        assert_eq!(format("%s", "Abc 123").as_deref(), Some("abc123"));
        assert_eq!(format("n-%-.10s", "ab").as_deref(), Some("n-ab"));
        assert_eq!(format("100%%-%.2s", "xyz").as_deref(), Some("100-xy"));
        assert_eq!(format("plain", "x").as_deref(), Some("plain"));
        assert_eq!(format("%s", " \t").as_deref(), None);
        assert_eq!(format("%s", "Ünïcode_Ok").as_deref(), Some("ncodeok"));
        assert_eq!(format("%s", &"a".repeat(100)).map(|s| s.len()), Some(64));
    }

    #[test]
    fn bad_patterns() {
        assert!(check_pattern("x-%d").is_err());
        assert!(check_pattern("x-%-s").is_err());
        assert!(check_pattern("x-%.s").is_err());
        assert!(check_pattern("x-%").is_err());
        assert!(check_pattern("myelin-%-.4s").is_ok());
    }
}
