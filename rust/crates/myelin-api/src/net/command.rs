//! The network client's command tree, one definition for `myelin-net <cmd>` and
//! `myelinctl net <cmd>`, so their arguments, help texts and key handling cannot drift apart.
//!
//! A WiFi key is read from a file (`--psk-file`) or standard input (`--psk-stdin`), never taken
//! from the command line, where every user of the device could read it (`ps`); configurations
//! read back (`get-config`, `status`) carry no keys.

use std::io::Write;
use std::time::Duration;

use zbus::Connection;

use super::client::{self, Network1Proxy, StatusError};
use super::key_input::{self, KeyArgs, KeyError};

/// What a client asks of myelin-net.
#[derive(Debug, Clone, clap::Subcommand)]
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
    /// Scan for WiFi networks and print the access points found (JSON).
    Scan {
        /// WiFi interface name.
        ifname: String,
        /// Seconds to wait for results.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
    },
}

/// Why a network command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The WiFi key or the configuration was refused before the bus was asked.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The status could not be read.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// myelin-net answered with an error.
    #[error("myelin-net refused {what}")]
    Refused {
        /// What was asked, e.g. "the configuration of eth0".
        what: String,
        /// The D-Bus error.
        #[source]
        source: zbus::Error,
    },
    /// The output could not be written.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// A command checked before the bus is asked: a typo in hand-written JSON is reported with its
/// position, a key on the command line is refused, and the key file is read.
#[derive(Debug)]
pub struct Prepared<'a> {
    command: &'a Command,
    config: Option<String>,
}

impl Command {
    /// Checks the command's input without a daemon.
    pub fn prepare(&self) -> Result<Prepared<'_>, KeyError> {
        let config = match self {
            Command::Configure { config, key, .. } => {
                Some(key_input::prepare(config, key.read()?.as_deref())?)
            }
            _ => None,
        };
        Ok(Prepared {
            command: self,
            config,
        })
    }
}

fn refused(what: impl Into<String>) -> impl FnOnce(zbus::Error) -> CommandError {
    let what = what.into();
    move |source| CommandError::Refused { what, source }
}

impl Prepared<'_> {
    /// Carries the command out over `conn`; status is JSON if `json`, else indented text.
    pub async fn execute(
        &self,
        conn: &Connection,
        json: bool,
        out: &mut dyn Write,
    ) -> Result<(), CommandError> {
        let net = Network1Proxy::new(conn)
            .await
            .map_err(refused("to answer (is org.myelin.Network1 running?)"))?;
        match self.command {
            Command::Status { ifname } => {
                let status = client::status(conn, ifname.as_deref()).await?;
                if json {
                    print_json(out, &status)?;
                } else {
                    write_value(out, &status, 0)?;
                }
            }
            Command::Configure {
                ifname, temporary, ..
            } => net
                .configure(
                    ifname,
                    self.config.as_deref().unwrap_or_default(),
                    !temporary,
                )
                .await
                .map_err(refused(format!("the configuration of {ifname}")))?,
            Command::GetConfig { ifname } => {
                let config = net
                    .get_configuration(ifname)
                    .await
                    .map_err(refused(format!("the configuration of {ifname}")))?;
                writeln!(out, "{config}")?;
            }
            Command::Deconfigure { ifname } => net
                .deconfigure(ifname)
                .await
                .map_err(refused(format!("to deconfigure {ifname}")))?,
            Command::CheckHosts { hosts, temporary } => {
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                net.set_check_hosts(&hosts, !temporary)
                    .await
                    .map_err(refused("the check targets"))?;
            }
            Command::Scan { ifname, wait } => {
                let wifi = client::wifi(conn, ifname)
                    .await
                    .map_err(refused(format!("a scan on {ifname}")))?;
                wifi.scan()
                    .await
                    .map_err(refused(format!("a scan on {ifname}")))?;
                // The driver reports results as they come; the status holds the latest list.
                tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
                let status = client::status(conn, Some(ifname)).await?;
                print_json(
                    out,
                    status
                        .get("access_points")
                        .unwrap_or(&serde_json::Value::Null),
                )?;
            }
        }
        Ok(())
    }
}

fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Prints a status JSON value as indented `key: value` lines; lists of scalars on one line.
fn write_value(
    out: &mut dyn Write,
    value: &serde_json::Value,
    depth: usize,
) -> std::io::Result<()> {
    use serde_json::Value;
    let indent = "  ".repeat(depth);
    let Value::Object(map) = value else {
        return writeln!(out, "{indent}{}", inline(value));
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

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn configure(args: &[&str]) -> Result<(), KeyError> {
        let mut argv = vec!["net", "configure"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        cli.command.prepare().map(|_| ())
    }

    #[test]
    fn keys_come_from_a_file_or_stdin_never_argv() {
        let inline =
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a","passphrase":"hunter2hunter2"}]}}"#;
        let err = configure(&["wlan0", inline]).unwrap_err().to_string();
        assert!(
            err.contains("--psk-file") && !err.contains("hunter2"),
            "{err}"
        );
        // --psk-file and --psk-stdin exclude each other.
        let plain = r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a"}]}}"#;
        assert!(
            Cli::try_parse_from([
                "net",
                "configure",
                "wlan0",
                plain,
                "--psk-file",
                "/k",
                "--psk-stdin"
            ])
            .is_err()
        );
        // The file is read before the bus is asked.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none").display().to_string();
        let err = configure(&["wlan0", plain, "--psk-file", &missing]).unwrap_err();
        assert!(err.to_string().contains("cannot read the key"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = configure(&["wlan0", plain, "--psk-file", empty.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn status_prints_nested_objects_indented() {
        let status = serde_json::json!({
            "connection": "internet",
            "interfaces": {"eth0": {"addresses": ["10.0.2.15/24"], "lower_up": true}},
        });
        let mut out = Vec::new();
        write_value(&mut out, &status, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "connection: internet\ninterfaces:\n  eth0:\n    addresses: 10.0.2.15/24\n    lower_up: true\n"
        );
    }
}
