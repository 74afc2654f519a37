//! Commands answered by myelin-net (`org.myelin.Network1`): interface state and configuration.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use myelin_net::client::{self, Network1Proxy};

use crate::{Cli, bus};

/// `myelinctl net ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Overall connection and every interface (or one): state, addresses, connectivity.
    Status {
        /// Only this interface.
        ifname: Option<String>,
    },
    /// Replace an interface's configuration (JSON, e.g. '{"type":"ethernet","ipv4":{"method":"dhcp"}}').
    Configure {
        /// Interface name.
        ifname: String,
        /// The configuration, as JSON.
        config: String,
        /// Do not save it on /data: it is gone after a reboot.
        #[arg(long)]
        temporary: bool,
    },
    /// Print an interface's configuration (JSON).
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
    if let Command::Configure { config, .. } = command {
        // A typo in hand-written JSON is reported here, with its position, not as a bus error.
        serde_json::from_str::<serde_json::Value>(config)
            .context("the configuration is not JSON")?;
    }
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        let net = Network1Proxy::new(&conn)
            .await
            .context("cannot reach myelin-net (org.myelin.Network1)")?;
        match command {
            Command::Status { ifname } => {
                let status = match client::status(&conn, ifname.as_deref()).await {
                    Ok(s) => s,
                    Err(e) => bail!("myelin-net: {e}"),
                };
                if cli.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
                } else {
                    write_status(out, &status)?;
                }
            }
            Command::Configure {
                ifname,
                config,
                temporary,
            } => net
                .configure(ifname, config, !temporary)
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
