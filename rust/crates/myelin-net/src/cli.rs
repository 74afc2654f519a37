//! The `myelin-net` command line: the daemon, and client commands that talk to it over
//! D-Bus (usable from a serial console without busctl).
//!
//! ```text
//! myelin-net daemon [--config /etc/myelin/net.toml] [--address BUS]
//! myelin-net status [IFNAME]                      JSON
//! myelin-net configure IFNAME JSON [--temporary]  (--temporary: not persisted)
//! myelin-net get-config IFNAME
//! myelin-net deconfigure IFNAME
//! myelin-net check-hosts HOST:PORT... [--temporary]
//! myelin-net scan IFNAME [--wait SECONDS]         JSON access points
//! myelin-net check-config [FILE]                  validate a net.toml
//! ```
//!
//! Invoked as `myelin-net-dhcp-hook EVENT` (the symlink udhcpc runs), it is the DHCP hook.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use crate::config::NetConfig;
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
    /// Configure an interface (JSON, see the config documentation).
    Configure {
        /// Interface.
        ifname: String,
        /// Configuration.
        json: String,
        /// Do not persist (a reboot returns to the saved or default configuration).
        #[arg(long)]
        temporary: bool,
    },
    /// Print an interface's running configuration.
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
            eprintln!("myelin-net: {e:#}");
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
            let c = NetConfig::load(&file).map_err(|e| anyhow!("{e}"))?;
            println!(
                "{}: ok ({} interfaces: {})",
                file.display(),
                c.interface.len(),
                c.interface.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        cmd => runtime()?.block_on(async move {
            let conn = connect(&address).await?;
            let net = crate::client::Network1Proxy::new(&conn).await?;
            match cmd {
                Cmd::Status { ifname } => print_json(
                    &crate::client::status(&conn, ifname.as_deref())
                        .await
                        .map_err(|e| anyhow!(e))?,
                ),
                Cmd::Configure {
                    ifname,
                    json,
                    temporary,
                } => Ok(net.configure(&ifname, &json, !temporary).await?),
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
                    let s = crate::client::status(&conn, Some(&ifname))
                        .await
                        .map_err(|e| anyhow!(e))?;
                    print_json(s.get("access_points").unwrap_or(&serde_json::Value::Null))
                }
                Cmd::Daemon { .. } | Cmd::CheckConfig { .. } => Ok(()),
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

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run_daemon(config_path: PathBuf, address: Option<String>) -> Result<()> {
    let config = match NetConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) if !config_path.exists() => {
            eprintln!("myelin-net: {e}; using the built-in defaults");
            NetConfig::default()
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    let hook_program = match &config.daemon.hook_program {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this executable for the DHCP hook")?,
    };
    let opts = Options {
        hostname: hostname(&config),
        hook_program,
        config,
    };
    runtime()?.block_on(async move {
        let net = Arc::new(crate::netlink::Rtnl::new().context("cannot open rtnetlink")?);
        let (mut manager, handle) = Manager::new(opts, net);
        manager.start().await.map_err(|e| anyhow!(e))?;
        let conn = match &address {
            Some(a) => zbus::connection::Builder::address(a.as_str()).build().await,
            None => zbus::connection::Builder::system().build().await,
        }
        .context("cannot connect to D-Bus")?;
        let mirror = crate::service::serve(conn.clone(), handle.clone()).await?;
        conn.request_name(crate::service::BUS_NAME)
            .await
            .with_context(|| format!("cannot own {}", crate::service::BUS_NAME))?;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            eprintln!("myelin-net: cannot notify readiness: {e}");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = manager.run_until_stopped() => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        mirror.abort();
        manager.shutdown().await;
        Ok(())
    })
}
