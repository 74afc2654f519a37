//! Commands answered by myelin-update (`org.myelin.Update1`): firmware status, installs and the
//! A/B operations (validate, revert, prevent-revert, factory reset).

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use myelin_update::client::{self, ClientError, InstallSource, Update1Proxy};

use crate::{Cli, bus};

/// `myelinctl fw ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The running slot, whether it is on trial, each slot's firmware, the last install.
    Status,
    /// Install a .fw into the inactive slot: a path, an http(s):// URL, or - for standard input.
    Install {
        /// Where the .fw comes from.
        source: String,
        /// Reboot into the new firmware once it is installed.
        #[arg(long)]
        reboot: bool,
    },
    /// Stop the install in progress (the active slot is never touched).
    Cancel,
    /// Commit the running firmware: the next boots stay on it.
    Validate,
    /// Make the other slot the default again, and reboot into it.
    Revert {
        /// Switch, but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Commit the running firmware and make the other slot unbootable.
    PreventRevert,
    /// Erase /data (it is formatted on the next boot), and reboot.
    FactoryReset {
        /// Erase, but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
    },
}

/// Runs an `fw` command.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        let proxy = Update1Proxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .context("cannot reach myelin-update (org.myelin.Update1)")?;
        let messages = match command {
            Command::Status => {
                let status = client::status(&proxy).await?;
                if cli.json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&status.to_json())?)?;
                } else {
                    write!(out, "{}", client::human(&status))?;
                }
                return Ok(0);
            }
            Command::Install { source, reboot } => {
                let source = InstallSource::from_argument(source)?;
                let mut last = None;
                // Every 5% is enough on a serial console.
                let result = client::install(&proxy, source, |p| {
                    if last.is_none_or(|l: u32| p / 5 > l / 5) {
                        last = Some(p);
                        eprintln!("installing: {p}%");
                    }
                })
                .await;
                return match result {
                    Ok(()) if *reboot => {
                        writeln!(out, "installed; rebooting into it")?;
                        proxy.reboot().await.map_err(ClientError::from)?;
                        Ok(0)
                    }
                    Ok(()) => {
                        writeln!(out, "installed; the new firmware runs after a reboot")?;
                        Ok(0)
                    }
                    Err(ClientError::Failed(why)) => {
                        eprintln!("myelinctl: install failed: {why}");
                        Ok(1)
                    }
                    Err(e) => Err(e.into()),
                };
            }
            Command::Cancel => {
                proxy.cancel().await.map_err(ClientError::from)?;
                Vec::new()
            }
            Command::Validate => proxy.validate().await.map_err(ClientError::from)?,
            Command::Revert { no_reboot } => {
                proxy.revert(!no_reboot).await.map_err(ClientError::from)?
            }
            Command::PreventRevert => proxy.prevent_revert().await.map_err(ClientError::from)?,
            Command::FactoryReset { no_reboot } => proxy
                .factory_reset(!no_reboot)
                .await
                .map_err(ClientError::from)?,
        };
        for m in messages {
            writeln!(out, "{m}")?;
        }
        Ok(0)
    })
}
