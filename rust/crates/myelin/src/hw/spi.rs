//! SPI through spidev (`/dev/spidevB.C`, the kernel's generic SPI user-space driver), with the
//! spidev crate.
//!
//! A device is bus B, chip select C: `(0, 1)`, `"spidev0.1"` or `"/dev/spidev0.1"`. The kernel
//! drives the chip select: it is asserted for one whole [`Spi::transfer`] or embedded-hal
//! transaction and released after it, so [`Spi`] implements embedded-hal's `SpiDevice` (the
//! trait sensor and display drivers take). A device tree node with `compatible = "spidev"`-like
//! binding (on a Raspberry Pi: `dtparam=spi=on`) makes the device appear.
//!
//! One transaction is one `SPI_IOC_MESSAGE`: its total size is bounded by spidev's `bufsiz`
//! module parameter (4096 bytes by default).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use embedded_hal::spi::Operation;
use spidev::{SpiModeFlags, Spidev, SpidevOptions, SpidevTransfer};

/// How an application names an SPI device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DeviceId {
    /// Bus and chip select.
    BusCs(u32, u32),
    /// `spidevB.C` or `/dev/spidevB.C`.
    Name(String),
}

impl From<(u32, u32)> for DeviceId {
    fn from((bus, cs): (u32, u32)) -> DeviceId {
        DeviceId::BusCs(bus, cs)
    }
}

impl From<&str> for DeviceId {
    fn from(s: &str) -> DeviceId {
        DeviceId::Name(s.to_string())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::BusCs(b, c) => write!(f, "spidev{b}.{c}"),
            DeviceId::Name(s) => write!(f, "{s}"),
        }
    }
}

/// An spidev device: what errors and enumerations name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The bus.
    pub bus: u32,
    /// The chip select.
    pub cs: u32,
    /// The device, `/dev/spidevB.C`.
    pub path: PathBuf,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spidev{}.{}", self.bus, self.cs)
    }
}

/// Clock polarity and phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// CPOL 0, CPHA 0.
    #[default]
    Mode0,
    /// CPOL 0, CPHA 1.
    Mode1,
    /// CPOL 1, CPHA 0.
    Mode2,
    /// CPOL 1, CPHA 1.
    Mode3,
}

/// How a device is clocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    mode: Mode,
    speed_hz: u32,
    bits_per_word: u8,
    lsb_first: bool,
    cs_high: bool,
}

impl Config {
    /// Mode 0, 8 bits per word, MSB first, chip select active low, at `speed_hz`.
    pub fn new(speed_hz: u32) -> Config {
        Config {
            mode: Mode::Mode0,
            speed_hz,
            bits_per_word: 8,
            lsb_first: false,
            cs_high: false,
        }
    }
    /// Clock polarity and phase.
    pub fn mode(mut self, mode: Mode) -> Config {
        self.mode = mode;
        self
    }
    /// Bits per word (8 for bytes).
    pub fn bits_per_word(mut self, bits: u8) -> Config {
        self.bits_per_word = bits;
        self
    }
    /// Least significant bit first.
    pub fn lsb_first(mut self, yes: bool) -> Config {
        self.lsb_first = yes;
        self
    }
    /// Chip select active high.
    pub fn cs_high(mut self, yes: bool) -> Config {
        self.cs_high = yes;
        self
    }
    /// The clock speed.
    pub fn speed_hz(&self) -> u32 {
        self.speed_hz
    }

    fn flags(&self) -> SpiModeFlags {
        let mut f = match self.mode {
            Mode::Mode0 => SpiModeFlags::SPI_MODE_0,
            Mode::Mode1 => SpiModeFlags::SPI_MODE_1,
            Mode::Mode2 => SpiModeFlags::SPI_MODE_2,
            Mode::Mode3 => SpiModeFlags::SPI_MODE_3,
        };
        if self.cs_high {
            f |= SpiModeFlags::SPI_CS_HIGH;
        }
        f
    }
}

/// What the kernel needs for these to appear.
const DEVICES_NEED: &str =
    "the kernel needs CONFIG_SPI_SPIDEV and an spidev node in the device tree";

/// An SPI error; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device does not exist.
    #[error(
        "no SPI device {device} (devices: {})",
        super::existing(available, DEVICES_NEED)
    )]
    NoSuchDevice {
        /// As asked.
        device: String,
        /// The devices there are.
        available: Vec<String>,
    },
    /// The device could not be opened.
    #[error("{device}: cannot open {}: {source}", device.path.display())]
    Open {
        /// The device.
        device: Device,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The controller refused a setting.
    #[error("{device}: the controller refused {setting}: {source}")]
    Config {
        /// The device.
        device: Device,
        /// The setting, e.g. `mode 3`.
        setting: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Buffers of different lengths for a full-duplex transfer.
    #[error(
        "{device}: a transfer writes and reads the same number of bytes ({write} written, {read} to read)"
    )]
    Lengths {
        /// The device.
        device: Device,
        /// Bytes to write.
        write: usize,
        /// Bytes to read.
        read: usize,
    },
    /// A transfer failed.
    #[error("{device}: transfer of {bytes} bytes: {source}")]
    Io {
        /// The device.
        device: Device,
        /// Total bytes of the transfer.
        bytes: usize,
        /// The cause (EMSGSIZE: more than spidev's bufsiz).
        #[source]
        source: io::Error,
    },
}

impl embedded_hal::spi::Error for Error {
    fn kind(&self) -> embedded_hal::spi::ErrorKind {
        embedded_hal::spi::ErrorKind::Other
    }
}

/// The spidev devices under a sysfs root: `/sys/class/spidev/spidevB.C`.
pub(crate) fn devices_in(root: &Path) -> Vec<Device> {
    let mut out: Vec<Device> = fs::read_dir(root.join("sys/class/spidev"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| parse_name(&e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|d| (d.bus, d.cs));
    out
}

fn parse_name(name: &str) -> Option<Device> {
    let (bus, cs) = name.strip_prefix("spidev")?.split_once('.')?;
    let (bus, cs) = (bus.parse().ok()?, cs.parse().ok()?);
    Some(Device {
        bus,
        cs,
        path: PathBuf::from(format!("/dev/spidev{bus}.{cs}")),
    })
}

/// Every spidev device.
pub fn devices() -> Vec<Device> {
    devices_in(Path::new("/"))
}

pub(crate) fn find_in(root: &Path, id: &DeviceId) -> Result<Device, Error> {
    let all = devices_in(root);
    let wanted = match id {
        DeviceId::BusCs(b, c) => Some((*b, *c)),
        DeviceId::Name(s) => {
            parse_name(s.strip_prefix("/dev/").unwrap_or(s)).map(|d| (d.bus, d.cs))
        }
    };
    wanted
        .and_then(|w| all.iter().find(|d| (d.bus, d.cs) == w).cloned())
        .ok_or_else(|| Error::NoSuchDevice {
            device: id.to_string(),
            available: all.iter().map(Device::to_string).collect(),
        })
}

/// One transfer of a message: bytes out, how many in, and the pause after it.
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    tx: Vec<u8>,
    rx: Option<Vec<u8>>,
    delay_us: u16,
}

/// The spidev transfers of an embedded-hal transaction. A `Transfer` of unequal lengths runs
/// for the longer one, writing zeros after the write buffer (embedded-hal leaves that value to
/// the implementation); a delay becomes the pause after the previous transfer, rounded up to
/// whole microseconds.
fn plan(ops: &[Operation<'_, u8>]) -> (u64, Vec<Segment>) {
    let mut lead_ns = 0u64;
    let mut segs: Vec<Segment> = Vec::new();
    for op in ops {
        match op {
            Operation::Read(r) => segs.push(Segment {
                tx: vec![0; r.len()],
                rx: Some(vec![0; r.len()]),
                delay_us: 0,
            }),
            Operation::Write(w) => segs.push(Segment {
                tx: w.to_vec(),
                rx: None,
                delay_us: 0,
            }),
            Operation::Transfer(r, w) => {
                let n = r.len().max(w.len());
                let mut tx = w.to_vec();
                tx.resize(n, 0);
                segs.push(Segment {
                    tx,
                    rx: Some(vec![0; n]),
                    delay_us: 0,
                });
            }
            Operation::TransferInPlace(b) => segs.push(Segment {
                tx: b.to_vec(),
                rx: Some(vec![0; b.len()]),
                delay_us: 0,
            }),
            Operation::DelayNs(ns) => {
                let us = u64::from(*ns).div_ceil(1000);
                match segs.last_mut() {
                    Some(s) => {
                        s.delay_us = u16::try_from(u64::from(s.delay_us) + us).unwrap_or(u16::MAX)
                    }
                    None => lead_ns += u64::from(*ns),
                }
            }
        }
    }
    (lead_ns, segs)
}

/// An open spidev device.
#[derive(Debug)]
pub struct Spi {
    device: Device,
    dev: Spidev,
    config: Config,
}

impl Spi {
    /// Opens a device and applies `config`.
    pub fn open(id: impl Into<DeviceId>, config: &Config) -> Result<Spi, Error> {
        let device = find_in(Path::new("/"), &id.into())?;
        let dev = Spidev::open(&device.path).map_err(|source| Error::Open {
            device: device.clone(),
            source,
        })?;
        let mut spi = Spi {
            device,
            dev,
            config: config.clone(),
        };
        spi.configure(config)?;
        Ok(spi)
    }

    /// Changes mode, speed, word size or bit order.
    pub fn configure(&mut self, config: &Config) -> Result<(), Error> {
        let steps: [(String, SpidevOptions); 4] = [
            (
                format!(
                    "{:?} (mode flags {:#x})",
                    config.mode,
                    config.flags().bits()
                ),
                SpidevOptions::new().mode(config.flags()).build(),
            ),
            (
                format!("{} Hz", config.speed_hz),
                SpidevOptions::new().max_speed_hz(config.speed_hz).build(),
            ),
            (
                format!("{} bits per word", config.bits_per_word),
                SpidevOptions::new()
                    .bits_per_word(config.bits_per_word)
                    .build(),
            ),
            (
                format!("LSB first = {}", config.lsb_first),
                SpidevOptions::new().lsb_first(config.lsb_first).build(),
            ),
        ];
        // One setting at a time, so that a refusal names the setting at fault.
        for (setting, opts) in steps {
            self.dev.configure(&opts).map_err(|source| Error::Config {
                device: self.device.clone(),
                setting,
                source,
            })?;
        }
        self.config = config.clone();
        Ok(())
    }

    /// The current configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Full duplex: writes `write` while reading as many bytes into `read`.
    pub fn transfer(&mut self, write: &[u8], read: &mut [u8]) -> Result<(), Error> {
        if write.len() != read.len() {
            return Err(Error::Lengths {
                device: self.device.clone(),
                write: write.len(),
                read: read.len(),
            });
        }
        self.transaction(&mut [Operation::Transfer(read, write)])
    }

    /// Full duplex in one buffer: what is read replaces what was written.
    pub fn transfer_in_place(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.transaction(&mut [Operation::TransferInPlace(buf)])
    }

    /// Writes `data`, discarding what comes back.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.transaction(&mut [Operation::Write(data)])
    }

    /// Reads `buf.len()` bytes, writing zeros.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.transaction(&mut [Operation::Read(buf)])
    }

    /// Runs operations as one message, chip select asserted throughout.
    pub fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Error> {
        let (lead_ns, mut segs) = plan(ops);
        if lead_ns > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(lead_ns));
        }
        if segs.is_empty() {
            return Ok(());
        }
        let bytes = segs.iter().map(|s| s.tx.len()).sum();
        {
            let mut xfers: Vec<SpidevTransfer<'_, '_>> = segs
                .iter_mut()
                .map(|s| {
                    let mut t = match &mut s.rx {
                        Some(rx) => SpidevTransfer::read_write(&s.tx, rx),
                        None => SpidevTransfer::write(&s.tx),
                    };
                    t.delay_usecs = s.delay_us;
                    t
                })
                .collect();
            self.dev
                .transfer_multiple(&mut xfers)
                .map_err(|source| Error::Io {
                    device: self.device.clone(),
                    bytes,
                    source,
                })?;
        }
        let mut rx = segs.iter();
        for op in ops.iter_mut() {
            let Some(seg) = (match op {
                Operation::DelayNs(_) => None,
                _ => rx.next(),
            }) else {
                continue;
            };
            let got = seg.rx.as_deref().unwrap_or(&[]);
            match op {
                Operation::Read(r) | Operation::TransferInPlace(r) => r.copy_from_slice(got),
                Operation::Transfer(r, _) => {
                    let n = r.len();
                    r.copy_from_slice(&got[..n]);
                }
                Operation::Write(_) | Operation::DelayNs(_) => {}
            }
        }
        Ok(())
    }
}

impl embedded_hal::spi::ErrorType for Spi {
    type Error = Error;
}

impl embedded_hal::spi::SpiDevice<u8> for Spi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Error> {
        Spi::transaction(self, operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_become_transfers() {
        let (mut a, mut b, mut c) = ([0u8; 2], [0u8; 4], [9u8; 3]);
        let ops = [
            Operation::DelayNs(1500),
            Operation::Write(&[1, 2]),
            Operation::DelayNs(1001),
            Operation::Read(&mut a),
            Operation::Transfer(&mut b, &[7, 8]),
            Operation::TransferInPlace(&mut c),
        ];
        let (lead, segs) = plan(&ops);
        assert_eq!(lead, 1500, "a delay before any transfer is slept");
        assert_eq!(
            segs,
            [
                Segment {
                    tx: vec![1, 2],
                    rx: None,
                    delay_us: 2
                },
                Segment {
                    tx: vec![0, 0],
                    rx: Some(vec![0, 0]),
                    delay_us: 0
                },
                Segment {
                    tx: vec![7, 8, 0, 0],
                    rx: Some(vec![0; 4]),
                    delay_us: 0
                },
                Segment {
                    tx: vec![9, 9, 9],
                    rx: Some(vec![0; 3]),
                    delay_us: 0
                },
            ]
        );
    }

    #[test]
    fn devices_by_bus_and_chip_select() {
        let root = tempfile::tempdir().unwrap();
        for n in ["spidev1.0", "spidev0.1", "spidev0.0", "not-spidev"] {
            fs::create_dir_all(root.path().join("sys/class/spidev").join(n)).unwrap();
        }
        let all = devices_in(root.path());
        assert_eq!(
            all.iter().map(Device::to_string).collect::<Vec<_>>(),
            ["spidev0.0", "spidev0.1", "spidev1.0"]
        );
        for id in [
            DeviceId::from((0, 1)),
            "spidev0.1".into(),
            "/dev/spidev0.1".into(),
        ] {
            assert_eq!(
                find_in(root.path(), &id).unwrap().path,
                Path::new("/dev/spidev0.1")
            );
        }
        let e = find_in(root.path(), &(2, 0).into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no SPI device spidev2.0 (devices: spidev0.0, spidev0.1, spidev1.0)"
        );
    }

    #[test]
    fn mode_flags() {
        assert_eq!(Config::new(1_000_000).flags().bits(), 0);
        assert_eq!(Config::new(1).mode(Mode::Mode3).flags().bits(), 3);
        assert_eq!(
            Config::new(1)
                .mode(Mode::Mode1)
                .cs_high(true)
                .flags()
                .bits(),
            0x05
        );
    }
}
