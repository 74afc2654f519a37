//! Where a configuration problem is (`file:line:column: message`), and why a configuration
//! cannot be used.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A configuration problem, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or the drop-in directory could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file larger than PID 1 reads.
    #[error("{}: {size} bytes is more than a configuration file may hold ({max})", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The files were read but are invalid; one diagnostic per problem.
    #[error("{}", join_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

fn join_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One file of a configuration: the main file or a drop-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it was read from (only used in diagnostics).
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// A place in one of the configuration's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// Index of the file in the configuration's list.
    pub file: usize,
    /// Byte range in that file.
    pub span: Range<usize>,
}

/// Collects diagnostics against a list of files.
pub(crate) struct Diagnostics<'a> {
    files: &'a [SourceFile],
    /// What was found so far.
    pub list: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(files: &'a [SourceFile]) -> Self {
        Diagnostics {
            files,
            list: Vec::new(),
        }
    }

    /// Records a problem at `place`.
    pub(crate) fn err(&mut self, place: &Place, message: impl Into<String>) {
        self.list.push(self.locate(place, message.into()));
    }

    /// `file:line:column` of a place, for messages that point elsewhere.
    pub(crate) fn where_is(&self, place: &Place) -> String {
        let d = self.locate(place, String::new());
        if place.file == 0 {
            format!("line {}, column {}", d.line, d.column)
        } else {
            format!("{}:{}:{}", d.file.display(), d.line, d.column)
        }
    }

    fn locate(&self, place: &Place, message: String) -> Diagnostic {
        let (file, text) = match self.files.get(place.file) {
            Some(f) => (f.path.clone(), f.text.as_str()),
            None => (PathBuf::new(), ""),
        };
        let (line, column) = line_col(text, place.span.start);
        Diagnostic {
            file,
            line,
            column,
            message,
        }
    }

    /// `Ok` if nothing was found.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.list))
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 10), (1, 1));
        // Inside a multi-byte character: the character's own column.
        assert_eq!(line_col("é", 1), (1, 1));
    }
}
