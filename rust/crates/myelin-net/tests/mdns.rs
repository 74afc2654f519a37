//! mDNS: the daemon's responder answers a real mDNS browser on the other end of a veth pair,
//! with the interface's own address, and stops answering on an interface with `mdns = false`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Bus, Netns, config, require_root, start_daemon, veth};
use mdns_sd::{ServiceDaemon, ServiceEvent};

/// Browses for `_ssh._tcp` from inside `ns` and returns (host, addresses) of what resolves.
fn browse(ns: &Netns, limit: Duration) -> std::thread::JoinHandle<Option<(String, Vec<IpAddr>)>> {
    // The responder thread mdns-sd spawns inherits the browsing thread's namespace.
    ns.run(move || {
        let mdns = ServiceDaemon::new().unwrap();
        let rx = mdns.browse("_ssh._tcp.local.").unwrap();
        let deadline = Instant::now() + limit;
        let mut found = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(ServiceEvent::ServiceResolved(s)) => {
                    found = Some((
                        s.host.clone(),
                        s.addresses.iter().map(|a| a.to_ip_addr()).collect(),
                    ));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = mdns.shutdown();
        found
    })
}

#[tokio::test]
async fn advertises_the_host_and_ssh_on_configured_interfaces() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let dev = Netns::new("mdns");
    let peer = Netns::new("mdnsp");
    let other = Netns::new("mdnso");
    veth(&dev, "eth0", &peer, "veth0");
    veth(&dev, "eth1", &other, "veth1");
    peer.ip(&["addr", "add", "192.168.90.1/24", "dev", "veth0"]);
    other.ip(&["addr", "add", "192.168.91.1/24", "dev", "veth1"]);
    let cfg = config(
        dir.path(),
        r#"[mdns]
enabled = true
services = [{ type = "_ssh._tcp", port = 22 }]

[interface.eth0]
type = "ethernet"
ipv4 = { method = "static", address = "192.168.90.2/24" }

[interface.eth1]
type = "ethernet"
ipv4 = { method = "static", address = "192.168.91.2/24" }
mdns = false
"#,
    );
    let bus = Bus::open();
    let daemon = start_daemon(&dev, &bus, &cfg);

    let on_eth0 = browse(&peer, Duration::from_secs(10));
    let on_eth1 = browse(&other, Duration::from_secs(4));
    let (host, addrs) = on_eth0
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no _ssh._tcp answer; daemon log:\n{}", daemon.log()));
    assert_eq!(host, "testdev.local.");
    let v4: Vec<IpAddr> = addrs.into_iter().filter(IpAddr::is_ipv4).collect();
    assert!(
        v4.contains(&IpAddr::V4(Ipv4Addr::new(192, 168, 90, 2))),
        "{v4:?}"
    );
    assert!(
        !v4.contains(&IpAddr::V4(Ipv4Addr::new(192, 168, 91, 2))),
        "{v4:?}"
    );
    // eth1 has mdns = false: nobody on its link gets an answer.
    let heard = on_eth1.join().unwrap();
    assert!(heard.is_none(), "answered on eth1: {heard:?}");
    daemon.stop();
}
