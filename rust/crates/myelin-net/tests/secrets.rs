//! WiFi keys (WPA passphrases, the PSKs derived from them, SAE passwords) stay in the two
//! files that must hold them, the persisted configuration and the generated
//! wpa_supplicant.conf, both 0600 in 0700 directories. They never appear in a D-Bus reply,
//! property or signal (for root or anyone else), in the log (at debug level too), or on a
//! command line. The daemon runs on a real dbus-daemon with the shipped system-bus policy;
//! the checks read the raw bytes of every message, so no encoding can hide a key.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    Bus, FakeWpa, PATIENCE, as_nobody, block_on, config, device, spawn_as_nobody, start_daemon_at,
    wait_for,
};
use myelin_net::client::{self, Network1Proxy};
use myelin_net::service::{BUS_NAME, IFACE_INTERFACE, OBJECT_PATH, interface_path};
use myelin_net::tech::wifi::passphrase_to_psk;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

/// A WPA passphrase given over D-Bus (network "Home").
const PASSPHRASE: &str = "correct horse battery";
/// An SAE password given over D-Bus (networks "W3" and "W3b").
const SAE: &str = "sae secret words 7";
/// A PSK an older version persisted readable by everyone (network "Old").
const OLD_PSK: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// A passphrase typed into `myelin-net configure --psk-stdin` (network "Cli").
const TYPED: &str = "typed on stdin 42";
/// A passphrase put on a command line, which is refused.
const ON_ARGV: &str = "visible in ps 93";

/// Every key of this test, in every form it could leak in (computed once: PBKDF2 is slow in a
/// debug build).
static SECRETS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    vec![
        PASSPHRASE.into(),
        passphrase_to_psk("Home", PASSPHRASE),
        SAE.into(),
        OLD_PSK.into(),
        TYPED.into(),
        passphrase_to_psk("Cli", TYPED),
        ON_ARGV.into(),
    ]
});

/// Fails if `bytes` contain any key.
fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for s in SECRETS.iter() {
        assert!(
            !text.contains(s.as_str()),
            "{what} carries the key {s:?}:\n{text}"
        );
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Calls `member` and returns the raw reply (its body serialized as on the wire).
async fn call<B>(conn: &Connection, path: &str, iface: &str, member: &str, body: &B) -> Vec<u8>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let reply = conn
        .call_method(Some(BUS_NAME), path, Some(iface), member, body)
        .await
        .unwrap_or_else(|e| panic!("{iface}.{member} on {path}: {e}"));
    reply.data().to_vec()
}

/// Everything a client can read: the methods that return state, every property of every
/// object (GetManagedObjects, GetAll, Get), and the introspection data. Labelled raw replies.
async fn read_everything(address: &str) -> Vec<(String, Vec<u8>)> {
    let conn = myelin_testbus::connect(address).await;
    let mut out = Vec::new();
    for (member, body) in [("GetStatus", None), ("GetConfiguration", Some("wlan0"))] {
        let reply = match body {
            None => call(&conn, OBJECT_PATH, "org.myelin.Network1", member, &()).await,
            Some(b) => call(&conn, OBJECT_PATH, "org.myelin.Network1", member, &(b,)).await,
        };
        out.push((member.to_owned(), reply));
    }
    let om = "org.freedesktop.DBus.ObjectManager";
    out.push((
        "GetManagedObjects".into(),
        call(&conn, OBJECT_PATH, om, "GetManagedObjects", &()).await,
    ));
    let objects: HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>> = conn
        .call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some(om),
            "GetManagedObjects",
            &(),
        )
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    let mut targets = vec![(OBJECT_PATH.to_owned(), "org.myelin.Network1".to_owned())];
    for (path, ifaces) in &objects {
        for iface in ifaces.keys() {
            targets.push((path.as_str().to_owned(), iface.clone()));
        }
    }
    let props = "org.freedesktop.DBus.Properties";
    for (path, iface) in &targets {
        let reply = call(&conn, path, props, "GetAll", &(iface.as_str(),)).await;
        out.push((format!("GetAll {path} {iface}"), reply));
        let intro = call(
            &conn,
            path,
            "org.freedesktop.DBus.Introspectable",
            "Introspect",
            &(),
        )
        .await;
        out.push((format!("Introspect {path}"), intro));
    }
    let wlan0 = interface_path("wlan0");
    out.push((
        "Get Configuration".into(),
        call(
            &conn,
            &wlan0,
            props,
            "Get",
            &(IFACE_INTERFACE, "Configuration"),
        )
        .await,
    ));
    out
}

/// Listens, as nobody, to every signal the service sends until one mentions `marker`; returns
/// them all. `subscribed` is sent once the match rule is in place.
fn listen_as_nobody(
    address: String,
    marker: &'static str,
    subscribed: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    spawn_as_nobody(move || {
        block_on(async move {
            use futures_util::StreamExt;
            let conn = myelin_testbus::connect(&address).await;
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender(BUS_NAME)
                .build()
                .unwrap();
            let mut stream = zbus::MessageStream::for_match_rule(rule, &conn, None)
                .await
                .unwrap();
            subscribed.send(()).unwrap();
            let mut seen = Vec::new();
            tokio::time::timeout(PATIENCE, async {
                while let Some(m) = stream.next().await {
                    let bytes = m.unwrap().data().to_vec();
                    let done = String::from_utf8_lossy(&bytes).contains(marker);
                    seen.push(bytes);
                    if done {
                        return;
                    }
                }
            })
            .await
            .expect("the marker signal never came");
            seen
        })
    })
}

#[tokio::test]
async fn wifi_keys_stay_in_their_0600_files() {
    let (dir, ns) = device(&["wlan0"]);

    // What an older version left behind: directories and a persisted key readable by all.
    let (run, data) = (dir.path().join("run"), dir.path().join("data"));
    std::fs::create_dir_all(run.join("wpa_supplicant")).unwrap();
    std::fs::create_dir_all(data.join("interfaces")).unwrap();
    let persisted = data.join("interfaces/wlan0.json");
    std::fs::write(
        &persisted,
        format!(
            r#"{{"version":1,"config":{{"type":"wifi","ipv4":{{"method":"static","address":"10.70.0.2/24"}},"wifi":{{"networks":[{{"ssid":"Old","psk":"{OLD_PSK}"}}]}}}}}}"#
        ),
    )
    .unwrap();
    for (p, m) in [
        (&run, 0o755),
        (&data, 0o755),
        (&data.join("interfaces"), 0o755),
        (&persisted, 0o644),
    ] {
        set_mode(p, m);
    }
    let fake = FakeWpa::start(&run.join("wpa_supplicant/wlan0"));
    // A stand-in wpa_supplicant (the radio cannot exist here) so the daemon generates its
    // configuration file; the fake above answers on its control socket.
    let cfg = config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "wpa_supplicant = []",
        r#"wpa_supplicant = ["sh", "-c", "exec sleep 3600", "wpa_supplicant"]"#,
    );
    std::fs::write(&cfg, text).unwrap();

    let bus = Bus::system(&myelin_testbus::shipped_policy("org.myelin.Network1.conf"));
    let daemon = start_daemon_at(&ns, &bus, &cfg, "debug");
    let conn = bus.connect().await;
    let wlan0 = client::interface(&conn, "wlan0").await.unwrap();
    wait_for("wlan0 configured", || async {
        (wlan0.state().await.ok()? == "configured").then_some(())
    })
    .await;
    fake.wait_received("ATTACH", 1).await;

    // The old store is restricted, and the generated file is the owner's only.
    let conf = run.join("wpa_supplicant.wlan0.conf");
    for (p, m) in [
        (&run, 0o700),
        (&data, 0o700),
        (&data.join("interfaces"), 0o700),
        (&persisted, 0o600),
        (&conf, 0o600),
    ] {
        assert_eq!(mode(p), m, "{}", p.display());
    }
    assert!(
        std::fs::read_to_string(&conf)
            .unwrap()
            .contains(&format!("psk={OLD_PSK}"))
    );

    // Nobody listens to every signal while root configures keys: an interface that exists
    // (PropertiesChanged), one that does not yet (InterfacesAdded), then the marker.
    let (subscribed, ready) = std::sync::mpsc::channel();
    let listener = listen_as_nobody(bus.address().to_owned(), "10.9.9.9:9", subscribed);
    ready.recv().unwrap();
    let net1 = Network1Proxy::new(&conn).await.unwrap();
    let home = format!(
        r#"{{"type":"wifi","ipv4":{{"method":"static","address":"10.70.0.2/24"}},"wifi":{{"networks":[{{"ssid":"Home","passphrase":"{PASSPHRASE}"}},{{"ssid":"W3","key_mgmt":"sae","passphrase":"{SAE}"}}]}}}}"#
    );
    net1.configure("wlan0", &home, true).await.unwrap();
    let w3b = format!(
        r#"{{"type":"wifi","wifi":{{"networks":[{{"ssid":"W3b","key_mgmt":"sae","passphrase":"{SAE}"}}]}}}}"#
    );
    net1.configure("wlan1", &w3b, false).await.unwrap();
    net1.set_check_hosts(&["10.9.9.9:9"], false).await.unwrap();
    let signals = listener.join().unwrap();
    let all = signals.concat();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("W3") && text.contains("W3b") && text.contains("sae"),
        "the signals should carry the new configurations: {text}"
    );
    for s in &signals {
        assert_clean("a signal", s);
    }

    // The keys are where they must be: in the 0600 files.
    let saved = std::fs::read_to_string(&persisted).unwrap();
    assert!(saved.contains(&passphrase_to_psk("Home", PASSPHRASE)) && saved.contains(SAE));
    assert!(
        !saved.contains(PASSPHRASE),
        "a WPA passphrase is kept as its PSK only"
    );
    assert_eq!(mode(&persisted), 0o600);
    wait_for("the new wpa_supplicant.conf", || async {
        let c = std::fs::read_to_string(&conf).ok()?;
        c.contains(&format!("sae_password=\"{SAE}\"")).then_some(())
    })
    .await;
    assert_eq!(mode(&conf), 0o600);

    // Everything readable, by root and by nobody: the configurations, without their keys.
    let address = bus.address().to_owned();
    let as_root = read_everything(&address).await;
    let as_nobody_too = as_nobody(move || block_on(read_everything(&address)));
    for (who, replies) in [("root", &as_root), ("nobody", &as_nobody_too)] {
        let config = &replies
            .iter()
            .find(|(l, _)| l == "GetConfiguration")
            .unwrap()
            .1;
        let config = String::from_utf8_lossy(config);
        assert!(
            config.contains("\"W3\"") && config.contains("\"sae\""),
            "{who}: {config}"
        );
        for (label, bytes) in replies {
            assert_clean(&format!("{label} for {who}"), bytes);
        }
    }

    // Rejected keys are not quoted back.
    for bad in [
        format!(
            r#"{{"type":"wifi","wifi":{{"networks":[{{"ssid":"x","passphrase":"{ON_ARGV}\u0001"}}]}}}}"#
        ),
        format!(r#"{{"type":"wifi","wifi":{{"networks":[{{"ssid":"x","psk":"{ON_ARGV}"}}]}}}}"#),
        r#"{"type":"wifi","wifi":{"networks":[{"ssid":"x","passphrase":73219054}]}}"#.to_owned(),
    ] {
        let err = net1.configure("wlan0", &bad, true).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("InvalidConfig"), "{text}");
        assert!(
            !text.contains(ON_ARGV) && !text.contains("73219054"),
            "{text}"
        );
    }

    // The command line takes the key from standard input, and refuses one in its arguments.
    let cli = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_myelin-net"))
            .args(["--address", bus.address()])
            .args(args)
            .env("MYELIN_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let typed = r#"{"type":"wifi","ipv4":{"method":"static","address":"10.70.0.2/24"},"wifi":{"networks":[{"ssid":"Cli"}]}}"#;
    let out = cli(
        &["configure", "wlan0", typed, "--psk-stdin"],
        &format!("{TYPED}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean(
        "myelin-net configure's output",
        &[out.stdout, out.stderr].concat(),
    );
    let saved = std::fs::read_to_string(&persisted).unwrap();
    assert!(saved.contains(&passphrase_to_psk("Cli", TYPED)), "{saved}");
    let on_argv = format!(
        r#"{{"type":"wifi","wifi":{{"networks":[{{"ssid":"Argv","passphrase":"{ON_ARGV}"}}]}}}}"#
    );
    let out = cli(&["configure", "wlan0", &on_argv], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--psk-file") && err.contains("--psk-stdin"),
        "{err}"
    );
    assert!(!err.contains(ON_ARGV), "{err}");
    assert_eq!(std::fs::read_to_string(&persisted).unwrap(), saved);

    // A configuration file with a key that others can read is accepted, with a warning that
    // does not quote the key.
    let keyed = dir.path().join("keyed.toml");
    std::fs::write(
        &keyed,
        format!("[interface.wlan0]\ntype = \"wifi\"\nwifi = {{ networks = [{{ ssid = \"Argv\", passphrase = \"{ON_ARGV}\" }}] }}\n"),
    )
    .unwrap();
    for (m, warned) in [(0o644, true), (0o600, false)] {
        set_mode(&keyed, m);
        let out = cli(&["check-config", keyed.to_str().unwrap()], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(
            err.contains("every user can read"),
            warned,
            "mode {m:o}: {err}"
        );
        assert!(!err.contains(ON_ARGV), "{err}");
    }

    // Nobody may not configure at all.
    let address = bus.address().to_owned();
    let refused = as_nobody(move || {
        block_on(async move {
            let conn = myelin_testbus::connect(&address).await;
            let net = Network1Proxy::new(&conn).await.unwrap();
            net.configure("wlan0", r#"{"type":"wifi"}"#, true).await
        })
    });
    assert!(refused.unwrap_err().to_string().contains("AccessDenied"));

    // The log, at debug level, names what happened but no key; every line is a leveled
    // record (nothing bypasses the logger).
    let log = daemon.stop();
    assert!(log.contains("<7>wlan0: configure"), "{log}");
    assert_clean("the log", log.as_bytes());
    for line in log.lines() {
        let prefixed = line.len() > 3
            && line.starts_with('<')
            && line.as_bytes()[1].is_ascii_digit()
            && line.as_bytes()[2] == b'>';
        assert!(prefixed, "a line without a level: {line:?}");
    }
    drop(fake);
}
