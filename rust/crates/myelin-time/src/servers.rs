//! The server list: the configured servers first, then those DHCP leases offer, once each.

/// The NTP servers in myelin-net's status document (`GetStatus`): every interface's DHCP
/// option `ntpsrv` (udhcpc's name for option 42, space-separated addresses), by interface name.
pub fn from_net_status(status: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(ifaces) = status.get("interfaces").and_then(|i| i.as_object()) else {
        return out;
    };
    for iface in ifaces.values() {
        if let Some(list) = iface
            .get("dhcp_options")
            .and_then(|o| o.get("ntpsrv"))
            .and_then(|v| v.as_str())
        {
            for s in list.split_whitespace() {
                if crate::config::check_server(s).is_ok() && !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out
}

/// The configured servers (or a runtime replacement), then the DHCP ones not already listed.
pub fn merge(configured: &[String], dhcp: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in configured.iter().chain(dhcp) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_servers_come_from_every_lease_once() {
        let status = serde_json::json!({
            "connection": "internet",
            "interfaces": {
                "eth0": {"dhcp_options": {"ntpsrv": "10.0.0.1 10.0.0.2", "router": "10.0.0.254"}},
                "usb0": {"dhcp_options": {}},
                "wlan0": {"dhcp_options": {"ntpsrv": "10.0.0.2 -bad"}},
            }
        });
        assert_eq!(from_net_status(&status), ["10.0.0.1", "10.0.0.2"]);
        assert!(from_net_status(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn configured_servers_come_first() {
        let c = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(merge(&c, &["b".into(), "c".into()]), ["a", "b", "c"]);
        assert_eq!(merge(&[], &["c".into()]), ["c"]);
    }
}
