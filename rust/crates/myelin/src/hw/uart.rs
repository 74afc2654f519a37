//! UARTs through termios (`/dev/ttyS1`, `/dev/ttyAMA0`, `/dev/ttyUSB0`), with serialport for I/O.
//!
//! A port is named `ttyS1` or `/dev/ttyS1`. Opening it puts the line in raw mode with the
//! [`Config`]'s baud rate and framing (`"115200 8N1"` parses as one), and takes it exclusively
//! (`TIOCEXCL` and an exclusive `flock`): a second opener gets [`Error::Busy`].
//!
//! Reads are blocking with a deadline ([`Uart::read`], [`Uart::read_exact`]), or async on tokio
//! ([`Uart::into_async`], feature `tokio`, which gives a `tokio::io::AsyncRead + AsyncWrite`).
//! [`Uart`] also implements `std::io::{Read, Write}` and embedded-io's `Read`, `Write` and
//! `ReadReady`, the serial traits embedded-hal 1.0 drivers take.

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serialport::{ClearBuffer, SerialPort, TTYPort};

/// A serial port: what errors and enumerations name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Kernel name, e.g. `ttyS1`.
    pub name: String,
    /// Device, e.g. `/dev/ttyS1`.
    pub path: PathBuf,
    /// The driver behind it, e.g. `serial8250`, `uart-pl011`, `ftdi_sio`; empty if unknown.
    pub driver: String,
    /// Whether the kernel console is on it (applications should leave it alone).
    pub console: bool,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

/// Parity bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parity {
    /// None.
    #[default]
    None,
    /// Odd.
    Odd,
    /// Even.
    Even,
}

/// Flow control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowControl {
    /// None.
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// Baud rate and framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bits per second.
    pub baud: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Flow control.
    pub flow: FlowControl,
}

impl Config {
    /// `baud` 8N1, no flow control.
    pub fn new(baud: u32) -> Config {
        Config {
            baud,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow: FlowControl::None,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new(115_200)
    }
}

/// Why a configuration string does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad UART configuration {text:?}: {reason} (expected e.g. \"115200 8N1\", \"9600 7E2 rtscts\")"
)]
pub struct ConfigError {
    /// As given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Config {
    type Err = ConfigError;

    /// `BAUD [FRAMING] [FLOW]`: framing is data bits (5-8), parity (N, O, E), stop bits (1, 2),
    /// e.g. `8N1`; flow is `none`, `xonxoff` or `rtscts`.
    fn from_str(s: &str) -> Result<Config, ConfigError> {
        let bad = |reason: String| ConfigError {
            text: s.to_string(),
            reason,
        };
        let mut words = s.split_whitespace();
        let baud = words.next().ok_or_else(|| bad("empty".into()))?;
        let baud: u32 = baud
            .parse()
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| bad(format!("baud rate {baud:?} is not a positive number")))?;
        let mut c = Config::new(baud);
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "none" => c.flow = FlowControl::None,
                "xonxoff" => c.flow = FlowControl::Software,
                "rtscts" => c.flow = FlowControl::Hardware,
                _ => {
                    let b = w.as_bytes();
                    if b.len() != 3 || !b[0].is_ascii_digit() {
                        return Err(bad(format!(
                            "{w:?} is neither a framing (like 8N1) nor a flow control (none, \
                             xonxoff, rtscts)"
                        )));
                    }
                    c.data_bits = match b[0] {
                        b'5'..=b'8' => b[0] - b'0',
                        _ => return Err(bad(format!("data bits {:?} not 5-8", b[0] as char))),
                    };
                    c.parity = match b[1].to_ascii_uppercase() {
                        b'N' => Parity::None,
                        b'O' => Parity::Odd,
                        b'E' => Parity::Even,
                        _ => return Err(bad(format!("parity {:?} not N, O or E", b[1] as char))),
                    };
                    c.stop_bits = match b[2] {
                        b'1' => 1,
                        b'2' => 2,
                        _ => return Err(bad(format!("stop bits {:?} not 1 or 2", b[2] as char))),
                    };
                }
            }
        }
        Ok(c)
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.parity {
            Parity::None => 'N',
            Parity::Odd => 'O',
            Parity::Even => 'E',
        };
        write!(f, "{} {}{}{}", self.baud, self.data_bits, p, self.stop_bits)?;
        match self.flow {
            FlowControl::None => Ok(()),
            FlowControl::Software => write!(f, " xonxoff"),
            FlowControl::Hardware => write!(f, " rtscts"),
        }
    }
}

/// What the kernel needs for these to appear.
const PORTS_NEED: &str =
    "a UART needs its driver and, on a SoC, its node enabled in the device tree";

/// A UART error; each names the port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The port does not exist.
    #[error(
        "no serial port {port} (ports: {})",
        super::existing(available, PORTS_NEED)
    )]
    NoSuchPort {
        /// As asked.
        port: String,
        /// The ports there are.
        available: Vec<String>,
    },
    /// Another process has the port.
    #[error("{port} is busy: another program has it open ({detail})")]
    Busy {
        /// The port.
        port: String,
        /// What the kernel said.
        detail: String,
    },
    /// The port could not be opened or configured.
    #[error("{port}: cannot open with {config}: {detail}")]
    Open {
        /// The port.
        port: String,
        /// The configuration asked for.
        config: Config,
        /// What went wrong.
        detail: String,
    },
    /// Nothing (or not enough) arrived in time.
    #[error("{port}: {got} of {wanted} bytes arrived within {timeout:?}")]
    Timeout {
        /// The port.
        port: String,
        /// Bytes received.
        got: usize,
        /// Bytes wanted.
        wanted: usize,
        /// How long it waited.
        timeout: Duration,
    },
    /// A read or write failed.
    #[error("{port}: {op}: {source}")]
    Io {
        /// The port.
        port: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Error::Timeout { .. } => embedded_io::ErrorKind::TimedOut,
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::TimedOut => embedded_io::ErrorKind::TimedOut,
                io::ErrorKind::Interrupted => embedded_io::ErrorKind::Interrupted,
                io::ErrorKind::PermissionDenied => embedded_io::ErrorKind::PermissionDenied,
                io::ErrorKind::NotFound => embedded_io::ErrorKind::NotFound,
                _ => embedded_io::ErrorKind::Other,
            },
            _ => embedded_io::ErrorKind::Other,
        }
    }
}

/// The serial ports under a sysfs root: ttys backed by a device, minus serial-core ports
/// without a UART behind them (`type` 0: the legacy PC ports the 8250 driver registers blind).
pub(crate) fn ports_in(root: &Path) -> Vec<Port> {
    let class = root.join("sys/class/tty");
    let consoles: Vec<String> = fs::read_to_string(class.join("console/active"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(&class) else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dev = entry.path().join("device");
        if !dev.exists() {
            continue;
        }
        if let Ok(t) = fs::read_to_string(entry.path().join("type")) {
            if t.trim() == "0" {
                continue;
            }
        }
        let driver = fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        out.push(Port {
            console: consoles.contains(&name),
            path: PathBuf::from("/dev").join(&name),
            name,
            driver,
        });
    }
    out.sort_by_key(|p| natural(&p.name));
    out
}

/// Sort key putting ttyS2 before ttyS10.
fn natural(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, n) = name.split_at(name.len() - digits);
    (stem.to_string(), n.parse().unwrap_or(0))
}

/// Every serial port, like Circuits.UART's `enumerate()`.
pub fn ports() -> Vec<Port> {
    ports_in(Path::new("/"))
}

fn find(name: &str) -> Result<Port, Error> {
    let base = name.strip_prefix("/dev/").unwrap_or(name);
    let all = ports();
    if let Some(p) = all.iter().find(|p| p.name == base) {
        return Ok(p.clone());
    }
    // A tty the enumeration does not list (a pty, a port behind a tty the class hides) is
    // still usable when named by its device.
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/dev").join(name)
    };
    if path.exists() {
        return Ok(Port {
            name: base.to_string(),
            path,
            driver: String::new(),
            console: false,
        });
    }
    Err(Error::NoSuchPort {
        port: name.to_string(),
        available: all.iter().map(|p| p.name.clone()).collect(),
    })
}

/// An open serial port.
#[derive(Debug)]
pub struct Uart {
    port: Port,
    tty: TTYPort,
    config: Config,
}

/// How long blocking std/embedded-io reads wait per poll; they loop until data arrives.
const FOREVER: Duration = Duration::from_secs(3600);

impl Uart {
    /// Opens a port with a configuration.
    pub fn open(port: &str, config: &Config) -> Result<Uart, Error> {
        let port = find(port)?;
        let tty = open_tty(&port, config)?;
        Ok(Uart {
            port,
            tty,
            config: *config,
        })
    }

    /// Changes baud rate and framing.
    pub fn configure(&mut self, config: &Config) -> Result<(), Error> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the descriptor stays open for as long as self.tty, which outlives the call.
        let fd = unsafe { BorrowedFd::borrow_raw(self.tty.as_raw_fd()) };
        let mut r = super::termios::configure(fd, config).map_err(|e| e.to_string());
        if let Ok(true) = r {
            r = self
                .tty
                .set_baud_rate(config.baud)
                .map(|_| false)
                .map_err(|e| e.to_string());
        }
        r.map_err(|detail| Error::Open {
            port: self.port.name.clone(),
            config: *config,
            detail,
        })?;
        self.config = *config;
        Ok(())
    }

    /// The port.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes all of `data` (blocking until the kernel took it).
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        self.tty.set_timeout(FOREVER).ok();
        self.tty.write_all(data).map_err(|e| self.io("write", e))
    }

    /// Waits until everything written has left the UART (tcdrain).
    pub fn drain(&mut self) -> Result<(), Error> {
        self.tty.set_timeout(FOREVER).ok();
        self.tty.flush().map_err(|e| self.io("drain", e))
    }

    /// Reads what is there, waiting up to `timeout` for the first byte; 0 if none came.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tty.set_timeout(timeout).ok();
        match self.tty.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(self.io("read", e)),
        }
    }

    /// Fills `buf`, waiting up to `timeout` in all.
    pub fn read_exact(&mut self, buf: &mut [u8], timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = if left.is_zero() {
                0
            } else {
                self.read(&mut buf[got..], left)?
            };
            if n == 0 {
                return Err(Error::Timeout {
                    port: self.port.name.clone(),
                    got,
                    wanted: buf.len(),
                    timeout,
                });
            }
            got += n;
        }
        Ok(())
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> Result<usize, Error> {
        self.tty
            .bytes_to_read()
            .map(|n| n as usize)
            .map_err(|e| self.io("count input", e.into()))
    }

    /// Discards input not read yet and output not sent yet.
    pub fn clear(&self) -> Result<(), Error> {
        self.tty
            .clear(ClearBuffer::All)
            .map_err(|e| self.io("clear", e.into()))
    }

    fn io(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            port: self.port.name.clone(),
            op,
            source,
        }
    }

    /// This port for tokio: `AsyncRead + AsyncWrite`. Must be called within a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn into_async(self) -> Result<AsyncUart, Error> {
        use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
        let Uart { port, tty, config } = self;
        // SAFETY: into_raw_fd hands over the only owner of the descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(tty.into_raw_fd()) };
        let err = |source| Error::Io {
            port: port.name.clone(),
            op: "register with tokio",
            source,
        };
        set_nonblocking(&fd).map_err(err)?;
        // SAFETY: the OwnedFd keeps the descriptor open until the AsyncFd drops it.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| err(e.into_parts().1))?;
        Ok(AsyncUart { fd, port, config })
    }
}

fn open_tty(port: &Port, config: &Config) -> Result<TTYPort, Error> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let open_error = |detail: String| Error::Open {
        port: port.name.clone(),
        config: *config,
        detail,
    };
    let (fd, rate_pending) = super::termios::open(&port.path, config).map_err(|e| match e {
        super::termios::OpenError::Busy(e) => Error::Busy {
            port: port.name.clone(),
            detail: e.to_string(),
        },
        super::termios::OpenError::Other(e) => open_error(e.to_string()),
    })?;
    // SAFETY: into_raw_fd hands over the only owner of the descriptor, already locked.
    let mut tty = unsafe { TTYPort::from_raw_fd(fd.into_raw_fd()) };
    tty.set_timeout(FOREVER)
        .map_err(|e| open_error(e.to_string()))?;
    if rate_pending {
        // Only a non-standard rate needs serialport's termios2.
        tty.set_baud_rate(config.baud)
            .map_err(|e| open_error(e.to_string()))?;
    }
    Ok(tty)
}

impl io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match Uart::read(self, buf, FOREVER) {
                Ok(0) if !buf.is_empty() => continue,
                Ok(n) => return Ok(n),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

impl io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tty.set_timeout(FOREVER).ok();
        self.tty.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tty.set_timeout(FOREVER).ok();
        self.tty.flush()
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Error;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match Uart::read(self, buf, FOREVER)? {
                0 if !buf.is_empty() => continue,
                n => return Ok(n),
            }
        }
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Error> {
        Ok(self.available()? > 0)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.tty.set_timeout(FOREVER).ok();
        self.tty.write(buf).map_err(|e| self.io("write", e))
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.drain()
    }
}

#[cfg(feature = "tokio")]
fn set_nonblocking(fd: &std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an open descriptor, flags read then written back with O_NONBLOCK.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A serial port on tokio: `AsyncRead + AsyncWrite` (use `tokio::io::AsyncReadExt` and friends).
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncUart {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    port: Port,
    config: Config,
}

#[cfg(feature = "tokio")]
impl AsyncUart {
    /// The port.
    pub fn port(&self) -> &Port {
        &self.port
    }
    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncRead for AsyncUart {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        use std::task::Poll;
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(g) => g?,
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            let r = guard.try_io(|fd| {
                // SAFETY: reading into an initialized buffer of the given length.
                let n = unsafe {
                    libc::read(
                        fd.get_ref().as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncWrite for AsyncUart {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        use std::task::Poll;
        loop {
            let mut guard = match self.fd.poll_write_ready(cx) {
                Poll::Ready(g) => g?,
                Poll::Pending => return Poll::Pending,
            };
            let r = guard.try_io(|fd| {
                // SAFETY: writing from a valid slice.
                let n = unsafe {
                    libc::write(fd.get_ref().as_raw_fd(), data.as_ptr().cast(), data.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        // Bytes written are the kernel's; tcdrain would block the runtime for no gain here.
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_and_print() {
        let c: Config = "9600 7E2 rtscts".parse().unwrap();
        assert_eq!(
            c,
            Config {
                baud: 9600,
                data_bits: 7,
                parity: Parity::Even,
                stop_bits: 2,
                flow: FlowControl::Hardware
            }
        );
        assert_eq!(c.to_string(), "9600 7E2 rtscts");
        assert_eq!("115200".parse::<Config>().unwrap(), Config::default());
        assert_eq!(Config::default().to_string(), "115200 8N1");
    }

    #[test]
    fn bad_configurations_name_the_fault() {
        let e = "115200 9N1".parse::<Config>().unwrap_err();
        assert_eq!(e.reason, "data bits '9' not 5-8");
        let e = "fast".parse::<Config>().unwrap_err();
        assert!(e.reason.contains("\"fast\""), "{e}");
        let e = "9600 8X1".parse::<Config>().unwrap_err();
        assert_eq!(e.reason, "parity 'X' not N, O or E");
        let e = "9600 8N3".parse::<Config>().unwrap_err();
        assert_eq!(e.reason, "stop bits '3' not 1 or 2");
        let e = "9600 8N1 cts".parse::<Config>().unwrap_err();
        assert!(e.reason.contains("\"cts\""), "{e}");
        assert!(
            e.to_string().contains("115200 8N1"),
            "says what is expected: {e}"
        );
    }

    #[test]
    fn ports_skip_blind_legacy_ports_and_mark_the_console() {
        let root = tempfile::tempdir().unwrap();
        let class = root.path().join("sys/class/tty");
        let drivers = root.path().join("sys/bus/platform/drivers");
        fs::create_dir_all(drivers.join("serial8250")).unwrap();
        fs::create_dir_all(drivers.join("ftdi_sio")).unwrap();
        for (name, port_type, driver) in [
            ("ttyS0", Some("4"), "serial8250"),
            ("ttyS1", Some("4"), "serial8250"),
            ("ttyS10", Some("4"), "serial8250"),
            ("ttyS3", Some("0"), "serial8250"),
            ("ttyUSB0", None, "ftdi_sio"),
        ] {
            let d = class.join(name);
            fs::create_dir_all(d.join("device")).unwrap();
            std::os::unix::fs::symlink(drivers.join(driver), d.join("device/driver")).unwrap();
            if let Some(t) = port_type {
                fs::write(d.join("type"), format!("{t}\n")).unwrap();
            }
        }
        // Virtual terminals have no device behind them.
        fs::create_dir_all(class.join("tty1")).unwrap();
        fs::create_dir_all(class.join("console")).unwrap();
        fs::write(class.join("console/active"), "tty1 ttyS0\n").unwrap();
        let ports = ports_in(root.path());
        let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ttyS0", "ttyS1", "ttyS10", "ttyUSB0"]);
        assert!(ports[0].console && !ports[1].console);
        assert_eq!(ports[3].driver, "ftdi_sio");
        assert_eq!(ports[1].path, Path::new("/dev/ttyS1"));
    }

    #[test]
    fn a_missing_port_is_named() {
        let e = Uart::open("/dev/ttyMYELIN-none", &Config::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no serial port /dev/ttyMYELIN-none"),
            "{e}"
        );
    }

    #[test]
    fn round_trip_through_a_pty_pair() {
        // A pseudo-terminal stands in for the wire here; the system tests use real UARTs.
        let (mut master, slave) = pty();
        let mut uart = Uart::open(&slave, &"9600 8N1".parse().unwrap()).unwrap();
        uart.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        master.write_all(b"pong!").unwrap();
        let mut got = [0u8; 5];
        uart.read_exact(&mut got, Duration::from_secs(10)).unwrap();
        assert_eq!(&got, b"pong!");
        // Nothing more comes: a short deadline passes with nothing read.
        assert_eq!(uart.read(&mut got, Duration::from_millis(20)).unwrap(), 0);
        let e = uart
            .read_exact(&mut got, Duration::from_millis(20))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Timeout {
                    got: 0,
                    wanted: 5,
                    ..
                }
            ),
            "{e}"
        );
        // Exclusive: a second opener is refused, naming the port.
        let e = Uart::open(&slave, &Config::default()).unwrap_err();
        assert!(matches!(e, Error::Busy { .. }), "{e}");
        assert!(e.to_string().contains("is busy"), "{e}");
    }

    fn pty() -> (fs::File, String) {
        use std::os::fd::FromRawFd;
        // SAFETY: posix_openpt returns a new descriptor we own; the others take it as is.
        unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(fd >= 0);
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let name = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            (fs::File::from_raw_fd(fd), name)
        }
    }
}
