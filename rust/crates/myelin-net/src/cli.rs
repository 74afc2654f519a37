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

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::NetConfig;
use crate::manager::{Manager, Options};
use myelin_api::net::command::Command;

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
    /// Ask the running daemon (status is printed as JSON).
    #[command(flatten)]
    Client(Command),
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
    if let Some(code) = crate::dhcp::HOOK.run_if_called(&args) {
        return code;
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
        Cmd::Client(command) => {
            // Before the bus: a key is read (and a key in the JSON refused) without a daemon.
            let prepared = command.prepare()?;
            runtime()?.block_on(async move {
                let conn = connect(&address).await?;
                prepared
                    .execute(&conn, true, &mut std::io::stdout().lock())
                    .await?;
                Ok(())
            })
        }
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
