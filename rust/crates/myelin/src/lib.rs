//! Myelin: the app side. What a product's application links to run well under Myelin.
//!
//! Myelin's PID 1 (myelin-init) supervises the application like any other service: it starts it,
//! waits for it to say it is ready, expects it to prove it is alive, keeps its log lines with
//! their levels, and restarts it when it dies. This crate is the application's half of those
//! contracts, plus the hardware it talks to. It is sync-first: nothing here needs an async
//! runtime, and the `tokio` feature adds async variants where waiting is the point (GPIO edge
//! events, UART reads). No daemon code is linked in.
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`notify`] | readiness ([`ready`]), liveness ([`watchdog`], honouring `WATCHDOG_USEC`), status text ([`status`]) over `NOTIFY_SOCKET`, as sd_notify | always |
//! | [`logger`] | leveled log lines that myelin-init's log ring keeps, through the [`log`] facade | always |
//! | `hw` | GPIO, I2C, SPI, UART, PWM on the kernel's user-space interfaces, with the embedded-hal 1.0 traits | `hw` |
//! | `hw::rpi` | Raspberry Pi extras through rppal (GPIO registers, software PWM) | `rpi` |
//! | `platform` | the firmware (version, slot, trial, `validate()`), the KV store (get, put, unset), the network (state and addresses per interface, change events) and the devices (present, hot-plugged), over D-Bus | `dbus` |
//!
//! A minimal application:
//!
//! ```no_run
//! use myelin::log::{info, LevelFilter};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     myelin::logger::init(LevelFilter::Info);
//!     // ... open hardware, connect, read a first value ...
//!     myelin::ready()?;
//!     let mut watchdog = myelin::notify::Watchdog::from_env();
//!     loop {
//!         // ... one round of work ...
//!         info!("still working");
//!         if let Some(w) = watchdog.as_mut() {
//!             w.pet_if_due()?;
//!         }
//!         # break;
//!     }
//!     Ok(())
//! }
//! ```

pub mod notify;

/// The `log` facade, re-exported so that `myelin::log::info!` works without another dependency.
pub use log;
/// Myelin's leveled logger: call [`logger::init`] once at start.
pub use myelin_api::logger;
pub use notify::{ready, status, watchdog};

#[cfg(feature = "hw")]
pub mod hw;
#[cfg(feature = "dbus")]
pub mod platform;
/// The contracts with the platform's daemons, for applications that bring their own runtime.
#[cfg(feature = "dbus")]
pub use myelin_api as api;
