//! The `myelin-hub` command line.
//!
//! ```text
//! myelin-hub daemon [-c /etc/myelin/hub.toml] [--address BUS]   # started by myelin-init
//! myelin-hub check-config [-c FILE]
//! myelin-hub status [--json]
//! ```
//!
//! Without a configuration file the daemon says so and exits successfully: the service is
//! installed on every image but stays off until a product or provisioning step configures it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::backoff::{OsRandom, Policy};
use crate::bus::{BusDevice, BusInstaller};
use crate::client::{Client, ConsoleSettings, HealthSettings, Settings, SystemClock};
use crate::config::{self, Config};
use crate::tls;

/// Where the daemon keeps its status for `status`.
pub use myelin_api::hub::STATUS_PATH;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "myelin-hub", version, about = "NervesHub device client")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to NervesHub and carry out what it asks.
    Daemon {
        /// Configuration file.
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// D-Bus address instead of the system bus.
        #[arg(long)]
        address: Option<String>,
        /// Status file.
        #[arg(long, default_value = STATUS_PATH)]
        status_file: PathBuf,
    },
    /// Check a configuration file (and the key and secret files it names).
    CheckConfig {
        /// Configuration file.
        #[arg(short, long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the daemon's connection status.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Status file.
        #[arg(long, default_value = STATUS_PATH)]
        status_file: PathBuf,
    },
}

/// Runs the command line `args` (the first is the program).
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match myelin_api::service::parse_args(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    myelin_api::logger::init(log::LevelFilter::Info);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Daemon {
            config,
            address,
            status_file,
        } => daemon(&config, address, status_file),
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            tls::client_config(&c)?;
            if let Some(s) = c.shared_secret(&std::collections::HashMap::from([(
                "nerves_serial_number".to_owned(),
                "check".to_owned(),
            )]))? {
                println!("shared secret: key {}", s.key);
            }
            println!("{}: ok ({})", config.display(), c.socket_url());
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, status_file } => {
            let status = myelin_api::hub::read(&status_file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", myelin_api::hub::human(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn daemon(config_path: &Path, address: Option<String>, status_file: PathBuf) -> Result<ExitCode> {
    if !config_path.exists() {
        log::info!(
            "{} does not exist: NervesHub is not configured, nothing to do",
            config_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let file = Config::load(config_path)?;
    myelin_api::service::run("myelin-hub", async move {
        let device = BusDevice::connect(
            address.as_deref(),
            file.identify_command.clone(),
            file.update_command.clone(),
        )
        .await
        .context("D-Bus")?;
        let env = crate::client::Device::env(&device)
            .await
            .map_err(anyhow::Error::msg)
            .context("reading the environment from myelin-kv")?;
        let config = file.with_overrides(&env)?;
        let settings = Settings {
            url: config.socket_url(),
            tls: tls::client_config(&config)?,
            shared_secret: config.shared_secret(&env)?,
            heartbeat: config.heartbeat,
            backoff: Policy::default(),
            reboot_after_update: config.reboot_after_update,
            status_path: Some(status_file),
            console: config.console.enabled.then(|| ConsoleSettings {
                command: config.console.command.clone(),
                idle_timeout: config.console.idle_timeout,
            }),
            health: config.health.enabled.then(|| HealthSettings {
                interval: config.health.interval,
                disk: config.health.disk.clone(),
                root: "/".into(),
            }),
        };
        if settings.console.is_some() {
            log::warn!("the remote console is enabled: NervesHub operators get a root shell");
        }
        log::info!("NervesHub client for {}", settings.url);
        let installer = BusInstaller::new(device.update_proxy());
        let client = Client::new(
            settings,
            device,
            installer,
            Box::new(OsRandom),
            Box::new(SystemClock),
        );
        myelin_api::service::ready();
        client
            .run(async {
                if let Err(e) = myelin_api::service::terminated().await {
                    log::error!("{e}");
                }
            })
            .await;
        Ok::<ExitCode, anyhow::Error>(ExitCode::SUCCESS)
    })?
}
