//! The `myelin-net` command line: the daemon, and client commands that talk to it over
//! D-Bus (usable from a serial console without busctl).
//!
//! ```text
//! myelin-net daemon [--config /etc/myelin/net.toml] [--address BUS]
//! myelin-net status [IFNAME]                      JSON
//! myelin-net configure IFNAME JSON [--temporary] [--psk-file FILE | --psk-stdin]
//! myelin-net get-config IFNAME
//! myelin-net deconfigure IFNAME
//! myelin-net check-hosts HOST:PORT... [--temporary]
//! myelin-net scan IFNAME [--wait SECONDS]         JSON access points
//! myelin-net check-config [FILE]                  validate a net.toml
//! ```
//!
//! Invoked as `myelin-net-dhcp-hook EVENT` (the symlink udhcpc runs), it is the DHCP hook.
//!
//! Diagnostics go through `myelin_api::logger` (level: `MYELIN_LOG`, default `info`). A WiFi
//! key is never taken from the command line (see [`crate::key_input`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::NetConfig;
use crate::key_input::{self, KeyArgs};
use crate::manager::{Manager, Options};

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/myelin/net.toml";

#[derive(Parser, Debug)]
#[command(
    name = "myelin-net",
    version,
    about = "Myelin's network manager (org.myelin.Network1)"
)]
struct Cli {
    /// D-Bus address to use instead of the system bus.
    #[arg(long, global = true)]
    address: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
    Daemon {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the state as JSON (one interface, or everything).
    Status {
        /// Interface.
        ifname: Option<String>,
    },
    /// Configure an interface (JSON, see the config documentation; WiFi keys with --psk-file
    /// or --psk-stdin, never in the JSON).
    Configure {
        /// Interface.
        ifname: String,
        /// Configuration.
        json: String,
        /// Do not persist (a reboot returns to the saved or default configuration).
        #[arg(long)]
        temporary: bool,
        /// The WiFi key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print an interface's running configuration (without WiFi keys).
    GetConfig {
        /// Interface.
        ifname: String,
    },
    /// Take an interface down and forget its persisted configuration.
    Deconfigure {
        /// Interface.
        ifname: String,
    },
    /// Set the internet check targets (host:port).
    CheckHosts {
        /// Targets.
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Do not persist.
        #[arg(long)]
        temporary: bool,
    },
    /// Scan for WiFi networks and print the results.
    Scan {
        /// Interface.
        ifname: String,
        /// Seconds to wait for results.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
    },
    /// Validate a configuration file.
    CheckConfig {
        /// File.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
}

/// The binary's main.
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    myelin_api::logger::init(log::LevelFilter::Info);
    let called = args
        .first()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if called == crate::tech::HOOK_NAME {
        let event = args
            .get(1)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        return crate::dhcp::hook_main(&event);
    }
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

async fn connect(address: &Option<String>) -> Result<zbus::Connection> {
    let c = match address {
        Some(a) => zbus::connection::Builder::address(a.as_str()).build().await,
        None => zbus::Connection::system().await,
    };
    c.context("cannot connect to D-Bus")
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let address = cli.address;
    match cli.command {
        Cmd::Daemon { config } => run_daemon(config, address),
        Cmd::CheckConfig { file } => {
            let c = NetConfig::load(&file)?;
            warn_if_readable_secrets(&file, &c);
            println!(
                "{}: ok ({} interfaces: {})",
                file.display(),
                c.interface.len(),
                c.interface.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Cmd::Configure {
            ifname,
            json,
            temporary,
            key,
        } => {
            // Before the bus: a key is read (and a key in the JSON refused) without a daemon.
            let config = key_input::prepare(&json, key.read()?.as_deref())?;
            runtime()?.block_on(async move {
                let conn = connect(&address).await?;
                let net = crate::client::Network1Proxy::new(&conn).await?;
                Ok(net.configure(&ifname, &config, !temporary).await?)
            })
        }
        cmd => runtime()?.block_on(async move {
            let conn = connect(&address).await?;
            let net = crate::client::Network1Proxy::new(&conn).await?;
            match cmd {
                Cmd::Status { ifname } => {
                    print_json(&crate::client::status(&conn, ifname.as_deref()).await?)
                }
                Cmd::GetConfig { ifname } => {
                    println!("{}", net.get_configuration(&ifname).await?);
                    Ok(())
                }
                Cmd::Deconfigure { ifname } => Ok(net.deconfigure(&ifname).await?),
                Cmd::CheckHosts { hosts, temporary } => {
                    let h: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    Ok(net.set_check_hosts(&h, !temporary).await?)
                }
                Cmd::Scan { ifname, wait } => {
                    let w = crate::client::wifi(&conn, &ifname).await?;
                    w.scan().await?;
                    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
                    let s = crate::client::status(&conn, Some(&ifname)).await?;
                    print_json(s.get("access_points").unwrap_or(&serde_json::Value::Null))
                }
                Cmd::Daemon { .. } | Cmd::CheckConfig { .. } | Cmd::Configure { .. } => Ok(()),
            }
        }),
    }
}

fn hostname(config: &NetConfig) -> String {
    config.daemon.hostname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "myelin".into())
    })
}

/// Warns when `file` holds WiFi keys and users other than its owner may read it (the shipped
/// /etc/myelin/net.toml is world-readable: keys belong in the 0600 runtime configuration, set
/// with `configure --psk-file`, or in a 0600 file).
fn warn_if_readable_secrets(file: &std::path::Path, config: &NetConfig) {
    use std::os::unix::fs::PermissionsExt as _;
    let keyed: Vec<&str> = config
        .interface
        .iter()
        .filter(|(_, c)| c.has_secrets())
        .map(|(n, _)| n.as_str())
        .collect();
    let mode = std::fs::metadata(file).map(|m| m.permissions().mode() & 0o777);
    if !keyed.is_empty()
        && let Ok(mode) = mode
        && mode & 0o077 != 0
    {
        log::warn!(
            "{} (mode {mode:03o}) holds WiFi keys ({}) that every user can read: make it 0600, \
             or set them at run time with `myelin-net configure --psk-file`",
            file.display(),
            keyed.join(", ")
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run_daemon(config_path: PathBuf, address: Option<String>) -> Result<()> {
    let config = match NetConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) if !config_path.exists() => {
            log::warn!("{e}; using the built-in defaults");
            NetConfig::default()
        }
        Err(e) => return Err(e.into()),
    };
    warn_if_readable_secrets(&config_path, &config);
    let hook_program = match &config.daemon.hook_program {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this executable for the DHCP hook")?,
    };
    let opts = Options {
        hostname: hostname(&config),
        hook_program,
        config,
    };
    myelin_api::service::run("myelin-net", async move {
        let net = Arc::new(crate::netlink::Rtnl::new().context("cannot open rtnetlink")?);
        let (mut manager, handle) = Manager::new(opts, net);
        manager.start().await?;
        let conn = myelin_api::service::bus(address.as_deref())
            .build()
            .await
            .context("cannot connect to D-Bus")?;
        let mirror = crate::service::serve(conn.clone(), handle.clone()).await?;
        conn.request_name(crate::service::BUS_NAME)
            .await
            .with_context(|| format!("cannot own {}", crate::service::BUS_NAME))?;
        myelin_api::service::ready();
        log::info!("ready");
        tokio::select! {
            _ = manager.run_until_stopped() => {}
            r = myelin_api::service::terminated() => r?,
        }
        mirror.abort();
        manager.shutdown().await;
        Ok::<(), anyhow::Error>(())
    })?
}
