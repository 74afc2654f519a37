//! The daemon around the service: the boot id, the bus name, READY=1, the validation guard's
//! ticks and a clean stop on SIGTERM.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{BUS_NAME, Backends, OBJECT_PATH, Update};
use crate::config::Config;
use crate::guard;
use crate::record;

/// Options of `myelin-update daemon`.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Configuration file.
    pub config: PathBuf,
    /// Bus address instead of the system bus (tests).
    pub address: Option<String>,
    /// Boot id file instead of the kernel's (tests simulate reboots with it).
    pub boot_id_file: Option<PathBuf>,
}

/// Runs the daemon with the given side effects until SIGTERM or SIGINT.
pub fn run(config: Config, backends: Backends, options: &DaemonOptions) -> Result<()> {
    let boot_id_path = options
        .boot_id_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::system::BOOT_ID_PATH));
    let boot_id = crate::system::read_boot_id(&boot_id_path)
        .with_context(|| format!("reading the boot id from {}", boot_id_path.display()))?;
    myelin_api::service::run(
        "myelin-update",
        serve(config, backends, boot_id, options.address.as_deref()),
    )?
}

async fn serve(
    config: Config,
    backends: Backends,
    boot_id: String,
    address: Option<&str>,
) -> Result<()> {
    let poll = config.ready_poll;
    let update = Update::new(config, backends, boot_id);
    // Read the state before taking the name, so the first property reads are right.
    update.reload().await;
    let (conn, emitter) =
        myelin_api::service::serve(address, BUS_NAME, OBJECT_PATH, update.clone()).await?;
    let _ = update.shared.emitter.set(emitter);
    update.publish().await;
    myelin_api::service::ready();
    let mut trial = update.shared.lock().snapshot.trial;
    let shared = &update.shared;
    if trial && record::reverted_during(&shared.config.state_dir, &shared.boot_id) {
        log::info!("a revert was asked for during this boot: the firmware is not validated again");
        trial = false;
    }
    update.guard_event(guard::Event::Started { trial }).await;
    let guard_loop = {
        let update = update.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                update.guard_event(guard::Event::Tick).await;
            }
        })
    };
    myelin_api::service::terminated().await?;
    guard_loop.abort();
    if let Some(c) = &update.shared.lock().cancel {
        // An install in progress stops before it switches slots.
        c.cancel();
    }
    drop(conn);
    Ok(())
}
