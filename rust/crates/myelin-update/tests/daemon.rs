//! `myelin-update daemon` end to end: real `.fw` archives (myelin-fw), a disk image, the
//! U-Boot environment on it, a private dbus-daemon with the shipped policy, and PID 1's control
//! socket played by the test. A reboot is simulated the way the hardware does it: a new boot id,
//! and `/` on the other partition (the sysfs fixture require-path-at-offset reads).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use myelin_update::client::{self, ClientError, InstallSource};

/// Installs `fw` through D-Bus and waits for the end.
async fn install(bus: &Bus, source: &str) -> Result<(), ClientError> {
    let proxy = bus.proxy().await;
    client::install(&proxy, InstallSource::Location(source.to_owned()), |_| {}).await
}

#[tokio::test]
async fn install_from_a_file_reboot_trial_and_validation() {
    let Rig {
        bus,
        mut device,
        init,
        config,
        daemon,
    } = Rig::start("validate_timeout = \"5m\"");
    let update = bus.proxy().await;

    // What the daemon reads at start: slot a, committed, v1.
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.status, "a");
    assert_eq!(status.running_slot, "a");
    assert!(!status.trial);
    assert_eq!(status.version, "1.0.0");
    assert_eq!(status.state, "idle");
    assert!(status.slots["a"].validated);
    assert_eq!(status.last_install.outcome, "none");

    // Install v2 from a file, with progress.
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    let slot_a = device.slot(ROOTFS_A, ROOTFS_BYTES);
    let mut seen = Vec::new();
    client::install(
        &update,
        InstallSource::Location(v2.path.display().to_string()),
        |p| seen.push(p),
    )
    .await
    .unwrap();
    assert!(
        !seen.is_empty() && seen.windows(2).all(|w| w[0] < w[1]),
        "progress {seen:?}"
    );
    assert!(seen.iter().any(|&p| p > 0 && p < 100), "progress {seen:?}");

    // Slot b holds v2, slot a is untouched, the environment names b as the next slot, the task
    // asked for a tryboot, and nothing rebooted by itself (auto_reboot is off).
    assert_eq!(&device.slot(ROOTFS_B, v2.rootfs.len()), &v2.rootfs);
    assert_eq!(device.slot(ROOTFS_A, ROOTFS_BYTES), slot_a);
    let env = device.env();
    assert_eq!(env["b.nerves_fw_version"], "2.0.0");
    assert_eq!(env["b.nerves_fw_validated"], "0");
    assert_eq!(env["nerves_fw_active"], "b");
    assert_eq!(
        std::fs::read_to_string(&device.reboot_param).unwrap(),
        "0 tryboot"
    );
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.state, "installed");
    assert_eq!(status.progress, 100);
    assert_eq!(status.status, "a->b");
    assert_eq!(status.next_slot.as_deref(), Some("b"));
    assert_eq!(status.slots["b"].metadata["version"], "2.0.0");
    assert_eq!(status.last_install.outcome, "pending-reboot");
    assert_eq!(status.last_install.slot.as_deref(), Some("b"));
    assert_eq!(status.last_install.version.as_deref(), Some("2.0.0"));
    assert_eq!(
        status.last_install.uuid.as_deref(),
        Some(env["b.nerves_fw_uuid"].as_str())
    );
    assert_eq!(init.reboot_count(), 0);

    // Reboot goes to PID 1, with no argument of its own (PID 1 reads /run/reboot-param).
    update.reboot().await.unwrap();
    assert_eq!(*init.reboots.lock().unwrap(), vec![None]);
    assert_eq!(update.state().await.unwrap(), "rebooting");
    daemon.stop();

    // The trial boot: slot b runs, not validated; critical services are not ready yet.
    device.reboot_into(ROOTFS_B);
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.running_slot, "b");
    assert!(status.trial, "{status:?}");
    assert_eq!(status.version, "2.0.0");
    assert_eq!(status.last_install.outcome, "trial");
    // PID 1 is asked again and again; as long as it says "not ready", nothing is validated.
    eventually("PID 1 to be asked about readiness three times", || async {
        *init.readiness_asked.lock().unwrap() >= 3
    })
    .await;
    assert!(
        update.trial().await.unwrap(),
        "validated before the services were ready"
    );

    // Once every critical service is ready, the daemon validates by itself.
    init.set_ready(true);
    eventually("the trial to be validated", || async {
        !update.trial().await.unwrap()
    })
    .await;
    assert_eq!(device.env()["b.nerves_fw_validated"], "1");
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.status, "b");
    assert_eq!(status.last_install.outcome, "validated");
    assert_eq!(init.reboot_count(), 1, "no reboot beyond the one asked for");
    daemon.stop();
}

#[tokio::test]
async fn an_unvalidated_trial_reboots_and_the_revert_is_reported() {
    let Rig {
        bus,
        mut device,
        init,
        config,
        daemon,
    } = Rig::start("validate_timeout = \"1s\"");
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    install(&bus, &v2.path.display().to_string()).await.unwrap();
    daemon.stop();

    // Trial boot of b; its critical services never become ready.
    device.reboot_into(ROOTFS_B);
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    assert!(update.trial().await.unwrap());
    eventually("a reboot request", || async { init.reboot_count() > 0 }).await;
    assert_eq!(
        device.env()["b.nerves_fw_validated"],
        "0",
        "never validated"
    );
    assert!(
        daemon.log().contains("not validated within 1s"),
        "{}",
        daemon.log()
    );
    daemon.stop();

    // The bootloader went back to a (as U-Boot's revert does: nerves_fw_active back to a).
    device.reboot_into(ROOTFS_A);
    device.set_env(&[("nerves_fw_active", "a")]);
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.running_slot, "a");
    assert!(!status.trial);
    assert_eq!(status.version, "1.0.0");
    assert_eq!(status.last_install.outcome, "reverted");
    assert_eq!(status.last_install.slot.as_deref(), Some("b"));
    // Not a trial: nothing to validate, no reboot.
    let before = init.reboot_count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(init.reboot_count(), before);
    daemon.stop();
}

/// Where the two environment copies are (tests/common's fw_env.config): a failed install may
/// rewrite them, and `assert_only_slot_b_invalidated` checks what they say.
const ENV_BYTES: std::ops::Range<usize> = 0x2000..0x6000;

/// Bytes of the disk that no failed install may change: everything but slot b and the
/// environment.
fn outside_slot_b(bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let b = (ROOTFS_B * 512) as usize;
    (
        bytes[..ENV_BYTES.start].to_vec(),
        bytes[ENV_BYTES.end..b].to_vec(),
        bytes[b + ROOTFS_BYTES..].to_vec(),
    )
}

/// Checks that a failed install changed the environment only as fwup's on-init does: the keys
/// of slot b, the one being overwritten, may be cleared or marked not validated (durably, before
/// the first byte of the slot is written) but slot a and the active slot are as they were.
fn assert_only_slot_b_invalidated(
    before: &myelin_ubootenv::Vars,
    after: &myelin_ubootenv::Vars,
    context: &str,
) {
    let outside_b = |env: &myelin_ubootenv::Vars| {
        env.iter()
            .filter(|(k, _)| !k.starts_with("b."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outside_b(after),
        outside_b(before),
        "{context}: the environment changed"
    );
    assert_ne!(
        after.get("b.nerves_fw_validated").map(String::as_str),
        Some("1"),
        "{context}: a half-written slot b is still marked valid"
    );
}

/// An install that must fail with `expect` in its error, leaving slot a, the active slot and
/// the running state as they were.
async fn must_fail(bus: &Bus, device: &Device, source: &str, expect: &str) {
    let env = device.env();
    let kept = outside_slot_b(&device.disk_bytes());
    let err = install(bus, source).await.unwrap_err();
    let ClientError::Failed(message) = &err else {
        panic!("{source}: expected a failed install, got {err:?}")
    };
    eprintln!("{source}: {message}");
    assert!(
        message.contains(expect),
        "{source}: {message:?} does not mention {expect:?}"
    );
    let update = bus.proxy().await;
    assert_eq!(update.state().await.unwrap(), "failed");
    assert_eq!(&update.last_error().await.unwrap(), message);
    assert_only_slot_b_invalidated(&env, &device.env(), source);
    assert!(
        outside_slot_b(&device.disk_bytes()) == kept,
        "{source}: bytes outside slot b changed"
    );
    let status = client::status(&update).await.unwrap();
    assert_eq!(
        (status.status.as_str(), status.running_slot.as_str()),
        ("a", "a")
    );
}

#[tokio::test]
async fn http_downloads_good_and_bad() {
    let Rig {
        bus,
        device,
        init: _init,
        config: _config,
        daemon,
    } = Rig::start("");
    let server = HttpServer::start();
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    let bytes = std::fs::read(&v2.path).unwrap();

    // The server drops the connection halfway: a clear error, nothing switched.
    let url = server.route("/drop.fw", Reply::Drop(bytes.clone(), bytes.len() / 2));
    must_fail(&bus, &device, &url, "download interrupted").await;

    // A byte of the root filesystem flipped in transit: its hash (or inflate) fails.
    let mut corrupt = bytes.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0x55;
    let url = server.route("/corrupt.fw", Reply::Full(corrupt));
    must_fail(&bus, &device, &url, "rootfs.img").await;

    // Not an archive at all; an HTTP error; too many redirects.
    let url = server.route(
        "/garbage.fw",
        Reply::Full(b"<html>not found</html>".repeat(50)),
    );
    must_fail(&bus, &device, &url, "").await;
    let url = server.route("/missing.fw", Reply::NotFound);
    must_fail(&bus, &device, &url, "HTTP 404").await;
    server.route("/loop1", Reply::Redirect("/loop2".into()));
    server.route("/loop2", Reply::Redirect("/loop3".into()));
    let url = server.route("/loop3", Reply::Redirect("/loop1".into()));
    must_fail(&bus, &device, &url, "redirects").await;

    // Through one redirect, the real file installs.
    server.route("/v2.fw", Reply::Full(bytes.clone()));
    let url = server.route("/latest", Reply::Redirect("/v2.fw".into()));
    install(&bus, &url).await.unwrap();
    assert_eq!(&device.slot(ROOTFS_B, v2.rootfs.len()), &v2.rootfs);
    assert_eq!(device.env()["b.nerves_fw_version"], "2.0.0");
    let update = bus.proxy().await;
    assert_eq!(update.last_error().await.unwrap(), "");
    assert_eq!(update.source().await.unwrap(), url);
    daemon.stop();
}

#[tokio::test]
async fn signatures_are_checked_before_anything_is_written() {
    let bus = Bus::start();
    let device = Device::new();
    let init = FakeInit::start(device.dir.path());
    let trusted = new_key(&device.keys, "release");
    let other = PrivateKeyExt::generate();
    let config = device.config(&init.path, "");
    let daemon = Daemon::start(&bus, &device, &config);
    let dir = device.dir.path();

    let unsigned = build_fw(dir, "unsigned", "2.0.0", "testboard", 2, None);
    let wrong = build_fw(dir, "wrong", "2.0.0", "testboard", 3, Some(&other));
    let good = build_fw(dir, "good", "2.0.0", "testboard", 4, Some(&trusted));

    // Refused before the target is touched: not a byte of slot b changes either.
    for (fw, expect) in [
        (&unsigned, "Expecting signed firmware"),
        (&wrong, "signature"),
    ] {
        let disk = device.disk_bytes();
        must_fail(&bus, &device, &fw.path.display().to_string(), expect).await;
        assert!(device.disk_bytes() == disk, "{expect}: the disk changed");
    }
    install(&bus, &good.path.display().to_string())
        .await
        .unwrap();
    assert_eq!(&device.slot(ROOTFS_B, good.rootfs.len()), &good.rootfs);
    daemon.stop();

    // A missing keys directory (a damaged root filesystem) refuses, naming it, before
    // anything is written; so does an empty one in an image that is not a development image.
    std::fs::remove_dir_all(&device.keys).unwrap();
    let daemon = Daemon::start(&bus, &device, &config);
    let disk = device.disk_bytes();
    let refused = |expect: &'static str| {
        let (bus, source) = (&bus, unsigned.path.display().to_string());
        async move {
            let err = install(bus, &source).await.unwrap_err();
            let ClientError::Failed(message) = &err else {
                panic!("expected a failed install, got {err:?}")
            };
            assert!(
                message.contains(expect),
                "{message:?} does not mention {expect:?}"
            );
        }
    };
    refused("does not exist").await;
    std::fs::create_dir(&device.keys).unwrap();
    let marker = device.path("development");
    std::fs::rename(&marker, device.path("development.off")).unwrap();
    refused("not a development image").await;
    assert!(
        device.disk_bytes() == disk,
        "a refused install changed the disk"
    );
    daemon.stop();

    // A development image (empty keys directory and the marker): the unsigned archive is
    // accepted with a warning.
    std::fs::rename(device.path("development.off"), &marker).unwrap();
    let daemon = Daemon::start(&bus, &device, &config);
    install(&bus, &unsigned.path.display().to_string())
        .await
        .unwrap();
    assert_eq!(
        &device.slot(ROOTFS_B, unsigned.rootfs.len()),
        &unsigned.rootfs
    );
    assert!(
        daemon.log().contains("without checking its signature"),
        "{}",
        daemon.log()
    );
    daemon.stop();
}

/// A key that is not in the device's key directory.
struct PrivateKeyExt;

impl PrivateKeyExt {
    fn generate() -> myelin_fw::sign::PrivateKey {
        myelin_fw::sign::PrivateKey::generate().unwrap()
    }
}

#[tokio::test]
async fn guard_tasks_refuse_with_their_message() {
    let bus = Bus::start();
    let mut device = Device::new();
    let init = FakeInit::start(device.dir.path());
    let config = device.config(
        &init.path,
        "auto_validate = false\nvalidate_timeout = \"0s\"",
    );
    let daemon = Daemon::start(&bus, &device, &config);
    let dir = device.dir.path().to_owned();

    // Another board's firmware.
    let foreign = build_fw(&dir, "foreign", "2.0.0", "otherboard", 5, None);
    must_fail(
        &bus,
        &device,
        &foreign.path.display().to_string(),
        "This firmware is for platform otherboard",
    )
    .await;

    // An install on a trial firmware is refused by upgrade.unvalidated-b.
    let v2 = build_fw(&dir, "v2", "2.0.0", "testboard", 2, None);
    install(&bus, &v2.path.display().to_string()).await.unwrap();
    daemon.stop();
    device.reboot_into(ROOTFS_B);
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    assert!(update.trial().await.unwrap());
    let v3 = build_fw(&dir, "v3", "3.0.0", "testboard", 6, None);
    let env = device.env();
    let slot_a = device.slot(ROOTFS_A, ROOTFS_BYTES);
    let err = install(&bus, &v3.path.display().to_string())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("(slot B) is not validated yet"),
        "{err}"
    );
    assert_eq!(device.env(), env);
    assert_eq!(device.slot(ROOTFS_A, ROOTFS_BYTES), slot_a);

    // auto_validate = false: the application validates, through D-Bus.
    let messages = update.validate().await.unwrap();
    assert_eq!(messages, vec!["Slot B validated".to_string()]);
    assert!(!update.trial().await.unwrap());
    assert_eq!(update.status().await.unwrap(), "b");
    install(&bus, &v3.path.display().to_string()).await.unwrap();
    assert_eq!(&device.slot(ROOTFS_A, v3.rootfs.len()), &v3.rootfs);
    daemon.stop();
}

#[tokio::test]
async fn command_line_installs_from_stdin_and_prints_json() {
    let Rig {
        bus,
        device,
        init: _init,
        config: _config,
        daemon,
    } = Rig::start("");
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);

    // `myelin-update install -` streams its stdin to the daemon (a pipe: no length, no seek).
    let mut child = myelin_update()
        .args(["--address", bus.address(), "install", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&v2.path).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for chunk in bytes.chunks(64 * 1024) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install -: {stderr}");
    assert!(stderr.contains("installing: 100%"), "{stderr}");
    assert_eq!(&device.slot(ROOTFS_B, v2.rootfs.len()), &v2.rootfs);

    // status --json: the documented, stable shape.
    let out = myelin_update()
        .args(["--address", bus.address(), "status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "installed");
    assert_eq!(json["progress"], 100);
    assert_eq!(json["status"], "a->b");
    assert_eq!(json["running_slot"], "a");
    assert_eq!(json["next_slot"], "b");
    assert_eq!(json["trial"], false);
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["slots"]["a"]["validated"], true);
    assert_eq!(json["slots"]["b"]["validated"], false);
    assert_eq!(json["slots"]["b"]["version"], "2.0.0");
    assert_eq!(json["slots"]["b"]["platform"], "testboard");
    assert_eq!(json["last_install"]["outcome"], "pending-reboot");
    assert_eq!(json["last_install"]["slot"], "b");
    assert_eq!(json["last_error"], "");

    // The human form, and a failing install's exit status and message.
    let out = myelin_update()
        .args(["--address", bus.address(), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("running slot: a") && text.contains("pending-reboot"),
        "{text}"
    );
    let out = myelin_update()
        .args(["--address", bus.address(), "install", "/nonexistent.fw"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.fw does not exist"));
    let garbage = device.path("garbage.fw");
    std::fs::write(&garbage, b"not a firmware archive").unwrap();
    let out = myelin_update()
        .args(["--address", bus.address(), "install"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("install failed: corrupt archive"),
        "{stderr}"
    );
    daemon.stop();
}

#[tokio::test]
async fn revert_prevent_revert_and_factory_reset() {
    let bus = Bus::start();
    let mut device = Device::new();
    let init = FakeInit::start(device.dir.path());
    init.set_ready(true);
    let config = device.config(&init.path, "");
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;

    // Nothing to revert to yet: the task's error() comes back as the D-Bus error.
    let (name, msg) = method_error(&update.revert(false).await.unwrap_err());
    assert_eq!(name, "org.myelin.Update1.Error.Failed");
    assert!(
        msg.contains("Cannot revert: the other slot holds no validated firmware"),
        "{msg}"
    );

    // Install b, boot it, let it validate, then revert to a without rebooting.
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    install(&bus, &v2.path.display().to_string()).await.unwrap();
    daemon.stop();
    device.reboot_into(ROOTFS_B);
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    eventually("validation", || async { !update.trial().await.unwrap() }).await;
    let reboots = init.reboot_count();
    let messages = update.revert(false).await.unwrap();
    assert_eq!(
        messages,
        vec!["Reverting to slot A on the next boot".to_string()]
    );
    assert_eq!(update.status().await.unwrap(), "b->a");
    assert_eq!(device.env()["nerves_fw_active"], "a");
    // A reverted firmware is not validated again behind the caller's back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(device.env()["b.nerves_fw_validated"], "0");
    assert_eq!(
        init.reboot_count(),
        reboots,
        "revert(false) must not reboot"
    );
    // Nor by a restarted daemon before the reboot (on this layout, as on the Raspberry Pi, a
    // reverted slot and a trial look alike in the environment).
    daemon.stop();
    let daemon = Daemon::start(&bus, &device, &config);
    let update = bus.proxy().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(device.env()["b.nerves_fw_validated"], "0");
    assert!(
        daemon.log().contains("revert was asked for"),
        "{}",
        daemon.log()
    );

    // Changed our mind: prevent-revert commits b and wipes a.
    update.prevent_revert().await.unwrap();
    assert_eq!(update.status().await.unwrap(), "b");
    assert!(device.slot(ROOTFS_A, 256 * 512).iter().all(|&b| b == 0xff));
    let slots = update.slots().await.unwrap();
    assert_eq!(slots["a"]["validated"], "0");
    assert!(!slots["a"].contains_key("version"));

    // Factory reset wipes the start of /data and reboots at once when asked: a clean reboot
    // would unmount /data, which could write the erased blocks back.
    let data = (DATA_OFFSET * 512) as usize;
    let mut disk = device.disk_bytes();
    disk[data..data + 4096].fill(0x42);
    std::fs::write(&device.disk, &disk).unwrap();
    let messages = update.factory_reset(true).await.unwrap();
    assert_eq!(
        messages,
        vec!["Erasing /data".to_string(), "rebooting now".to_string()]
    );
    assert!(
        device.disk_bytes()[data..data + 256 * 512]
            .iter()
            .all(|&b| b == 0xff)
    );
    assert_eq!(init.immediate_reboot_count(), 1);
    assert_eq!(init.reboot_count(), reboots, "not a clean reboot");
    daemon.stop();
}

#[tokio::test]
async fn cancel_and_one_install_at_a_time() {
    let Rig {
        bus,
        device,
        init: _init,
        config: _config,
        daemon,
    } = Rig::start("");
    let server = HttpServer::start();
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    let bytes = std::fs::read(&v2.path).unwrap();
    let url = server.route(
        "/slow.fw",
        Reply::Slow(bytes, 32 * 1024, Duration::from_millis(100)),
    );
    let update = bus.proxy().await;
    let env = device.env();
    let kept = outside_slot_b(&device.disk_bytes());

    let (name, _) = method_error(&update.cancel().await.unwrap_err());
    assert_eq!(name, "org.myelin.Update1.Error.Failed", "nothing to cancel");
    update.install(&url).await.unwrap();
    assert_eq!(update.state().await.unwrap(), "installing");
    let (name, msg) = method_error(&update.install(&url).await.unwrap_err());
    assert_eq!(name, "org.myelin.Update1.Error.Busy");
    assert!(msg.contains("already running"), "{msg}");
    let (name, _) = method_error(&update.revert(false).await.unwrap_err());
    assert_eq!(name, "org.myelin.Update1.Error.Busy");
    // A slow (or stalled) install never blocks validating the running firmware (issue 9,
    // item 5): the trial would otherwise miss its validation and be rolled back.
    let validated = update.validate().await.unwrap();
    assert!(
        validated.iter().any(|m| m.contains("validated")),
        "{validated:?}"
    );
    eventually("some progress", || async {
        update.progress().await.unwrap() > 0
    })
    .await;

    let mut completed = update.receive_completed().await.unwrap();
    update.cancel().await.unwrap();
    use futures_util::StreamExt;
    let signal = tokio::time::timeout(TIMEOUT, completed.next())
        .await
        .unwrap()
        .unwrap();
    let args = signal.args().unwrap();
    assert!(!*args.success());
    assert!(
        args.message().starts_with("cancelled"),
        "{}",
        args.message()
    );
    assert_eq!(update.state().await.unwrap(), "failed");
    assert_only_slot_b_invalidated(&env, &device.env(), "cancelled");
    assert!(outside_slot_b(&device.disk_bytes()) == kept);
    daemon.stop();
}

#[tokio::test]
async fn only_root_may_change_anything() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs clients as another user (uid 65534): run the tests as root, as scripts/test does in CI"
    );
    let Rig {
        bus,
        device: _device,
        init,
        config: _config,
        daemon,
    } = Rig::start("");
    let gdbus = |uid: Option<u32>, args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("gdbus");
        cmd.args([
            "call",
            "--address",
            bus.address(),
            "-d",
            "org.myelin.Update1",
            "-o",
            "/org/myelin/Update1",
        ])
        .args(args);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid).env("HOME", "/");
        }
        let out = cmd
            .output()
            .expect("cannot run gdbus: install libglib2.0-bin (scripts/deps/apt.txt)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Anyone reads the properties.
    let (ok, out) = gdbus(
        Some(65534),
        &[
            "-m",
            "org.freedesktop.DBus.Properties.Get",
            "org.myelin.Update1",
            "Status",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("'a'"), "{out}");
    // Only root validates, installs, reboots.
    for method in ["org.myelin.Update1.Validate", "org.myelin.Update1.Reboot"] {
        let (ok, out) = gdbus(Some(65534), &["-m", method]);
        assert!(!ok && out.contains("AccessDenied"), "{method}: {out}");
    }
    let (ok, out) = gdbus(Some(65534), &["-m", "org.myelin.Update1.Install", "/x.fw"]);
    assert!(!ok && out.contains("AccessDenied"), "{out}");
    assert_eq!(init.reboot_count(), 0);
    // The command line's status works for anyone (Refresh writes nothing).
    let out = {
        use std::os::unix::process::CommandExt;
        // A copy nobody can reach, wherever the checkout is.
        let exe = myelin_testbus::SharedExe::copy(std::path::Path::new(env!(
            "CARGO_BIN_EXE_myelin-update"
        )))
        .unwrap();
        std::process::Command::new(exe.path())
            .args(["--address", bus.address(), "status", "--json"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = gdbus(None, &["-m", "org.myelin.Update1.Validate"]);
    assert!(ok, "{out}");
    assert!(out.contains("Slot A validated"), "{out}");
    daemon.stop();
}

#[tokio::test]
async fn auto_reboot_and_download_progress() {
    let Rig {
        bus,
        device,
        init,
        config: _config,
        daemon,
    } = Rig::start("auto_reboot = true");
    let server = HttpServer::start();
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    let bytes = std::fs::read(&v2.path).unwrap();
    let url = server.route("/v2.fw", Reply::Full(bytes.clone()));
    let update = bus.proxy().await;
    let mut progress = update.receive_install_progress().await.unwrap();
    // Every PropertiesChanged signal, as another client receives them.
    let conn = zbus::connection::Builder::address(bus.address())
        .build()
        .await
        .unwrap();
    let props = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination("org.myelin.Update1")
        .path("/org/myelin/Update1")
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    install(&bus, &url).await.unwrap();

    // The signal carries the bytes read against the Content-Length.
    use futures_util::StreamExt;
    let mut last = None;
    while let Ok(Some(signal)) =
        tokio::time::timeout(Duration::from_millis(300), progress.next()).await
    {
        let args = signal.args().unwrap();
        last = Some((*args.percent(), *args.bytes_read(), *args.bytes_total()));
    }
    let (percent, read, total) = last.expect("no InstallProgress signal");
    assert_eq!(percent, 100);
    assert_eq!(total, bytes.len() as u64);
    assert!(read > total / 2 && read <= total, "{read} of {total}");

    // auto_reboot: PID 1 was asked right after the install was recorded.
    eventually("the automatic reboot", || async {
        init.reboot_count() == 1
    })
    .await;
    assert_eq!(update.state().await.unwrap(), "rebooting");

    // Every change of State was announced, in order.
    let mut seen: Vec<String> = Vec::new();
    while seen.last().map(String::as_str) != Some("rebooting") {
        let signal = tokio::time::timeout(TIMEOUT, changes.next())
            .await
            .expect("no PropertiesChanged for State")
            .unwrap();
        let args = signal.args().unwrap();
        if let Some(state) = args.changed_properties().get("State") {
            seen.push(state.downcast_ref::<String>().unwrap());
        }
    }
    assert_eq!(seen, ["installing", "installed", "rebooting"]);
    let record = std::fs::read_to_string(device.state.join("last-install.json")).unwrap();
    assert!(
        record.contains("\"slot\":\"b\"") && record.contains("2.0.0"),
        "{record}"
    );
    daemon.stop();
}

#[tokio::test]
async fn https_with_the_configured_ca_and_without() {
    let bus = Bus::start();
    let device = Device::new();
    let init = FakeInit::start(device.dir.path());
    let v2 = build_fw(device.dir.path(), "v2", "2.0.0", "testboard", 2, None);
    let server = HttpsServer::start(std::fs::read(&v2.path).unwrap());

    // The built-in Mozilla roots do not know the test CA: refused, with the reason.
    let config = device.config(&init.path, "");
    let daemon = Daemon::start(&bus, &device, &config);
    must_fail(&bus, &device, &server.url, "certificate").await;
    daemon.stop();

    // With the CA configured, the download verifies and installs.
    let ca = device.path("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let config = device.config(&init.path, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}ca_file = \"{}\"\n", ca.display())).unwrap();
    let daemon = Daemon::start(&bus, &device, &config);
    install(&bus, &server.url).await.unwrap();
    assert_eq!(&device.slot(ROOTFS_B, v2.rootfs.len()), &v2.rootfs);
    daemon.stop();
}

/// Rollback protection (issue 9, item 5): an archive older than the running firmware (1.0.0)
/// is refused before anything is written, naming both versions; the install option
/// `allow-downgrade` lets it through.
#[tokio::test]
async fn a_downgrade_is_refused_unless_allowed() {
    let Rig {
        bus,
        device,
        init: _init,
        config: _config,
        daemon,
    } = Rig::start("");
    let old = build_fw(device.dir.path(), "old", "0.9.0", "testboard", 5, None);
    let source = old.path.display().to_string();
    let disk = device.disk_bytes();
    let err = install(&bus, &source).await.unwrap_err();
    let ClientError::Failed(message) = &err else {
        panic!("expected a failed install, got {err:?}")
    };
    assert!(
        message.contains("0.9.0") && message.contains("1.0.0"),
        "{message}"
    );
    assert!(message.contains("allow-downgrade"), "{message}");
    assert!(
        device.disk_bytes() == disk,
        "a refused downgrade wrote the disk"
    );

    let proxy = bus.proxy().await;
    client::install_with(
        &proxy,
        InstallSource::Location(source.clone()),
        true,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(&device.slot(ROOTFS_B, old.rootfs.len()), &old.rootfs);
    assert!(
        daemon.log().contains("downgrading from 1.0.0 to 0.9.0"),
        "{}",
        daemon.log()
    );
    daemon.stop();
}
