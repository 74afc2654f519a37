//! Running modprobe: the [`Modprobe`] edge and its real implementation, [`Command`].

use std::future::Future;
use std::io;
use std::path::PathBuf;

use crate::plan::modprobe_args;

/// The default modprobe: busybox's applet or kmod's, both read `modules.alias`.
pub const DEFAULT_MODPROBE: &str = "/sbin/modprobe";

/// Why a modprobe call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said.
        source: io::Error,
    },
    /// It exited with an error (some module failed to load; `-q` already hides the aliases
    /// that match none).
    #[error("{program} {args}: {status}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments, space separated.
        args: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

/// Loads the modules for a list of aliases, in one call.
pub trait Modprobe {
    /// Runs `modprobe -a -b -q ALIAS...`.
    fn load(&mut self, aliases: &[String]) -> impl Future<Output = Result<(), ModprobeError>>;
}

/// The real modprobe, as a child process.
#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
}

impl Command {
    /// modprobe at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Command {
        Command {
            program: program.into(),
        }
    }
}

impl Modprobe for Command {
    async fn load(&mut self, aliases: &[String]) -> Result<(), ModprobeError> {
        let args = modprobe_args(aliases);
        let program = self.program.display().to_string();
        let status = tokio::process::Command::new(&self.program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .map_err(|source| ModprobeError::Spawn {
                program: program.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(ModprobeError::Failed {
                program,
                args: args.join(" "),
                status,
            })
        }
    }
}
