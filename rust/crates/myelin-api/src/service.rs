//! The life of a Myelin D-Bus daemon, written once for kv, net and update.
//!
//! Each daemon does the same four things around its own logic: start a single-threaded tokio
//! runtime (myelin-init supervises one process per service, so one thread is enough and keeps
//! the memory small), connect to the system bus or to the `--address` a test gives, tell
//! myelin-init it is ready (`READY=1` on `$NOTIFY_SOCKET`, only once the bus name is owned so
//! that a client started after readiness finds it), and run until SIGTERM (myelin-init's stop)
//! or SIGINT (a developer's Ctrl-C).
//!
//! ```no_run
//! # fn main() -> Result<(), myelin_api::service::ServiceError> {
//! myelin_api::service::run("myelin-example", async {
//!     let conn = myelin_api::service::bus(None).name("org.example.Thing1").build().await?;
//!     myelin_api::service::ready();
//!     myelin_api::service::terminated().await?;
//!     drop(conn);
//!     Ok::<(), myelin_api::service::ServiceError>(())
//! })?
//! # }
//! ```

use std::future::Future;
use std::io;

use zbus::object_server::SignalEmitter;

/// Why a daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The tokio runtime could not be built.
    #[error("{daemon}: cannot start the tokio runtime: {source}")]
    Runtime {
        /// The daemon.
        daemon: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot handle SIGTERM: {0}")]
    Signal(#[source] io::Error),
    /// The bus refused us.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The service's object or name could not be set up on the bus.
    #[error("cannot serve {name} on the bus")]
    Serve {
        /// The well-known name.
        name: &'static str,
        /// What the bus said.
        source: zbus::Error,
    },
}

/// Runs `main` on a single-threaded runtime and returns its result.
pub fn run<F: Future>(daemon: &'static str, main: F) -> Result<F::Output, ServiceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServiceError::Runtime { daemon, source })?;
    Ok(runtime.block_on(main))
}

/// A connection builder for the system bus, or for `address` (a test's private bus).
pub fn bus(address: Option<&str>) -> zbus::connection::Builder<'_> {
    match address {
        Some(address) => zbus::connection::Builder::address(address),
        None => zbus::connection::Builder::system(),
    }
}

/// Serves `object` at `path` under the well-known `name`, on the system bus or at `address`.
/// Returns the connection and the emitter of the object's signals and property changes.
pub async fn serve<I: zbus::object_server::Interface>(
    address: Option<&str>,
    name: &'static str,
    path: &'static str,
    object: I,
) -> Result<(zbus::Connection, SignalEmitter<'static>), ServiceError> {
    let serve = |source| ServiceError::Serve { name, source };
    let conn = bus(address)
        .name(name)
        .serve_at(path, object)
        .build()
        .await
        .map_err(serve)?;
    let emitter = SignalEmitter::new(&conn, path).map_err(serve)?.into_owned();
    Ok((conn, emitter))
}

/// Tells myelin-init (or any sd_notify supervisor) that the service is ready; a missing
/// `$NOTIFY_SOCKET` (run by hand) is fine, a failing one is logged.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        log::warn!("cannot notify readiness: {e}");
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn terminated() -> Result<(), ServiceError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signal)?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: stopping"),
        _ = int.recv() => log::info!("SIGINT: stopping"),
    }
    Ok(())
}

/// Parses a daemon's command line. On `--help`/`--version` the text is printed and `Err` holds
/// exit status 0; on bad arguments clap's message is printed and `Err` holds 2, as clap's own
/// exit does, but returned so `main` can end normally.
pub fn parse_args<C: clap::Parser>(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<C, std::process::ExitCode> {
    C::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            std::process::ExitCode::from(2)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}
