//! The `org.myelin.Device1` contract (myelin-uevent): the devices the kernel announced, and a
//! signal for each one that comes, changes or goes.
//!
//! Every device is described by the same five values, in this order, in the `Devices` method's
//! answer and in each signal: `subsystem` (`tty`, `usb`, `virtio`, `net`, `block`, ...),
//! `devpath` (its path under `/sys`, unique while it exists), `devname` (its node under `/dev`,
//! empty if it has none), `modalias` (empty if none) and every other key of its uevent as a
//! dictionary (`MAJOR`, `MINOR`, `DEVTYPE`, `DRIVER`, `PRODUCT`, `INTERFACE`, `SEQNUM`, ...).
//! [`Device`] holds them on the client side.

use std::collections::HashMap;

use futures_util::StreamExt;

/// Well-known bus name.
pub const BUS_NAME: &str = "org.myelin.Device1";
/// Object path of the device table.
pub const OBJECT_PATH: &str = "/org/myelin/Device1";
/// Interface name.
pub const INTERFACE: &str = "org.myelin.Device1";

/// One device, as the bus carries it: (subsystem, devpath, devname, modalias, properties).
pub type DeviceTuple = (String, String, String, String, HashMap<String, String>);

/// One device the kernel announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// `SUBSYSTEM` (`tty`, `usb`, `virtio`).
    pub subsystem: String,
    /// Its path under `/sys` (`/devices/pci0000:00/.../ttyUSB0/tty/ttyUSB0`).
    pub devpath: String,
    /// Its node under `/dev` (`ttyUSB0`), empty if it has none.
    pub devname: String,
    /// `MODALIAS`, empty if none.
    pub modalias: String,
    /// Every other key of its uevent.
    pub properties: HashMap<String, String>,
}

impl Device {
    /// A device from the bus's tuple.
    pub fn from_tuple(t: DeviceTuple) -> Device {
        let (subsystem, devpath, devname, modalias, properties) = t;
        Device {
            subsystem,
            devpath,
            devname,
            modalias,
            properties,
        }
    }

    /// The bus's tuple of this device.
    pub fn into_tuple(self) -> DeviceTuple {
        (
            self.subsystem,
            self.devpath,
            self.devname,
            self.modalias,
            self.properties,
        )
    }

    /// One property (`MAJOR`, `PRODUCT`, ...).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// `org.myelin.Device1`, as seen from a client. `Device1Proxy` is the async proxy.
#[zbus::proxy(
    interface = "org.myelin.Device1",
    default_service = "org.myelin.Device1",
    default_path = "/org/myelin/Device1"
)]
pub trait Device1 {
    /// Every device present, by devpath.
    fn devices(&self) -> zbus::Result<Vec<DeviceTuple>>;

    /// A device appeared (after its driver's module was asked for, if it needed one).
    #[zbus(signal)]
    fn device_added(
        &self,
        subsystem: String,
        devpath: String,
        devname: String,
        modalias: String,
        properties: HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A device changed (media inserted, a synthetic `change`).
    #[zbus(signal)]
    fn device_changed(
        &self,
        subsystem: String,
        devpath: String,
        devname: String,
        modalias: String,
        properties: HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A device went away.
    #[zbus(signal)]
    fn device_removed(
        &self,
        subsystem: String,
        devpath: String,
        devname: String,
        modalias: String,
        properties: HashMap<String, String>,
    ) -> zbus::Result<()>;
}

/// The first device that `matches`: one present now if `present`, else the next that `added`
/// announces; `None` if that stream ends. Subscribe (`added`, from
/// [`Device1Proxy::receive_device_added`]) before calling, so that no device falls between the
/// listing and the stream.
pub async fn find(
    proxy: &Device1Proxy<'_>,
    mut added: DeviceAddedStream,
    present: bool,
    matches: impl Fn(&Device) -> bool,
) -> zbus::Result<Option<Device>> {
    if present
        && let Some(d) = proxy
            .devices()
            .await?
            .into_iter()
            .map(Device::from_tuple)
            .find(|d| matches(d))
    {
        return Ok(Some(d));
    }
    while let Some(signal) = added.next().await {
        let a = signal.args()?;
        let d = Device {
            subsystem: a.subsystem,
            devpath: a.devpath,
            devname: a.devname,
            modalias: a.modalias,
            properties: a.properties,
        };
        if matches(&d) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}
