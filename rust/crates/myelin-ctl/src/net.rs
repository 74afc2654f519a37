//! Commands answered by myelin-net (`org.myelin.Network1`): interface state and configuration.
//! The command tree and its execution are myelin-api's, shared with `myelin-net`.

use std::io::Write;

pub use myelin_api::net::command::Command;

use crate::{Cli, bus};

/// Runs a `net` command.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    // Checked before the bus is asked (see `Command::prepare`).
    let prepared = command.prepare()?;
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        prepared.execute(&conn, cli.json, out).await?;
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn configure(args: &[&str]) -> anyhow::Result<i32> {
        // The bus address is never reached: these configurations fail before it is asked.
        let mut argv = vec![
            "myelinctl",
            "--bus",
            "unix:path=/nonexistent/bus",
            "net",
            "configure",
        ];
        argv.extend_from_slice(args);
        let cli = crate::Cli::try_parse_from(argv)?;
        let crate::Command::Net(command) = &cli.command else {
            unreachable!()
        };
        run(command, &cli, &mut Vec::new())
    }

    #[test]
    fn an_inline_key_is_refused_before_the_bus_is_asked() {
        // The rules themselves are tested in myelin-api; this is the wiring.
        let inline =
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a","passphrase":"hunter2hunter2"}]}}"#;
        let err = format!("{:#}", configure(&["wlan0", inline]).unwrap_err());
        assert!(
            err.contains("--psk-file") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
