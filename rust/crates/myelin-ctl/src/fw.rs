//! Commands answered by myelin-update (`org.myelin.Update1`): firmware status, installs and the
//! A/B operations (validate, revert, prevent-revert, factory reset).

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use myelin_api::update::{self as client, Request, Update1Proxy};

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
    let request = match command {
        Command::Status => Request::Status { json: cli.json },
        Command::Install { source, reboot } => Request::Install {
            source,
            reboot: *reboot,
            quiet: false,
            allow_downgrade: false,
        },
        Command::Cancel => Request::Cancel,
        Command::Validate => Request::Validate,
        Command::Revert { no_reboot } => Request::Revert { reboot: !no_reboot },
        Command::PreventRevert => Request::PreventRevert,
        Command::FactoryReset { no_reboot } => Request::FactoryReset { reboot: !no_reboot },
    };
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        let proxy = Update1Proxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .context("cannot reach myelin-update (org.myelin.Update1)")?;
        Ok(
            if client::execute(&proxy, request, "myelinctl", out).await? {
                0
            } else {
                1
            },
        )
    })
}
