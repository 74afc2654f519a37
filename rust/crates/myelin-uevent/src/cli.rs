//! The `myelin-uevent` command line.
//!
//! ```text
//! myelin-uevent daemon [--sysfs /sys] [--modprobe /sbin/modprobe] [--no-coldplug] [--address BUS]
//! myelin-uevent plan [--sysfs /sys]     the modprobe calls coldplug would make, one per line
//! myelin-uevent wait [--subsystem S] [--modalias M] [--devname-prefix P] [--new] [--timeout SECS]
//! ```
//!
//! `wait` is a subscriber from the shell (a console has no dbus-monitor): it subscribes to
//! `DeviceAdded`, prints `subscribed`, then waits for a matching device (one present already
//! counts unless `--new`), prints it as `SUBSYSTEM DEVPATH DEVNAME MODALIAS` and exits 0; it
//! exits 1 if none came within the timeout.
//!
//! Diagnostics go through `myelin_api::logger` (level: `MYELIN_LOG`, default `info`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use myelin_api::device::{Device, Device1Proxy};

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
    /// Wait for a device to be added.
    Wait {
        /// Its subsystem (`tty`, `usb`, `virtio`).
        #[arg(long)]
        subsystem: Option<String>,
        /// Its modalias, exactly.
        #[arg(long)]
        modalias: Option<String>,
        /// The start of its /dev name (`ttyUSB`).
        #[arg(long)]
        devname_prefix: Option<String>,
        /// Only a device added after the subscription, not one present already.
        #[arg(long)]
        new: bool,
        /// Seconds to wait.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
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
        Cmd::Wait {
            subsystem,
            modalias,
            devname_prefix,
            new,
            timeout,
            address,
        } => {
            let wanted = |d: &Device| {
                subsystem.as_ref().is_none_or(|s| &d.subsystem == s)
                    && modalias.as_ref().is_none_or(|m| &d.modalias == m)
                    && devname_prefix
                        .as_ref()
                        .is_none_or(|p| d.devname.starts_with(p.as_str()))
            };
            let found = myelin_api::service::run("myelin-uevent", async move {
                let conn = myelin_api::service::bus(address.as_deref())
                    .build()
                    .await
                    .context("cannot connect to D-Bus")?;
                let proxy = Device1Proxy::new(&conn).await?;
                let added = proxy.receive_device_added().await?;
                println!("subscribed");
                std::io::stdout().flush()?;
                let wait = myelin_api::device::find(&proxy, added, !new, wanted);
                match tokio::time::timeout(Duration::from_secs(timeout), wait).await {
                    Ok(found) => found.map_err(anyhow::Error::from),
                    Err(_) => Ok(None),
                }
            })??;
            match found {
                Some(d) => {
                    println!("{} {} {} {}", d.subsystem, d.devpath, d.devname, d.modalias);
                    Ok(())
                }
                None => anyhow::bail!("no such device was added within {timeout} s"),
            }
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
