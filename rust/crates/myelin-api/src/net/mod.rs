//! The `org.myelin.Network1` contract: names, object paths, the client proxies, the client
//! command tree and the command line's key input.

pub mod client;
pub mod command;
pub mod key_input;

pub use client::*;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.myelin.Network1";
/// The manager object.
pub const OBJECT_PATH: &str = "/org/myelin/Network1";
/// The manager interface.
pub const INTERFACE: &str = "org.myelin.Network1";
/// Per-interface objects' interface.
pub const IFACE_INTERFACE: &str = "org.myelin.Network1.Interface";
/// WiFi objects' extra interface.
pub const WIFI_INTERFACE: &str = "org.myelin.Network1.WiFi";

/// The object path of an interface.
pub fn interface_path(ifname: &str) -> String {
    let mut p = String::from("/org/myelin/Network1/Interface/");
    for b in ifname.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}
