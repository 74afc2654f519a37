//! Coldplug against a fake sysfs tree, with a modprobe that records its calls; and the
//! `plan` command on the same tree.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::Command;

use common::{FTDI, VIRTIO_CONSOLE, fake_sysfs};
use myelin_uevent::coldplug::{ColdplugError, walk};
use myelin_uevent::modprobe::{Modprobe, ModprobeError};
use myelin_uevent::plan::Planner;

/// Records each call's aliases.
#[derive(Default)]
struct Recorder {
    calls: Vec<Vec<String>>,
}

impl Modprobe for Recorder {
    async fn load(&mut self, aliases: &[String]) -> Result<(), ModprobeError> {
        self.calls.push(aliases.to_vec());
        Ok(())
    }
}

#[test]
fn coldplug_finds_every_device_and_asks_for_each_module_once() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let found = walk(dir.path()).unwrap();
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let devices: Vec<(&str, &str)> = found
        .events
        .iter()
        .map(|e| (e.devpath.as_str(), e.subsystem()))
        .collect();
    assert_eq!(
        devices,
        [
            ("/devices/pci0000:00/0000:00:03.0/virtio1", "virtio"),
            ("/devices/pci0000:00/0000:00:04.0/virtio2", "virtio"),
            ("/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", "usb"),
            (
                "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0",
                "tty"
            ),
            ("/devices/pci0000:00/0000:00:1f.2", "pci"),
            ("/devices/platform/serial8250", "platform"),
        ]
    );
    let tty = &found.events[3];
    assert_eq!(tty.devname(), "ttyUSB0");
    assert_eq!(tty.get("MAJOR"), Some("188"));

    let mut modprobe = Recorder::default();
    let mut planner = Planner::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for aliases in planner.plan(&found.events) {
            modprobe.load(&aliases).await.unwrap();
        }
    });
    // One call; the bound AHCI controller and the alias-less devices need nothing; the
    // second virtio console adds nothing.
    assert_eq!(
        modprobe.calls,
        [vec![VIRTIO_CONSOLE.to_string(), FTDI.to_string()]]
    );
}

#[test]
fn a_bad_device_is_reported_and_the_others_still_count() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let bad = dir.path().join("devices/platform/broken");
    fs::create_dir_all(&bad).unwrap();
    fs::write(
        bad.join("uevent"),
        "MODALIAS=of:Nbroken\nno equals sign here\n",
    )
    .unwrap();
    let found = walk(dir.path()).unwrap();
    assert_eq!(found.events.len(), 6);
    assert_eq!(found.errors.len(), 1);
    let ColdplugError::Parse { path, source } = &found.errors[0] else {
        panic!("not a parse error: {:?}", found.errors[0]);
    };
    assert_eq!(path, &bad.join("uevent"));
    assert_eq!(
        source.to_string(),
        "uevent field at byte 20 (\"no equals sign here\") is not KEY=VALUE"
    );
}

#[test]
fn a_missing_sysfs_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = walk(&dir.path().join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("nowhere/devices"), "{err}");
}

#[test]
fn the_plan_command_prints_one_modprobe_call() {
    let dir = tempfile::tempdir().unwrap();
    fake_sysfs(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_myelin-uevent"))
        .args(["plan", "--modprobe", "/bin/kmod-modprobe", "--sysfs"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("/bin/kmod-modprobe -a -b -q {VIRTIO_CONSOLE} {FTDI}\n")
    );
}
