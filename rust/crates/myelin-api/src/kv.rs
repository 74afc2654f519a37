//! The `org.myelin.KV1` contract: names and the client proxy (myelinctl, apps and tests use it).

use std::collections::HashMap;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.myelin.KV1";
/// Object path of the store.
pub const OBJECT_PATH: &str = "/org/myelin/KV1";
/// Interface name.
pub const INTERFACE: &str = "org.myelin.KV1";

/// `org.myelin.KV1`, as seen from a client. `Kv1Proxy` is the async proxy.
#[zbus::proxy(
    interface = "org.myelin.KV1",
    default_service = "org.myelin.KV1",
    default_path = "/org/myelin/KV1"
)]
pub trait Kv1 {
    /// The value of `name`; `org.myelin.KV1.Error.NotFound` if it is not set.
    fn get(&self, name: &str) -> zbus::Result<String>;

    /// Every variable.
    fn get_all(&self) -> zbus::Result<HashMap<String, String>>;

    /// Sets every variable of `vars` in one write.
    fn set(&self, vars: HashMap<&str, &str>) -> zbus::Result<()>;

    /// Removes the variables in one write.
    fn unset(&self, names: &[&str]) -> zbus::Result<()>;

    /// Variables set or removed, by anyone.
    #[zbus(signal)]
    fn changed(&self, set: HashMap<String, String>, removed: Vec<String>) -> zbus::Result<()>;

    /// Every variable.
    #[zbus(property)]
    fn vars(&self) -> zbus::Result<HashMap<String, String>>;
}
