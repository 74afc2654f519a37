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
    /// It exited with an error: an alias that matches no module (most do not: built-in
    /// drivers, bridges, CPU features; busybox's modprobe says so in its status even with
    /// `-q`), or a module that failed to load (its message is in the kernel log).
    #[error("{program} -a -b -q ({aliases} aliases): {status}")]
    Failed {
        /// The program.
        program: String,
        /// How many aliases it was given.
        aliases: usize,
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
                aliases: aliases.len(),
                status,
            })
        }
    }
}
