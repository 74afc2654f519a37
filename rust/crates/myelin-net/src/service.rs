//! The `org.myelin.Network1` D-Bus service, a mirror of the manager's [`Snapshot`].
//!
//! Well-known name `org.myelin.Network1`. Objects:
//!
//! `/org/myelin/Network1`, interface `org.myelin.Network1`:
//!
//! | member | signature | |
//! |---|---|---|
//! | `Connection` | property `s` | best of all interfaces: `disconnected`, `lan`, `internet` |
//! | `AvailableInterfaces` | property `as` | interfaces with routes, best (default route) first |
//! | `NameServers` | property `a(sas)` | resolv.conf order: address, sources (`global`, ifnames) |
//! | `CheckHosts` | property `as` | global internet check targets, `host:port` |
//! | `Interfaces` | property `as` | every configured or present interface |
//! | `Configure(s ifname, s config, b persist)` | method | `config` is JSON (see [`crate::config`]) |
//! | `ConfigureDict(s ifname, a{sv} config, b persist)` | method | the same as a dictionary |
//! | `GetConfiguration(s ifname) -> s` | method | the running configuration, JSON, no keys |
//! | `Deconfigure(s ifname)` | method | down now; the persisted config is forgotten |
//! | `SetCheckHosts(as hosts, b persist)` | method | replaces the global check targets |
//! | `GetStatus() -> s` | method | everything above and every interface, as one JSON document |
//!
//! `/org/myelin/Network1/Interface/<ifname>` (the ifname with every byte outside `[A-Za-z0-9]`
//! written as `_` and two hex digits: `usb0` stays, `br-lan` becomes `br_2dlan`), interface
//! `org.myelin.Network1.Interface`: properties `Name s`, `Type s` (empty when unconfigured),
//! `State s` (`unconfigured`, `waiting`, `configuring`, `configured`, `retrying`),
//! `Connection s`, `LowerUp b`, `Present b`, `MacAddress s`, `Addresses as` (`a.b.c.d/n`),
//! `DhcpOptions a{ss}`, `Configuration s` (JSON), `LastError s`. WiFi interfaces also have
//! `org.myelin.Network1.WiFi`: `AccessPoints aa{sv}` (`bssid`, `ssid`, `frequency u`,
//! `channel u`, `band`, `signal_dbm i`, `signal_percent y`, `flags as`), `CurrentAccessPoint
//! a{sv}` (empty when not associated), `Stations as` (AP mode), and `Scan()`.
//!
//! `/org/myelin/Network1` also implements `org.freedesktop.DBus.ObjectManager`, so clients can
//! list the interface objects and follow them appearing and disappearing.
//!
//! Every property emits `PropertiesChanged` (one signal per object and change, carrying all
//! its changed properties).
//!
//! No reply, property or signal carries a WiFi key (`passphrase`, `psk`): configurations are
//! shown without them to every caller, root included, because properties and their signals
//! reach every listener on the bus alike. The keys live only in the 0600 files myelin-net
//! writes (the persisted configuration and the generated wpa_supplicant.conf). Errors: `org.myelin.Network1.Error.{InvalidConfig, NotFound,
//! NotSupported, Failed}`; `InvalidConfig` messages start with the field at fault.

use std::collections::HashMap;

use zbus::fdo::Properties;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedVariant, Variant, interface};

use crate::config::{HostPort, parse_interface_json};
use crate::manager::{Handle, IfaceSnapshot, ManagerError, Snapshot};
use crate::report::report;
use crate::wpa::{AccessPoint, CurrentAp};

pub use myelin_api::net::{
    BUS_NAME, IFACE_INTERFACE, INTERFACE, OBJECT_PATH, WIFI_INTERFACE, interface_path,
};

/// Errors over D-Bus, as `org.myelin.Network1.Error.<variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.myelin.Network1.Error")]
pub enum BusError {
    /// A D-Bus level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The configuration was rejected; the message names the field.
    InvalidConfig(String),
    /// No such interface or configuration.
    NotFound(String),
    /// Not possible on this interface.
    NotSupported(String),
    /// Carrying it out failed.
    Failed(String),
}

impl From<ManagerError> for BusError {
    fn from(e: ManagerError) -> Self {
        match e {
            // The message starts with the field at fault.
            ManagerError::Invalid(c) => BusError::InvalidConfig(c.to_string()),
            ManagerError::NotFound(m) => BusError::NotFound(m),
            ManagerError::NotSupported(m) => BusError::NotSupported(m),
            other => BusError::Failed(report(&other)),
        }
    }
}

/// The manager's latest published state: property reads are never behind the manager, and
/// a method that returned has its change visible (the manager replies after publishing).
type Shared = tokio::sync::watch::Receiver<Snapshot>;

fn read<R>(shared: &Shared, f: impl FnOnce(&Snapshot) -> R) -> R {
    f(&shared.borrow())
}

/// The manager object.
pub struct Network {
    handle: Handle,
    shared: Shared,
}

#[interface(name = "org.myelin.Network1")]
impl Network {
    /// Validates, (optionally) persists and applies an interface configuration.
    async fn configure(
        &self,
        ifname: String,
        config: String,
        persist: bool,
    ) -> Result<(), BusError> {
        let parsed = parse_interface_json(&ifname, &config)
            .map_err(|e| BusError::InvalidConfig(e.to_string()))?;
        Ok(self.handle.configure(&ifname, parsed, persist).await?)
    }

    /// [`Network::configure`] with the configuration as a dictionary (nested dictionaries,
    /// string arrays, numbers and booleans, as the JSON form has them).
    async fn configure_dict(
        &self,
        ifname: String,
        config: HashMap<String, OwnedVariant>,
        persist: bool,
    ) -> Result<(), BusError> {
        let json = serde_json::Value::Object(
            config
                .iter()
                .map(|(k, v)| Ok((k.clone(), variant_to_json(v)?)))
                .collect::<Result<_, BusError>>()?,
        );
        self.configure(ifname, json.to_string(), persist).await
    }

    /// The running configuration of an interface, as JSON.
    #[zbus(out_args("config"))]
    async fn get_configuration(&self, ifname: String) -> Result<String, BusError> {
        let c = read(&self.shared, |s| {
            s.interfaces
                .get(&ifname)
                .and_then(|i| i.configuration.clone())
        })
        .ok_or_else(|| BusError::NotFound(format!("{ifname} is not configured")))?;
        serde_json::to_string(&c).map_err(|e| BusError::Failed(e.to_string()))
    }

    /// Takes an interface down and forgets its persisted configuration.
    async fn deconfigure(&self, ifname: String) -> Result<(), BusError> {
        Ok(self.handle.deconfigure(&ifname).await?)
    }

    /// Replaces the global internet check targets (`host:port`).
    async fn set_check_hosts(&self, hosts: Vec<String>, persist: bool) -> Result<(), BusError> {
        let mut parsed = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            parsed.push(
                h.parse::<HostPort>()
                    .map_err(|m| BusError::InvalidConfig(format!("hosts[{i}]: {m}")))?,
            );
        }
        Ok(self.handle.set_check_hosts(parsed, persist).await?)
    }

    /// Everything, as one JSON document.
    #[zbus(out_args("status"))]
    async fn get_status(&self) -> Result<String, BusError> {
        read(&self.shared, serde_json::to_string_pretty)
            .map_err(|e| BusError::Failed(e.to_string()))
    }

    /// Overall connection.
    #[zbus(property)]
    async fn connection(&self) -> String {
        read(&self.shared, |s| s.connection.clone())
    }

    /// Interfaces with routes, best first.
    #[zbus(property)]
    async fn available_interfaces(&self) -> Vec<String> {
        read(&self.shared, |s| s.available_interfaces.clone())
    }

    /// Name servers and their sources.
    #[zbus(property)]
    async fn name_servers(&self) -> Vec<(String, Vec<String>)> {
        read(&self.shared, name_servers)
    }

    /// Global check targets.
    #[zbus(property)]
    async fn check_hosts(&self) -> Vec<String> {
        read(&self.shared, |s| s.check_hosts.clone())
    }

    /// Every known interface.
    #[zbus(property)]
    async fn interfaces(&self) -> Vec<String> {
        read(&self.shared, |s| s.interfaces.keys().cloned().collect())
    }
}

/// A D-Bus value as the JSON the configuration parser reads.
fn variant_to_json(v: &Variant<'_>) -> Result<serde_json::Value, BusError> {
    use serde_json::Value as J;
    Ok(match v {
        Variant::U8(n) => J::from(*n),
        Variant::Bool(b) => J::from(*b),
        Variant::I16(n) => J::from(*n),
        Variant::U16(n) => J::from(*n),
        Variant::I32(n) => J::from(*n),
        Variant::U32(n) => J::from(*n),
        Variant::I64(n) => J::from(*n),
        Variant::U64(n) => J::from(*n),
        Variant::F64(n) => J::from(*n),
        Variant::Str(s) => J::from(s.as_str()),
        Variant::ObjectPath(p) => J::from(p.as_str()),
        Variant::Signature(s) => J::from(s.to_string()),
        Variant::Variant(inner) => variant_to_json(inner)?,
        Variant::Array(a) => J::Array(
            a.inner()
                .iter()
                .map(variant_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Variant::Dict(d) => {
            let mut map = serde_json::Map::new();
            for (k, v) in d.iter() {
                let key = match k {
                    Variant::Str(s) => s.as_str().to_owned(),
                    other => {
                        return Err(BusError::InvalidConfig(format!(
                            "config: dictionary keys must be strings, not {}",
                            other.value_signature()
                        )));
                    }
                };
                map.insert(key, variant_to_json(v)?);
            }
            J::Object(map)
        }
        Variant::Structure(s) => J::Array(
            s.fields()
                .iter()
                .map(variant_to_json)
                .collect::<Result<_, _>>()?,
        ),
        #[cfg(unix)]
        Variant::Fd(_) => {
            return Err(BusError::InvalidConfig(
                "config: file descriptors are not configuration".into(),
            ));
        }
    })
}

fn name_servers(s: &Snapshot) -> Vec<(String, Vec<String>)> {
    s.name_servers
        .iter()
        .map(|n| (n.address.clone(), n.from.clone()))
        .collect()
}

/// One interface's object.
pub struct Interface {
    name: String,
    shared: Shared,
}

impl Interface {
    fn get<R: Default>(&self, f: impl FnOnce(&IfaceSnapshot) -> R) -> R {
        read(&self.shared, |s| {
            s.interfaces.get(&self.name).map(f).unwrap_or_default()
        })
    }
}

#[interface(name = "org.myelin.Network1.Interface")]
impl Interface {
    /// Kernel name.
    #[zbus(property)]
    async fn name(&self) -> String {
        self.name.clone()
    }

    /// Technology, empty when unconfigured.
    #[zbus(property, name = "Type")]
    async fn kind(&self) -> String {
        self.get(|i| i.kind.clone())
    }

    /// Interface state.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.get(|i| i.state.clone())
    }

    /// `disconnected`, `lan`, `internet`.
    #[zbus(property)]
    async fn connection(&self) -> String {
        self.get(|i| i.connection.clone())
    }

    /// Carrier.
    #[zbus(property)]
    async fn lower_up(&self) -> bool {
        self.get(|i| i.lower_up)
    }

    /// The netdev exists.
    #[zbus(property)]
    async fn present(&self) -> bool {
        self.get(|i| i.present)
    }

    /// Hardware address.
    #[zbus(property)]
    async fn mac_address(&self) -> String {
        self.get(|i| i.mac_address.clone())
    }

    /// IPv4 addresses.
    #[zbus(property)]
    async fn addresses(&self) -> Vec<String> {
        self.get(|i| i.addresses.clone())
    }

    /// DHCP lease options.
    #[zbus(property)]
    async fn dhcp_options(&self) -> HashMap<String, String> {
        self.get(|i| i.dhcp_options.clone().into_iter().collect())
    }

    /// Running configuration (JSON), empty when unconfigured.
    #[zbus(property)]
    async fn configuration(&self) -> String {
        self.get(config_json)
    }

    /// The last problem.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.get(|i| i.last_error.clone())
    }
}

fn config_json(i: &IfaceSnapshot) -> String {
    i.configuration
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok())
        .unwrap_or_default()
}

fn owned(v: Variant<'_>) -> OwnedVariant {
    // Only plain values (strings, numbers, string arrays) go through here, which never fail.
    OwnedVariant::try_from(v).unwrap_or_else(|_| OwnedVariant::from(0u8))
}

fn ap_dict(ap: &AccessPoint) -> HashMap<String, OwnedVariant> {
    HashMap::from([
        ("bssid".to_owned(), owned(Variant::from(ap.bssid.clone()))),
        ("ssid".to_owned(), owned(Variant::from(ap.ssid.clone()))),
        ("frequency".to_owned(), owned(Variant::from(ap.frequency))),
        ("channel".to_owned(), owned(Variant::from(ap.channel))),
        ("band".to_owned(), owned(Variant::from(ap.band.clone()))),
        ("signal_dbm".to_owned(), owned(Variant::from(ap.signal_dbm))),
        (
            "signal_percent".to_owned(),
            owned(Variant::from(ap.signal_percent)),
        ),
        ("flags".to_owned(), owned(Variant::from(ap.flags.clone()))),
    ])
}

fn current_dict(c: &Option<CurrentAp>) -> HashMap<String, OwnedVariant> {
    match c {
        None => HashMap::new(),
        Some(c) => HashMap::from([
            ("bssid".to_owned(), owned(Variant::from(c.bssid.clone()))),
            ("ssid".to_owned(), owned(Variant::from(c.ssid.clone()))),
            ("frequency".to_owned(), owned(Variant::from(c.frequency))),
            ("signal_dbm".to_owned(), owned(Variant::from(c.signal_dbm))),
        ]),
    }
}

/// The WiFi interface of a WiFi interface's object.
pub struct Wifi {
    name: String,
    handle: Handle,
    shared: Shared,
}

impl Wifi {
    fn get<R: Default>(&self, f: impl FnOnce(&IfaceSnapshot) -> R) -> R {
        read(&self.shared, |s| {
            s.interfaces.get(&self.name).map(f).unwrap_or_default()
        })
    }
}

#[interface(name = "org.myelin.Network1.WiFi")]
impl Wifi {
    /// Starts a scan; results arrive in `AccessPoints`.
    async fn scan(&self) -> Result<(), BusError> {
        Ok(self.handle.scan(&self.name).await?)
    }

    /// Scan results, strongest first.
    #[zbus(property)]
    async fn access_points(&self) -> Vec<HashMap<String, OwnedVariant>> {
        self.get(|i| i.access_points.iter().map(ap_dict).collect())
    }

    /// The associated access point, empty when none.
    #[zbus(property)]
    async fn current_access_point(&self) -> HashMap<String, OwnedVariant> {
        self.get(|i| current_dict(&i.current_access_point))
    }

    /// AP mode: associated stations.
    #[zbus(property)]
    async fn stations(&self) -> Vec<String> {
        self.get(|i| i.stations.clone())
    }
}

/// Changed properties of the manager object.
fn manager_changes(old: &Snapshot, new: &Snapshot) -> HashMap<&'static str, Variant<'static>> {
    let mut c = HashMap::new();
    if old.connection != new.connection {
        c.insert("Connection", Variant::from(new.connection.clone()));
    }
    if old.available_interfaces != new.available_interfaces {
        c.insert(
            "AvailableInterfaces",
            Variant::from(new.available_interfaces.clone()),
        );
    }
    if old.name_servers != new.name_servers {
        c.insert("NameServers", Variant::from(name_servers(new)));
    }
    if old.check_hosts != new.check_hosts {
        c.insert("CheckHosts", Variant::from(new.check_hosts.clone()));
    }
    let (ok, nk): (Vec<_>, Vec<_>) = (
        old.interfaces.keys().collect(),
        new.interfaces.keys().collect(),
    );
    if ok != nk {
        c.insert(
            "Interfaces",
            Variant::from(new.interfaces.keys().cloned().collect::<Vec<_>>()),
        );
    }
    c
}

fn iface_changes(
    old: &IfaceSnapshot,
    new: &IfaceSnapshot,
) -> HashMap<&'static str, Variant<'static>> {
    let mut c = HashMap::new();
    let mut s = |name: &'static str, changed: bool, v: Variant<'static>| {
        if changed {
            c.insert(name, v);
        }
    };
    s(
        "Type",
        old.kind != new.kind,
        Variant::from(new.kind.clone()),
    );
    s(
        "State",
        old.state != new.state,
        Variant::from(new.state.clone()),
    );
    s(
        "Connection",
        old.connection != new.connection,
        Variant::from(new.connection.clone()),
    );
    s(
        "LowerUp",
        old.lower_up != new.lower_up,
        Variant::from(new.lower_up),
    );
    s(
        "Present",
        old.present != new.present,
        Variant::from(new.present),
    );
    s(
        "MacAddress",
        old.mac_address != new.mac_address,
        Variant::from(new.mac_address.clone()),
    );
    s(
        "Addresses",
        old.addresses != new.addresses,
        Variant::from(new.addresses.clone()),
    );
    s(
        "DhcpOptions",
        old.dhcp_options != new.dhcp_options,
        Variant::from(
            new.dhcp_options
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        ),
    );
    s(
        "Configuration",
        old.configuration != new.configuration,
        Variant::from(config_json(new)),
    );
    s(
        "LastError",
        old.last_error != new.last_error,
        Variant::from(new.last_error.clone()),
    );
    c
}

fn wifi_changes(
    old: &IfaceSnapshot,
    new: &IfaceSnapshot,
) -> HashMap<&'static str, Variant<'static>> {
    let mut c = HashMap::new();
    if old.access_points != new.access_points {
        let v: Vec<HashMap<String, OwnedVariant>> = new.access_points.iter().map(ap_dict).collect();
        c.insert("AccessPoints", Variant::from(v));
    }
    if old.current_access_point != new.current_access_point {
        c.insert(
            "CurrentAccessPoint",
            Variant::from(current_dict(&new.current_access_point)),
        );
    }
    if old.stations != new.stations {
        c.insert("Stations", Variant::from(new.stations.clone()));
    }
    c
}

async fn emit(
    conn: &Connection,
    path: &str,
    iface: &str,
    changes: HashMap<&'static str, Variant<'static>>,
) {
    if changes.is_empty() {
        return;
    }
    let result = async {
        let emitter = SignalEmitter::new(conn, path.to_owned())?;
        let name = InterfaceName::try_from(iface.to_owned())?;
        Properties::properties_changed(&emitter, name, changes, (&[][..]).into()).await
    }
    .await;
    if let Err(e) = result {
        log::warn!("PropertiesChanged on {path}: {e}");
    }
}

fn is_wifi(i: &IfaceSnapshot) -> bool {
    i.kind == "wifi"
}

/// Adds or removes objects so the bus matches `new`, and announces every change since `old`.
async fn sync(conn: &Connection, handle: &Handle, shared: &Shared, old: &Snapshot, new: &Snapshot) {
    let server = conn.object_server();
    for name in old
        .interfaces
        .keys()
        .filter(|n| !new.interfaces.contains_key(*n))
    {
        let path = interface_path(name);
        let _ = server.remove::<Wifi, _>(path.as_str()).await;
        let _ = server.remove::<Interface, _>(path.as_str()).await;
    }
    let empty = IfaceSnapshot::default();
    for (name, i) in &new.interfaces {
        let path = interface_path(name);
        let before = old.interfaces.get(name);
        if before.is_none() {
            let obj = Interface {
                name: name.clone(),
                shared: shared.clone(),
            };
            if let Err(e) = server.at(path.as_str(), obj).await {
                log::error!("cannot publish {path}: {e}");
            }
        } else {
            emit(
                conn,
                &path,
                IFACE_INTERFACE,
                iface_changes(before.unwrap_or(&empty), i),
            )
            .await;
        }
        let had_wifi = before.is_some_and(is_wifi);
        if is_wifi(i) && !had_wifi {
            let obj = Wifi {
                name: name.clone(),
                handle: handle.clone(),
                shared: shared.clone(),
            };
            if let Err(e) = server.at(path.as_str(), obj).await {
                log::error!("cannot publish WiFi on {path}: {e}");
            }
        } else if !is_wifi(i) && had_wifi {
            let _ = server.remove::<Wifi, _>(path.as_str()).await;
        } else if is_wifi(i) {
            emit(
                conn,
                &path,
                WIFI_INTERFACE,
                wifi_changes(before.unwrap_or(&empty), i),
            )
            .await;
        }
    }
    // Last, so a client that follows `Interfaces` finds the new objects already there.
    emit(conn, OBJECT_PATH, INTERFACE, manager_changes(old, new)).await;
}

/// Serves the manager behind `handle` on `conn` (which must own [`BUS_NAME`] or be about to)
/// and keeps the bus in step with every published snapshot, until the manager stops.
pub async fn serve(conn: Connection, handle: Handle) -> zbus::Result<tokio::task::JoinHandle<()>> {
    let shared: Shared = handle.subscribe();
    // GetManagedObjects and InterfacesAdded/Removed for the per-interface objects below.
    conn.object_server()
        .at(OBJECT_PATH, zbus::fdo::ObjectManager)
        .await?;
    conn.object_server()
        .at(
            OBJECT_PATH,
            Network {
                handle: handle.clone(),
                shared: shared.clone(),
            },
        )
        .await?;
    let mut rx = handle.subscribe();
    let first = rx.borrow_and_update().clone();
    sync(&conn, &handle, &shared, &Snapshot::default(), &first).await;
    Ok(tokio::spawn(async move {
        let mut last = first;
        while rx.changed().await.is_ok() {
            let new = rx.borrow_and_update().clone();
            sync(&conn, &handle, &shared, &last, &new).await;
            last = new;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            interface_path("eth0"),
            "/org/myelin/Network1/Interface/eth0"
        );
        assert_eq!(
            interface_path("br-lan"),
            "/org/myelin/Network1/Interface/br_2dlan"
        );
        assert_eq!(
            interface_path("a_b.c"),
            "/org/myelin/Network1/Interface/a_5fb_2ec"
        );
        for n in ["eth0", "br-lan", "wlan0@x", "é"] {
            zbus::ObjectPath::try_from(interface_path(n)).unwrap();
        }
    }

    #[test]
    fn change_sets() {
        let a = IfaceSnapshot {
            state: "waiting".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert!(iface_changes(&a, &b).is_empty());
        b.state = "configured".into();
        b.lower_up = true;
        let c = iface_changes(&a, &b);
        let mut keys: Vec<_> = c.keys().copied().collect();
        keys.sort();
        assert_eq!(keys, ["LowerUp", "State"]);
        let s1 = Snapshot::default();
        let mut s2 = s1.clone();
        s2.connection = "lan".into();
        s2.interfaces.insert("eth0".into(), a);
        let mut keys: Vec<_> = manager_changes(&s1, &s2).keys().copied().collect();
        keys.sort();
        assert_eq!(keys, ["Connection", "Interfaces"]);
    }
}
