//! The `myelin-update` command line: the daemon, and thin D-Bus clients of it.
//!
//! ```text
//! myelin-update daemon [-c /etc/myelin/update.toml]
//! myelin-update install <path|url|->  [--reboot] [--allow-downgrade]   # waits for the end
//! myelin-update status [--json]
//! myelin-update validate | prevent-revert | cancel | reboot
//! myelin-update revert [--no-reboot]
//! myelin-update factory-reset [--no-reboot]
//! ```
//!
//! The clients talk to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured) or to `--address`.
//! `status --json` prints [`crate::client::Status`]: `state`, `progress`, `last_error`, `source`,
//! `status`, `running_slot`, `next_slot`, `trial`, `version`, `slots` (per slot `validated` and
//! the metadata) and `last_install` (`outcome`, `slot`, `version`, `uuid`, `installed_at`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::client;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::fw::FwApplier;
use crate::service::{self, Backends, DaemonOptions};
use crate::system::{EnvReadError, EnvSource, InitSocket, UbootEnv};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "myelin-update",
    version,
    about = "Myelin's A/B firmware updater"
)]
pub struct Cli {
    /// D-Bus address to use instead of the system bus.
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// Print JSON (a stable format for scripts and tests), for `status`.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the org.myelin.Update1 service (started by myelin-init).
    Daemon {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Read the boot id from this file instead of the kernel's (tests).
        #[arg(long, hide = true)]
        boot_id_file: Option<PathBuf>,
    },
    /// The client commands, shared with `myelinctl fw`.
    #[command(flatten)]
    Client(myelin_api::update::Command),
}

/// Runs the command line; returns the exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match myelin_api::service::parse_args(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("myelin-update: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Daemon {
            config,
            boot_id_file,
        } => {
            daemon(&config, cli.address, boot_id_file)?;
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(client_command(command, cli.address.as_deref(), cli.json))
        }
    }
}

/// An environment that could not be opened: every read says why.
struct BrokenEnv(EnvReadError);

impl EnvSource for BrokenEnv {
    fn read(&self) -> Result<myelin_ubootenv::Vars, EnvReadError> {
        Err(self.0.clone())
    }
}

fn daemon(
    config_path: &std::path::Path,
    address: Option<String>,
    boot_id_file: Option<PathBuf>,
) -> Result<()> {
    // Leveled records with the priority prefix myelin-init's log ring keeps.
    myelin_api::logger::init(log::LevelFilter::Info);
    let config = Config::load(config_path)?;
    let env: Arc<dyn EnvSource> = match UbootEnv::open(&config.env_config) {
        Ok(env) => Arc::new(env),
        Err(e) => {
            log::warn!("{e}");
            Arc::new(BrokenEnv(e))
        }
    };
    let backends = Backends {
        fw: Arc::new(FwApplier {
            ops_fw: config.ops_fw.clone(),
            keys_dir: config.keys_dir.clone(),
            development_marker: config.development_marker.clone(),
            sysfs: config.sysfs.clone(),
            reboot_param: config.reboot_param.clone(),
            env_lock: Some((config.env_lock.clone(), config.env_lock_wait)),
        }),
        env,
        init: Arc::new(InitSocket::new(&config.init_socket)),
    };
    let options = DaemonOptions {
        config: config_path.to_owned(),
        address,
        boot_id_file,
    };
    service::run(config, backends, &options)
}

async fn client_command(command: Command, address: Option<&str>, json: bool) -> Result<ExitCode> {
    let proxy = client::connect(address)
        .await
        .context("cannot reach org.myelin.Update1 (is myelin-update daemon running?)")?;
    let request = match &command {
        Command::Daemon { .. } => unreachable!("handled by run"),
        Command::Client(c) => c.request(json),
    };
    let mut out = std::io::stdout().lock();
    Ok(
        if client::execute(&proxy, request, "myelin-update", &mut out).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
