//! The `org.myelin.Time1` contract: names, the client proxy and the status every client shows
//! (`myelinctl status`, `myelin-time status`, apps waiting for a trustworthy clock).
//!
//! ```no_run
//! # async fn f() -> Result<(), myelin_api::time::StatusError> {
//! let conn = zbus::Connection::system().await?;
//! let status = myelin_api::time::status(&conn).await?;
//! println!("{}", status.line());
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use zbus::Connection;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.myelin.Time1";
/// Object path of the clock.
pub const OBJECT_PATH: &str = "/org/myelin/Time1";
/// Interface name.
pub const INTERFACE: &str = "org.myelin.Time1";

/// `org.myelin.Time1`, as seen from a client. `Time1Proxy` is the async proxy.
#[zbus::proxy(
    interface = "org.myelin.Time1",
    default_service = "org.myelin.Time1",
    default_path = "/org/myelin/Time1"
)]
pub trait Time1 {
    /// Everything below as one JSON document ([`Status`]).
    fn get_status(&self) -> zbus::Result<String>;

    /// Replaces the configured servers (`host` or `host:port`) until myelin-time restarts;
    /// DHCP's are still added after them.
    fn set_servers(&self, servers: &[String]) -> zbus::Result<()>;

    /// Whether an NTP server has set or confirmed the clock (and has not been lost since).
    #[zbus(property)]
    fn synchronized(&self) -> zbus::Result<bool>;

    /// When the clock was last set or confirmed by NTP (seconds since the epoch; 0: never).
    #[zbus(property)]
    fn last_sync(&self) -> zbus::Result<i64>;

    /// The servers in use: the configured ones, then those DHCP gave.
    #[zbus(property)]
    fn servers(&self) -> zbus::Result<Vec<String>>;

    /// The stratum of the last report (16: unsynchronized).
    #[zbus(property)]
    fn stratum(&self) -> zbus::Result<u32>;
}

/// The daemon's whole state, as `GetStatus` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Whether NTP has set or confirmed the clock.
    pub synchronized: bool,
    /// Seconds since the epoch of the last sync; 0: never.
    pub last_sync: i64,
    /// The stratum of the last report (16: unsynchronized).
    pub stratum: u32,
    /// The offset the last report measured, in seconds.
    pub offset: f64,
    /// The servers in use.
    pub servers: Vec<String>,
    /// The NTP client: `ntpd` (busybox) or `sntp` (built in).
    pub client: String,
    /// The RTC device, if the board has one.
    pub rtc: Option<String>,
    /// The build-time floor (seconds since the epoch): the clock never goes below it.
    pub floor: i64,
    /// The clock when the status was taken (seconds since the epoch).
    pub now: i64,
}

impl Status {
    /// One line for `myelinctl status`.
    pub fn line(&self) -> String {
        let state = if self.synchronized {
            format!(
                "synchronized (stratum {}, last sync {}s ago)",
                self.stratum,
                (self.now - self.last_sync).max(0)
            )
        } else if self.last_sync > 0 {
            format!(
                "not synchronized (last sync {}s ago)",
                (self.now - self.last_sync).max(0)
            )
        } else {
            "not synchronized".to_owned()
        };
        let servers = if self.servers.is_empty() {
            "no servers".to_owned()
        } else {
            self.servers.join(" ")
        };
        format!("time: {state}, {} via {servers}", self.client)
    }
}

/// Why [`status`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The bus or the service failed.
    #[error("cannot ask org.myelin.Time1 for its status")]
    Bus(#[from] zbus::Error),
    /// The service answered something that is not the status document.
    #[error("myelin-time's status is not valid JSON")]
    Json(#[from] serde_json::Error),
}

/// The daemon's status.
pub async fn status(conn: &Connection) -> Result<Status, StatusError> {
    let time = Time1Proxy::new(conn).await?;
    Ok(serde_json::from_str(&time.get_status().await?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_says_synchronized_and_since_when() {
        let mut s = Status {
            synchronized: true,
            last_sync: 1_000,
            stratum: 2,
            servers: vec!["10.0.2.2".into()],
            client: "ntpd".into(),
            now: 1_030,
            ..Status::default()
        };
        assert_eq!(
            s.line(),
            "time: synchronized (stratum 2, last sync 30s ago), ntpd via 10.0.2.2"
        );
        s.synchronized = false;
        s.servers.clear();
        assert_eq!(
            s.line(),
            "time: not synchronized (last sync 30s ago), ntpd via no servers"
        );
    }
}
