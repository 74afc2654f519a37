//! Commands answered by myelin-net (`org.myelin.Network1`): interface state and configuration.
//!
//! A WiFi key is read from a file (`--psk-file`) or standard input (`--psk-stdin`), never taken
//! from the command line, where every user of the device could read it (`ps`); configurations
//! read back (`get-config`, `status`) carry no keys.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use myelin_api::net::client::{self, Network1Proxy};
use myelin_api::net::key_input::{self, KeyArgs};

use crate::{Cli, bus};

/// `myelinctl net ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Overall connection and every interface (or one): state, addresses, connectivity.
    Status {
        /// Only this interface.
        ifname: Option<String>,
    },
    /// Replace an interface's configuration (JSON, e.g. '{"type":"ethernet","ipv4":{"method":"dhcp"}}';
    /// WiFi: '{"type":"wifi","wifi":{"networks":[{"ssid":"home"}]}}' --psk-file FILE).
    Configure {
        /// Interface name.
        ifname: String,
        /// The configuration, as JSON, without WiFi keys.
        config: String,
        /// Do not save it on /data: it is gone after a reboot.
        #[arg(long)]
        temporary: bool,
        /// The WiFi key of the network that has none in the JSON.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print an interface's configuration (JSON, without WiFi keys).
    GetConfig {
        /// Interface name.
        ifname: String,
    },
    /// Stop managing an interface and forget its saved configuration.
    Deconfigure {
        /// Interface name.
        ifname: String,
    },
    /// Set the HOST:PORT targets of the internet check.
    CheckHosts {
        /// `HOST:PORT` targets.
        #[arg(required = true, value_name = "HOST:PORT")]
        hosts: Vec<String>,
        /// Do not save them on /data.
        #[arg(long)]
        temporary: bool,
    },
}

/// Runs a `net` command.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    // Checked before the bus is asked: a typo in hand-written JSON is reported here with its
    // position, a key on the command line is refused, and the key file is read.
    let prepared = match command {
        Command::Configure { config, key, .. } => {
            Some(key_input::prepare(config, key.read()?.as_deref())?)
        }
        _ => None,
    };
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        let net = Network1Proxy::new(&conn)
            .await
            .context("cannot reach myelin-net (org.myelin.Network1)")?;
        match command {
            Command::Status { ifname } => {
                let status = client::status(&conn, ifname.as_deref()).await?;
                if cli.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
                } else {
                    write_status(out, &status)?;
                }
            }
            Command::Configure {
                ifname, temporary, ..
            } => net
                .configure(ifname, prepared.as_deref().unwrap_or_default(), !temporary)
                .await
                .with_context(|| format!("myelin-net refused the configuration of {ifname}"))?,
            Command::GetConfig { ifname } => {
                let config = net
                    .get_configuration(ifname)
                    .await
                    .with_context(|| format!("myelin-net has no configuration for {ifname}"))?;
                writeln!(out, "{config}")?;
            }
            Command::Deconfigure { ifname } => net
                .deconfigure(ifname)
                .await
                .with_context(|| format!("myelin-net refused to deconfigure {ifname}"))?,
            Command::CheckHosts { hosts, temporary } => {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                net.set_check_hosts(&hosts, !temporary)
                    .await
                    .context("myelin-net refused the check targets")?;
            }
        }
        Ok(0)
    })
}

/// Prints the status JSON as indented `key: value` lines; lists of scalars on one line.
fn write_status(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    write_value(out, value, 0)
}

fn write_value(out: &mut dyn Write, value: &serde_json::Value, depth: usize) -> anyhow::Result<()> {
    use serde_json::Value;
    let indent = "  ".repeat(depth);
    let Value::Object(map) = value else {
        writeln!(out, "{indent}{}", inline(value))?;
        return Ok(());
    };
    for (key, v) in map {
        match v {
            Value::Object(_) => {
                writeln!(out, "{indent}{key}:")?;
                write_value(out, v, depth + 1)?;
            }
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                writeln!(out, "{indent}{key}:")?;
                for item in items {
                    write_value(out, item, depth + 1)?;
                }
            }
            _ => writeln!(out, "{indent}{key}: {}", inline(v))?,
        }
    }
    Ok(())
}

/// A scalar, or a list of scalars, on one line.
fn inline(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(inline).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
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
    fn keys_come_from_a_file_or_stdin_never_argv() {
        let inline =
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a","passphrase":"hunter2hunter2"}]}}"#;
        let err = format!("{:#}", configure(&["wlan0", inline]).unwrap_err());
        assert!(
            err.contains("--psk-file") && !err.contains("hunter2"),
            "{err}"
        );
        // --psk-file and --psk-stdin exclude each other.
        let plain = r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a"}]}}"#;
        assert!(configure(&["wlan0", plain, "--psk-file", "/k", "--psk-stdin"]).is_err());
        // The file is read before the bus is asked.
        let dir = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            configure(&[
                "wlan0",
                plain,
                "--psk-file",
                &dir.path().join("none").display().to_string()
            ])
            .unwrap_err()
        );
        assert!(err.contains("cannot read the key"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = format!(
            "{:#}",
            configure(&["wlan0", plain, "--psk-file", empty.to_str().unwrap()]).unwrap_err()
        );
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn status_prints_nested_objects_indented() {
        let status = serde_json::json!({
            "connection": "internet",
            "interfaces": {"eth0": {"addresses": ["10.0.2.15/24"], "lower_up": true}},
        });
        let mut out = Vec::new();
        write_status(&mut out, &status).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "connection: internet\ninterfaces:\n  eth0:\n    addresses: 10.0.2.15/24\n    lower_up: true\n"
        );
    }
}
