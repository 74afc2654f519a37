//! The text form of an environment: default environments (`board/<board>/uboot-env.txt`, the
//! input of `mkenvimage`) and `fw_setenv -s` scripts. One parser serves both.
//!
//! ```text
//! # a comment: '#' in the first column
//! bootdelay=0
//! bootcmd=if test ${bootcount} -gt 3; then \
//! run altbootcmd; fi
//! nerves_fw_active=a
//! ```
//!
//! * One `name=value` per line; the name ends at the first `=`, the value is the rest of the
//!   line, taken literally (blanks, `=`, backslashes and a trailing `\r` included).
//! * A line ending in a backslash continues on the next line; the backslash becomes a newline in
//!   the value (mkenvimage does the same).
//! * A line whose first character is `#` is a comment. Empty lines, and lines of blanks only, are
//!   skipped.
//! * `name=` (empty value) means "delete `name`" in a script. In a default environment it is a
//!   variable with an empty value, stored as `name=` as U-Boot's `mkenvimage` stores it
//!   ([`to_vars`]); a name given twice is refused.
//! * Names must pass [`check_name`](crate::format::check_name) (no `=`, blanks, controls or
//!   leading `#`), values must not contain NUL, and the text must be UTF-8. Every error names its
//!   line.

use crate::format::{NameError, Vars, check_name, check_value};

/// One `name=value` line (or continued lines) of a text environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEntry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// Variable name.
    pub name: String,
    /// Value; empty means "delete" in a script.
    pub value: String,
}

/// What is wrong with a text environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The line is not UTF-8.
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// The line has no `=`.
    #[error("line {line}: expected name=value, found {text:?}")]
    MissingEquals {
        /// 1-based line number.
        line: usize,
        /// The line as found.
        text: String,
    },
    /// The name or value is not allowed.
    #[error("line {line}: {source}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        source: NameError,
    },
    /// A default environment sets a name twice.
    #[error("line {line}: {name:?} is already set on line {first}")]
    Duplicate {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The variable.
        name: String,
        /// Line of the first occurrence.
        first: usize,
    },
}

/// Parses a text environment into entries, in file order.
pub fn parse(input: &[u8]) -> Result<Vec<TextEntry>, TextError> {
    let mut entries = Vec::new();
    let mut lines = input.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let line = index + 1;
        if raw.first() == Some(&b'#') || raw.iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        // Join continuation lines: "\\\n" becomes "\n".
        let mut joined: Vec<u8> = raw.to_vec();
        while joined.last() == Some(&b'\\') {
            let Some((_, next)) = lines.next() else {
                break;
            };
            joined.pop();
            joined.push(b'\n');
            joined.extend_from_slice(next);
        }
        let text = String::from_utf8(joined).map_err(|_| TextError::NotUtf8 { line })?;
        let Some((name, value)) = text.split_once('=') else {
            return Err(TextError::MissingEquals { line, text });
        };
        check_name(name).map_err(|source| TextError::Invalid { line, source })?;
        if !value.is_empty() {
            check_value(name, value).map_err(|source| TextError::Invalid { line, source })?;
        }
        entries.push(TextEntry {
            line,
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(entries)
}

/// Turns the entries of a default environment into variables (empty values included, as
/// `mkenvimage` keeps them); a name given twice is refused.
pub fn to_vars(entries: &[TextEntry]) -> Result<Vars, TextError> {
    let mut vars = Vars::new();
    let mut lines = std::collections::BTreeMap::new();
    for entry in entries {
        if let Some(&first) = lines.get(&entry.name) {
            return Err(TextError::Duplicate {
                line: entry.line,
                name: entry.name.clone(),
                first,
            });
        }
        lines.insert(entry.name.clone(), entry.line);
        vars.insert(entry.name.clone(), entry.value.clone());
    }
    Ok(vars)
}

/// Parses a default environment file's content straight into variables.
pub fn parse_defaults(input: &[u8]) -> Result<Vars, TextError> {
    to_vars(&parse(input)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[TextEntry]) -> Vec<(usize, &str, &str)> {
        entries
            .iter()
            .map(|e| (e.line, e.name.as_str(), e.value.as_str()))
            .collect()
    }

    #[test]
    fn comments_blanks_continuations() {
        let text = b"# header\n\nbootdelay=0\n   \nbootcmd=if x; then \\\n  run y; fi\n#x=1\nk=a=b \\c\r\nz=";
        let e = parse(text).unwrap();
        assert_eq!(
            pairs(&e),
            vec![
                (3, "bootdelay", "0"),
                (5, "bootcmd", "if x; then \n  run y; fi"),
                (8, "k", "a=b \\c\r"),
                (9, "z", ""),
            ]
        );
    }

    #[test]
    fn trailing_backslash_at_end_of_input_is_literal() {
        assert_eq!(pairs(&parse(b"a=x\\").unwrap()), vec![(1, "a", "x\\")]);
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(
            parse(b"a=1\n\nnoequals\n"),
            Err(TextError::MissingEquals {
                line: 3,
                text: "noequals".into()
            })
        );
        let err = parse(b"a=1\n x=2\n").unwrap_err();
        assert!(matches!(err, TextError::Invalid { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("line 2: "), "{err}");
        assert!(matches!(
            parse(b"=v\n"),
            Err(TextError::Invalid {
                line: 1,
                source: NameError::EmptyName
            })
        ));
        assert!(matches!(
            parse(b"a=\x00\n"),
            Err(TextError::Invalid {
                line: 1,
                source: NameError::NulInValue { .. }
            })
        ));
        assert_eq!(parse(b"a=1\nb=\xff\n"), Err(TextError::NotUtf8 { line: 2 }));
    }

    #[test]
    fn defaults_keep_empty_values_and_refuse_duplicates() {
        let v = parse_defaults(b"a=1\nbootdir=\n").unwrap();
        assert_eq!(v["bootdir"], "");
        assert_eq!(
            parse_defaults(b"a=1\n#\na=2\n"),
            Err(TextError::Duplicate {
                line: 3,
                name: "a".into(),
                first: 1
            })
        );
        let v = parse_defaults(b"b=2\na=1\n").unwrap();
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
    }
}
