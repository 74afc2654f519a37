//! The daemon in real network namespaces: veth pairs, busybox udhcpd/udhcpc, rtnetlink, a
//! private dbus-daemon. Needs root (CI runs the tests as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bus, Daemon, Netns, config, require_root, udhcpd, veth, wait_for};
use futures_util::StreamExt;
use myelin_net::client::{self, Network1Proxy};

const LIMIT: Duration = Duration::from_secs(20);

/// Device namespace with `eth0`, a peer namespace acting as router and DHCP server, and a
/// TCP "internet" target at 203.0.113.1 behind the router.
struct Lan {
    dev: Netns,
    peer: Netns,
    _udhcpd: common::Proc,
}

fn lan(dir: &std::path::Path) -> Lan {
    let dev = Netns::new("dev");
    let peer = Netns::new("peer");
    veth(&dev, "eth0", &peer, "veth0");
    peer.ip(&["addr", "add", "192.168.77.1/24", "dev", "veth0"]);
    peer.ip(&["addr", "add", "203.0.113.1/32", "dev", "lo"]);
    let d = udhcpd(
        &peer,
        dir,
        "veth0",
        "192.168.77.100",
        "192.168.77.110",
        &[
            "option subnet 255.255.255.0",
            "option router 192.168.77.1",
            "option dns 192.168.77.53 192.168.77.1",
            "option domain test.lan",
            "option lease 600",
        ],
    );
    Lan {
        dev,
        peer,
        _udhcpd: d,
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
    wait_for(LIMIT, &format!("{ifname} to be {want}"), || async {
        (iface_prop(conn, ifname, "connection").await == want).then_some(())
    })
    .await;
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
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let net = lan(dir.path());
    let target = net.peer.listen("203.0.113.1:0");
    let port = target.local_addr().unwrap().port();
    let cfg = config(
        dir.path(),
        &format!(
            r#"[connectivity]
hosts = ["192.168.77.1:{port}", "203.0.113.1:{port}"]
min_interval = "100ms"
max_interval = "400ms"
timeout = "300ms"

[interface.eth0]
type = "ethernet"
"#
        ),
    );
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&net.dev, &bus, &cfg);

    let eth0 = client::interface(&conn, "eth0").await.unwrap();
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
    until_connection(&conn, "eth0", "internet").await;
    let seen = tokio::time::timeout(LIMIT, seen).await.unwrap().unwrap();
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
    let net1 = Network1Proxy::new(&conn).await.unwrap();
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
    until_connection(&conn, "eth0", "lan").await;
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
    until_connection(&conn, "eth0", "internet").await;

    // Link down: disconnected, the lease, routes and rules are gone.
    net.peer.ip(&["link", "set", "veth0", "down"]);
    until_connection(&conn, "eth0", "disconnected").await;
    wait_for(LIMIT, "the lease to be removed", || async {
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
    until_connection(&conn, "eth0", "internet").await;
    assert!(leased_address(&net.dev).is_some());

    // New check targets void the old verdict at once (not after three strikes): only the
    // on-subnet router is left, which proves nothing about the internet.
    net1.set_check_hosts(&[&format!("192.168.77.1:{port}")], false)
        .await
        .unwrap();
    wait_for(
        Duration::from_millis(300),
        "lan right after new check targets",
        || async { (iface_prop(&conn, "eth0", "connection").await == "lan").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(iface_prop(&conn, "eth0", "connection").await, "lan");

    // A target that refuses the connection still proves the path: internet.
    net1.set_check_hosts(&["203.0.113.1:9"], false)
        .await
        .unwrap();
    until_connection(&conn, "eth0", "internet").await;

    drop(target);
    daemon.stop();
}

#[tokio::test]
async fn static_config_persistence_and_rejected_configs() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let net = lan(dir.path());
    let target = net.peer.listen("203.0.113.1:0");
    let port = target.local_addr().unwrap().port();
    let cfg = config(
        dir.path(),
        &format!(
            r#"[connectivity]
hosts = ["203.0.113.1:{port}"]
min_interval = "100ms"
max_interval = "400ms"
timeout = "300ms"

[interface.eth0]
type = "ethernet"
ipv4 = {{ method = "dhcp" }}
"#
        ),
    );
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&net.dev, &bus, &cfg);
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    until_connection(&conn, "eth0", "internet").await;

    // A static configuration, persisted.
    let static_cfg = r#"{"type":"ethernet","ipv4":{"method":"static","address":"192.168.77.9/24","gateway":"192.168.77.1","name_servers":["9.9.9.9"]}}"#;
    net1.configure("eth0", static_cfg, true).await.unwrap();
    until_connection(&conn, "eth0", "internet").await;
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
    let eth0 = client::interface(&conn, "eth0").await.unwrap();
    let mut props = eth0
        .inner()
        .receive_signal("PropertiesChanged")
        .await
        .unwrap();
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
    assert_eq!(leased_address(&net.dev).as_deref(), Some("192.168.77.9/24"));
    assert_eq!(eth0.state().await.unwrap(), "configured");
    let quiet = tokio::time::timeout(Duration::from_millis(300), props.next()).await;
    assert!(quiet.is_err(), "a rejected Configure changed a property");
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
    wait_for(LIMIT, "the temporary address", || async {
        (leased_address(&net.dev).as_deref() == Some("192.168.77.10/24")).then_some(())
    })
    .await;
    until_connection(&conn, "eth0", "lan").await;
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
    daemon.stop();
    let daemon = Daemon::start(&net.dev, &bus, &cfg);
    wait_for(LIMIT, "the persisted address", || async {
        (leased_address(&net.dev).as_deref() == Some("192.168.77.9/24")).then_some(())
    })
    .await;
    assert_eq!(net1.check_hosts().await.unwrap(), ["10.0.2.2:1234"]);

    // A corrupt persisted file: logged, and the default (DHCP) applies.
    daemon.stop();
    std::fs::write(&persisted, b"{\"version\":1,\"config\":{\"type\":\"ether").unwrap();
    let daemon = Daemon::start(&net.dev, &bus, &cfg);
    wait_for(LIMIT, "a DHCP lease", || async {
        leased_address(&net.dev)
            .filter(|a| a.starts_with("192.168.77.1") && a.len() > "192.168.77.1/24".len())
            .map(|_| ())
    })
    .await;
    assert!(
        daemon.log().contains("ignoring persisted"),
        "{}",
        daemon.log()
    );

    // Deconfigure: down now, persisted config gone.
    net1.configure("eth0", static_cfg, true).await.unwrap();
    net1.deconfigure("eth0").await.unwrap();
    assert!(!persisted.exists());
    wait_for(LIMIT, "eth0 to be unconfigured", || async {
        (iface_prop(&conn, "eth0", "state").await == "unconfigured").then_some(())
    })
    .await;
    assert_eq!(leased_address(&net.dev), None);
    drop(target);
    daemon.stop();
}

#[tokio::test]
async fn gadget_link_serves_the_peer_its_address() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("gdev");
    let host = Netns::new("ghost");
    veth(&dev, "usb0", &host, "usbhost");
    let cfg = config(dir.path(), "[interface.usb0]\ntype = \"direct\"\n");
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&dev, &bus, &cfg);
    until_connection(&conn, "usb0", "lan").await;

    let (ours, peer) = myelin_net::tech::direct::addresses("testdev", "usb0");
    let out = dev.ip(&["-4", "-o", "addr", "show", "dev", "usb0"]);
    assert!(out.contains(&format!("inet {ours} ")), "{out}");

    // The laptop side asks for an address with busybox udhcpc and gets the other one.
    let script = dir.path().join("print-lease");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip $subnet\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = host
        .cmd("busybox")
        .args([
            "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "usbhost", "-s",
        ])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("LEASE {peer} 255.255.255.252")),
        "udhcpc got no lease: {stdout} {}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    // No default route through a gadget link.
    assert!(!dev.ip(&["-4", "route", "show"]).contains("default"));
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    assert_eq!(net1.connection().await.unwrap(), "lan");

    // The link goes down: disconnected.
    host.ip(&["link", "set", "usbhost", "down"]);
    until_connection(&conn, "usb0", "disconnected").await;
    daemon.stop();
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
    dev.ip(&[
        "rule",
        "add",
        "from",
        "198.51.100.7",
        "lookup",
        "105",
        "priority",
        "10000",
    ]);
    dev.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "lo",
        "table",
        "105",
    ]);
    dev.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "lo",
        "proto",
        "static",
        "metric",
        "300",
    ]);
    dev.ip(&[
        "route",
        "add",
        "198.51.101.0/24",
        "dev",
        "lo",
        "proto",
        "static",
        "metric",
        "1000",
    ]);
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&dev, &bus, &cfg);
    assert!(!dev.ip(&["-4", "rule"]).contains("198.51.100.7"));
    assert!(dev.ip(&["-4", "route", "show", "table", "105"]).is_empty());
    let main = dev.ip(&["-4", "route", "show"]);
    assert!(!main.contains("198.51.100.0/24"), "{main}");
    assert!(
        main.contains("198.51.101.0/24"),
        "not ours, must stay: {main}"
    );
    wait_for(LIMIT, "eth1 waiting", || async {
        (iface_prop(&conn, "eth1", "state").await == "waiting").then_some(())
    })
    .await;
    let eth1 = client::interface(&conn, "eth1").await.unwrap();
    assert!(!eth1.present().await.unwrap());

    // Hot-plug: configured as soon as it appears.
    veth(&dev, "eth1", &peer, "p1");
    until_connection(&conn, "eth1", "lan").await;
    assert!(eth1.present().await.unwrap());
    assert_eq!(eth1.state().await.unwrap(), "configured");
    assert!(
        dev.ip(&["-4", "route", "show"])
            .contains("10.99.0.0/24 dev eth1 proto static scope link src 10.99.0.2")
    );

    // Unplug: waiting again, disconnected.
    dev.ip(&["link", "del", "eth1"]);
    wait_for(LIMIT, "eth1 waiting again", || async {
        (iface_prop(&conn, "eth1", "state").await == "waiting").then_some(())
    })
    .await;
    assert_eq!(
        iface_prop(&conn, "eth1", "connection").await,
        "disconnected"
    );
    daemon.stop();
}

#[tokio::test]
async fn two_uplinks_get_distinct_metrics_and_follow_connectivity() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("two");
    let peer = Netns::new("twop");
    veth(&dev, "eth0", &peer, "veth0");
    veth(&dev, "eth1", &peer, "veth1");
    peer.ip(&["addr", "add", "192.168.80.1/24", "dev", "veth0"]);
    peer.ip(&["addr", "add", "192.168.81.1/24", "dev", "veth1"]);
    peer.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    peer.ip(&["addr", "add", "203.0.113.11/32", "dev", "lo"]);
    let _d0 = udhcpd(
        &peer,
        dir.path(),
        "veth0",
        "192.168.80.100",
        "192.168.80.110",
        &[
            "option subnet 255.255.255.0",
            "option router 192.168.80.1",
            "option dns 192.168.80.53",
        ],
    );
    let _d1 = udhcpd(
        &peer,
        dir.path(),
        "veth1",
        "192.168.81.100",
        "192.168.81.110",
        &[
            "option subnet 255.255.255.0",
            "option router 192.168.81.1",
            "option dns 192.168.81.53",
        ],
    );
    let t0 = peer.listen("203.0.113.10:0");
    let t1 = peer.listen("203.0.113.11:0");
    let (p0, p1) = (
        t0.local_addr().unwrap().port(),
        t1.local_addr().unwrap().port(),
    );
    let cfg = config(
        dir.path(),
        &format!(
            r#"[connectivity]
min_interval = "100ms"
max_interval = "400ms"
timeout = "300ms"

[interface.eth0]
type = "ethernet"
check_hosts = ["203.0.113.10:{p0}"]

[interface.eth1]
type = "ethernet"
check_hosts = ["203.0.113.11:{p1}"]
"#
        ),
    );
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&dev, &bus, &cfg);
    until_connection(&conn, "eth0", "internet").await;
    until_connection(&conn, "eth1", "internet").await;
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    assert_eq!(net1.available_interfaces().await.unwrap(), ["eth0", "eth1"]);
    let main = dev.ip(&["-4", "route", "show", "default"]);
    assert!(
        main.contains("via 192.168.80.1 dev eth0 proto static") && main.contains("metric 100"),
        "{main}"
    );
    assert!(
        main.contains("via 192.168.81.1 dev eth1 proto static") && main.contains("metric 101"),
        "{main}"
    );
    let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
    let (a, b) = (
        resolv.find("192.168.80.53").unwrap(),
        resolv.find("192.168.81.53").unwrap(),
    );
    assert!(a < b, "eth0's server should come first: {resolv}");
    // Source rules: each address looks up its own table.
    let rules = dev.ip(&["-4", "rule"]);
    assert!(
        rules.contains("lookup 100") && rules.contains("lookup 101"),
        "{rules}"
    );

    // eth0 loses the internet: eth1 takes over the default route and the first name server.
    peer.ip(&["addr", "del", "203.0.113.10/32", "dev", "lo"]);
    until_connection(&conn, "eth0", "lan").await;
    wait_for(LIMIT, "eth1 first", || async {
        (net1.available_interfaces().await.ok()? == ["eth1", "eth0"]).then_some(())
    })
    .await;
    let main = dev.ip(&["-4", "route", "show", "default"]);
    let first = main.lines().next().unwrap_or_default();
    assert!(
        first.contains("dev eth1") && first.contains("metric 101"),
        "{main}"
    );
    assert!(
        main.contains("dev eth0 proto static") && main.contains("metric 400"),
        "{main}"
    );
    let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
    let (a, b) = (
        resolv.find("192.168.80.53").unwrap(),
        resolv.find("192.168.81.53").unwrap(),
    );
    assert!(b < a, "eth1's server should come first now: {resolv}");
    assert_eq!(net1.connection().await.unwrap(), "internet");
    daemon.stop();
}

/// The QEMU system test's situation: the only reachable host is the gateway, inside the
/// interface's subnet; `check_local = true` lets the check use it.
#[tokio::test]
async fn check_local_uses_the_gateway_itself() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let net = lan(dir.path());
    let gateway = net.peer.listen("192.168.77.1:0");
    let port = gateway.local_addr().unwrap().port();
    gateway.set_nonblocking(true).unwrap();
    let cfg = config(
        dir.path(),
        r#"[connectivity]
check_local = true
min_interval = "100ms"
max_interval = "400ms"
timeout = "300ms"

[interface.eth0]
type = "ethernet"
"#,
    );
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = Daemon::start(&net.dev, &bus, &cfg);
    until_connection(&conn, "eth0", "lan").await;
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    net1.set_check_hosts(&[&format!("192.168.77.1:{port}")], false)
        .await
        .unwrap();
    until_connection(&conn, "eth0", "internet").await;
    assert!(
        gateway.accept().is_ok(),
        "the check never connected to the gateway"
    );
    daemon.stop();
}
