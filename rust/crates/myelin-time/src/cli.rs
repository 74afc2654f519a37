//! The `myelin-time` command line.
//!
//! ```text
//! myelin-time daemon [--config /etc/myelin/time.toml] [--address BUS]
//! myelin-time status                        JSON (org.myelin.Time1's GetStatus)
//! myelin-time set-servers SERVER...         until myelin-time restarts
//! myelin-time check-config [FILE]           validate a time.toml
//! ```
//!
//! Invoked as `myelin-time-ntpd-hook EVENT` (the symlink ntpd runs), it is ntpd's hook.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{DEFAULT_CONFIG, TimeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "myelin-time",
    version,
    about = "Myelin's clock: NTP, RTC, time file (org.myelin.Time1)"
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
    /// Print the state as JSON.
    Status,
    /// Replace the configured NTP servers until myelin-time restarts.
    SetServers {
        /// `host` or `host:port`.
        #[arg(required = true)]
        servers: Vec<String>,
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
    if let Some(code) = crate::ntpd::HOOK.run_if_called(&args) {
        return code;
    }
    let cli: Cli = match myelin_api::service::parse_args(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Daemon { config } => {
            let cfg = TimeConfig::load(&config)
                .with_context(|| format!("invalid {}", config.display()))?;
            crate::daemon::main(cfg, cli.address)
        }
        Cmd::CheckConfig { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            TimeConfig::parse(&text).with_context(|| format!("invalid {}", file.display()))?;
            println!("{}: valid", file.display());
            Ok(())
        }
        Cmd::Status => client(cli.address, |conn| async move {
            let s = myelin_api::time::status(&conn).await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(())
        }),
        Cmd::SetServers { servers } => client(cli.address, |conn| async move {
            let time = myelin_api::time::Time1Proxy::new(&conn).await?;
            time.set_servers(&servers).await?;
            Ok(())
        }),
    }
}

fn client<F, Fut>(address: Option<String>, f: F) -> Result<()>
where
    F: FnOnce(zbus::Connection) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    myelin_api::service::run("myelin-time", async move {
        let conn = myelin_api::service::bus(address.as_deref())
            .build()
            .await
            .context("cannot connect to the D-Bus")?;
        f(conn).await
    })?
}
