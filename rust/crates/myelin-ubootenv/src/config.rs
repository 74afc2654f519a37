//! `fw_env.config`: where the environment copies live.
//!
//! The format is the one U-Boot's tools and libubootenv read, one line per copy (one line for a
//! single environment, two for a redundant one), fields separated by blanks:
//!
//! ```text
//! # device        offset     size     [sector size] [sectors] [MTD lock]
//! /dev/mmcblk0    0x100000   0x20000  0x200         0x100
//! /dev/mmcblk0    0x120000   0x20000
//! ```
//!
//! * Lines whose first non-blank character is `#` are comments, blank lines are ignored, and a
//!   field starting with `#` ends the line.
//! * `offset` is a C integer (`0x` hex, a leading `0` octal, else decimal) and may be negative:
//!   it then counts from the end of the device.
//! * `size`, `sector size` and `sectors` are **always hexadecimal**, with or without `0x`, as
//!   libubootenv's `%zx` reads them (so `16` sectors means 0x16). Sector fields only matter for
//!   raw flash (MTD); on block devices and files they are kept but unused.
//! * The sixth field disables MTD unlocking in libubootenv; it is accepted and ignored here.
//! * Both copies must have the same size and must not overlap.
//!
//! libubootenv's YAML configuration (namespaces) and raw flash devices (`/dev/mtdN`, UBI volumes,
//! which need erase-before-write) are refused with a clear error rather than misused. The lock file is not part of this format: it is [`DEFAULT_LOCK_PATH`] unless a
//! program is told otherwise.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::Layout;
use crate::lock::DEFAULT_LOCK_WAIT;

/// Where U-Boot's tools look for the configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fw_env.config";

/// The lock file libubootenv takes around every access; Myelin takes the same one.
pub const DEFAULT_LOCK_PATH: &str = "/var/lock/fw_printenv.lock";

/// One copy of the environment: a byte range of a device or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Block device or regular file holding the copy.
    pub device: PathBuf,
    /// Byte offset of the copy; negative counts from the end of the device.
    pub offset: i64,
    /// Size of the copy in bytes (U-Boot's `CONFIG_ENV_SIZE`).
    pub size: usize,
    /// Erase block size, if given (used by raw flash only).
    pub sector_size: Option<u64>,
    /// Number of erase blocks, if given (used by raw flash only).
    pub sectors: Option<u64>,
    /// Line of the configuration that described this copy (0 if built in code).
    pub line: usize,
}

impl Location {
    /// A copy at `offset` of `device`, `size` bytes long.
    pub fn new(device: impl Into<PathBuf>, offset: i64, size: usize) -> Self {
        Location {
            device: device.into(),
            offset,
            size,
            sector_size: None,
            sectors: None,
            line: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset < 0 {
            write!(
                f,
                "{} at -{:#x} from the end",
                self.device.display(),
                self.offset.unsigned_abs()
            )
        } else {
            write!(f, "{} at {:#x}", self.device.display(), self.offset)
        }
    }
}

/// A parsed `fw_env.config` plus the lock file to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvConfig {
    copies: Vec<Location>,
    /// Lock file taken (`flock`, exclusive) around every access.
    pub lock_path: PathBuf,
    /// How long a writer waits for the lock before failing (readers then go ahead unlocked).
    pub lock_wait: Duration,
}

/// What is wrong with a configuration line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// A required field is absent.
    #[error("missing {0} field")]
    MissingField(&'static str),
    /// A field is not a number of the expected base.
    #[error("{field} {value:?} is not a valid {base} number")]
    BadNumber {
        /// Name of the field.
        field: &'static str,
        /// The text found.
        value: String,
        /// "C (0x hex, 0 octal, decimal)" or "hexadecimal".
        base: &'static str,
    },
    /// More than six fields on a line.
    #[error("unexpected extra field {0:?}")]
    ExtraField(String),
    /// A third copy.
    #[error("more than two environment copies are configured")]
    TooManyCopies,
    /// The size cannot hold even an empty environment.
    #[error("environment size {size:#x} is too small (at least {min:#x} bytes)")]
    SizeTooSmall {
        /// Configured size.
        size: usize,
        /// Smallest usable size.
        min: usize,
    },
    /// The second copy's size differs from the first's.
    #[error("second copy has size {second:#x} but the first has {first:#x}")]
    SizeMismatch {
        /// Size of the first copy.
        first: usize,
        /// Size of the second copy.
        second: usize,
    },
    /// The two copies share bytes.
    #[error("second copy overlaps the first on {0}")]
    Overlap(PathBuf),
    /// Raw flash: writing it like a file, without erasing, would corrupt it.
    #[error(
        "{0} is raw flash (MTD/UBI), which needs erase-before-write; Myelin supports environments on block devices and files only"
    )]
    RawFlash(PathBuf),
    /// A YAML (libubootenv namespace) configuration.
    #[error(
        "this looks like a YAML configuration (libubootenv namespaces), which is not supported; use the one-line-per-copy format"
    )]
    Yaml,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read environment configuration {path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{origin}:{line}: {problem}")]
    Invalid {
        /// The file (or `<config>` for text given directly).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: ConfigProblem,
    },
    /// No copy is described.
    #[error("{origin}: no environment copy is configured")]
    Empty {
        /// The file (or `<config>`).
        origin: String,
    },
}

impl EnvConfig {
    /// A single-copy environment.
    pub fn single(copy: Location) -> Self {
        EnvConfig {
            copies: vec![copy],
            lock_path: PathBuf::from(DEFAULT_LOCK_PATH),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// A redundant environment of two copies of the same size.
    pub fn redundant(first: Location, second: Location) -> Result<Self, ConfigProblem> {
        check_pair(&first, &second)?;
        Ok(EnvConfig {
            copies: vec![first, second],
            lock_path: PathBuf::from(DEFAULT_LOCK_PATH),
            lock_wait: DEFAULT_LOCK_WAIT,
        })
    }

    /// Reads and parses a configuration file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_named(&String::from_utf8_lossy(&text), &path.display().to_string())
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_named(text, "<config>")
    }

    fn parse_named(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |line, problem| ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            problem,
        };
        let mut copies: Vec<Location> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fields: Vec<&str> = raw
                .split_whitespace()
                .take_while(|f| !f.starts_with('#'))
                .collect();
            if fields.is_empty() {
                continue;
            }
            if fields[0].ends_with(':') || fields[0] == "---" {
                return Err(invalid(line, ConfigProblem::Yaml));
            }
            let copy = parse_line(&fields, line).map_err(|p| invalid(line, p))?;
            match copies.len() {
                0 => {}
                1 => check_pair(&copies[0], &copy).map_err(|p| invalid(line, p))?,
                _ => return Err(invalid(line, ConfigProblem::TooManyCopies)),
            }
            copies.push(copy);
        }
        if copies.is_empty() {
            return Err(ConfigError::Empty {
                origin: origin.to_owned(),
            });
        }
        Ok(EnvConfig {
            copies,
            lock_path: PathBuf::from(DEFAULT_LOCK_PATH),
            lock_wait: DEFAULT_LOCK_WAIT,
        })
    }

    /// Waits at most `wait` for the lock instead of [`DEFAULT_LOCK_WAIT`].
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Uses `path` as the lock file instead of [`DEFAULT_LOCK_PATH`].
    pub fn with_lock_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_path = path.into();
        self
    }

    /// The configured copies: one or two.
    pub fn copies(&self) -> &[Location] {
        &self.copies
    }

    /// Single or redundant.
    pub fn layout(&self) -> Layout {
        if self.copies.len() == 2 {
            Layout::Redundant
        } else {
            Layout::Single
        }
    }

    /// Size of each copy in bytes.
    pub fn size(&self) -> usize {
        self.copies[0].size
    }
}

fn parse_line(fields: &[&str], line: usize) -> Result<Location, ConfigProblem> {
    let device = fields[0];
    if ["/dev/mtd", "/dev/ubi"]
        .iter()
        .any(|p| device.starts_with(p))
    {
        return Err(ConfigProblem::RawFlash(PathBuf::from(device)));
    }
    let offset = fields.get(1).ok_or(ConfigProblem::MissingField("offset"))?;
    let size = fields.get(2).ok_or(ConfigProblem::MissingField("size"))?;
    if let Some(extra) = fields.get(6) {
        return Err(ConfigProblem::ExtraField((*extra).to_owned()));
    }
    let offset = parse_c_integer(offset).ok_or_else(|| ConfigProblem::BadNumber {
        field: "offset",
        value: (*offset).to_owned(),
        base: "C (0x hex, 0 octal, decimal)",
    })?;
    let hex = |field: &'static str, value: &str| {
        parse_hex(value).ok_or_else(|| ConfigProblem::BadNumber {
            field,
            value: value.to_owned(),
            base: "hexadecimal",
        })
    };
    let size = hex("size", size)?;
    let size = usize::try_from(size).map_err(|_| ConfigProblem::BadNumber {
        field: "size",
        value: fields[2].to_owned(),
        base: "hexadecimal",
    })?;
    let min = Layout::Redundant.data_offset() + 1;
    if size < min {
        return Err(ConfigProblem::SizeTooSmall { size, min });
    }
    let sector_size = fields.get(3).map(|v| hex("sector size", v)).transpose()?;
    let sectors = fields.get(4).map(|v| hex("sectors", v)).transpose()?;
    if let Some(lock) = fields.get(5) {
        lock.parse::<i32>().map_err(|_| ConfigProblem::BadNumber {
            field: "MTD lock",
            value: (*lock).to_owned(),
            base: "decimal",
        })?;
    }
    Ok(Location {
        device: PathBuf::from(device),
        offset,
        size,
        sector_size,
        sectors,
        line,
    })
}

fn check_pair(first: &Location, second: &Location) -> Result<(), ConfigProblem> {
    if first.size != second.size {
        return Err(ConfigProblem::SizeMismatch {
            first: first.size,
            second: second.size,
        });
    }
    // Offsets of opposite signs can only be compared once the device size is known; the
    // storage layer checks again then.
    if first.device == second.device && (first.offset < 0) == (second.offset < 0) {
        let size = first.size as i128;
        let (a, b) = (i128::from(first.offset), i128::from(second.offset));
        if a < b + size && b < a + size {
            return Err(ConfigProblem::Overlap(first.device.clone()));
        }
    }
    Ok(())
}

/// Parses an integer the way C's `strtoll(s, NULL, 0)` does (`0x` hex, leading `0` octal, else
/// decimal, optional sign), but refusing trailing junk.
pub fn parse_c_integer(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        parse_radix(hex, 16)?
    } else if digits.len() > 1 && digits.starts_with('0') {
        parse_radix(&digits[1..], 8)?
    } else {
        parse_radix(digits, 10)?
    };
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a hexadecimal number with an optional `0x` prefix, as `%x` does.
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    parse_radix(digits, 16)
}

/// Digits only: `from_str_radix` alone would also take a sign.
fn parse_radix(digits: &str, radix: u32) -> Option<u64> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nerves_bbb_single_line() {
        let c = EnvConfig::parse("# BBB\n/dev/mmcblk0 0x100000 0x20000 0x200 256\n").unwrap();
        assert_eq!(c.layout(), Layout::Single);
        let l = &c.copies()[0];
        assert_eq!(l.device, PathBuf::from("/dev/mmcblk0"));
        assert_eq!(l.offset, 0x100000);
        assert_eq!(l.size, 0x20000);
        assert_eq!(l.sector_size, Some(0x200));
        // Always hex, as libubootenv reads it.
        assert_eq!(l.sectors, Some(0x256));
        assert_eq!(l.line, 2);
        assert_eq!(c.lock_path, PathBuf::from(DEFAULT_LOCK_PATH));
    }

    #[test]
    fn redundant_with_comments_and_c_offsets() {
        let c = EnvConfig::parse(
            "  # comment\n\n/dev/sda 1048576 20000 # trailing\n\t/dev/sda 0x120000 0x20000 0x200 1 0\n",
        )
        .unwrap();
        assert_eq!(c.layout(), Layout::Redundant);
        assert_eq!(c.size(), 0x20000);
        assert_eq!(c.copies()[0].offset, 0x100000);
        assert_eq!(c.copies()[1].offset, 0x120000);
        assert_eq!(c.copies()[1].line, 4);
    }

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("0x10"), Some(16));
        assert_eq!(parse_c_integer("-0x2000"), Some(-0x2000));
        assert_eq!(parse_c_integer("-8192"), Some(-8192));
        assert_eq!(parse_c_integer("08"), None);
        assert_eq!(parse_c_integer("12k"), None);
        assert_eq!(parse_c_integer("-"), None);
        assert_eq!(parse_c_integer("0x"), None);
        assert_eq!(parse_c_integer("--1"), None);
        assert_eq!(parse_hex("ff"), Some(255));
        assert_eq!(parse_hex("0X1f"), Some(31));
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("+1"), None);
        assert_eq!(parse_hex("0x+1"), None);
        assert_eq!(parse_c_integer("0x-1"), None);
        assert_eq!(parse_c_integer("-+1"), None);
    }

    fn problem(text: &str) -> (usize, ConfigProblem) {
        match EnvConfig::parse(text) {
            Err(ConfigError::Invalid { line, problem, .. }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        assert_eq!(
            problem("/dev/x\n"),
            (1, ConfigProblem::MissingField("offset"))
        );
        assert_eq!(
            problem("\n/dev/x 0\n"),
            (2, ConfigProblem::MissingField("size"))
        );
        assert!(matches!(
            problem("/dev/x 0x1g 0x2000"),
            (
                1,
                ConfigProblem::BadNumber {
                    field: "offset",
                    ..
                }
            )
        ));
        assert!(matches!(
            problem("/dev/x 0 8k"),
            (1, ConfigProblem::BadNumber { field: "size", .. })
        ));
        assert_eq!(
            problem("/dev/x 0 2"),
            (1, ConfigProblem::SizeTooSmall { size: 2, min: 6 })
        );
        assert_eq!(
            problem("/dev/x 0 0x2000 0x200 1 0 junk"),
            (1, ConfigProblem::ExtraField("junk".into()))
        );
        assert_eq!(
            problem("/dev/x 0 0x2000\n/dev/x 0x2000 0x4000"),
            (
                2,
                ConfigProblem::SizeMismatch {
                    first: 0x2000,
                    second: 0x4000
                }
            )
        );
        assert_eq!(
            problem("/dev/x 0 0x2000\n/dev/x 0x1000 0x2000"),
            (2, ConfigProblem::Overlap("/dev/x".into()))
        );
        assert_eq!(
            problem("a 0 0x2000\nb 0 0x2000\nc 0 0x2000"),
            (3, ConfigProblem::TooManyCopies)
        );
        assert_eq!(
            problem("uboot:\n  size: 0x2000\n"),
            (1, ConfigProblem::Yaml)
        );
        assert_eq!(
            problem("/dev/mtd1 0 0x2000"),
            (1, ConfigProblem::RawFlash("/dev/mtd1".into()))
        );
        assert!(matches!(
            problem("/dev/mmcblk0 0 0x2000\n/dev/ubi0:env 0 0x2000"),
            (2, ConfigProblem::RawFlash(_))
        ));
        assert!(matches!(
            EnvConfig::parse("# nothing\n"),
            Err(ConfigError::Empty { .. })
        ));
        let msg = EnvConfig::parse("/dev/x zero 0x2000")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "<config>:1: offset \"zero\" is not a valid C (0x hex, 0 octal, decimal) number"
        );
    }

    #[test]
    fn same_offsets_on_different_devices_are_fine() {
        let c = EnvConfig::parse("/dev/a 0 0x2000\n/dev/b 0 0x2000\n").unwrap();
        assert_eq!(c.layout(), Layout::Redundant);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = EnvConfig::from_file("/nonexistent/fw_env.config").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/fw_env.config"),
            "{err}"
        );
    }
}
