//! Commands answered by myelin-update (`org.myelin.Update1`): firmware status, installs and the
//! A/B operations (validate, revert, prevent-revert, factory reset).

use std::io::Write;

use anyhow::Context;
use myelin_api::update::{self as client, Update1Proxy};

use crate::{Cli, bus};

/// `myelinctl fw ...`: the same tree as `myelin-update <cmd>`, defined once in myelin-api.
pub use myelin_api::update::Command;

/// Runs an `fw` command.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    let request = command.request(cli.json);
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
