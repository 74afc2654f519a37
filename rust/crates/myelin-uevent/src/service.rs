//! The daemon: coldplug, then every batch of uevents in turn: load modules, update the device
//! table, announce the devices on `org.myelin.Device1`.
//!
//! | member | kind | what |
//! |---|---|---|
//! | `Devices() -> a(sssa{ss})` | method | every device present |
//! | `DeviceAdded(s subsystem, s devpath, s devname, s modalias, a{ss} properties)` | signal | after the module for it was asked for |
//! | `DeviceChanged(...)`, `DeviceRemoved(...)` | signals | the same five values |
//!
//! Startup order matters: the netlink socket is opened before `/sys` is walked, so a device
//! that appears during the walk is in one or the other (or both: the planner and the table
//! take a device twice without harm), and readiness is sent once the coldplug modules were
//! asked for, so services started after this one find their devices.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use myelin_api::device::{BUS_NAME, Device, DeviceTuple, OBJECT_PATH};
use zbus::interface;
use zbus::object_server::SignalEmitter;

use crate::coldplug;
use crate::event::{Action, Uevent};
use crate::modprobe::{Modprobe, ModprobeError};
use crate::plan::Planner;

/// Why the event source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The kernel dropped events: the socket buffer overflowed.
    #[error("uevents were lost (socket buffer overflow)")]
    Overflow,
    /// The source is broken.
    #[error("cannot read uevents: {0}")]
    Io(#[source] io::Error),
}

/// Where uevents come from: the kernel's socket ([`crate::netlink::Netlink`]) on a device.
pub trait EventSource {
    /// Waits for events and returns every one available now (at least one).
    fn next_batch(&mut self) -> impl Future<Output = Result<Vec<Uevent>, SourceError>>;
}

/// The keys a [`Device`] carries in its own fields rather than in its properties.
const OWN_KEYS: [&str; 5] = ["ACTION", "DEVPATH", "SUBSYSTEM", "DEVNAME", "MODALIAS"];

/// A device as the bus describes it, from its event.
pub fn device(e: &Uevent) -> Device {
    Device {
        subsystem: e.subsystem().to_string(),
        devpath: e.devpath.clone(),
        devname: e.devname().to_string(),
        modalias: e.modalias().to_string(),
        properties: e
            .vars
            .iter()
            .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Which signal announces a change of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `DeviceAdded`.
    Added,
    /// `DeviceChanged`.
    Changed,
    /// `DeviceRemoved`.
    Removed,
}

/// The devices present, by devpath.
#[derive(Debug, Default)]
pub struct Table {
    devices: BTreeMap<String, Device>,
}

impl Table {
    /// Applies one event; returns the signals it calls for, in order.
    pub fn apply(&mut self, e: &Uevent) -> Vec<(Signal, Device)> {
        let dev = device(e);
        match e.action {
            Action::Add => {
                self.devices.insert(e.devpath.clone(), dev.clone());
                vec![(Signal::Added, dev)]
            }
            Action::Change => {
                self.devices.insert(e.devpath.clone(), dev.clone());
                vec![(Signal::Changed, dev)]
            }
            Action::Remove => {
                // The remove event carries less than the add did (no DRIVER); announce what
                // the device was.
                let gone = self.devices.remove(&e.devpath).unwrap_or(dev);
                vec![(Signal::Removed, gone)]
            }
            Action::Move => {
                let mut out = Vec::new();
                if let Some(old) = e.get("DEVPATH_OLD")
                    && let Some(gone) = self.devices.remove(old)
                {
                    out.push((Signal::Removed, gone));
                }
                self.devices.insert(e.devpath.clone(), dev.clone());
                out.push((Signal::Added, dev));
                out
            }
            // A driver bound or let go, a CPU went on- or offline: the device itself stays; keep
            // its DRIVER current.
            Action::Bind | Action::Unbind | Action::Online | Action::Offline => {
                if let Some(known) = self.devices.get_mut(&e.devpath) {
                    match e.get("DRIVER") {
                        Some(d) if e.action == Action::Bind => {
                            known.properties.insert("DRIVER".into(), d.into());
                        }
                        _ if e.action == Action::Unbind => {
                            known.properties.remove("DRIVER");
                        }
                        _ => {}
                    }
                }
                Vec::new()
            }
        }
    }

    /// Every device, by devpath.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }
}

/// The `org.myelin.Device1` object.
#[derive(Debug, Clone, Default)]
pub struct DeviceService {
    table: Arc<Mutex<Table>>,
}

#[interface(name = "org.myelin.Device1")]
impl DeviceService {
    /// Every device present.
    #[zbus(out_args("devices"))]
    async fn devices(&self) -> Vec<DeviceTuple> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .devices()
            .cloned()
            .map(Device::into_tuple)
            .collect()
    }

    /// A device appeared.
    #[zbus(signal)]
    async fn device_added(
        emitter: &SignalEmitter<'_>,
        subsystem: &str,
        devpath: &str,
        devname: &str,
        modalias: &str,
        properties: &HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A device changed.
    #[zbus(signal)]
    async fn device_changed(
        emitter: &SignalEmitter<'_>,
        subsystem: &str,
        devpath: &str,
        devname: &str,
        modalias: &str,
        properties: &HashMap<String, String>,
    ) -> zbus::Result<()>;

    /// A device went away.
    #[zbus(signal)]
    async fn device_removed(
        emitter: &SignalEmitter<'_>,
        subsystem: &str,
        devpath: &str,
        devname: &str,
        modalias: &str,
        properties: &HashMap<String, String>,
    ) -> zbus::Result<()>;
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where sysfs is mounted (`/sys`; a test's fake tree).
    pub sysfs: PathBuf,
    /// Whether to walk sysfs at start.
    pub coldplug: bool,
    /// The bus address (a test's private bus) instead of the system bus.
    pub address: Option<String>,
}

/// The daemon's state between batches.
pub struct Daemon<M> {
    planner: Planner,
    modprobe: M,
    service: DeviceService,
    sysfs: PathBuf,
}

impl<M: Modprobe> Daemon<M> {
    /// A daemon that knows no device yet.
    pub fn new(modprobe: M, sysfs: PathBuf) -> Daemon<M> {
        Daemon {
            planner: Planner::new(),
            modprobe,
            service: DeviceService::default(),
            sysfs,
        }
    }

    /// The D-Bus object, sharing this daemon's table.
    pub fn service(&self) -> DeviceService {
        self.service.clone()
    }

    /// Walks sysfs: fills the table (without signals: nobody was listening for these) and
    /// loads the modules the devices need. Returns how many devices were found.
    pub async fn coldplug(&mut self) -> anyhow::Result<usize> {
        let sysfs = self.sysfs.clone();
        let walk = tokio::task::spawn_blocking(move || coldplug::walk(&sysfs))
            .await
            .context("coldplug walk")??;
        for e in &walk.errors {
            log::warn!("coldplug: {e}");
        }
        {
            let mut table = self.service.table.lock().unwrap_or_else(|e| e.into_inner());
            for e in &walk.events {
                table.apply(e);
            }
        }
        self.load(&walk.events).await;
        Ok(walk.events.len())
    }

    /// Asks modprobe for the modules `events` need; failures are logged, never fatal.
    async fn load(&mut self, events: &[Uevent]) {
        for aliases in self.planner.plan(events) {
            log::info!("modprobe: {} aliases", aliases.len());
            log::debug!("modprobe: {}", aliases.join(" "));
            match self.modprobe.load(&aliases).await {
                Ok(()) => {}
                // The normal fate of a batch that holds aliases without a module: not worth a
                // warning on every boot.
                Err(e @ ModprobeError::Failed { .. }) => log::info!("{e}"),
                Err(e) => log::warn!("{e}"),
            }
        }
    }

    /// One batch of live events: modules first, so that a subscriber told of a device finds
    /// it bound to its driver; then the table and the signals.
    pub async fn handle(&mut self, events: &[Uevent], emitter: &SignalEmitter<'_>) {
        self.load(events).await;
        let signals: Vec<(Signal, Device)> = {
            let mut table = self.service.table.lock().unwrap_or_else(|e| e.into_inner());
            events.iter().flat_map(|e| table.apply(e)).collect()
        };
        for (signal, d) in signals {
            // Every signal carries the same five values.
            let (s, p, n, m, props) = (
                d.subsystem.as_str(),
                d.devpath.as_str(),
                d.devname.as_str(),
                d.modalias.as_str(),
                &d.properties,
            );
            let sent = match signal {
                Signal::Added => DeviceService::device_added(emitter, s, p, n, m, props).await,
                Signal::Changed => DeviceService::device_changed(emitter, s, p, n, m, props).await,
                Signal::Removed => DeviceService::device_removed(emitter, s, p, n, m, props).await,
            };
            if let Err(e) = sent {
                log::warn!("cannot announce {}: {e}", d.devpath);
            }
        }
    }
}

/// Runs the daemon until SIGTERM: `source` is already open (see the module's note on order).
pub async fn serve<S: EventSource, M: Modprobe>(
    options: Options,
    mut source: S,
    modprobe: M,
) -> anyhow::Result<()> {
    let mut daemon = Daemon::new(modprobe, options.sysfs.clone());
    if options.coldplug {
        let n = daemon.coldplug().await?;
        log::info!("coldplug: {n} devices in {}", options.sysfs.display());
    }
    // The service lives as long as its connection: `_conn` is held to the end, not dropped.
    let (_conn, emitter) = myelin_api::service::serve(
        options.address.as_deref(),
        BUS_NAME,
        OBJECT_PATH,
        daemon.service(),
    )
    .await?;
    myelin_api::service::ready();
    let terminated = myelin_api::service::terminated();
    tokio::pin!(terminated);
    loop {
        tokio::select! {
            stop = &mut terminated => {
                stop?;
                return Ok(());
            }
            batch = source.next_batch() => match batch {
                Ok(events) => daemon.handle(&events, &emitter).await,
                Err(SourceError::Overflow) => {
                    log::warn!("uevents were lost: walking {} again", options.sysfs.display());
                    daemon.coldplug().await?;
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> Uevent {
        Uevent::parse(msg.replace('|', "\0").as_bytes()).expect("valid test event")
    }

    #[test]
    fn the_table_follows_add_change_move_remove() {
        let mut t = Table::default();
        let add = t.apply(&ev(
            "add@/devices/u/ttyUSB0/tty/ttyUSB0|SUBSYSTEM=tty|DEVNAME=ttyUSB0|MAJOR=188|SEQNUM=7|",
        ));
        assert_eq!(add.len(), 1);
        assert_eq!(add[0].0, Signal::Added);
        let d = &add[0].1;
        assert_eq!(
            (
                d.subsystem.as_str(),
                d.devname.as_str(),
                d.modalias.as_str()
            ),
            ("tty", "ttyUSB0", "")
        );
        assert_eq!(d.property("MAJOR"), Some("188"));
        // The fields are not repeated among the properties.
        assert_eq!(d.property("DEVNAME"), None);
        assert_eq!(d.property("ACTION"), None);

        t.apply(&ev(
            "add@/devices/u/1-1:1.0|SUBSYSTEM=usb|MODALIAS=usb:v0403p6001|",
        ));
        t.apply(&ev(
            "bind@/devices/u/1-1:1.0|SUBSYSTEM=usb|DRIVER=ftdi_sio|",
        ));
        let bound: Vec<_> = t.devices().filter(|d| d.subsystem == "usb").collect();
        assert_eq!(bound[0].property("DRIVER"), Some("ftdi_sio"));

        let moved = t.apply(&ev(
            "move@/devices/v/net/wlan1|SUBSYSTEM=net|DEVPATH_OLD=/devices/u/1-1:1.0|",
        ));
        assert_eq!(
            moved
                .iter()
                .map(|(s, d)| (*s, d.devpath.as_str()))
                .collect::<Vec<_>>(),
            [
                (Signal::Removed, "/devices/u/1-1:1.0"),
                (Signal::Added, "/devices/v/net/wlan1")
            ]
        );

        let gone = t.apply(&ev("remove@/devices/u/ttyUSB0/tty/ttyUSB0|SUBSYSTEM=tty|"));
        // What the device was, not what the remove event says.
        assert_eq!(gone[0].1.devname, "ttyUSB0");
        assert_eq!(
            t.devices().map(|d| d.devpath.as_str()).collect::<Vec<_>>(),
            ["/devices/v/net/wlan1"]
        );
    }
}
