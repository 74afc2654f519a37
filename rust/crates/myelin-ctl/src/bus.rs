//! The D-Bus side shared by the daemon-facing modules: one runtime per command, the system bus
//! (or `--bus`), and error classification.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;

use crate::Cli;

/// Runs `f` to completion on a single-threaded runtime: a command is one short conversation.
pub fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?
        .block_on(f)
}

/// How long a daemon may take to answer one call; installs wait on signals, not on a reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Connects to the bus `--bus` names, else the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured).
pub async fn connect(cli: &Cli) -> anyhow::Result<zbus::Connection> {
    let (builder, what) = match &cli.bus {
        Some(address) => (
            zbus::connection::Builder::address(address.as_str()),
            format!("the D-Bus at {address}"),
        ),
        None => (
            zbus::connection::Builder::system(),
            "the system D-Bus (is dbus-daemon running?)".to_owned(),
        ),
    };
    builder
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
        .with_context(|| format!("cannot connect to {what}"))
}

/// Whether `e` is the D-Bus error `name`.
pub fn is_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str() == name)
}
