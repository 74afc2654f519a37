//! The real client against the NervesHub stand-in, over TLS on loopback: auth (device
//! certificate, shared secret, clock skew), join, heartbeat, updates with progress, malformed
//! frames, reconnects; the remote console (a real shell in a PTY) and health reports. Tests
//! wait for events; none measures time.

#![allow(clippy::unwrap_used)]

mod support;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use myelin_hub::backoff::{OsRandom, Policy};
use myelin_hub::client::{
    Client, Clock, ConsoleSettings, Device, DeviceError, HealthSettings, Installer, Settings,
    SystemClock,
};
use myelin_hub::config::{Auth, Config};
use myelin_hub::message::UpdateInfo;
use myelin_hub::policy::Decision;
use serde_json::json;
use support::{Command, Event, Options, Pki, StandIn};
use tokio::sync::{Notify, mpsc, oneshot};

/// What the device double was asked to do.
#[derive(Debug, Clone, PartialEq)]
enum DeviceCall {
    Reboot,
    Identify,
    WaitingForValidation,
}

struct TestDevice {
    env: HashMap<String, String>,
    validated: Cell<bool>,
    validated_now: Notify,
    calls: mpsc::UnboundedSender<DeviceCall>,
    /// The product's answers to offered updates, in order; then `Apply`.
    decisions: RefCell<VecDeque<Decision>>,
}

impl Device for &TestDevice {
    async fn env(&self) -> Result<HashMap<String, String>, DeviceError> {
        Ok(self.env.clone())
    }
    async fn validated(&self) -> bool {
        self.validated.get()
    }
    async fn wait_validated(&self) {
        if self.validated.get() {
            return;
        }
        let _ = self.calls.send(DeviceCall::WaitingForValidation);
        while !self.validated.get() {
            self.validated_now.notified().await;
        }
    }
    async fn reboot(&self) -> Result<(), DeviceError> {
        let _ = self.calls.send(DeviceCall::Reboot);
        Ok(())
    }
    async fn identify(&self) {
        let _ = self.calls.send(DeviceCall::Identify);
    }
    async fn update_decision(&self, _offer: &UpdateInfo) -> Decision {
        self.decisions
            .borrow_mut()
            .pop_front()
            .unwrap_or(Decision::Apply)
    }
}

/// Installs by reporting the given progress steps, then the given result; with a gate, it
/// waits for the test before finishing (a download in flight).
struct TestInstaller {
    steps: Vec<u32>,
    result: Result<(), DeviceError>,
    urls: mpsc::UnboundedSender<String>,
    gate: RefCell<Option<oneshot::Receiver<()>>>,
}

impl Installer for &TestInstaller {
    async fn install(
        &self,
        url: &str,
        progress: mpsc::UnboundedSender<u32>,
    ) -> Result<(), DeviceError> {
        let _ = self.urls.send(url.to_owned());
        for s in &self.steps {
            let _ = progress.send(*s);
        }
        let gate = self.gate.borrow_mut().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        self.result.clone()
    }
}

struct SkewedClock(i64);
impl Clock for SkewedClock {
    fn unix_seconds(&self) -> u64 {
        (SystemClock.unix_seconds() as i64 + self.0) as u64
    }
}

fn env() -> HashMap<String, String> {
    [
        ("nerves_fw_active", "a"),
        ("a.nerves_fw_uuid", "6a1c8a4e-0000-4000-8000-000000000001"),
        ("a.nerves_fw_version", "1.0.0"),
        ("a.nerves_fw_platform", "x86_64"),
        ("a.nerves_fw_architecture", "x86_64"),
        ("a.nerves_fw_product", "myelin-demo"),
        ("a.nerves_fw_validated", "1"),
        ("nerves_serial_number", "serial-42"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Settings through the real configuration path (files, modes, TLS loading).
fn settings(dir: &Path, hub: &StandIn, pki: &Pki, auth: Auth) -> Settings {
    let ca = write(dir, "ca.pem", &pki.ca_pem);
    let config = Config {
        url: hub.url(""),
        server_ca: ca,
        heartbeat: Duration::from_secs(30),
        identify_command: vec![],
        update_command: vec![],
        reboot_after_update: true,
        console: Default::default(),
        health: Default::default(),
        auth,
    };
    Settings {
        url: config.socket_url(),
        tls: myelin_hub::tls::client_config(&config).unwrap(),
        shared_secret: config.shared_secret(&env()).unwrap(),
        heartbeat: config.heartbeat,
        backoff: Policy {
            min: Duration::from_millis(10),
            max: Duration::from_millis(100),
            jitter: 0.5,
        },
        reboot_after_update: true,
        status_path: None,
        console: None,
        health: None,
    }
}

fn cert_auth(dir: &Path, cert: &str, key: &str) -> Auth {
    Auth::Certificate {
        certificate: write(dir, "device.pem", cert),
        key: write(dir, "device-key.pem", key),
    }
}

fn secret_auth(dir: &Path, secret: &str) -> Auth {
    Auth::SharedSecret {
        key: "nhp_product".into(),
        secret_file: write(dir, "secret", secret),
        identifier: None,
    }
}

fn device(validated: bool) -> (TestDevice, mpsc::UnboundedReceiver<DeviceCall>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut e = env();
    if !validated {
        e.insert("a.nerves_fw_validated".into(), "0".into());
    }
    (
        TestDevice {
            env: e,
            validated: Cell::new(validated),
            validated_now: Notify::new(),
            calls: tx,
            decisions: RefCell::default(),
        },
        rx,
    )
}

fn installer(
    steps: Vec<u32>,
    result: Result<(), DeviceError>,
) -> (TestInstaller, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        TestInstaller {
            steps,
            result,
            urls: tx,
            gate: RefCell::new(None),
        },
        rx,
    )
}

/// A client of the test device and installer, with the real random source and clock.
fn test_client<'a>(
    settings: Settings,
    dev: &'a TestDevice,
    inst: &'a TestInstaller,
) -> Client<&'a TestDevice, &'a TestInstaller> {
    Client::new(
        settings,
        dev,
        inst,
        Box::new(OsRandom),
        Box::new(SystemClock),
    )
}

/// A fresh PKI, a stand-in server using it, and a scratch directory for the device's files.
async fn rig(options: Options) -> (Pki, StandIn, tempfile::TempDir) {
    let pki = Pki::generate();
    let hub = StandIn::start(&pki, options).await;
    (pki, hub, tempfile::tempdir().unwrap())
}

/// Runs the client until `test` finishes.
async fn with_client<D: Device, I: Installer>(
    client: &Client<D, I>,
    test: impl Future<Output = ()>,
) {
    // A guard against a hang (a wait for something that never happens), not a timing check.
    let test = tokio::time::timeout(Duration::from_secs(120), test);
    tokio::select! {
        _ = client.run(std::future::pending()) => panic!("the client stopped"),
        r = test => r.expect("the test waited 120 s for an event that never came"),
    }
}

/// Settings for `hub` authenticating with the PKI's device certificate.
fn cert_settings(dir: &Path, hub: &StandIn, pki: &Pki) -> Settings {
    settings(
        dir,
        hub,
        pki,
        cert_auth(dir, &pki.device_cert_pem, &pki.device_key_pem),
    )
}

/// A stand-in that knows the product key `nhp_product` and its secret `product-secret`.
fn secret_options() -> Options {
    Options {
        secrets: HashMap::from([("nhp_product".into(), "product-secret".into())]),
        ..Options::default()
    }
}

/// The identity of the next device that connects.
async fn connected_identity(hub: &mut StandIn) -> String {
    hub.wait_for(|e| match e {
        Event::Connected { identity, .. } => Some(identity.clone()),
        _ => None,
    })
    .await
}

fn update_payload(platform: &str) -> serde_json::Value {
    json!({
        "firmware_url": "https://fw.example/firmware/2.0.0.fw?signature=x",
        "firmware_meta": {
            "uuid": "6a1c8a4e-0000-4000-8000-000000000002",
            "version": "2.0.0",
            "platform": platform,
            "architecture": "x86_64",
            "product": "myelin-demo"
        }
    })
}

#[tokio::test]
async fn certificate_auth_joins_with_the_firmware_metadata_and_heartbeats() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let mut s = cert_settings(dir.path(), &hub, &pki);
    s.heartbeat = Duration::from_millis(50);
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        let identity = connected_identity(&mut hub).await;
        assert_eq!(identity, "device-1");
        let (_, join) = hub.frame("phx_join").await;
        assert_eq!(join.topic, "device");
        let p = &join.payload;
        assert_eq!(p["nerves_fw_uuid"], "6a1c8a4e-0000-4000-8000-000000000001");
        assert_eq!(p["nerves_fw_version"], "1.0.0");
        assert_eq!(p["nerves_fw_platform"], "x86_64");
        assert_eq!(p["nerves_fw_architecture"], "x86_64");
        assert_eq!(p["nerves_fw_product"], "myelin-demo");
        assert_eq!(p["device_api_version"], "2.3.0");
        assert_eq!(p["meta"]["firmware_validated"], true);
        // Two heartbeats on one connection: the first was answered, so the socket stays.
        let (c1, hb1) = hub.frame("heartbeat").await;
        let (c2, hb2) = hub.frame("heartbeat").await;
        assert_eq!((hb1.topic.as_str(), c1), ("phoenix", c2));
        assert_ne!(hb1.msg_ref, hb2.msg_ref);
        assert_eq!(client.status().state, "joined");
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_and_retried() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = settings(
        dir.path(),
        &hub,
        &pki,
        cert_auth(dir.path(), &pki.rogue_cert_pem, &pki.rogue_key_pem),
    );
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        for _ in 0..3 {
            match hub.next().await {
                Event::TlsFailed(_) => {}
                // TLS 1.3: the server checks the client certificate after the client considers
                // the handshake done, so the refusal can come as the upgrade failing.
                Event::Refused(_) => {}
                other => panic!("a rogue device got in: {other:?}"),
            }
        }
        assert_ne!(client.status().state, "joined");
    })
    .await;
}

#[tokio::test]
async fn shared_secret_auth_joins_as_the_serial_number() {
    let (pki, mut hub, dir) = rig(secret_options()).await;
    let s = settings(
        dir.path(),
        &hub,
        &pki,
        secret_auth(dir.path(), "product-secret\n"),
    );
    assert!(s.url.ends_with("/device-socket/websocket"));
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        let identity = connected_identity(&mut hub).await;
        assert_eq!(identity, "serial-42");
        hub.frame("phx_join").await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_shared_secret_is_refused_and_retried() {
    let (pki, mut hub, dir) = rig(secret_options()).await;
    let s = settings(dir.path(), &hub, &pki, secret_auth(dir.path(), "a-guess"));
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        for _ in 0..3 {
            match hub.next().await {
                Event::Refused(why) => assert_eq!(why, "shared secret: bad signature"),
                other => panic!("unexpected {other:?}"),
            }
        }
        let status = client.status();
        assert!(status.connections >= 3, "{status:?}");
        let err = status.last_error.unwrap_or_default();
        assert!(err.contains("401"), "{err}");
        assert!(!err.contains("a-guess"));
    })
    .await;
}

#[tokio::test]
async fn a_device_clock_behind_the_server_recovers_from_the_date_header() {
    let (pki, mut hub, dir) = rig(secret_options()).await;
    let s = settings(
        dir.path(),
        &hub,
        &pki,
        secret_auth(dir.path(), "product-secret"),
    );
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    // No RTC, no NTP yet: the device believes it is an hour ago.
    let client = Client::new(
        s,
        &dev,
        &inst,
        Box::new(OsRandom),
        Box::new(SkewedClock(-3600)),
    );
    with_client(&client, async {
        match hub.next().await {
            Event::Refused(why) => assert_eq!(why, "shared secret: signature expired"),
            other => panic!("unexpected {other:?}"),
        }
        hub.wait_for(|e| matches!(e, Event::Connected { .. }).then_some(()))
            .await;
    })
    .await;
}

#[tokio::test]
async fn an_update_installs_with_progress_and_reboots() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, mut calls) = device(true);
    let (inst, mut urls) = installer(vec![5, 40, 80, 100], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        let mut statuses = vec![];
        let mut progress = vec![];
        while statuses.last().map(String::as_str) != Some("completed") {
            let (_, f) = hub
                .wait_for(|e| match e {
                    Event::Frame { conn, frame }
                        if frame.event == "status_update" || frame.event == "fwup_progress" =>
                    {
                        Some((*conn, frame.clone()))
                    }
                    _ => None,
                })
                .await;
            if f.event == "status_update" {
                statuses.push(f.payload["status"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(f.payload["stage"], "updating");
                progress.push(f.payload["value"].as_u64().unwrap());
            }
        }
        assert_eq!(statuses, ["received", "started", "completed"]);
        assert_eq!(progress, [5, 40, 80, 100, 100]);
        assert_eq!(
            urls.recv().await.unwrap(),
            "https://fw.example/firmware/2.0.0.fw?signature=x"
        );
        assert_eq!(calls.recv().await, Some(DeviceCall::Reboot));
    })
    .await;
}

#[tokio::test]
async fn a_failed_install_and_a_foreign_platform_are_reported() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, _calls) = device(true);
    let (inst, mut urls) = installer(
        vec![10],
        Err(DeviceError::Install("signature check failed".into())),
    );
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        hub.send(Command::Push("update".into(), update_payload("rpi4")));
        let reason = loop {
            let (_, f) = hub.frame("status_update").await;
            if f.payload["status"] == "failed" {
                break f.payload["reason"].as_str().unwrap().to_owned();
            }
        };
        assert!(reason.contains("platform `rpi4`"), "{reason}");
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        let reason = loop {
            let (_, f) = hub.frame("status_update").await;
            if f.payload["status"] == "failed" {
                break f.payload["reason"].as_str().unwrap().to_owned();
            }
        };
        assert_eq!(reason, "signature check failed");
        // Only the second offer reached the installer.
        assert_eq!(
            urls.recv().await.unwrap(),
            "https://fw.example/firmware/2.0.0.fw?signature=x"
        );
        assert!(urls.try_recv().is_err());
    })
    .await;
}

/// The product's update_command: an offer it ignores is reported and never installed; one it
/// reschedules is reported with the delay, asked about again, and installed when it agrees.
#[tokio::test]
async fn the_product_can_ignore_or_reschedule_an_update() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, _calls) = device(true);
    dev.decisions.borrow_mut().extend([
        Decision::Ignore("pinned by the operator".into()),
        Decision::Reschedule(Duration::ZERO, "outside the maintenance window".into()),
        Decision::Apply,
    ]);
    let (inst, mut urls) = installer(vec![100], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        let mut statuses = vec![];
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        while statuses.last().map(String::as_str) != Some("ignored") {
            let (_, f) = hub.frame("status_update").await;
            if f.payload["status"] == "ignored" {
                assert_eq!(f.payload["reason"], "pinned by the operator");
            }
            statuses.push(f.payload["status"].as_str().unwrap().to_owned());
        }
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        while statuses.last().map(String::as_str) != Some("completed") {
            let (_, f) = hub.frame("status_update").await;
            if f.payload["status"] == "rescheduled" {
                assert_eq!(f.payload["delay_for"], 0);
                assert_eq!(f.payload["reason"], "outside the maintenance window");
            }
            statuses.push(f.payload["status"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            statuses,
            [
                "received",
                "ignored",
                "received",
                "rescheduled",
                "started",
                "completed"
            ]
        );
        // Only the offer the product agreed to reached the installer.
        assert!(urls.recv().await.is_some());
        assert!(urls.try_recv().is_err());
    })
    .await;
}

/// An offer that arrives while another is rescheduled replaces it and goes through every check
/// again: one for another platform is refused, not installed because the first was fine.
#[tokio::test]
async fn a_newer_offer_during_a_reschedule_is_checked_from_the_start() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, _calls) = device(true);
    dev.decisions.borrow_mut().push_back(Decision::Reschedule(
        Duration::from_secs(3600),
        "outside the maintenance window".into(),
    ));
    let (inst, mut urls) = installer(vec![100], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        let mut statuses: Vec<String> = vec![];
        for (platform, until) in [
            ("x86_64", "rescheduled"),
            ("rpi4", "failed"),
            ("x86_64", "completed"),
        ] {
            assert!(
                urls.try_recv().is_err(),
                "installed before {platform}'s offer"
            );
            hub.send(Command::Push("update".into(), update_payload(platform)));
            while statuses.last().map(String::as_str) != Some(until) {
                let (_, f) = hub.frame("status_update").await;
                statuses.push(f.payload["status"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(
            statuses,
            [
                "received",
                "rescheduled",
                "received",
                "failed",
                "received",
                "started",
                "completed"
            ]
        );
        assert!(urls.recv().await.is_some());
        assert!(urls.try_recv().is_err());
    })
    .await;
}

#[tokio::test]
async fn an_update_waits_while_the_firmware_is_on_trial() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, mut calls) = device(false);
    let (inst, mut urls) = installer(vec![100], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        let (_, join) = hub.frame("phx_join").await;
        assert_eq!(join.payload["meta"]["firmware_validated"], false);
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        let (_, f) = hub.frame("status_update").await;
        assert_eq!(f.payload["status"], "received");
        // Both the validation reporter and the update are now waiting, not installing.
        loop {
            if calls.recv().await == Some(DeviceCall::WaitingForValidation)
                && client.status().last_update.as_deref()
                    == Some("waiting for the running firmware to be validated")
            {
                break;
            }
        }
        assert!(urls.try_recv().is_err(), "installed over the fallback slot");
        dev.validated.set(true);
        dev.validated_now.notify_waiters();
        // Both waiters go on, in either order: the server hears of the validation, and the
        // install starts.
        let (mut validated, mut started) = (false, false);
        while !(validated && started) {
            let f = hub
                .wait_for(|e| match e {
                    Event::Frame { frame, .. } => Some(frame.clone()),
                    _ => None,
                })
                .await;
            validated |= f.event == "firmware_validated";
            started |= f.event == "status_update" && f.payload["status"] == "started";
        }
        assert!(urls.recv().await.is_some());
    })
    .await;
}

#[tokio::test]
async fn a_malformed_frame_closes_the_socket_and_the_client_reconnects() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, mut calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        let (first, _) = hub.frame("phx_join").await;
        // Unknown events are ignored: the connection stays.
        hub.send(Command::Push("something_new".into(), json!({"x": 1})));
        hub.send(Command::Push("identify".into(), json!({})));
        assert_eq!(calls.recv().await, Some(DeviceCall::Identify));
        hub.send(Command::Raw("[\"1\", null, \"device\"".into()));
        hub.wait_for(|e| matches!(e, Event::Closed { conn } if *conn == first).then_some(()))
            .await;
        let (second, _) = hub.frame("phx_join").await;
        assert!(second > first);
        let err = client.status().last_error.unwrap_or_default();
        assert!(err.contains("malformed frame"), "{err}");
        // The new connection works: a reboot request is answered and carried out.
        hub.send(Command::Push("reboot".into(), json!({})));
        let (conn, _) = hub.frame("rebooting").await;
        assert_eq!(conn, second);
        assert_eq!(calls.recv().await, Some(DeviceCall::Reboot));
    })
    .await;
}

#[tokio::test]
async fn an_install_survives_a_dropped_connection_and_reports_after_rejoin() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let s = cert_settings(dir.path(), &hub, &pki);
    let (dev, _calls) = device(true);
    let (inst, mut urls) = installer(vec![30], Ok(()));
    let (open_gate, gate) = oneshot::channel();
    *inst.gate.borrow_mut() = Some(gate);
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        let (first, _) = hub.frame("phx_join").await;
        hub.send(Command::Push("update".into(), update_payload("x86_64")));
        urls.recv().await.unwrap();
        hub.frame("fwup_progress").await;
        // The server drops the device mid-download (a malformed frame is the stand-in's way).
        hub.send(Command::Raw("not json".into()));
        let (second, join) = hub.frame("phx_join").await;
        assert!(second > first);
        assert_eq!(
            join.payload["currently_downloading_uuid"],
            "6a1c8a4e-0000-4000-8000-000000000002"
        );
        open_gate.send(()).unwrap();
        loop {
            let (conn, f) = hub.frame("status_update").await;
            if f.payload["status"] == "completed" {
                assert_eq!(conn, second);
                break;
            }
        }
    })
    .await;
}

/// Pushes keystrokes to the console.
fn console_dn(hub: &StandIn, data: &str) {
    hub.send(Command::PushTo(
        "console".into(),
        "dn".into(),
        json!({ "data": data }),
    ));
}

/// The shell's pid from the console text, once `echo pid-$$-ok` printed it (the echoed
/// command line has `$$`, not digits).
fn printed_pid(text: &str) -> Option<u32> {
    text.match_indices("pid-").find_map(|(i, _)| {
        let rest = &text[i + 4..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let after = &rest[digits.len()..];
        if after.starts_with("-ok") {
            digits.parse().ok()
        } else {
            None
        }
    })
}

async fn shell_pid(hub: &mut StandIn) -> u32 {
    console_dn(hub, "echo pid-$$-ok\n");
    let mut text = String::new();
    loop {
        if let Some(pid) = printed_pid(&text) {
            return pid;
        }
        let f = hub.frame_on("console", "up").await;
        text.push_str(f.payload["data"].as_str().unwrap_or_default());
    }
}

fn console_client_settings(dir: &Path, hub: &StandIn, pki: &Pki) -> Settings {
    let mut s = cert_settings(dir, hub, pki);
    s.console = Some(ConsoleSettings {
        command: vec!["/bin/sh".into(), "-l".into()],
        idle_timeout: Duration::from_secs(3600),
    });
    s
}

#[tokio::test]
async fn the_console_runs_a_shell_in_a_pty_and_the_server_closing_it_reaps_the_shell() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = Client::new(
        console_client_settings(dir.path(), &hub, &pki),
        &dev,
        &inst,
        Box::new(OsRandom),
        Box::new(SystemClock),
    );
    with_client(&client, async {
        let join = hub.frame_on("console", "phx_join").await;
        assert_eq!(join.payload["console_version"], "2.0.0");
        assert_eq!(join.payload["device_api_version"], "2.3.0");

        console_dn(&hub, "echo hello-$((6*7))\n");
        hub.console_until("hello-42").await;

        hub.send(Command::PushTo(
            "console".into(),
            "window_size".into(),
            json!({"height": 33, "width": 101}),
        ));
        console_dn(&hub, "stty size\n");
        hub.console_until("33 101").await;

        // The shell holds its terminal's slave end only, never the daemon's master.
        console_dn(
            &hub,
            "echo masters-$(ls -l /proc/$$/fd/ | grep -c ptmx)-held\n",
        );
        hub.console_until("masters-0-held").await;

        // Bulk output comes in batches, not a frame per byte.
        console_dn(
            &hub,
            "head -c 20000 /dev/zero | tr '\\0' x; echo; echo END-$((1+1))\n",
        );
        let mut frames = 0;
        let mut text = String::new();
        while !text.contains("END-2") {
            let f = hub.frame_on("console", "up").await;
            text.push_str(f.payload["data"].as_str().unwrap());
            frames += 1;
        }
        assert!(text.matches('x').count() >= 20_000, "output lost");
        assert!(frames < 200, "{frames} frames for 20 kB: not batched");

        let pid = shell_pid(&mut hub).await;
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        hub.send(Command::CloseTopic("console".into()));
        // A zombie keeps its /proc entry: the entry going away means the shell was reaped.
        while Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_shell_that_exits_is_reaped_and_reported_and_the_next_input_starts_another() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(console_client_settings(dir.path(), &hub, &pki), &dev, &inst);
    with_client(&client, async {
        hub.frame_on("console", "phx_join").await;
        let pid = shell_pid(&mut hub).await;
        console_dn(&hub, "exit 3\n");
        let text = hub.console_until("shell exited").await;
        assert!(text.contains("exit status: 3"), "{text:?}");
        // Reaped before the notice was sent.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let second = shell_pid(&mut hub).await;
        assert_ne!(second, pid);
    })
    .await;
}

#[tokio::test]
async fn an_idle_shell_is_hung_up_and_reaped() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let mut s = console_client_settings(dir.path(), &hub, &pki);
    // Long enough for the shell to print its pid first (an idle timer is timing by nature).
    s.console.as_mut().unwrap().idle_timeout = Duration::from_secs(3);
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame_on("console", "phx_join").await;
        console_dn(&hub, "echo pid-$$-ok\n");
        let text = hub.console_until("after inactivity").await;
        let pid = printed_pid(&text).unwrap();
        // Reaped before the notice was sent.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    })
    .await;
}

#[tokio::test]
async fn without_console_settings_no_console_is_joined() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let client = test_client(cert_settings(dir.path(), &hub, &pki), &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        // The next device frame after the join is the first heartbeat (or a push): never a
        // console join. A push from the server makes the device answer on `extensions`.
        hub.send(Command::Push("extensions:get".into(), json!({})));
        let f = hub
            .wait_for(|e| match e {
                Event::Frame { frame, .. } if frame.event == "phx_join" => Some(frame.clone()),
                _ => None,
            })
            .await;
        assert_eq!(f.topic, "extensions");
        // No health settings: nothing offered.
        assert_eq!(f.payload, json!({}));
    })
    .await;
}

fn health_settings(dir: &Path, interval: Duration) -> HealthSettings {
    HealthSettings {
        interval,
        disk: dir.to_owned(),
        root: "/".into(),
    }
}

fn assert_plausible(report: &serde_json::Value) {
    let v = &report["value"];
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    let m = &v["metrics"];
    assert!(m["uptime_seconds"].as_u64().unwrap() > 0, "{m}");
    assert!(m["load_1min"].as_f64().unwrap() >= 0.0, "{m}");
    assert!(m["mem_size_mb"].as_f64().unwrap() > 0.0, "{m}");
    let used = m["mem_used_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&used), "{m}");
    assert!(m["disk_total_kb"].as_u64().unwrap() > 0, "{m}");
    assert!(m["disk_available_kb"].as_u64().unwrap() <= m["disk_total_kb"].as_u64().unwrap());
    for (k, x) in m.as_object().unwrap() {
        assert!(x.is_number(), "metric {k} is not a number: {x}");
    }
}

#[tokio::test]
async fn health_reports_from_the_real_proc_when_asked_and_on_the_interval() {
    let (pki, mut hub, dir) = rig(Options::default()).await;
    let (dev, _calls) = device(true);
    let (inst, _urls) = installer(vec![], Ok(()));
    let mut s = cert_settings(dir.path(), &hub, &pki);
    s.health = Some(health_settings(dir.path(), Duration::from_secs(3600)));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        hub.send(Command::Push("extensions:get".into(), json!({})));
        let join = hub.frame_on("extensions", "phx_join").await;
        assert_eq!(join.payload, json!({"health": "0.0.1"}));
        hub.frame_on("extensions", "health:attached").await;
        hub.send(Command::PushTo(
            "extensions".into(),
            "health:check".into(),
            json!({}),
        ));
        let report = hub.frame_on("extensions", "health:report").await;
        assert_plausible(&report.payload);
    })
    .await;

    // With a short interval the device reports without being asked.
    let mut hub = StandIn::start(&pki, Options::default()).await;
    let mut s = cert_settings(dir.path(), &hub, &pki);
    s.health = Some(health_settings(dir.path(), Duration::from_millis(10)));
    let client = test_client(s, &dev, &inst);
    with_client(&client, async {
        hub.frame("phx_join").await;
        hub.send(Command::Push("extensions:get".into(), json!({})));
        hub.frame_on("extensions", "health:attached").await;
        for _ in 0..2 {
            let report = hub.frame_on("extensions", "health:report").await;
            assert_plausible(&report.payload);
        }
    })
    .await;
}
