//! The `myelin-uevent` command line.
//!
//! ```text
//! myelin-uevent daemon [--sysfs /sys] [--modprobe /sbin/modprobe] [--no-coldplug] [--address BUS]
//! myelin-uevent plan [--sysfs /sys]     the modprobe calls coldplug would make, one per line
//! ```
//!
//! Diagnostics go through `myelin_api::logger` (level: `MYELIN_LOG`, default `info`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::modprobe::{Command, DEFAULT_MODPROBE};
use crate::netlink::Netlink;
use crate::plan::{Planner, modprobe_args};
use crate::service::{Options, serve};

#[derive(Parser, Debug)]
#[command(
    name = "myelin-uevent",
    version,
    about = "Myelin's hotplug daemon: module autoload, device events (org.myelin.Device1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
    Daemon {
        /// Where sysfs is mounted.
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        /// The modprobe to run (busybox's or kmod's).
        #[arg(long, default_value = DEFAULT_MODPROBE)]
        modprobe: PathBuf,
        /// Do not walk sysfs at start.
        #[arg(long)]
        no_coldplug: bool,
        /// D-Bus address to use instead of the system bus.
        #[arg(long)]
        address: Option<String>,
    },
    /// Print the modprobe calls coldplug would make.
    Plan {
        /// Where sysfs is mounted.
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        /// The modprobe to print.
        #[arg(long, default_value = DEFAULT_MODPROBE)]
        modprobe: PathBuf,
    },
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    myelin_api::logger::init(log::LevelFilter::Info);
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Daemon {
            sysfs,
            modprobe,
            no_coldplug,
            address,
        } => {
            let options = Options {
                sysfs,
                coldplug: !no_coldplug,
                address,
            };
            myelin_api::service::run("myelin-uevent", async move {
                // Before the walk: see service's note on order.
                let source = Netlink::open().context("cannot open the uevent netlink socket")?;
                serve(options, source, Command::new(modprobe)).await
            })?
        }
        Cmd::Plan { sysfs, modprobe } => {
            let walk = crate::coldplug::walk(&sysfs)?;
            for e in &walk.errors {
                log::warn!("{e}");
            }
            for aliases in Planner::new().plan(&walk.events) {
                println!(
                    "{} {}",
                    modprobe.display(),
                    modprobe_args(&aliases).join(" ")
                );
            }
            Ok(())
        }
    }
}
