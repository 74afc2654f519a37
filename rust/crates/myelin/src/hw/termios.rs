//! Opening a tty exclusively and setting its line through POSIX termios.
//!
//! serialport configures lines with Linux's `termios2` ioctls (`TCGETS2`/`TCSETS2`) so that any
//! baud rate works. Sandboxed kernels (gVisor) and some emulated ttys do not implement them and
//! answer `ENOSYS`, although the plain `TCGETS`/`TCSETS` every libc uses work. So the standard
//! rates (50 .. 4000000, the `Bnnn` constants) go through `tcsetattr`; only a rate outside them
//! needs `termios2`, which the caller then asks serialport for.
//!
//! Exclusive access is an exclusive `flock` (which also holds against root, whom `TIOCEXCL`
//! does not stop) plus `TIOCEXCL` where the tty supports it.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::uart::{Config, FlowControl, Parity};

/// Why a tty could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Another process holds the port (EBUSY from `TIOCEXCL`, or our `flock`).
    Busy(io::Error),
    /// Any other failure.
    Other(io::Error),
}

/// Opens `path` read-write without making it the controlling tty, locks it exclusively, puts
/// it in raw mode with `config` and returns it in blocking mode.
///
/// Returns the descriptor and whether the baud rate still has to be set (a non-standard rate).
pub(crate) fn open(path: &Path, config: &Config) -> Result<(OwnedFd, bool), OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => OpenError::Busy(e),
            _ => OpenError::Other(e),
        })?;
    let fd = OwnedFd::from(file);
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => OpenError::Busy(e),
            _ => OpenError::Other(e),
        });
    }
    // SAFETY: TIOCEXCL takes no argument. A tty without it (ENOTTY, ENOSYS) still has the flock.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL) } != 0 {
        log::debug!(
            "{}: no TIOCEXCL ({}); the flock alone keeps it exclusive",
            path.display(),
            io::Error::last_os_error()
        );
    }
    let rate_pending = configure(fd.as_fd(), config).map_err(OpenError::Other)?;
    set_blocking(&fd).map_err(OpenError::Other)?;
    Ok((fd, rate_pending))
}

/// Sets raw mode, framing, flow control and (if standard) the baud rate.
///
/// Returns true if the baud rate is not one termios can express and was left as it was.
pub(crate) fn configure(fd: BorrowedFd<'_>, config: &Config) -> io::Result<bool> {
    let raw = fd.as_raw_fd();
    let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the struct on success, which is checked before it is read.
    if unsafe { libc::tcgetattr(raw, t.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful tcgetattr above.
    let mut t = unsafe { t.assume_init() };
    // SAFETY: cfmakeraw only writes fields of the struct.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_cflag |= libc::CREAD | libc::CLOCAL;
    t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CSTOPB | libc::CRTSCTS);
    t.c_cflag |= match config.data_bits {
        5 => libc::CS5,
        6 => libc::CS6,
        7 => libc::CS7,
        _ => libc::CS8,
    };
    match config.parity {
        Parity::None => {}
        Parity::Even => t.c_cflag |= libc::PARENB,
        Parity::Odd => t.c_cflag |= libc::PARENB | libc::PARODD,
    }
    if config.stop_bits == 2 {
        t.c_cflag |= libc::CSTOPB;
    }
    t.c_iflag &= !(libc::IXON | libc::IXOFF | libc::IXANY);
    match config.flow {
        FlowControl::None => {}
        FlowControl::Software => t.c_iflag |= libc::IXON | libc::IXOFF,
        FlowControl::Hardware => t.c_cflag |= libc::CRTSCTS,
    }
    let speed = speed_constant(config.baud);
    if let Some(speed) = speed {
        // SAFETY: both only write the speed fields of the struct.
        unsafe {
            libc::cfsetispeed(&mut t, speed);
            libc::cfsetospeed(&mut t, speed);
        }
    }
    // SAFETY: tcsetattr reads the struct we own.
    if unsafe { libc::tcsetattr(raw, libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(speed.is_none())
}

/// The termios constant for a standard baud rate.
fn speed_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        50 => libc::B50,
        75 => libc::B75,
        110 => libc::B110,
        134 => libc::B134,
        150 => libc::B150,
        200 => libc::B200,
        300 => libc::B300,
        600 => libc::B600,
        1200 => libc::B1200,
        1800 => libc::B1800,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        576000 => libc::B576000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1152000 => libc::B1152000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        2500000 => libc::B2500000,
        3000000 => libc::B3000000,
        3500000 => libc::B3500000,
        4000000 => libc::B4000000,
        _ => return None,
    })
}

fn set_blocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor, flags read then written back without O_NONBLOCK.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
