//! Devices (org.myelin.Device1, myelin-uevent): the devices present, and waiting for one to
//! appear ("a USB serial adapter was plugged in").

use std::time::Duration;

use futures_util::StreamExt;
use myelin_api::device::{BUS_NAME, Device1Proxy};

pub use myelin_api::device::Device;

use super::{Error, Platform};

impl Platform {
    /// Every device the kernel announced, by devpath.
    pub fn devices(&self) -> Result<Vec<Device>, Error> {
        let proxy = self.call(BUS_NAME, Device1Proxy::new(&self.conn))?;
        let all = self.call(BUS_NAME, proxy.devices())?;
        Ok(all.into_iter().map(Device::from_tuple).collect())
    }

    /// Waits up to `timeout` for a device that `matches`: one already present, or the next to
    /// be added; `None` if none came in time. Its driver's module, if it needed one, was asked
    /// for before it is announced.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), myelin::platform::Error> {
    /// # let platform = myelin::platform::Platform::connect()?;
    /// use std::time::Duration;
    /// // A USB serial adapter (ftdi_sio, cp210x, ch341, pl2303, ...): its tty node.
    /// let tty = platform.wait_for_device(Duration::from_secs(60), |d| {
    ///     d.subsystem == "tty" && d.devname.starts_with("ttyUSB")
    /// })?;
    /// if let Some(tty) = tty {
    ///     println!("adapter at /dev/{}", tty.devname);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_for_device(
        &self,
        timeout: Duration,
        matches: impl Fn(&Device) -> bool,
    ) -> Result<Option<Device>, Error> {
        let proxy = self.call(BUS_NAME, Device1Proxy::new(&self.conn))?;
        let found = self.within(BUS_NAME, timeout, async {
            let added = proxy.receive_device_added().await?;
            myelin_api::device::find(&proxy, added, true, matches).await
        });
        match found {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(Error::call(BUS_NAME, &e)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for the next device event of any kind that `matches` (added,
    /// changed or removed), without looking at the devices already present.
    pub fn wait_for_device_event(
        &self,
        timeout: Duration,
        matches: impl Fn(DeviceEvent, &Device) -> bool,
    ) -> Result<Option<(DeviceEvent, Device)>, Error> {
        let proxy = self.call(BUS_NAME, Device1Proxy::new(&self.conn))?;
        let found = self.within(BUS_NAME, timeout, async {
            let added = proxy.receive_device_added().await?.map(|s| {
                s.args().map(|a| {
                    (
                        DeviceEvent::Added,
                        (a.subsystem, a.devpath, a.devname, a.modalias, a.properties),
                    )
                })
            });
            let changed = proxy.receive_device_changed().await?.map(|s| {
                s.args().map(|a| {
                    (
                        DeviceEvent::Changed,
                        (a.subsystem, a.devpath, a.devname, a.modalias, a.properties),
                    )
                })
            });
            let removed = proxy.receive_device_removed().await?.map(|s| {
                s.args().map(|a| {
                    (
                        DeviceEvent::Removed,
                        (a.subsystem, a.devpath, a.devname, a.modalias, a.properties),
                    )
                })
            });
            let mut all =
                futures_util::stream::select(added, futures_util::stream::select(changed, removed));
            while let Some(next) = all.next().await {
                let (event, t) = next?;
                let d = Device::from_tuple(t);
                if matches(event, &d) {
                    return Ok(Some((event, d)));
                }
            }
            Ok::<_, zbus::Error>(None)
        });
        match found {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(Error::call(BUS_NAME, &e)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// It appeared.
    Added,
    /// It changed.
    Changed,
    /// It went away.
    Removed,
}
