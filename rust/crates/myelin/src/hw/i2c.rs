//! I2C through `/dev/i2c-N` (the kernel's i2c-dev), with i2cdev.
//!
//! A bus is named by number (`1`), kernel name (`i2c-1`), device (`/dev/i2c-1`) or adapter
//! name (`bcm2835 (i2c@7e804000)`, `SMBus stub driver`). Device addresses are 7-bit.
//!
//! Two kinds of adapters exist, and [`I2c`] drives both:
//!
//! * **I2C adapters** (every SoC's controller): any sequence of reads and writes goes to the
//!   kernel as one `I2C_RDWR` transfer, with repeated starts between its messages.
//! * **SMBus-only adapters** (a PC's SMBus controller, the kernel's `i2c-stub` used by the
//!   tests): a transfer that has the shape of an SMBus command is sent as that command, which
//!   puts the same bytes on the wire: a one-byte write then an n-byte read is "read byte data"
//!   (n = 1), "read word data" (2, low byte first on the wire as in I2C) or "I2C block read"
//!   (3..=32); a write of a register byte and 1, 2 or 3..=32 data bytes is "write byte data",
//!   "write word data" or "I2C block write"; one byte alone is "send/receive byte"; an empty
//!   write is "quick". Anything else fails with [`Error::Unsupported`], naming the bus.
//!
//! [`I2c`] implements embedded-hal's `I2c` trait, so embedded-hal sensor drivers run unchanged
//! on it (the system tests drive the TMP102 driver `tmp1x2` against i2c-stub).

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use embedded_hal::i2c::Operation;
use i2cdev::core::{I2CDevice, I2CMessage, I2CTransfer};
use i2cdev::linux::{LinuxI2CBus, LinuxI2CDevice, LinuxI2CError, LinuxI2CMessage};

/// How an application names a bus.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BusId {
    /// Bus number N of `/dev/i2c-N`.
    Number(u32),
    /// `i2c-N`, `/dev/i2c-N`, or an adapter's name.
    Name(String),
}

impl From<u32> for BusId {
    fn from(n: u32) -> BusId {
        BusId::Number(n)
    }
}

impl From<&str> for BusId {
    fn from(s: &str) -> BusId {
        match s.parse() {
            Ok(n) => BusId::Number(n),
            Err(_) => BusId::Name(s.to_string()),
        }
    }
}

impl From<String> for BusId {
    fn from(s: String) -> BusId {
        BusId::from(s.as_str())
    }
}

impl fmt::Display for BusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusId::Number(n) => write!(f, "i2c-{n}"),
            BusId::Name(s) => write!(f, "{s}"),
        }
    }
}

/// A bus: what errors and enumerations name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bus {
    /// N of `i2c-N`.
    pub number: u32,
    /// The device, `/dev/i2c-N`.
    pub path: PathBuf,
    /// The adapter's name from sysfs, empty if unknown.
    pub name: String,
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i2c-{}", self.number)?;
        if !self.name.is_empty() {
            write!(f, " ({:?})", self.name)?;
        }
        Ok(())
    }
}

/// What an adapter can do (the kernel's `I2C_FUNC_*` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Functions(pub u64);

impl Functions {
    /// Plain I2C transfers (`I2C_RDWR`).
    pub const I2C: u64 = 0x0000_0001;
    /// SMBus quick.
    pub const SMBUS_QUICK: u64 = 0x0001_0000;
    /// SMBus receive byte.
    pub const SMBUS_READ_BYTE: u64 = 0x0002_0000;
    /// SMBus send byte.
    pub const SMBUS_WRITE_BYTE: u64 = 0x0004_0000;
    /// SMBus read byte data.
    pub const SMBUS_READ_BYTE_DATA: u64 = 0x0008_0000;
    /// SMBus write byte data.
    pub const SMBUS_WRITE_BYTE_DATA: u64 = 0x0010_0000;
    /// SMBus read word data.
    pub const SMBUS_READ_WORD_DATA: u64 = 0x0020_0000;
    /// SMBus write word data.
    pub const SMBUS_WRITE_WORD_DATA: u64 = 0x0040_0000;
    /// I2C block read (register, then up to 32 bytes).
    pub const SMBUS_READ_I2C_BLOCK: u64 = 0x0400_0000;
    /// I2C block write (register, then up to 32 bytes).
    pub const SMBUS_WRITE_I2C_BLOCK: u64 = 0x0800_0000;

    /// Whether every bit of `f` is set.
    pub fn has(self, f: u64) -> bool {
        self.0 & f == f
    }

    /// Whether the adapter does plain I2C transfers.
    pub fn is_i2c(self) -> bool {
        self.has(Functions::I2C)
    }
}

impl fmt::Display for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u64, &str); 10] = [
            (Functions::I2C, "i2c"),
            (Functions::SMBUS_QUICK, "quick"),
            (Functions::SMBUS_READ_BYTE, "receive-byte"),
            (Functions::SMBUS_WRITE_BYTE, "send-byte"),
            (Functions::SMBUS_READ_BYTE_DATA, "read-byte"),
            (Functions::SMBUS_WRITE_BYTE_DATA, "write-byte"),
            (Functions::SMBUS_READ_WORD_DATA, "read-word"),
            (Functions::SMBUS_WRITE_WORD_DATA, "write-word"),
            (Functions::SMBUS_READ_I2C_BLOCK, "read-i2c-block"),
            (Functions::SMBUS_WRITE_I2C_BLOCK, "write-i2c-block"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "{}", names.join(" "))
    }
}

/// What the kernel needs for these to appear.
const BUSES_NEED: &str = "the kernel needs CONFIG_I2C_CHARDEV and a bus enabled in the device tree";

/// An I2C error; each names the bus, and the device address where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus does not exist.
    #[error("no I2C bus {bus} (buses: {})", super::existing(available, BUSES_NEED))]
    NoSuchBus {
        /// As asked.
        bus: String,
        /// The buses there are.
        available: Vec<String>,
    },
    /// The bus could not be opened.
    #[error("{bus}: cannot open {}: {source}", bus.path.display())]
    Open {
        /// The bus.
        bus: Bus,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Not a 7-bit address.
    #[error("{bus}: 0x{addr:02x} is not a 7-bit I2C address (0x00-0x7f)")]
    BadAddress {
        /// The bus.
        bus: Bus,
        /// As asked.
        addr: u16,
    },
    /// Nothing acknowledged the address.
    #[error("{bus}: no device answers at 0x{addr:02x}")]
    NoAck {
        /// The bus.
        bus: Bus,
        /// The address.
        addr: u16,
    },
    /// A kernel driver owns the address.
    #[error("{bus}: address 0x{addr:02x} is in use by a kernel driver")]
    AddressBusy {
        /// The bus.
        bus: Bus,
        /// The address.
        addr: u16,
    },
    /// The adapter cannot do this transfer.
    #[error("{bus}: {what}")]
    Unsupported {
        /// The bus.
        bus: Bus,
        /// What it cannot do, and what it can.
        what: String,
    },
    /// A transfer failed.
    #[error("{bus}: {op} at 0x{addr:02x}: {source}")]
    Io {
        /// The bus.
        bus: Bus,
        /// The address.
        addr: u16,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl embedded_hal::i2c::Error for Error {
    fn kind(&self) -> embedded_hal::i2c::ErrorKind {
        use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
        match self {
            Error::NoAck { .. } => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::EAGAIN) => {
                ErrorKind::ArbitrationLoss
            }
            _ => ErrorKind::Other,
        }
    }
}

/// The buses under a sysfs root (`/` on a device): `/sys/class/i2c-adapter/i2c-N/name`.
pub(crate) fn buses_in(root: &Path) -> Vec<Bus> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(root.join("sys/class/i2c-adapter")) else {
        return out;
    };
    for entry in dir.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = file.strip_prefix("i2c-").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let name = fs::read_to_string(entry.path().join("name"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        out.push(Bus {
            number,
            path: PathBuf::from(format!("/dev/i2c-{number}")),
            name,
        });
    }
    out.sort_by_key(|b| b.number);
    out
}

/// Every I2C bus, like Circuits.I2C's `bus_names()`, with the adapters' names.
pub fn buses() -> Vec<Bus> {
    buses_in(Path::new("/"))
}

/// Resolves a bus name against the buses there are.
pub(crate) fn find_in(root: &Path, id: &BusId) -> Result<Bus, Error> {
    let all = buses_in(root);
    let number = match id {
        BusId::Number(n) => Some(*n),
        BusId::Name(s) => s
            .strip_prefix("/dev/")
            .unwrap_or(s)
            .strip_prefix("i2c-")
            .and_then(|n| n.parse().ok()),
    };
    let found = match (number, id) {
        (Some(n), _) => all.iter().find(|b| b.number == n),
        (None, BusId::Name(s)) => all.iter().find(|b| &b.name == s),
        (None, BusId::Number(_)) => None,
    };
    match found {
        Some(b) => Ok(b.clone()),
        None => Err(Error::NoSuchBus {
            bus: id.to_string(),
            available: all.iter().map(Bus::to_string).collect(),
        }),
    }
}

/// One SMBus command: what a transfer becomes on an SMBus-only adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Smbus {
    Quick,
    ReceiveByte,
    SendByte(u8),
    ReadByteData(u8),
    WriteByteData(u8, u8),
    ReadWordData(u8),
    WriteWordData(u8, u16),
    ReadI2cBlock(u8, u8),
    WriteI2cBlock(u8, Vec<u8>),
}

/// The SMBus command that puts the same bytes on the wire as writing `write` then reading
/// `read` bytes, if the adapter has it; else why not.
pub(crate) fn smbus_command(write: &[u8], read: usize, funcs: Functions) -> Result<Smbus, String> {
    let (cmd, need) = match (write, read) {
        ([], 0) => (Smbus::Quick, Functions::SMBUS_QUICK),
        ([], 1) => (Smbus::ReceiveByte, Functions::SMBUS_READ_BYTE),
        ([b], 0) => (Smbus::SendByte(*b), Functions::SMBUS_WRITE_BYTE),
        ([r, v], 0) => (
            Smbus::WriteByteData(*r, *v),
            Functions::SMBUS_WRITE_BYTE_DATA,
        ),
        ([r, lo, hi], 0) => (
            Smbus::WriteWordData(*r, u16::from_le_bytes([*lo, *hi])),
            Functions::SMBUS_WRITE_WORD_DATA,
        ),
        ([r, data @ ..], 0) if data.len() <= 32 => (
            Smbus::WriteI2cBlock(*r, data.to_vec()),
            Functions::SMBUS_WRITE_I2C_BLOCK,
        ),
        ([r], 1) => (Smbus::ReadByteData(*r), Functions::SMBUS_READ_BYTE_DATA),
        ([r], 2) => (Smbus::ReadWordData(*r), Functions::SMBUS_READ_WORD_DATA),
        ([r], 3..=32) => (
            Smbus::ReadI2cBlock(*r, read as u8),
            Functions::SMBUS_READ_I2C_BLOCK,
        ),
        _ => {
            return Err(format!(
                "a {}-byte write then {}-byte read has no SMBus equivalent, and this adapter \
                 is SMBus-only (it can: {funcs})",
                write.len(),
                read
            ));
        }
    };
    if !funcs.has(need) {
        return Err(format!(
            "a {}-byte write then {}-byte read needs SMBus {:?}, which this adapter lacks (it \
             can: {funcs})",
            write.len(),
            read,
            cmd
        ));
    }
    Ok(cmd)
}

/// An open I2C bus.
#[derive(Debug)]
pub struct I2c {
    bus: Bus,
    file: LinuxI2CBus,
    funcs: Functions,
    // SMBus commands need the address bound to a descriptor (I2C_SLAVE); opened on first use.
    smbus: Option<(LinuxI2CDevice, u16)>,
}

/// A device found by [`I2c::detect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detected {
    /// Its address.
    pub addr: u16,
    /// A kernel driver owns it (i2cdetect's `UU`); it was not probed.
    pub in_use: bool,
}

impl I2c {
    /// Opens a bus.
    pub fn open(bus: impl Into<BusId>) -> Result<I2c, Error> {
        let bus = find_in(Path::new("/"), &bus.into())?;
        let file = LinuxI2CBus::new(&bus.path).map_err(|e| Error::Open {
            bus: bus.clone(),
            source: e.into(),
        })?;
        let mut funcs: libc::c_ulong = 0;
        // SAFETY: I2C_FUNCS writes one unsigned long through the pointer; the fd is open.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), I2C_FUNCS, &mut funcs) };
        if rc < 0 {
            return Err(Error::Open {
                bus,
                source: io::Error::last_os_error(),
            });
        }
        Ok(I2c {
            bus,
            file,
            funcs: Functions(funcs as u64),
            smbus: None,
        })
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// What the adapter can do.
    pub fn functions(&self) -> Functions {
        self.funcs
    }

    /// Reads `buf.len()` bytes from the device at `addr`.
    pub fn read(&mut self, addr: u16, buf: &mut [u8]) -> Result<(), Error> {
        self.transfer(addr, &mut [Operation::Read(buf)])
    }

    /// Writes `data` to the device at `addr`.
    pub fn write(&mut self, addr: u16, data: &[u8]) -> Result<(), Error> {
        self.transfer(addr, &mut [Operation::Write(data)])
    }

    /// Writes `data`, then reads `buf.len()` bytes after a repeated start (a register read).
    pub fn write_read(&mut self, addr: u16, data: &[u8], buf: &mut [u8]) -> Result<(), Error> {
        self.transfer(addr, &mut [Operation::Write(data), Operation::Read(buf)])
    }

    /// Runs reads and writes to one device as one transfer: adjacent operations of the same
    /// kind are merged, a repeated start separates the others (embedded-hal's contract).
    pub fn transfer(&mut self, addr: u16, ops: &mut [Operation<'_>]) -> Result<(), Error> {
        if addr > 0x7f {
            return Err(Error::BadAddress {
                bus: self.bus.clone(),
                addr,
            });
        }
        // The common shapes go from the caller's buffers to the kernel without a copy.
        match ops {
            [] => return Ok(()),
            [Operation::Write(w)] => return self.direct(addr, w, &mut []),
            [Operation::Read(r)] => return self.direct(addr, &[], r),
            [Operation::Write(w), Operation::Read(r)] => return self.direct(addr, w, r),
            _ => {}
        }
        let mut groups = group(ops);
        if self.funcs.is_i2c() {
            self.rdwr(addr, &mut groups)?;
        } else {
            let (write, read_len) = match groups.as_slice() {
                [Group::Write(w)] => (w.clone(), 0),
                [Group::Read(r, _)] => (Vec::new(), r.len()),
                [Group::Write(w), Group::Read(r, _)] => (w.clone(), r.len()),
                _ => {
                    return Err(Error::Unsupported {
                        bus: self.bus.clone(),
                        what: format!(
                            "{} alternating reads and writes need plain I2C, and this adapter \
                             is SMBus-only (it can: {})",
                            groups.len(),
                            self.funcs
                        ),
                    });
                }
            };
            let cmd = self.smbus_command(&write, read_len)?;
            match groups.last_mut() {
                Some(Group::Read(buf, _)) => self.smbus(addr, &cmd, buf)?,
                _ => self.smbus(addr, &cmd, &mut [])?,
            }
        }
        scatter(&groups, ops);
        Ok(())
    }

    /// One write, one read, or a write then a read, straight from the caller's buffers.
    fn direct(&mut self, addr: u16, write: &[u8], read: &mut [u8]) -> Result<(), Error> {
        if !self.funcs.is_i2c() {
            let cmd = self.smbus_command(write, read.len())?;
            return self.smbus(addr, &cmd, read);
        }
        let w = LinuxI2CMessage::write(write).with_address(addr);
        let r = if read.is_empty() {
            self.file.transfer(&mut [w])
        } else if write.is_empty() {
            self.file
                .transfer(&mut [LinuxI2CMessage::read(read).with_address(addr)])
        } else {
            self.file
                .transfer(&mut [w, LinuxI2CMessage::read(read).with_address(addr)])
        };
        r.map_err(|e| self.io_error(addr, "transfer", e))?;
        Ok(())
    }

    fn smbus_command(&self, write: &[u8], read: usize) -> Result<Smbus, Error> {
        smbus_command(write, read, self.funcs).map_err(|what| Error::Unsupported {
            bus: self.bus.clone(),
            what,
        })
    }

    fn rdwr(&mut self, addr: u16, groups: &mut [Group]) -> Result<(), Error> {
        let mut msgs: Vec<LinuxI2CMessage<'_>> = groups
            .iter_mut()
            .map(|g| match g {
                Group::Write(w) => LinuxI2CMessage::write(w).with_address(addr),
                Group::Read(r, _) => LinuxI2CMessage::read(r).with_address(addr),
            })
            .collect();
        self.file
            .transfer(&mut msgs)
            .map_err(|e| self.io_error(addr, "transfer", e))?;
        Ok(())
    }

    /// Runs one SMBus command; what it reads lands in `out` (as long as the command reads).
    fn smbus(&mut self, addr: u16, cmd: &Smbus, out: &mut [u8]) -> Result<(), Error> {
        let dev = self.smbus_device(addr)?;
        let r = match *cmd {
            Smbus::Quick => dev.smbus_write_quick(false),
            Smbus::ReceiveByte => dev.smbus_read_byte().map(|b| out[0] = b),
            Smbus::SendByte(b) => dev.smbus_write_byte(b),
            Smbus::ReadByteData(r) => dev.smbus_read_byte_data(r).map(|b| out[0] = b),
            Smbus::WriteByteData(r, v) => dev.smbus_write_byte_data(r, v),
            Smbus::ReadWordData(r) => dev
                .smbus_read_word_data(r)
                .map(|w| out.copy_from_slice(&w.to_le_bytes())),
            Smbus::WriteWordData(r, w) => dev.smbus_write_word_data(r, w),
            Smbus::ReadI2cBlock(r, n) => match dev.smbus_read_i2c_block_data(r, n) {
                Ok(data) if data.len() == out.len() => {
                    out.copy_from_slice(&data);
                    Ok(())
                }
                Ok(data) => {
                    return Err(Error::Io {
                        bus: self.bus.clone(),
                        addr,
                        op: "SMBus I2C block read",
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{} of {n} bytes", data.len()),
                        ),
                    });
                }
                Err(e) => Err(e),
            },
            Smbus::WriteI2cBlock(r, ref data) => dev.smbus_write_i2c_block_data(r, data),
        };
        r.map_err(|e| self.io_error(addr, "SMBus transfer", e))
    }

    fn smbus_device(&mut self, addr: u16) -> Result<&mut LinuxI2CDevice, Error> {
        // The bus is cloned only into an error: this runs on every SMBus transfer.
        let bus = &self.bus;
        let bind_err = |e: LinuxI2CError| match io::Error::from(e) {
            e if e.raw_os_error() == Some(libc::EBUSY) => Error::AddressBusy {
                bus: bus.clone(),
                addr,
            },
            source => Error::Io {
                bus: bus.clone(),
                addr,
                op: "set address",
                source,
            },
        };
        let dev = match self.smbus.take() {
            Some((mut dev, bound)) => {
                if bound != addr {
                    if let Err(e) = dev.set_slave_address(addr) {
                        // The descriptor still points at the old address.
                        self.smbus = Some((dev, bound));
                        return Err(bind_err(e));
                    }
                }
                dev
            }
            None => LinuxI2CDevice::new(&self.bus.path, addr).map_err(bind_err)?,
        };
        let (dev, _) = self.smbus.insert((dev, addr));
        Ok(dev)
    }

    fn io_error(&self, addr: u16, op: &'static str, e: LinuxI2CError) -> Error {
        let source = io::Error::from(e);
        match source.raw_os_error() {
            // What adapters answer when no device acknowledges: ENXIO (most SoC controllers),
            // EREMOTEIO (DesignWare and others), ENODEV (i2c-stub).
            Some(libc::ENXIO | libc::EREMOTEIO | libc::ENODEV) => Error::NoAck {
                bus: self.bus.clone(),
                addr,
            },
            _ => Error::Io {
                bus: self.bus.clone(),
                addr,
                op,
                source,
            },
        }
    }

    /// Probes every regular address (0x08-0x77) the way i2cdetect does: SMBus quick write,
    /// or receive byte where a quick write could corrupt an EEPROM (0x30-0x37, 0x50-0x5f) or
    /// the adapter lacks it. Addresses a kernel driver owns are listed as in use, unprobed.
    ///
    /// Probing writes to devices that do not expect it; do not run it on a bus whose devices
    /// are unknown.
    pub fn detect(&mut self) -> Result<Vec<Detected>, Error> {
        let mut found = Vec::new();
        for addr in 0x08..=0x77u16 {
            let read = (0x30..=0x37).contains(&addr)
                || (0x50..=0x5f).contains(&addr)
                || !self.funcs.has(Functions::SMBUS_QUICK);
            let cmd = if read {
                Smbus::ReceiveByte
            } else {
                Smbus::Quick
            };
            match self.smbus(addr, &cmd, &mut [0u8; 1]) {
                Ok(_) => found.push(Detected {
                    addr,
                    in_use: false,
                }),
                Err(Error::AddressBusy { .. }) => found.push(Detected { addr, in_use: true }),
                Err(Error::NoAck { .. } | Error::Io { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
}

/// `I2C_FUNCS` ioctl request (linux/i2c-dev.h); i2cdev does not expose it.
const I2C_FUNCS: libc::c_ulong = 0x0705;

/// Adjacent operations of one kind, merged: writes concatenated, reads into one buffer (with
/// how many operations it spans).
#[derive(Debug)]
enum Group {
    Write(Vec<u8>),
    Read(Vec<u8>, usize),
}

fn group(ops: &[Operation<'_>]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for op in ops {
        match (op, groups.last_mut()) {
            (Operation::Write(w), Some(Group::Write(buf))) => buf.extend_from_slice(w),
            (Operation::Write(w), _) => groups.push(Group::Write(w.to_vec())),
            (Operation::Read(r), Some(Group::Read(buf, n))) => {
                buf.resize(buf.len() + r.len(), 0);
                *n += 1;
            }
            (Operation::Read(r), _) => groups.push(Group::Read(vec![0; r.len()], 1)),
        }
    }
    groups
}

/// Copies the merged read buffers back into the operations' buffers.
fn scatter(groups: &[Group], ops: &mut [Operation<'_>]) {
    let mut reads = groups.iter().filter_map(|g| match g {
        Group::Read(buf, _) => Some(buf.as_slice()),
        Group::Write(_) => None,
    });
    let mut current: &[u8] = &[];
    let mut prev_read = false;
    for op in ops.iter_mut() {
        match op {
            Operation::Read(r) => {
                if !prev_read {
                    current = reads.next().unwrap_or(&[]);
                }
                let n = r.len().min(current.len());
                r[..n].copy_from_slice(&current[..n]);
                current = &current[n..];
                prev_read = true;
            }
            Operation::Write(_) => prev_read = false,
        }
    }
}

impl embedded_hal::i2c::ErrorType for I2c {
    type Error = Error;
}

impl embedded_hal::i2c::I2c<embedded_hal::i2c::SevenBitAddress> for I2c {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Error> {
        I2c::transfer(self, u16::from(address), operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUB: Functions = Functions(
        Functions::SMBUS_QUICK
            | Functions::SMBUS_READ_BYTE
            | Functions::SMBUS_WRITE_BYTE
            | Functions::SMBUS_READ_BYTE_DATA
            | Functions::SMBUS_WRITE_BYTE_DATA
            | Functions::SMBUS_READ_WORD_DATA
            | Functions::SMBUS_WRITE_WORD_DATA
            | Functions::SMBUS_READ_I2C_BLOCK
            | Functions::SMBUS_WRITE_I2C_BLOCK,
    );

    #[test]
    fn register_transfers_become_smbus_commands() {
        assert_eq!(smbus_command(&[], 0, STUB), Ok(Smbus::Quick));
        assert_eq!(smbus_command(&[], 1, STUB), Ok(Smbus::ReceiveByte));
        assert_eq!(smbus_command(&[7], 0, STUB), Ok(Smbus::SendByte(7)));
        assert_eq!(
            smbus_command(&[1, 9], 0, STUB),
            Ok(Smbus::WriteByteData(1, 9))
        );
        // Low byte first on the wire, in SMBus words as in I2C.
        assert_eq!(
            smbus_command(&[1, 0x34, 0x12], 0, STUB),
            Ok(Smbus::WriteWordData(1, 0x1234))
        );
        assert_eq!(
            smbus_command(&[1, 2, 3, 4], 0, STUB),
            Ok(Smbus::WriteI2cBlock(1, vec![2, 3, 4]))
        );
        assert_eq!(smbus_command(&[0], 1, STUB), Ok(Smbus::ReadByteData(0)));
        assert_eq!(smbus_command(&[0], 2, STUB), Ok(Smbus::ReadWordData(0)));
        assert_eq!(
            smbus_command(&[0], 32, STUB),
            Ok(Smbus::ReadI2cBlock(0, 32))
        );
    }

    #[test]
    fn transfers_without_an_smbus_shape_are_refused_with_a_reason() {
        let e = smbus_command(&[], 4, STUB).unwrap_err();
        assert!(e.contains("0-byte write then 4-byte read"), "{e}");
        assert!(e.contains("read-word"), "lists what the adapter can: {e}");
        assert!(smbus_command(&[0], 33, STUB).is_err());
        assert!(smbus_command(&[0, 1], 2, STUB).is_err());
        let no_block = Functions(STUB.0 & !Functions::SMBUS_READ_I2C_BLOCK);
        let e = smbus_command(&[0], 6, no_block).unwrap_err();
        assert!(e.contains("ReadI2cBlock"), "{e}");
    }

    #[test]
    fn adjacent_operations_merge_and_reads_scatter_back() {
        let (mut a, mut b, mut c) = ([0u8; 2], [0u8; 1], [0u8; 3]);
        let mut ops = [
            Operation::Write(&[1]),
            Operation::Write(&[2, 3]),
            Operation::Read(&mut a),
            Operation::Read(&mut b),
            Operation::Write(&[4]),
            Operation::Read(&mut c),
        ];
        let mut groups = group(&ops);
        assert_eq!(groups.len(), 4);
        assert!(matches!(&groups[0], Group::Write(w) if w == &[1, 2, 3]));
        assert!(matches!(&groups[1], Group::Read(r, 2) if r.len() == 3));
        // What the adapter would have read.
        if let Group::Read(r, _) = &mut groups[1] {
            r.copy_from_slice(&[10, 11, 12]);
        }
        if let Group::Read(r, _) = &mut groups[3] {
            r.copy_from_slice(&[20, 21, 22]);
        }
        scatter(&groups, &mut ops);
        assert_eq!((a, b, c), ([10, 11], [12], [20, 21, 22]));
    }

    fn fake_sysfs(buses: &[(u32, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (n, name) in buses {
            let d = root.path().join(format!("sys/class/i2c-adapter/i2c-{n}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("name"), format!("{name}\n")).unwrap();
        }
        root
    }

    #[test]
    fn buses_by_number_device_or_adapter_name() {
        let root = fake_sysfs(&[(10, "bcm2835 (i2c@7e804000)"), (1, "SMBus stub driver")]);
        let all = buses_in(root.path());
        assert_eq!(
            all.iter().map(|b| b.number).collect::<Vec<_>>(),
            [1, 10],
            "sorted by number"
        );
        for id in [
            BusId::from(1),
            BusId::from("1"),
            "i2c-1".into(),
            "/dev/i2c-1".into(),
            "SMBus stub driver".into(),
        ] {
            let b = find_in(root.path(), &id).unwrap();
            assert_eq!(b.path, Path::new("/dev/i2c-1"), "{id}");
            assert_eq!(b.name, "SMBus stub driver");
        }
    }

    #[test]
    fn a_missing_bus_names_itself_and_the_others() {
        let root = fake_sysfs(&[(1, "SMBus stub driver")]);
        let e = find_in(root.path(), &"i2c-7".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no I2C bus i2c-7 (buses: i2c-1 (\"SMBus stub driver\"))"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = find_in(empty.path(), &BusId::from(0)).unwrap_err();
        assert!(e.to_string().contains("CONFIG_I2C_CHARDEV"), "{e}");
    }
}
