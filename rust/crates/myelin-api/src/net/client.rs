//! Client side of `org.myelin.Network1`, for `myelinctl net ...`, `myelin-net status` and
//! tests: zbus proxies for the three interfaces and a few one-call helpers.
//!
//! ```no_run
//! # async fn f() -> zbus::Result<()> {
//! let conn = zbus::Connection::system().await?;
//! let net = myelin_api::net::Network1Proxy::new(&conn).await?;
//! net.configure("eth0", r#"{"type": "ethernet", "ipv4": {"method": "dhcp"}}"#, true).await?;
//! let eth0 = myelin_api::net::interface(&conn, "eth0").await?;
//! println!("{}", eth0.connection().await?);
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use zbus::{Connection, OwnedVariant};

/// `org.myelin.Network1` on `/org/myelin/Network1`. `Network1Proxy` is the async proxy.
#[zbus::proxy(
    interface = "org.myelin.Network1",
    default_service = "org.myelin.Network1",
    default_path = "/org/myelin/Network1"
)]
pub trait Network1 {
    /// Validates, optionally persists, and applies an interface configuration (JSON).
    fn configure(&self, ifname: &str, config: &str, persist: bool) -> zbus::Result<()>;
    /// The same, with the configuration as a dictionary.
    fn configure_dict(
        &self,
        ifname: &str,
        config: HashMap<&str, zbus::Variant<'_>>,
        persist: bool,
    ) -> zbus::Result<()>;
    /// The running configuration of an interface, as JSON.
    fn get_configuration(&self, ifname: &str) -> zbus::Result<String>;
    /// Takes an interface down and forgets its persisted configuration.
    fn deconfigure(&self, ifname: &str) -> zbus::Result<()>;
    /// Replaces the global internet check targets.
    fn set_check_hosts(&self, hosts: &[&str], persist: bool) -> zbus::Result<()>;
    /// Everything as one JSON document.
    fn get_status(&self) -> zbus::Result<String>;
    /// Overall connection.
    #[zbus(property)]
    fn connection(&self) -> zbus::Result<String>;
    /// Interfaces with routes, best first.
    #[zbus(property)]
    fn available_interfaces(&self) -> zbus::Result<Vec<String>>;
    /// Name servers and their sources.
    #[zbus(property)]
    fn name_servers(&self) -> zbus::Result<Vec<(String, Vec<String>)>>;
    /// Global check targets.
    #[zbus(property)]
    fn check_hosts(&self) -> zbus::Result<Vec<String>>;
    /// Every known interface.
    #[zbus(property)]
    fn interfaces(&self) -> zbus::Result<Vec<String>>;
}

/// `org.myelin.Network1.Interface` on an interface's object.
#[zbus::proxy(
    interface = "org.myelin.Network1.Interface",
    default_service = "org.myelin.Network1"
)]
pub trait Interface1 {
    /// Kernel name.
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    /// Technology.
    #[zbus(property, name = "Type")]
    fn kind(&self) -> zbus::Result<String>;
    /// Interface state.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Connection.
    #[zbus(property)]
    fn connection(&self) -> zbus::Result<String>;
    /// Carrier.
    #[zbus(property)]
    fn lower_up(&self) -> zbus::Result<bool>;
    /// The netdev exists.
    #[zbus(property)]
    fn present(&self) -> zbus::Result<bool>;
    /// Hardware address.
    #[zbus(property)]
    fn mac_address(&self) -> zbus::Result<String>;
    /// IPv4 addresses.
    #[zbus(property)]
    fn addresses(&self) -> zbus::Result<Vec<String>>;
    /// DHCP lease options.
    #[zbus(property)]
    fn dhcp_options(&self) -> zbus::Result<HashMap<String, String>>;
    /// Running configuration (JSON).
    #[zbus(property)]
    fn configuration(&self) -> zbus::Result<String>;
    /// The last problem.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
}

/// `org.myelin.Network1.WiFi` on a WiFi interface's object.
#[zbus::proxy(
    interface = "org.myelin.Network1.WiFi",
    default_service = "org.myelin.Network1"
)]
pub trait WiFi1 {
    /// Starts a scan.
    fn scan(&self) -> zbus::Result<()>;
    /// Scan results.
    #[zbus(property)]
    fn access_points(&self) -> zbus::Result<Vec<HashMap<String, OwnedVariant>>>;
    /// The associated access point.
    #[zbus(property)]
    fn current_access_point(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    /// AP mode stations.
    #[zbus(property)]
    fn stations(&self) -> zbus::Result<Vec<String>>;
}

/// The proxy for one interface's object.
pub async fn interface(conn: &Connection, ifname: &str) -> zbus::Result<Interface1Proxy<'static>> {
    Interface1Proxy::builder(conn)
        .path(super::interface_path(ifname))
        .build()
        .await
}

/// The WiFi proxy for one interface's object.
pub async fn wifi(conn: &Connection, ifname: &str) -> zbus::Result<WiFi1Proxy<'static>> {
    WiFi1Proxy::builder(conn)
        .path(super::interface_path(ifname))
        .build()
        .await
}

/// Why [`status`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The bus or the service failed.
    #[error("cannot ask org.myelin.Network1 for its status")]
    Bus(#[from] zbus::Error),
    /// The service answered something that is not JSON.
    #[error("myelin-net's status is not JSON")]
    Json(#[from] serde_json::Error),
    /// No such interface.
    #[error("myelin-net knows no interface {0}")]
    NoInterface(String),
}

/// The daemon's whole state as JSON; with `ifname`, only that interface's (plus its name).
pub async fn status(
    conn: &Connection,
    ifname: Option<&str>,
) -> Result<serde_json::Value, StatusError> {
    let net = Network1Proxy::new(conn).await?;
    let text = net.get_status().await?;
    let mut all: serde_json::Value = serde_json::from_str(&text)?;
    let Some(ifname) = ifname else {
        return Ok(all);
    };
    let mut one = all
        .get_mut("interfaces")
        .and_then(|i| i.get_mut(ifname))
        .map(serde_json::Value::take)
        .ok_or_else(|| StatusError::NoInterface(ifname.to_owned()))?;
    if let Some(o) = one.as_object_mut() {
        o.insert("name".into(), ifname.into());
    }
    Ok(one)
}
