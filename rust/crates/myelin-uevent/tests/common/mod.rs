//! A fake sysfs tree in a temporary directory, laid out as the kernel lays out `/sys`: device
//! directories with `uevent` files, `subsystem` links into `/sys/bus` or `/sys/class`,
//! attribute groups without `uevent`, and the back links that make sysfs cyclic.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// virtio-serial's alias: virtio device 3 (console), vendor Red Hat.
pub const VIRTIO_CONSOLE: &str = "virtio:d00000003v00001AF4";
/// An FTDI USB serial adapter's interface.
pub const FTDI: &str = "usb:v0403p6001d0600dc00dsc00dp00icFFiscFFipFFin00";

fn device(sysfs: &Path, devpath: &str, subsystem: &str, uevent: &str) {
    let dir = sysfs.join(devpath.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("uevent"), uevent).unwrap();
    let class = sysfs.join("bus").join(subsystem);
    fs::create_dir_all(&class).unwrap();
    symlink(&class, dir.join("subsystem")).unwrap();
}

/// The tree: two virtio consoles (one alias), an FTDI adapter and its tty, a bound AHCI
/// controller (a built-in driver: no module), a platform device with no alias.
pub fn fake_sysfs(sysfs: &Path) {
    device(
        sysfs,
        "/devices/pci0000:00/0000:00:1f.2",
        "pci",
        "DRIVER=ahci\nPCI_CLASS=10601\nMODALIAS=pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n",
    );
    device(
        sysfs,
        "/devices/pci0000:00/0000:00:03.0/virtio1",
        "virtio",
        &format!("MODALIAS={VIRTIO_CONSOLE}\n"),
    );
    device(
        sysfs,
        "/devices/pci0000:00/0000:00:04.0/virtio2",
        "virtio",
        &format!("MODALIAS={VIRTIO_CONSOLE}\n"),
    );
    device(
        sysfs,
        "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0",
        "usb",
        &format!("DEVTYPE=usb_interface\nPRODUCT=403/6001/600\nMODALIAS={FTDI}\n"),
    );
    device(
        sysfs,
        "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0",
        "tty",
        "MAJOR=188\nMINOR=0\nDEVNAME=ttyUSB0\n",
    );
    device(
        sysfs,
        "/devices/platform/serial8250",
        "platform",
        "DRIVER=serial8250\n",
    );
    // An attribute group: a directory without uevent.
    fs::create_dir_all(sysfs.join("devices/pci0000:00/0000:00:03.0/virtio1/power")).unwrap();
    fs::write(
        sysfs.join("devices/pci0000:00/0000:00:03.0/virtio1/power/control"),
        "auto\n",
    )
    .unwrap();
    // A back link to an ancestor: following it would never end.
    symlink(
        sysfs.join("devices/pci0000:00"),
        sysfs.join("devices/pci0000:00/0000:00:14.0/usb1/1-1/port"),
    )
    .unwrap();
}
