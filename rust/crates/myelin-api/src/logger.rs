//! Leveled logs for Myelin's daemons and applications, through the `log` facade.
//!
//! A service's standard error is captured line by line by myelin-init, which reads an optional
//! sd-daemon priority prefix (`<N>`, syslog priorities, see `sd-daemon(3)`) at the start of each
//! line, keeps that priority in its log ring, and lets `myelinctl log --level` filter on it. This
//! logger writes every record as one such line:
//!
//! ```text
//! <3>error text        log::Level::Error
//! <4>warning text      log::Level::Warn
//! <6>info text         log::Level::Info
//! <7>debug text        log::Level::Debug and Trace
//! ```
//!
//! The level comes from the environment variable [`LEVEL_VAR`] (`error`, `warn`/`warning`,
//! `info`, `debug`, `trace`, `off`), which myelin-init sets from a service's `log_level` in
//! init.toml, else from the default the program passes to [`init`]. On a terminal (a developer
//! running a daemon or a command by hand) the prefix is replaced by a readable `warning: `-style
//! word, and info records have none.

use std::io::{IsTerminal, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Environment variable holding the level: `error`, `warn`, `info`, `debug`, `trace` or `off`.
pub const LEVEL_VAR: &str = "MYELIN_LOG";

/// The sd-daemon (syslog) priority of a record's level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Parses a level name as [`LEVEL_VAR`] and init.toml's `log_level` take it; `None` if unknown.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" | "err" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" | "notice" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Formats one record as the line the logger writes (without its newline).
pub fn format_line(level: Level, args: &std::fmt::Arguments<'_>, terminal: bool) -> String {
    if terminal {
        match level {
            Level::Error => format!("error: {args}"),
            Level::Warn => format!("warning: {args}"),
            Level::Info => format!("{args}"),
            Level::Debug => format!("debug: {args}"),
            Level::Trace => format!("trace: {args}"),
        }
    } else {
        format!("<{}>{args}", priority(level))
    }
}

/// The logger: one line per record on standard error.
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    terminal: bool,
}

impl Logger {
    /// A logger at `level`, prefixing with priorities unless `terminal`.
    pub fn new(level: LevelFilter, terminal: bool) -> Logger {
        Logger { level, terminal }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format_line(record.level(), record.args(), self.terminal);
        // A multi-line message stays one record: init would give the continuation lines the
        // default priority of standard error.
        if line.contains('\n') {
            line = line.replace('\n', " | ");
        }
        line.push('\n');
        // Standard error is unbuffered; one write per record keeps lines whole between threads.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger for this process at the level [`LEVEL_VAR`] names, else `default`.
///
/// Safe to call more than once: later calls change nothing. An unknown level name in the
/// environment falls back to `default` and says so once.
pub fn init(default: LevelFilter) {
    let (level, bad) = match std::env::var(LEVEL_VAR) {
        Ok(v) => match parse_level(&v) {
            Some(l) => (l, None),
            None => (default, Some(v)),
        },
        Err(_) => (default, None),
    };
    let terminal = std::io::stderr().is_terminal();
    if log::set_boxed_logger(Box::new(Logger::new(level, terminal))).is_ok() {
        log::set_max_level(level);
        if let Some(v) = bad {
            log::warn!(
                "{LEVEL_VAR}={v:?} is not a level (error, warn, info, debug, trace, off); using {default}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_syslog_priorities() {
        let line = format_line(Level::Warn, &format_args!("disk {} full", 3), false);
        assert_eq!(line, "<4>disk 3 full");
        assert_eq!(format_line(Level::Error, &format_args!("x"), false), "<3>x");
        assert_eq!(format_line(Level::Info, &format_args!("x"), false), "<6>x");
        assert_eq!(format_line(Level::Trace, &format_args!("x"), false), "<7>x");
    }

    #[test]
    fn terminal_lines_have_words_not_numbers() {
        assert_eq!(
            format_line(Level::Warn, &format_args!("x"), true),
            "warning: x"
        );
        assert_eq!(format_line(Level::Info, &format_args!("x"), true), "x");
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level("Warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("loud"), None);
    }
}
