//! The platform's services, for an application: firmware ([`Platform::firmware`],
//! [`Platform::validate`]), the key/value store ([`Platform::kv_get`] and friends) and the
//! network ([`Platform::interface`], [`Platform::wait_for_change`]) and the devices
//! ([`Platform::devices`], [`Platform::wait_for_device`]).
//!
//! Each call is a D-Bus call to the daemon that owns the data (org.myelin.Update1, KV1,
//! Network1, Device1), through the proxies in `myelin-api`. The calls are blocking: a [`Platform`] owns
//! one connection and a small single-threaded runtime that drives it only while a call runs, so
//! an application needs no async runtime. Applications that have one use `myelin::api`'s async
//! proxies directly.
//!
//! ```no_run
//! # fn main() -> Result<(), myelin::platform::Error> {
//! let platform = myelin::platform::Platform::connect()?;
//! let fw = platform.firmware()?;
//! println!("running {} from slot {}", fw.version, fw.slot);
//! platform.kv_put(&[("last_boot_ok", "1")])?;
//! if fw.trial {
//!     platform.validate()?;
//! }
//! # Ok(()) }
//! ```

mod device;
mod firmware;
mod kv;
mod network;

pub use device::{Device, DeviceEvent};
pub use firmware::Firmware;
pub use network::Interface;

use std::future::Future;
use std::time::Duration;

/// How long one call may take before it fails with [`Error::Timeout`].
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime that drives the connection could not start.
    #[error("cannot start the D-Bus runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No connection to the bus.
    #[error("cannot connect to D-Bus ({bus}): {source}")]
    Connect {
        /// The system bus or the address asked for.
        bus: String,
        /// What zbus said.
        source: zbus::Error,
    },
    /// The service answered with an error, or is not running.
    #[error("{service}: {message}")]
    Call {
        /// The bus name of the service (`org.myelin.KV1`).
        service: &'static str,
        /// The D-Bus error name and message, or why the service cannot be reached.
        message: String,
    },
    /// The service did not answer in time.
    #[error("{service}: no answer within {timeout:?}")]
    Timeout {
        /// The bus name of the service.
        service: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
}

impl Error {
    fn call(service: &'static str, e: &zbus::Error) -> Error {
        Error::Call {
            service,
            message: myelin_api::update::describe(e),
        }
    }
}

/// A connection to the platform's services.
#[derive(Debug)]
pub struct Platform {
    runtime: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl Platform {
    /// Connects to the system bus, where the platform's daemons are.
    pub fn connect() -> Result<Platform, Error> {
        Platform::open(None)
    }

    /// Connects to the bus at `address` (a test's private bus).
    pub fn connect_to(address: &str) -> Result<Platform, Error> {
        Platform::open(Some(address))
    }

    fn open(address: Option<&str>) -> Result<Platform, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let conn = runtime
            .block_on(myelin_api::service::bus(address).build())
            .map_err(|source| Error::Connect {
                bus: address.unwrap_or("system bus").to_string(),
                source,
            })?;
        Ok(Platform { runtime, conn })
    }

    /// Runs one call of `service` to completion, bounded by [`CALL_TIMEOUT`].
    fn call<T, F>(&self, service: &'static str, f: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, zbus::Error>>,
    {
        self.within(service, CALL_TIMEOUT, f)?
            .map_err(|e| Error::call(service, &e))
    }

    /// Runs `f` for at most `timeout`.
    fn within<T, F: Future<Output = T>>(
        &self,
        service: &'static str,
        timeout: Duration,
        f: F,
    ) -> Result<T, Error> {
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, f).await })
            .map_err(|_| Error::Timeout { service, timeout })
    }
}
