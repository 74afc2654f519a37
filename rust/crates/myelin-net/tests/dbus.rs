//! The D-Bus face of the daemon: WiFi through a fake supplicant, the shipped system-bus
//! policy, and the `myelin-net` client commands. Needs root (namespaces, another uid).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{
    Bus, FakeWpa, PATIENCE, SCAN_TWO, as_nobody, block_on, config, device, dhcp_lease,
    object_manager, start_daemon, wait_for,
};
use futures_util::StreamExt;
use myelin_net::client::{self, Network1Proxy};

fn wifi_config(dir: &std::path::Path) -> std::path::PathBuf {
    config(
        dir,
        r#"[interface.wlan0]
type = "wifi"
ipv4 = { method = "static", address = "10.77.0.2/24" }
wifi = { networks = [{ ssid = "MyelinHome", passphrase = "correct horse" }] }

[interface.eth9]
type = "ethernet"
ipv4 = { method = "disabled" }
"#,
    )
}

#[tokio::test]
async fn wifi_scan_results_association_and_a_crashing_supplicant() {
    // A stand-in netdev: the radio itself cannot exist here, its supplicant is faked.
    let (dir, ns) = device(&["wlan0", "eth9"]);
    let ctrl_dir = dir.path().join("run/wpa_supplicant");
    std::fs::create_dir_all(&ctrl_dir).unwrap();
    let fake = FakeWpa::start(&ctrl_dir.join("wlan0"));
    fake.reply("SCAN_RESULTS", SCAN_TWO);
    let cfg = wifi_config(dir.path());
    let bus = Bus::open();
    let conn = bus.connect().await;
    let daemon = start_daemon(&ns, &bus, &cfg);

    let wlan0 = client::interface(&conn, "wlan0").await.unwrap();
    let wifi = client::wifi(&conn, "wlan0").await.unwrap();
    assert_eq!(wlan0.kind().await.unwrap(), "wifi");
    wait_for("the initial scan results", || async {
        (wifi.access_points().await.unwrap_or_default().len() == 2).then_some(())
    })
    .await;
    let aps = wifi.access_points().await.unwrap();
    let ssid: String = aps[0]["ssid"].clone().try_into().unwrap();
    let freq: u32 = aps[0]["frequency"].clone().try_into().unwrap();
    let pct: u8 = aps[0]["signal_percent"].clone().try_into().unwrap();
    assert_eq!((ssid.as_str(), freq, pct), ("MyelinHome", 2437, 100));
    assert!(wifi.current_access_point().await.unwrap().is_empty());

    // Scan() goes to the supplicant; new results arrive with its event.
    wifi.scan().await.unwrap();
    assert_eq!(fake.received("SCAN"), 1);
    fake.reply(
        "SCAN_RESULTS",
        "bssid / frequency / signal level / flags / ssid\n02:00:00:00:00:03\t2412\t-60\t[ESS]\tNew\n",
    );
    fake.event("<3>CTRL-EVENT-SCAN-RESULTS ");
    wait_for("the new scan results", || async {
        let aps = wifi.access_points().await.unwrap_or_default();
        (aps.len() == 1).then_some(())
    })
    .await;

    // Association shows up as the current access point.
    fake.reply(
        "STATUS",
        "bssid=02:00:00:00:00:01\nfreq=2437\nssid=MyelinHome\nwpa_state=COMPLETED\n",
    );
    fake.event(
        "<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:00:01 completed [id=0 id_str=]",
    );
    wait_for("the current access point", || async {
        let cur = wifi.current_access_point().await.unwrap_or_default();
        let ssid: Option<String> = cur.get("ssid").and_then(|v| v.clone().try_into().ok());
        (ssid.as_deref() == Some("MyelinHome")).then_some(())
    })
    .await;

    // Scanning a non-WiFi interface is refused by name.
    let eth9 = client::wifi(&conn, "eth9").await.unwrap();
    let err = eth9.scan().await.unwrap_err();
    assert!(
        err.to_string().contains("UnknownInterface") || err.to_string().contains("NotSupported"),
        "{err}"
    );

    // The supplicant crashes: the interface retries, and recovers once it is back. `retrying`
    // lasts only retry_interval at a time, so it is heard as a signal, not polled for.
    let mut states = wlan0.receive_state_changed().await;
    fake.crash();
    tokio::time::timeout(PATIENCE, async {
        while let Some(s) = states.next().await {
            if s.get().await.ok().as_deref() == Some("retrying") {
                return;
            }
        }
    })
    .await
    .expect("wlan0 never went to retrying");
    assert!(!wlan0.last_error().await.unwrap().is_empty());
    // The WiFi interface's own signal follows the Interface's.
    wait_for("the access points to be forgotten", || async {
        wifi.access_points().await.ok()?.is_empty().then_some(())
    })
    .await;
    let err = wifi.scan().await.unwrap_err();
    assert!(err.to_string().contains("NotSupported"), "{err}");
    let fake = FakeWpa::start(&ctrl_dir.join("wlan0"));
    fake.reply("SCAN_RESULTS", SCAN_TWO);
    wait_for("wlan0 configured again", || async {
        (wlan0.state().await.unwrap_or_default() == "configured"
            && wifi.access_points().await.unwrap_or_default().len() == 2)
            .then_some(())
    })
    .await;

    // The key never reaches the bus (tests/secrets.rs checks every way out).
    let running = wlan0.configuration().await.unwrap();
    assert!(!running.contains("correct horse"), "{running}");
    assert!(
        !running.contains("\"psk\"") && running.contains("\"wpa_psk\""),
        "{running}"
    );

    // A setup wizard's access point, temporary: static address and a DHCP server for the
    // stations, nothing persisted.
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    net1.configure(
        "wlan0",
        r#"{"type":"wifi","ipv4":{"method":"static","address":"192.168.24.1/24"},
            "dhcpd":{"start":"192.168.24.10","end":"192.168.24.20"},
            "wifi":{"networks":[{"ssid":"setup","passphrase":"setup1234","mode":"ap"}]}}"#,
        false,
    )
    .await
    .unwrap();
    wait_for("the access point's address", || async {
        let a = wlan0.addresses().await.unwrap_or_default();
        (a == ["192.168.24.1/24"] && wlan0.state().await.ok()? == "configured").then_some(())
    })
    .await;
    assert_eq!(wlan0.connection().await.unwrap(), "lan");
    let udhcpd = std::fs::read_to_string(dir.path().join("run/udhcpd.wlan0.conf")).unwrap();
    assert!(
        udhcpd.contains("start 192.168.24.10\nend 192.168.24.20\n"),
        "{udhcpd}"
    );
    // A station on the other end gets an address from it.
    let lease = dhcp_lease(&ns, "wlan0p", dir.path());
    let host = lease
        .as_ref()
        .and_then(|(ip, _)| ip.strip_prefix("192.168.24.")?.parse::<u8>().ok());
    assert!(
        host.is_some_and(|h| (10..=20).contains(&h)),
        "{lease:?}\ndaemon log:\n{}",
        daemon.log()
    );
    assert!(!dir.path().join("data/interfaces/wlan0.json").exists());

    // A reboot (here: a restart) brings back the client configuration, not the AP.
    daemon.stop();
    let daemon = start_daemon(&ns, &bus, &cfg);
    wait_for("the client configuration again", || async {
        let a = wlan0.addresses().await.unwrap_or_default();
        (a == ["10.77.0.2/24"]).then_some(())
    })
    .await;
    // A fresh proxy: the old one's property cache belongs to the previous daemon.
    let wlan0 = client::interface(&conn, "wlan0").await.unwrap();
    let running = wlan0.configuration().await.unwrap();
    assert!(
        running.contains("MyelinHome") && !running.contains("\"ap\""),
        "{running}"
    );
    daemon.stop();
}

#[tokio::test]
async fn the_shipped_policy_lets_everyone_read_and_only_root_configure() {
    let (dir, ns) = device(&["eth9"]);
    // The default policy of Debian's /usr/share/dbus-1/system.conf, plus the shipped file.
    let bus = Bus::system(&myelin_testbus::shipped_policy("org.myelin.Network1.conf"));
    let cfg = config(
        dir.path(),
        "[interface.eth9]\ntype = \"ethernet\"\nipv4 = { method = \"static\", address = \"10.78.0.2/24\" }\n",
    );
    let daemon = start_daemon(&ns, &bus, &cfg);

    let address = bus.address().to_owned();
    let (status, conn_state, configure, hosts) = as_nobody(move || {
        block_on(async move {
            let conn = myelin_testbus::connect(&address).await;
            let net = Network1Proxy::new(&conn).await.unwrap();
            let status = net.get_status().await;
            let eth9 = client::interface(&conn, "eth9").await.unwrap();
            let state = eth9.state().await;
            let om = object_manager(&conn).await;
            assert!(!om.get_managed_objects().await.unwrap().is_empty());
            let configure = net.configure("eth9", r#"{"type":"ethernet"}"#, true).await;
            let hosts = net.set_check_hosts(&["1.2.3.4:80"], false).await;
            (status, state, configure, hosts)
        })
    });
    assert!(status.unwrap().contains("\"eth9\""));
    assert_eq!(conn_state.unwrap(), "configured");
    for denied in [configure.unwrap_err(), hosts.unwrap_err()] {
        assert!(denied.to_string().contains("AccessDenied"), "{denied}");
    }
    // Root may.
    let conn = bus.connect().await;
    let net = Network1Proxy::new(&conn).await.unwrap();
    net.set_check_hosts(&["1.2.3.4:80"], false).await.unwrap();
    daemon.stop();
}

#[tokio::test]
async fn the_command_line_client() {
    let (dir, ns) = device(&["eth9"]);
    let cfg = config(
        dir.path(),
        "[interface.eth9]\ntype = \"ethernet\"\nipv4 = { method = \"static\", address = \"10.79.0.2/24\" }\n",
    );
    let bus = Bus::open();
    let daemon = start_daemon(&ns, &bus, &cfg);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_myelin-net"))
            .args(["--address", bus.address()])
            .args(args)
            .output()
            .unwrap()
    };
    let conn = bus.connect().await;
    wait_for("eth9 lan", || async {
        let i = client::interface(&conn, "eth9").await.ok()?;
        (i.connection().await.ok()? == "lan").then_some(())
    })
    .await;

    let out = cli(&["status", "eth9"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "eth9");
    assert_eq!(v["connection"], "lan");
    assert_eq!(v["state"], "configured");
    assert_eq!(v["type"], "ethernet");
    assert_eq!(v["addresses"][0], "10.79.0.2/24");

    let out = cli(&["status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connection"], "lan");
    assert_eq!(v["available_interfaces"][0], "eth9");

    let out = cli(&[
        "configure",
        "eth9",
        r#"{"type":"ethernet","ipv4":{"method":"static","address":"10.79.0.300/24"}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ipv4.address"), "{err}");

    let out = cli(&["check-hosts", "10.0.2.2:4321"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let persisted = std::fs::read_to_string(dir.path().join("data/connectivity.json")).unwrap();
    assert!(persisted.contains("10.0.2.2:4321"), "{persisted}");

    let out = cli(&[
        "configure",
        "eth9",
        r#"{"type":"ethernet","ipv4":{"method":"static","address":"10.79.0.3/24"}}"#,
        "--temporary",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("data/interfaces/eth9.json").exists());
    let out = cli(&["get-config", "eth9"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.79.0.3/24"));

    let out = cli(&["status", "nope0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope0"));

    // The interface objects are listed by the ObjectManager.
    let om = object_manager(&conn).await;
    let objects = om.get_managed_objects().await.unwrap();
    let eth9 = objects
        .iter()
        .find(|(p, _)| p.as_str() == "/org/myelin/Network1/Interface/eth9")
        .map(|(_, i)| i)
        .expect("eth9 is not a managed object");
    assert!(
        eth9.keys()
            .any(|i| i.as_str() == "org.myelin.Network1.Interface")
    );

    // The same through ConfigureDict (a{sv}, nested), the form Python and C clients prefer.
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    let ipv4 = std::collections::HashMap::from([
        ("method", zbus::Variant::from("static")),
        ("address", zbus::Variant::from("10.79.0.4/24")),
        ("name_servers", zbus::Variant::from(vec!["10.79.0.1"])),
    ]);
    let cfg = std::collections::HashMap::from([
        ("type", zbus::Variant::from("ethernet")),
        ("ipv4", zbus::Variant::from(ipv4)),
        ("mdns", zbus::Variant::from(false)),
    ]);
    net1.configure_dict("eth9", cfg, false).await.unwrap();
    let running: serde_json::Value =
        serde_json::from_str(&net1.get_configuration("eth9").await.unwrap()).unwrap();
    assert_eq!(running["ipv4"]["address"], "10.79.0.4/24");
    assert_eq!(running["ipv4"]["name_servers"][0], "10.79.0.1");
    assert_eq!(running["mdns"], false);
    let bad = std::collections::HashMap::from([
        ("type", zbus::Variant::from("ethernet")),
        (
            "ipv4",
            zbus::Variant::from(std::collections::HashMap::from([(
                "method",
                zbus::Variant::from(7u32),
            )])),
        ),
    ]);
    let err = net1.configure_dict("eth9", bad, false).await.unwrap_err();
    assert!(err.to_string().contains("ipv4.method"), "{err}");

    // check-config needs no daemon.
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../board/common/rootfs_overlay/etc/myelin/net.toml"
    );
    let out = cli(&["check-config", shipped]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[interface.eth0]\ntype = \"ethernet\"\nipv4 = { method = \"static\" }\n",
    )
    .unwrap();
    let out = cli(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("interface.eth0.ipv4.address"));
    daemon.stop();
}
