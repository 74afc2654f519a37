//! The daemon as myelin-init runs it, on a private system bus with the shipped policy: coldplug
//! of a fake sysfs tree through a recording modprobe script, the device table through the app
//! crate, and a real kernel uevent from the real netlink socket to a subscriber. Needs root
//! (the synthetic uevent is written to /sys/class/net/lo/uevent).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{FTDI, VIRTIO_CONSOLE, fake_sysfs};
use futures_util::StreamExt;
use myelin::platform::DeviceEvent;
use myelin_api::device::Device1Proxy;
use myelin_testbus::daemon::PATIENCE;
use myelin_testbus::{Daemon, TestBus, shipped_policy};

/// A UUID for the synthetic event, unique to this run: it tells our event from any other the
/// machine sends meanwhile.
fn run_uuid() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let pid = std::process::id();
    format!(
        "{pid:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        t.as_secs() & 0xffff,
        (t.subsec_nanos() >> 12) & 0xfff,
        t.subsec_nanos() & 0xfff,
        t.as_nanos() & 0xffff_ffff_ffff
    )
}

#[test]
fn coldplug_table_and_a_real_kernel_event_reach_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let sysfs = dir.path().join("sys");
    fake_sysfs(&sysfs);
    let calls = dir.path().join("modprobe.calls");
    let modprobe = dir.path().join("modprobe");
    std::fs::write(
        &modprobe,
        format!("#!/bin/sh\necho \"$*\" >>'{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&modprobe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let bus = TestBus::system(&shipped_policy("org.myelin.Device1.conf"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_myelin-uevent"));
    cmd.arg("daemon")
        .arg("--sysfs")
        .arg(&sysfs)
        .arg("--modprobe")
        .arg(&modprobe)
        .args(["--address", bus.address()]);
    let daemon = Daemon::start(cmd);

    // Ready means coldplug's modules were asked for: one call, each alias once.
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("-a -b -q {VIRTIO_CONSOLE} {FTDI}\n"),
        "{}",
        daemon.log()
    );

    // The app crate sees the table, and finds a present device without waiting.
    let platform = myelin::platform::Platform::connect_to(bus.address()).unwrap();
    let devices = platform.devices().unwrap();
    assert_eq!(devices.len(), 6, "{devices:?}");
    let tty = platform
        .wait_for_device(PATIENCE, |d| {
            d.subsystem == "tty" && d.devname.starts_with("ttyUSB")
        })
        .unwrap()
        .expect("ttyUSB0 is present");
    assert_eq!(tty.devname, "ttyUSB0");
    assert_eq!(tty.property("MAJOR"), Some("188"));
    // Nothing matches: the wait ends empty-handed at its bound.
    assert_eq!(
        platform
            .wait_for_device(Duration::from_millis(200), |d| d.devname == "ttyACM9")
            .unwrap(),
        None
    );

    // The shell's subscriber finds the present tty; and gives up, failing, on a device that
    // never comes.
    let wait = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_myelin-uevent"))
            .arg("wait")
            .args(args)
            .args(["--address", bus.address()])
            .output()
            .unwrap()
    };
    let out = wait(&["--subsystem", "tty", "--devname-prefix", "ttyUSB"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "subscribed\ntty /devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0 ttyUSB0 \n"
    );
    let out = wait(&["--devname-prefix", "ttyUSB", "--new", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such device was added within 1 s"),
        "{out:?}"
    );

    // A real uevent: the kernel's synthetic "change" of the loopback interface, carrying our
    // UUID (and an argument: its key is alphanumeric only, as the kernel wants), through the
    // real netlink socket to a subscriber of the bus.
    let uuid = run_uuid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address())
            .build()
            .await
            .unwrap();
        let proxy = Device1Proxy::new(&conn).await.unwrap();
        let mut changed = proxy.receive_device_changed().await.unwrap();
        std::fs::write(
            "/sys/class/net/lo/uevent",
            format!("change {uuid} MYELINTEST=daemon"),
        )
        .unwrap_or_else(|e| panic!("cannot trigger a uevent (this test needs root): {e}"));
        let event = tokio::time::timeout(PATIENCE, async {
            while let Some(signal) = changed.next().await {
                let a = signal.args().unwrap();
                if a.properties.get("SYNTH_UUID") == Some(&uuid) {
                    return myelin_api::device::Device {
                        subsystem: a.subsystem.clone(),
                        devpath: a.devpath.clone(),
                        devname: a.devname.clone(),
                        modalias: a.modalias.clone(),
                        properties: a.properties.clone(),
                    };
                }
            }
            panic!("the signal stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("no DeviceChanged for our uevent: {}", daemon.log()));
        assert_eq!(event.subsystem, "net");
        assert_eq!(event.devpath, "/devices/virtual/net/lo");
        assert_eq!(event.devname, "");
        assert_eq!(
            event
                .properties
                .get("SYNTH_ARG_MYELINTEST")
                .map(String::as_str),
            Some("daemon")
        );
        assert_eq!(
            event.properties.get("INTERFACE").map(String::as_str),
            Some("lo")
        );
    });
    // The app crate's subscription gets a real event too. It subscribes inside the call, so
    // the uevent is triggered again until the call returns: only the first one it sees counts.
    let uuid = run_uuid();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = {
        let uuid = uuid.clone();
        std::thread::spawn(move || {
            let got = platform.wait_for_device_event(PATIENCE, |event, d| {
                event == DeviceEvent::Changed && d.property("SYNTH_UUID") == Some(uuid.as_str())
            });
            done.send(()).unwrap();
            got
        })
    };
    // Until the waiter returns (or dies: then the channel is closed).
    while finished.recv_timeout(Duration::from_millis(100))
        == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    {
        std::fs::write(
            "/sys/class/net/lo/uevent",
            format!("change {uuid} MYELINTEST=app"),
        )
        .unwrap();
    }
    let (event, d) = waiter
        .join()
        .unwrap()
        .unwrap()
        .unwrap_or_else(|| panic!("the app saw no event: {}", daemon.log()));
    assert_eq!(event, DeviceEvent::Changed);
    assert_eq!(
        (d.subsystem.as_str(), d.devpath.as_str()),
        ("net", "/devices/virtual/net/lo")
    );
    assert_eq!(d.property("SYNTH_ARG_MYELINTEST"), Some("app"));

    // A change needs no module: still the one coldplug call.
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status}: {log}");
}
