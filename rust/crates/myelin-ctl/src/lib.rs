//! Myelinctl: the one command line over Myelin's services.
//!
//! One clap CLI, one module per service: [`init`] talks to PID 1 (status, readiness, logs,
//! start/stop/restart, reboot, watchdog). Later modules (kv, net, fw) add their subcommands to
//! [`Command`] the same way: a `#[command(flatten)]` enum of their own, and a `run` function.
//!
//! ```text
//! myelinctl status                 the supervision tree: states, pids, restarts, uptime
//! myelinctl ready [--critical] [--wait 60]
//! myelinctl log [-f] [-n 100] [SERVICE]
//! myelinctl start|stop|restart NAME
//! myelinctl reboot [ARG] | poweroff | halt
//! myelinctl watchdog snooze
//! ```

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod init;

/// `myelinctl` command line.
#[derive(Debug, Parser)]
#[command(name = "myelinctl", version, about = "Control Myelin's services")]
pub struct Cli {
    /// PID 1's control socket.
    #[arg(long, global = true, env = "MYELIN_INIT_SOCKET", default_value = myelin_init::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand, grouped by the service that answers it.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// PID 1: services, logs, power.
    #[command(flatten)]
    Init(init::Command),
}

/// Runs a parsed command line, writing to `out`; the process exit code.
pub fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Init(c) => init::run(c, cli, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_init_commands() {
        let c = Cli::try_parse_from(["myelinctl", "log", "-f", "-n", "20", "kv"]).unwrap();
        match c.command {
            Command::Init(init::Command::Log {
                follow,
                lines,
                service,
            }) => {
                assert!(follow);
                assert_eq!(lines, Some(20));
                assert_eq!(service.as_deref(), Some("kv"));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["myelinctl", "--json", "reboot", "0 tryboot"]).unwrap();
        assert!(c.json);
        assert!(
            matches!(c.command, Command::Init(init::Command::Reboot { arg: Some(ref a) }) if a == "0 tryboot")
        );
        let c = Cli::try_parse_from([
            "myelinctl",
            "ready",
            "--critical",
            "--wait",
            "5",
            "--socket",
            "/x",
        ])
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/x"));
        assert!(Cli::try_parse_from(["myelinctl", "restart"]).is_err());
        assert!(Cli::try_parse_from(["myelinctl", "watchdog", "snooze"]).is_ok());
    }
}
