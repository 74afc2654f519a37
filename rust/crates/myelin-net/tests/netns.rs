//! The daemon in real network namespaces: veth pairs, busybox udhcpd/udhcpc, rtnetlink, a
//! private dbus-daemon. Needs root (CI runs the tests as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    Bus, Daemon, FAST_CHECKS, Netns, PATIENCE, Proc, config, dhcp_lease, require_root,
    start_daemon, udhcpd, veth, wait_for,
};
use std::collections::HashMap;

use futures_util::StreamExt;
use myelin_net::client::{self, Network1Proxy};
use zbus::OwnedVariant;

/// Device namespace with `eth0`, a peer namespace acting as router and DHCP server, and a
/// TCP "internet" target listening at 203.0.113.1:`port` behind the router; `dir` holds the
/// daemon's files.
struct Lan {
    dir: tempfile::TempDir,
    dev: Netns,
    peer: Netns,
    port: u16,
    _target: std::net::TcpListener,
    _udhcpd: Proc,
}

/// An uplink from `dev`'s `ifname` to `peer`'s `peer_if`: the router 192.168.`n`.1/24 on the
/// peer's side, serving leases from .100 to .110 with itself as router and .53 and .1 as name
/// servers, plus `options`.
fn uplink(
    dev: &Netns,
    ifname: &str,
    peer: &Netns,
    peer_if: &str,
    n: u8,
    dir: &std::path::Path,
    options: &[&str],
) -> Proc {
    veth(dev, ifname, peer, peer_if);
    peer.ip(&["addr", "add", &format!("192.168.{n}.1/24"), "dev", peer_if]);
    let mut all = vec![
        "option subnet 255.255.255.0".to_owned(),
        format!("option router 192.168.{n}.1"),
        format!("option dns 192.168.{n}.53 192.168.{n}.1"),
    ];
    all.extend(options.iter().map(|o| (*o).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    udhcpd(
        peer,
        dir,
        peer_if,
        &format!("192.168.{n}.100"),
        &format!("192.168.{n}.110"),
        &all,
    )
}

fn lan() -> Lan {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("dev");
    let peer = Netns::new("peer");
    let d = uplink(
        &dev,
        "eth0",
        &peer,
        "veth0",
        77,
        dir.path(),
        &["option domain test.lan", "option lease 600"],
    );
    peer.ip(&["addr", "add", "203.0.113.1/32", "dev", "lo"]);
    let target = peer.listen("203.0.113.1:0");
    Lan {
        dir,
        dev,
        peer,
        port: target.local_addr().unwrap().port(),
        _target: target,
        _udhcpd: d,
    }
}

/// `[connectivity]` with fast checks against `hosts` (none: the defaults), then `rest`.
fn checking(hosts: &[String], rest: &str) -> String {
    let hosts = if hosts.is_empty() {
        String::new()
    } else {
        format!("hosts = {hosts:?}\n")
    };
    format!("[connectivity]\n{hosts}{FAST_CHECKS}\n{rest}")
}

/// The daemon under test, on a bus of its own, and a client connection to that bus.
struct Running {
    bus: Bus,
    conn: zbus::Connection,
    daemon: Option<Daemon>,
}

impl Running {
    async fn start(ns: &Netns, cfg: &std::path::Path) -> Running {
        let bus = Bus::open();
        let conn = bus.connect().await;
        let daemon = Some(start_daemon(ns, &bus, cfg));
        Running { bus, conn, daemon }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// Stops the daemon (it must exit cleanly) and starts it again: a reboot, as far as
    /// myelin-net can tell.
    fn restart(&mut self, ns: &Netns, cfg: &std::path::Path) {
        if let Some(d) = self.daemon.take() {
            d.stop();
        }
        self.daemon = Some(start_daemon(ns, &self.bus, cfg));
    }

    fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop();
        }
    }
}

async fn iface_prop(conn: &zbus::Connection, ifname: &str, what: &str) -> String {
    let p = client::interface(conn, ifname).await.unwrap();
    match what {
        "state" => p.state().await.unwrap_or_default(),
        "connection" => p.connection().await.unwrap_or_default(),
        _ => unreachable!(),
    }
}

async fn until_connection(conn: &zbus::Connection, ifname: &str, want: &str) {
    wait_for(&format!("{ifname} to be {want}"), || async {
        (iface_prop(conn, ifname, "connection").await == want).then_some(())
    })
    .await;
}

/// The main table's default routes (myelin-net's: `proto static`) in the kernel's order, as
/// (device, gateway, metric).
fn default_routes(ns: &Netns) -> Vec<(String, String, u32)> {
    let out = ns.ip(&["-4", "route", "show", "default", "proto", "static"]);
    out.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let after = |key: &str| {
                w.iter()
                    .position(|x| *x == key)
                    .and_then(|i| w.get(i + 1))
                    .map_or_else(String::new, |v| (*v).to_owned())
            };
            (
                after("dev"),
                after("via"),
                after("metric").parse().unwrap_or(0),
            )
        })
        .collect()
}

fn owned((dev, via, metric): (&str, &str, u32)) -> (String, String, u32) {
    (dev.to_owned(), via.to_owned(), metric)
}

/// The first name server of the resolv.conf in `dir`.
fn first_server(dir: &std::path::Path) -> String {
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no name server in {resolv}"))
        .to_owned()
}

fn leased_address(ns: &Netns) -> Option<String> {
    let out = ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(str::to_owned)
}

#[tokio::test]
async fn dhcp_routes_resolv_and_connectivity() {
    let net = lan();
    let (dir, port) = (&net.dir, net.port);
    let cfg = config(
        dir.path(),
        &checking(
            &[
                format!("192.168.77.1:{port}"),
                format!("203.0.113.1:{port}"),
            ],
            "[interface.eth0]\ntype = \"ethernet\"\n",
        ),
    );
    let run = Running::start(&net.dev, &cfg).await;
    let conn = &run.conn;

    let eth0 = client::interface(conn, "eth0").await.unwrap();
    let mut changes = eth0.receive_connection_changed().await;
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(c) = changes.next().await {
            let v = c.get().await.unwrap();
            let done = v == "internet";
            seen.push(v);
            if done {
                break;
            }
        }
        seen
    });
    until_connection(conn, "eth0", "internet").await;
    let seen = tokio::time::timeout(PATIENCE, seen).await.unwrap().unwrap();
    let lan_at = seen.iter().position(|s| s == "lan");
    let inet_at = seen.iter().position(|s| s == "internet");
    assert!(
        matches!((lan_at, inet_at), (Some(a), Some(b)) if a < b),
        "PropertiesChanged should report lan, then internet: {seen:?}"
    );

    // The lease is on the interface, with routes in main and eth0's own table.
    let addr = leased_address(&net.dev).expect("no address on eth0");
    assert!(
        addr.starts_with("192.168.77.1") && addr.ends_with("/24"),
        "{addr}"
    );
    let ip = addr.trim_end_matches("/24");
    let main = net.dev.ip(&["-4", "route", "show"]);
    assert!(
        main.contains(&format!(
            "default via 192.168.77.1 dev eth0 proto static src {ip} metric 100"
        )),
        "{main}"
    );
    assert!(
        main.contains(&format!(
            "192.168.77.0/24 dev eth0 proto static scope link src {ip} metric 100"
        )),
        "{main}"
    );
    assert_eq!(
        main.matches("192.168.77.0/24").count(),
        1,
        "a kernel prefix route crept in: {main}"
    );
    let table = net.dev.ip(&["-4", "route", "show", "table", "100"]);
    assert!(
        table.contains("default via 192.168.77.1 dev eth0"),
        "{table}"
    );
    let rules = net.dev.ip(&["-4", "rule"]);
    assert!(
        rules.contains(&format!("10000:\tfrom {ip} lookup 100")),
        "{rules}"
    );

    // resolv.conf: the DHCP servers in the server's order, with their source.
    let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("search test.lan # eth0\nnameserver 192.168.77.53 # eth0\nnameserver 192.168.77.1 # eth0\n"),
        "{resolv}"
    );

    // D-Bus state.
    let net1 = Network1Proxy::new(conn).await.unwrap();
    assert_eq!(net1.connection().await.unwrap(), "internet");
    assert_eq!(net1.available_interfaces().await.unwrap(), ["eth0"]);
    let opts = eth0.dhcp_options().await.unwrap();
    assert_eq!(opts.get("router").map(String::as_str), Some("192.168.77.1"));
    assert_eq!(opts.get("domain").map(String::as_str), Some("test.lan"));
    assert!(eth0.lower_up().await.unwrap());
    assert_eq!(eth0.addresses().await.unwrap(), std::slice::from_ref(&addr));
    assert_eq!(eth0.mac_address().await.unwrap().len(), 17);

    // The target behind the router disappears: three strikes, then lan, and the default route
    // is demoted (the on-subnet target 192.168.77.1 never counted).
    net.peer.ip(&["addr", "del", "203.0.113.1/32", "dev", "lo"]);
    until_connection(conn, "eth0", "lan").await;
    let main = net.dev.ip(&["-4", "route", "show"]);
    assert!(
        main.contains("default via 192.168.77.1 dev eth0 proto static src"),
        "{main}"
    );
    assert!(
        main.contains("metric 400"),
        "lan should demote the metric: {main}"
    );
    assert_eq!(net1.connection().await.unwrap(), "lan");

    // It comes back: internet again (the backoff on lan is capped at max_interval).
    net.peer.ip(&["addr", "add", "203.0.113.1/32", "dev", "lo"]);
    until_connection(conn, "eth0", "internet").await;

    // Link down: disconnected, the lease, routes and rules are gone.
    net.peer.ip(&["link", "set", "veth0", "down"]);
    until_connection(conn, "eth0", "disconnected").await;
    wait_for("the lease to be removed", || async {
        leased_address(&net.dev).is_none().then_some(())
    })
    .await;
    let main = net.dev.ip(&["-4", "route", "show"]);
    assert!(!main.contains("default"), "{main}");
    assert!(!net.dev.ip(&["-4", "rule"]).contains("lookup 100"));
    assert!(net1.available_interfaces().await.unwrap().is_empty());
    assert!(!eth0.lower_up().await.unwrap());
    let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
    assert!(!resolv.contains("nameserver"), "{resolv}");

    // Link up again: a new lease and internet.
    net.peer.ip(&["link", "set", "veth0", "up"]);
    until_connection(conn, "eth0", "internet").await;
    assert!(leased_address(&net.dev).is_some());

    // New check targets void the old verdict at once (not after three strikes): only the
    // on-subnet router is left, which proves nothing about the internet.
    // The reply comes once the change is published, so the verdict is already there.
    net1.set_check_hosts(&[&format!("192.168.77.1:{port}")], false)
        .await
        .unwrap();
    assert_eq!(iface_prop(conn, "eth0", "connection").await, "lan");
    // Checks keep failing with that target alone (a second or two of them).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(iface_prop(conn, "eth0", "connection").await, "lan");

    // A target that refuses the connection still proves the path: internet.
    net1.set_check_hosts(&["203.0.113.1:9"], false)
        .await
        .unwrap();
    until_connection(conn, "eth0", "internet").await;

    run.stop();
}

#[tokio::test]
async fn static_config_persistence_and_rejected_configs() {
    let net = lan();
    let (dir, port) = (&net.dir, net.port);
    let cfg = config(
        dir.path(),
        &checking(
            &[format!("203.0.113.1:{port}")],
            "[interface.eth0]\ntype = \"ethernet\"\nipv4 = { method = \"dhcp\" }\n",
        ),
    );
    let mut run = Running::start(&net.dev, &cfg).await;
    let conn = &run.conn.clone();
    let net1 = Network1Proxy::new(conn).await.unwrap();
    until_connection(conn, "eth0", "internet").await;

    // A static configuration, persisted.
    let static_cfg = r#"{"type":"ethernet","ipv4":{"method":"static","address":"192.168.77.9/24","gateway":"192.168.77.1","name_servers":["9.9.9.9"]}}"#;
    net1.configure("eth0", static_cfg, true).await.unwrap();
    until_connection(conn, "eth0", "internet").await;
    assert_eq!(leased_address(&net.dev).as_deref(), Some("192.168.77.9/24"));
    let main = net.dev.ip(&["-4", "route", "show"]);
    assert!(
        main.contains("default via 192.168.77.1 dev eth0 proto static src 192.168.77.9 metric 100"),
        "{main}"
    );
    let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 9.9.9.9 # eth0"), "{resolv}");
    assert!(
        !resolv.contains("192.168.77.53"),
        "the old lease's DNS stayed: {resolv}"
    );
    let persisted = dir.path().join("data/interfaces/eth0.json");
    assert!(persisted.exists());
    let running = net1.get_configuration("eth0").await.unwrap();
    assert!(running.contains("192.168.77.9/24"), "{running}");

    // Rejected configurations name the field and change nothing.
    let eth0 = client::interface(conn, "eth0").await.unwrap();
    let eth0_props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination("org.myelin.Network1")
        .path(myelin_net::service::interface_path("eth0"))
        .build()
        .await
        .unwrap();
    let mut props = eth0_props
        .inner()
        .receive_signal("PropertiesChanged")
        .await
        .unwrap();
    let log_before = run.daemon().log().len();
    for (bad, field) in [
        (
            r#"{"type":"ethernet","ipv4":{"method":"static","address":"192.168.77.300/24"}}"#,
            "ipv4.address",
        ),
        (
            r#"{"type":"ethernet","ipv4":{"method":"static"}}"#,
            "ipv4.address",
        ),
        (r#"{"type":"ethernet","speed":100}"#, "speed"),
        (
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"x","passphrase":"short"}]}}"#,
            "wifi.networks[0].passphrase",
        ),
        (r#"not json"#, "config"),
    ] {
        let err = net1.configure("eth0", bad, true).await.unwrap_err();
        let zbus::Error::MethodError(name, Some(msg), _) = &err else {
            panic!("unexpected error {err:?}")
        };
        assert_eq!(name.as_str(), "org.myelin.Network1.Error.InvalidConfig");
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    assert_eq!(net1.get_configuration("eth0").await.unwrap(), running);
    // The manager logs (at debug level) every configuration it takes and every bring-up,
    // before it replies: there were none.
    let log = run.daemon().log();
    let since = &log[log_before..];
    assert!(
        !since.contains("eth0: configure") && !since.contains("eth0: bringing up"),
        "a rejected Configure was carried out:\n{since}"
    );
    assert_eq!(leased_address(&net.dev).as_deref(), Some("192.168.77.9/24"));
    assert_eq!(eth0.state().await.unwrap(), "configured");
    assert!(
        std::fs::read_to_string(&persisted)
            .unwrap()
            .contains("192.168.77.9/24")
    );

    // A temporary configuration (an AP wizard's) is not persisted.
    net1.configure(
        "eth0",
        r#"{"type":"ethernet","ipv4":{"method":"static","address":"192.168.77.10/24"}}"#,
        false,
    )
    .await
    .unwrap();
    // The rejected ones changed no property: the first change of the interface's setup that
    // eth0 announced is this configuration (the check's verdict may change meanwhile).
    let first = tokio::time::timeout(PATIENCE, async {
        while let Some(m) = props.next().await {
            let (_, changed, _): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                m.body().deserialize().unwrap();
            if ["Configuration", "State", "Type", "Addresses"]
                .iter()
                .any(|k| changed.contains_key(*k))
            {
                return changed;
            }
        }
        panic!("the signal stream ended")
    })
    .await
    .expect("no PropertiesChanged for the new configuration");
    let announced: String = first
        .get("Configuration")
        .map(|v| v.try_clone().unwrap().try_into().unwrap())
        .unwrap_or_default();
    assert!(
        announced.contains("192.168.77.10/24"),
        "a rejected Configure changed a property: {first:?}"
    );
    wait_for("the temporary address", || async {
        (leased_address(&net.dev).as_deref() == Some("192.168.77.10/24")).then_some(())
    })
    .await;
    until_connection(conn, "eth0", "lan").await;
    assert!(
        std::fs::read_to_string(&persisted)
            .unwrap()
            .contains("192.168.77.9/24")
    );

    // Check targets can be changed at run time (persisted).
    net1.set_check_hosts(&["10.0.2.2:1234"], true)
        .await
        .unwrap();
    assert_eq!(net1.check_hosts().await.unwrap(), ["10.0.2.2:1234"]);
    let err = net1.set_check_hosts(&["nonsense"], true).await.unwrap_err();
    assert!(err.to_string().contains("hosts[0]"), "{err}");

    // After a restart the persisted static config wins over the file's DHCP default.
    run.restart(&net.dev, &cfg);
    wait_for("the persisted address", || async {
        (leased_address(&net.dev).as_deref() == Some("192.168.77.9/24")).then_some(())
    })
    .await;
    assert_eq!(net1.check_hosts().await.unwrap(), ["10.0.2.2:1234"]);

    // A corrupt persisted file: logged (a warning), and the default (DHCP) applies.
    std::fs::write(&persisted, b"{\"version\":1,\"config\":{\"type\":\"ether").unwrap();
    run.restart(&net.dev, &cfg);
    wait_for("a DHCP lease", || async {
        leased_address(&net.dev)
            .filter(|a| a.starts_with("192.168.77.1") && a.len() > "192.168.77.1/24".len())
            .map(|_| ())
    })
    .await;
    let log = run.daemon().log();
    assert!(
        log.contains("<4>ignoring a persisted configuration: "),
        "{log}"
    );

    // Deconfigure: down now, persisted config gone.
    net1.configure("eth0", static_cfg, true).await.unwrap();
    net1.deconfigure("eth0").await.unwrap();
    assert!(!persisted.exists());
    wait_for("eth0 to be unconfigured", || async {
        (iface_prop(conn, "eth0", "state").await == "unconfigured").then_some(())
    })
    .await;
    assert_eq!(leased_address(&net.dev), None);
    run.stop();
}

#[tokio::test]
async fn gadget_link_serves_the_peer_its_address() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("gdev");
    let host = Netns::new("ghost");
    veth(&dev, "usb0", &host, "usbhost");
    let cfg = config(dir.path(), "[interface.usb0]\ntype = \"direct\"\n");
    let run = Running::start(&dev, &cfg).await;
    let conn = &run.conn;
    until_connection(conn, "usb0", "lan").await;

    let (ours, peer) = myelin_net::tech::direct::addresses("testdev", "usb0");
    let out = dev.ip(&["-4", "-o", "addr", "show", "dev", "usb0"]);
    assert!(out.contains(&format!("inet {ours} ")), "{out}");

    // The laptop side asks for an address with busybox udhcpc and gets the other one.
    let lease = dhcp_lease(&host, "usbhost", dir.path());
    assert_eq!(
        lease,
        Some((peer.to_string(), "255.255.255.252".to_owned())),
        "daemon log:\n{}",
        run.daemon().log()
    );
    // No default route through a gadget link.
    assert!(!dev.ip(&["-4", "route", "show"]).contains("default"));
    let net1 = Network1Proxy::new(conn).await.unwrap();
    assert_eq!(net1.connection().await.unwrap(), "lan");

    // The link goes down: disconnected.
    host.ip(&["link", "set", "usbhost", "down"]);
    until_connection(conn, "usb0", "disconnected").await;
    run.stop();
}

#[tokio::test]
async fn interfaces_appear_and_disappear() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("hot");
    let peer = Netns::new("hotp");
    let cfg = config(
        dir.path(),
        "[interface.eth1]\ntype = \"ethernet\"\nipv4 = { method = \"static\", address = \"10.99.0.2/24\" }\n",
    );
    // Leftovers of an earlier run (a crash): its rule, its table, its main-table route; and a
    // route that is not myelin-net's.
    for leftover in [
        "rule add from 198.51.100.7 lookup 105 priority 10000",
        "route add 198.51.100.0/24 dev lo table 105",
        "route add 198.51.100.0/24 dev lo proto static metric 300",
        "route add 198.51.101.0/24 dev lo proto static metric 1000",
    ] {
        dev.ip(&leftover.split(' ').collect::<Vec<_>>());
    }
    let run = Running::start(&dev, &cfg).await;
    let conn = &run.conn;
    assert!(!dev.ip(&["-4", "rule"]).contains("198.51.100.7"));
    assert!(dev.ip(&["-4", "route", "show", "table", "105"]).is_empty());
    let main = dev.ip(&["-4", "route", "show"]);
    assert!(!main.contains("198.51.100.0/24"), "{main}");
    assert!(
        main.contains("198.51.101.0/24"),
        "not ours, must stay: {main}"
    );
    wait_for("eth1 waiting", || async {
        (iface_prop(conn, "eth1", "state").await == "waiting").then_some(())
    })
    .await;
    let eth1 = client::interface(conn, "eth1").await.unwrap();
    assert!(!eth1.present().await.unwrap());

    // Hot-plug: configured as soon as it appears.
    veth(&dev, "eth1", &peer, "p1");
    until_connection(conn, "eth1", "lan").await;
    assert!(eth1.present().await.unwrap());
    assert_eq!(eth1.state().await.unwrap(), "configured");
    assert!(
        dev.ip(&["-4", "route", "show"])
            .contains("10.99.0.0/24 dev eth1 proto static scope link src 10.99.0.2")
    );

    // Unplug: waiting again, disconnected.
    dev.ip(&["link", "del", "eth1"]);
    wait_for("eth1 waiting again", || async {
        (iface_prop(conn, "eth1", "state").await == "waiting").then_some(())
    })
    .await;
    assert_eq!(iface_prop(conn, "eth1", "connection").await, "disconnected");
    run.stop();
}

#[tokio::test]
async fn two_uplinks_get_distinct_metrics_and_follow_connectivity() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("two");
    let peer = Netns::new("twop");
    let _d0 = uplink(&dev, "eth0", &peer, "veth0", 80, dir.path(), &[]);
    let _d1 = uplink(&dev, "eth1", &peer, "veth1", 81, dir.path(), &[]);
    peer.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    peer.ip(&["addr", "add", "203.0.113.11/32", "dev", "lo"]);
    let t0 = peer.listen("203.0.113.10:0");
    let t1 = peer.listen("203.0.113.11:0");
    let (p0, p1) = (
        t0.local_addr().unwrap().port(),
        t1.local_addr().unwrap().port(),
    );
    let cfg = config(
        dir.path(),
        &checking(
            &[],
            &format!(
                r#"[interface.eth0]
type = "ethernet"
check_hosts = ["203.0.113.10:{p0}"]

[interface.eth1]
type = "ethernet"
check_hosts = ["203.0.113.11:{p1}"]
"#
            ),
        ),
    );
    let run = Running::start(&dev, &cfg).await;
    let conn = &run.conn;
    until_connection(conn, "eth0", "internet").await;
    until_connection(conn, "eth1", "internet").await;
    let net1 = Network1Proxy::new(conn).await.unwrap();
    assert_eq!(net1.available_interfaces().await.unwrap(), ["eth0", "eth1"]);
    assert_eq!(
        default_routes(&dev),
        [("eth0", "192.168.80.1", 100), ("eth1", "192.168.81.1", 101)].map(owned)
    );
    assert_eq!(
        first_server(dir.path()),
        "192.168.80.53",
        "eth0's comes first"
    );
    // Source rules: each address looks up its own table.
    let rules = dev.ip(&["-4", "rule"]);
    assert!(
        rules.contains("lookup 100") && rules.contains("lookup 101"),
        "{rules}"
    );

    // eth0 loses the internet: eth1 takes over the default route and the first name server.
    peer.ip(&["addr", "del", "203.0.113.10/32", "dev", "lo"]);
    until_connection(conn, "eth0", "lan").await;
    wait_for("eth1 first", || async {
        (net1.available_interfaces().await.ok()? == ["eth1", "eth0"]).then_some(())
    })
    .await;
    assert_eq!(
        default_routes(&dev),
        [("eth1", "192.168.81.1", 101), ("eth0", "192.168.80.1", 400)].map(owned)
    );
    assert_eq!(
        first_server(dir.path()),
        "192.168.81.53",
        "eth1's comes first now"
    );
    assert_eq!(net1.connection().await.unwrap(), "internet");
    run.stop();
}

/// The QEMU system test's situation: the only reachable host is the gateway, inside the
/// interface's subnet; `check_local = true` lets the check use it.
#[tokio::test]
async fn check_local_uses_the_gateway_itself() {
    let net = lan();
    let dir = &net.dir;
    let gateway = net.peer.listen("192.168.77.1:0");
    let port = gateway.local_addr().unwrap().port();
    gateway.set_nonblocking(true).unwrap();
    let cfg = config(
        dir.path(),
        &checking(
            &[],
            "check_local = true\n\n[interface.eth0]\ntype = \"ethernet\"\n",
        ),
    );
    let run = Running::start(&net.dev, &cfg).await;
    let conn = &run.conn;
    until_connection(conn, "eth0", "lan").await;
    let net1 = Network1Proxy::new(conn).await.unwrap();
    net1.set_check_hosts(&[&format!("192.168.77.1:{port}")], false)
        .await
        .unwrap();
    until_connection(conn, "eth0", "internet").await;
    assert!(
        gateway.accept().is_ok(),
        "the check never connected to the gateway"
    );
    run.stop();
}
