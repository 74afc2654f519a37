//! Routing across interfaces: a pure calculator from each interface's addresses, gateway and
//! connection to the kernel entries that should exist, and a minimal diff against what was
//! applied.
//!
//! Per interface with an address and a link (anything but `disconnected`):
//! * a source rule `from <address> lookup <table>` (priority [`RULE_PRIORITY`]), so replies
//!   leave through the interface a request came in on, whatever the default route is;
//! * in its own table (100 + slot): the subnet route and, with a gateway, the default route;
//! * in the main table: the subnet route and the default route with the interface's metric.
//!
//! Addresses are added without the kernel's automatic prefix route, so the subnet route in
//! main carries the same metric as the default route: two interfaces on one subnet never
//! collide, and the better one wins.
//!
//! The metric orders interfaces by connection quality first, then technology:
//! `internet` Ethernet < WiFi < other < `lan` Ethernet < WiFi < other, in steps of 100, plus a
//! per-interface weight (its rank among interfaces of the same technology, by name), so two
//! interfaces of one type never get the same metric (VintageNet issue #197's "File exists").

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::check::Connection;
use crate::config::{Ipv4Net, Kind};

/// First per-interface routing table.
pub const TABLE_BASE: u32 = 100;
/// Priority of the source rules (before the main table's 32766).
pub const RULE_PRIORITY: u32 = 10000;

/// What the calculator needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInput {
    /// Name.
    pub ifname: String,
    /// Kernel index.
    pub ifindex: u32,
    /// Technology.
    pub kind: Kind,
    /// Current connection.
    pub connection: Connection,
    /// IPv4 addresses myelin-net assigned.
    pub addresses: Vec<Ipv4Net>,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Routing table slot (unique per interface).
    pub slot: u32,
    /// Rank among interfaces of the same technology (0 = first by name).
    pub weight: u32,
}

/// A kernel routing entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// `ip rule add from <from> lookup <table> priority <priority>`.
    Rule {
        /// Source address.
        from: Ipv4Addr,
        /// Table.
        table: u32,
        /// Rule priority.
        priority: u32,
    },
    /// A route to a subnet (`gateway: None`) or the default route via `gateway`.
    Route {
        /// Table (254 = main).
        table: u32,
        /// Destination (0.0.0.0/0 for a default route).
        dst: Ipv4Net,
        /// Next hop.
        gateway: Option<Ipv4Addr>,
        /// Output interface.
        ifindex: u32,
        /// Preferred source address.
        src: Option<Ipv4Addr>,
        /// Metric.
        metric: u32,
    },
}

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// Every metric [`metric`] can return.
pub const METRIC_RANGE: std::ops::Range<u32> = 100..700;

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Rule {
                from,
                table,
                priority,
            } => write!(f, "rule from {from} lookup {table} priority {priority}"),
            Entry::Route {
                table,
                dst,
                gateway,
                ifindex,
                src,
                metric,
            } => {
                write!(f, "route table {table} {dst}")?;
                if let Some(g) = gateway {
                    write!(f, " via {g}")?;
                }
                write!(f, " dev #{ifindex}")?;
                if let Some(s) = src {
                    write!(f, " src {s}")?;
                }
                write!(f, " metric {metric}")
            }
        }
    }
}

/// The metric of an interface; `None` for a disconnected one (it gets no routes).
pub fn metric(kind: Kind, connection: Connection, weight: u32) -> Option<u32> {
    let tech = match kind {
        Kind::Ethernet => 0,
        Kind::Wifi => 1,
        Kind::Direct => 2,
    };
    let class = match connection {
        Connection::Disconnected => return None,
        Connection::Internet => tech,
        Connection::Lan => 3 + tech,
    };
    Some((class + 1) * 100 + weight.min(99))
}

/// The entries for every interface, in apply order: rules, subnet routes, default routes.
pub fn calculate(inputs: &[RouteInput]) -> Vec<Entry> {
    let mut rules = Vec::new();
    let mut locals = Vec::new();
    let mut defaults = Vec::new();
    for i in inputs {
        let Some(m) = metric(i.kind, i.connection, i.weight) else {
            continue;
        };
        let table = TABLE_BASE + i.slot;
        for a in &i.addresses {
            rules.push(Entry::Rule {
                from: a.addr,
                table,
                priority: RULE_PRIORITY,
            });
            for (t, metric) in [(table, 0), (MAIN_TABLE, m)] {
                locals.push(Entry::Route {
                    table: t,
                    dst: a.network(),
                    gateway: None,
                    ifindex: i.ifindex,
                    src: Some(a.addr),
                    metric,
                });
            }
        }
        if let (Some(gw), Some(a)) = (
            i.gateway,
            i.addresses.iter().find(|a| a.contains_gw(i.gateway)),
        ) {
            for (t, metric) in [(table, 0), (MAIN_TABLE, m)] {
                defaults.push(Entry::Route {
                    table: t,
                    dst: Ipv4Net {
                        addr: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                    },
                    gateway: Some(gw),
                    ifindex: i.ifindex,
                    src: Some(a.addr),
                    metric,
                });
            }
        }
    }
    rules.extend(locals);
    rules.extend(defaults);
    rules
}

impl Ipv4Net {
    fn contains_gw(&self, gw: Option<Ipv4Addr>) -> bool {
        gw.is_some_and(|g| self.contains(g))
    }
}

/// Interfaces with routes, best first (by metric): the `AvailableInterfaces` order.
pub fn priority_order(inputs: &[RouteInput]) -> Vec<String> {
    let mut v: Vec<(u32, &str)> = inputs
        .iter()
        .filter(|i| !i.addresses.is_empty())
        .filter_map(|i| metric(i.kind, i.connection, i.weight).map(|m| (m, i.ifname.as_str())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n.to_owned()).collect()
}

/// What to change to go from `old` to `new`: entries to delete (in reverse apply order) and
/// entries to add (in apply order). Unchanged entries are left alone.
pub fn diff(old: &[Entry], new: &[Entry]) -> (Vec<Entry>, Vec<Entry>) {
    let old_set: BTreeSet<&Entry> = old.iter().collect();
    let new_set: BTreeSet<&Entry> = new.iter().collect();
    let del = old
        .iter()
        .rev()
        .filter(|e| !new_set.contains(e))
        .cloned()
        .collect();
    let add = new
        .iter()
        .filter(|e| !old_set.contains(e))
        .cloned()
        .collect();
    (del, add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn input(
        ifname: &str,
        idx: u32,
        kind: Kind,
        c: Connection,
        addr: &str,
        gw: Option<&str>,
        slot: u32,
        weight: u32,
    ) -> RouteInput {
        RouteInput {
            ifname: ifname.into(),
            ifindex: idx,
            kind,
            connection: c,
            addresses: vec![addr.parse().unwrap()],
            gateway: gw.map(|g| g.parse().unwrap()),
            slot,
            weight,
        }
    }

    fn render(e: &[Entry]) -> String {
        e.iter().map(|e| format!("{e}\n")).collect()
    }

    #[test]
    fn metrics_order_quality_then_technology() {
        use Connection::*;
        let m = |k, c, w| metric(k, c, w).unwrap();
        assert!(m(Kind::Ethernet, Internet, 0) < m(Kind::Wifi, Internet, 0));
        assert!(m(Kind::Wifi, Internet, 5) < m(Kind::Ethernet, Lan, 0));
        assert!(m(Kind::Ethernet, Lan, 0) < m(Kind::Wifi, Lan, 0));
        assert_ne!(
            m(Kind::Ethernet, Internet, 0),
            m(Kind::Ethernet, Internet, 1)
        );
        assert_eq!(metric(Kind::Ethernet, Disconnected, 0), None);
        // No two (kind, connection, weight < 100) share a metric.
        let mut seen = BTreeSet::new();
        for k in [Kind::Ethernet, Kind::Wifi, Kind::Direct] {
            for c in [Lan, Internet] {
                for w in 0..100 {
                    assert!(METRIC_RANGE.contains(&m(k, c, w)));
                    assert!(seen.insert(m(k, c, w)));
                }
            }
        }
    }

    #[test]
    fn golden_two_uplinks() {
        let inputs = [
            input(
                "eth0",
                2,
                Kind::Ethernet,
                Connection::Lan,
                "192.168.1.20/24",
                Some("192.168.1.1"),
                0,
                0,
            ),
            input(
                "wlan0",
                3,
                Kind::Wifi,
                Connection::Internet,
                "10.0.0.7/16",
                Some("10.0.0.1"),
                1,
                0,
            ),
            input(
                "usb0",
                4,
                Kind::Direct,
                Connection::Lan,
                "172.31.1.1/30",
                None,
                2,
                0,
            ),
            input(
                "eth1",
                5,
                Kind::Ethernet,
                Connection::Disconnected,
                "192.168.9.2/24",
                Some("192.168.9.1"),
                3,
                1,
            ),
        ];
        assert_eq!(
            render(&calculate(&inputs)),
            "rule from 192.168.1.20 lookup 100 priority 10000
rule from 10.0.0.7 lookup 101 priority 10000
rule from 172.31.1.1 lookup 102 priority 10000
route table 100 192.168.1.0/24 dev #2 src 192.168.1.20 metric 0
route table 254 192.168.1.0/24 dev #2 src 192.168.1.20 metric 400
route table 101 10.0.0.0/16 dev #3 src 10.0.0.7 metric 0
route table 254 10.0.0.0/16 dev #3 src 10.0.0.7 metric 200
route table 102 172.31.1.0/30 dev #4 src 172.31.1.1 metric 0
route table 254 172.31.1.0/30 dev #4 src 172.31.1.1 metric 600
route table 100 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.20 metric 0
route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.20 metric 400
route table 101 0.0.0.0/0 via 10.0.0.1 dev #3 src 10.0.0.7 metric 0
route table 254 0.0.0.0/0 via 10.0.0.1 dev #3 src 10.0.0.7 metric 200
"
        );
        assert_eq!(priority_order(&inputs), ["wlan0", "eth0", "usb0"]);
    }

    #[test]
    fn same_type_same_subnet_never_collide() {
        let inputs = [
            input(
                "eth0",
                2,
                Kind::Ethernet,
                Connection::Internet,
                "192.168.1.20/24",
                Some("192.168.1.1"),
                0,
                0,
            ),
            input(
                "eth1",
                3,
                Kind::Ethernet,
                Connection::Internet,
                "192.168.1.21/24",
                Some("192.168.1.1"),
                1,
                1,
            ),
        ];
        let main: Vec<_> = calculate(&inputs)
            .into_iter()
            .filter_map(|e| match e {
                Entry::Route {
                    table: MAIN_TABLE,
                    dst,
                    metric,
                    ..
                } => Some((dst, metric)),
                _ => None,
            })
            .collect();
        let unique: BTreeSet<_> = main.iter().collect();
        assert_eq!(unique.len(), main.len(), "{main:?}");
    }

    #[test]
    fn demotion_is_a_minimal_diff() {
        let mut inputs = vec![
            input(
                "eth0",
                2,
                Kind::Ethernet,
                Connection::Internet,
                "192.168.1.20/24",
                Some("192.168.1.1"),
                0,
                0,
            ),
            input(
                "wlan0",
                3,
                Kind::Wifi,
                Connection::Internet,
                "10.0.0.7/16",
                Some("10.0.0.1"),
                1,
                0,
            ),
        ];
        let before = calculate(&inputs);
        assert_eq!(priority_order(&inputs), ["eth0", "wlan0"]);
        inputs[0].connection = Connection::Lan;
        let after = calculate(&inputs);
        assert_eq!(priority_order(&inputs), ["wlan0", "eth0"]);
        let (del, add) = diff(&before, &after);
        assert_eq!(
            render(&del),
            "route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.20 metric 100
route table 254 192.168.1.0/24 dev #2 src 192.168.1.20 metric 100
"
        );
        assert_eq!(
            render(&add),
            "route table 254 192.168.1.0/24 dev #2 src 192.168.1.20 metric 400
route table 254 0.0.0.0/0 via 192.168.1.1 dev #2 src 192.168.1.20 metric 400
"
        );
        let (del, add) = diff(&after, &after);
        assert!(del.is_empty() && add.is_empty());
        // Link down: everything of eth0 goes, wlan0 stays untouched.
        inputs[0].connection = Connection::Disconnected;
        let (del, add) = diff(&after, &calculate(&inputs));
        assert_eq!(del.len(), 5);
        assert!(add.is_empty());
        assert!(del.iter().all(|e| !e.to_string().contains("#3")));
    }
}
