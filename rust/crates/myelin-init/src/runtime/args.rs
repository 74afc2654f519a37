//! PID 1's command line.
//!
//! ```text
//! myelin-init [--config PATH] [--kmsg PATH]        as PID 1 (refuses otherwise)
//! myelin-init --check [FILE] [--root DIR]          validate FILE (default: the configuration)
//!                                                  and its drop-ins, exit 0/1
//! myelin-init --version
//! ```
//!
//! As PID 1, words it does not know are ignored: the kernel passes boot parameters it does not
//! understand to init. The configuration path can also come from the kernel command line as
//! `myelin_config=PATH` (the kernel passes it to init in the environment).

use std::path::PathBuf;

/// Command-line options of `myelin-init`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Configuration file.
    pub config: Option<PathBuf>,
    /// Overrides `[log] kmsg` (tests).
    pub kmsg: Option<String>,
    /// Only validate the configuration and exit.
    pub check: bool,
    /// With `--check`: check executables and users against this root directory (an image's
    /// target directory on the build host) instead of the running system.
    pub root: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run (as PID 1) or check, per the options.
    Run(Options),
    /// Print the version.
    Version,
}

/// A command line that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// An option without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// Two configuration files.
    #[error("two configuration files given: {} and {}", .0.display(), .1.display())]
    TwoConfigs(PathBuf, PathBuf),
    /// `--root` without `--check`.
    #[error("--root only goes with --check")]
    RootWithoutCheck,
}

/// Parses PID 1's arguments (`args[0]` is the program).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Invocation, ArgsError> {
    let mut o = Options::default();
    let mut positional: Vec<PathBuf> = Vec::new();
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => {
                o.config = Some(it.next().ok_or(ArgsError::MissingValue("--config"))?.into())
            }
            "--kmsg" => o.kmsg = Some(it.next().ok_or(ArgsError::MissingValue("--kmsg"))?),
            "--root" => o.root = Some(it.next().ok_or(ArgsError::MissingValue("--root"))?.into()),
            "--check" => o.check = true,
            "--version" | "-V" => return Ok(Invocation::Version),
            p if !p.starts_with('-') => positional.push(p.into()),
            _ => {}
        }
    }
    if o.check {
        if let Some(file) = positional.into_iter().next() {
            if let Some(c) = &o.config {
                return Err(ArgsError::TwoConfigs(c.clone(), file));
            }
            o.config = Some(file);
        }
    } else if o.root.is_some() {
        return Err(ArgsError::RootWithoutCheck);
    }
    if o.config.is_none() {
        if let Ok(p) = std::env::var("myelin_config") {
            o.config = Some(p.into());
        }
    }
    Ok(Invocation::Run(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(a: &[&str]) -> Result<Invocation, ArgsError> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Ok(Invocation::Run(o)) =
            args(&["init", "--config", "/x.toml", "quiet", "--kmsg", "/tmp/k"])
        else {
            panic!()
        };
        assert_eq!(o.config.as_deref(), Some(Path::new("/x.toml")));
        assert_eq!(o.kmsg.as_deref(), Some("/tmp/k"));
        assert!(!o.check);
        assert_eq!(
            args(&["init", "--config"]),
            Err(ArgsError::MissingValue("--config"))
        );
        assert_eq!(args(&["init", "--version"]), Ok(Invocation::Version));
    }

    #[test]
    fn check_takes_a_file_and_a_root() {
        let Ok(Invocation::Run(o)) = args(&[
            "myelin-init",
            "--check",
            "/t/etc/myelin/init.toml",
            "--root",
            "/t",
        ]) else {
            panic!()
        };
        assert!(o.check);
        assert_eq!(
            o.config.as_deref(),
            Some(Path::new("/t/etc/myelin/init.toml"))
        );
        assert_eq!(o.root.as_deref(), Some(Path::new("/t")));
        assert!(matches!(
            args(&["i", "--check", "a.toml", "--config", "b.toml"]),
            Err(ArgsError::TwoConfigs(..))
        ));
        assert_eq!(
            args(&["i", "--root", "/t"]),
            Err(ArgsError::RootWithoutCheck)
        );
    }
}
