//! The hardware watchdog, nerves_heart's job inside PID 1.
//!
//! [`DevWatchdog`] drives a Linux watchdog device (`/dev/watchdog0`): it programs the timeout
//! (`WDIOC_SETTIMEOUT`), reads it back (`WDIOC_GETTIMEOUT`), the identity (`WDIOC_GETSUPPORT`)
//! and why the board last reset (`WDIOC_GETBOOTSTATUS`), and pets by writing a byte. Its
//! descriptor is never closed: with `CONFIG_WATCHDOG_NOWAYOUT` a wedged PID 1 resets the board.
//!
//! [`PetPolicy`] is the pure rule: pet every `timeout / 2`, but only while the supervision loop
//! runs and every critical service is alive, except during the initial grace period and while
//! snoozed. At shutdown ([`PetPolicy::disarm`]) it is petted once more and then never again, so
//! a shutdown that hangs ends in a hardware reset.
//!
//! [`FakeWatchdog`] stands in for the chip in host tests (no watchdog can safely exist on a build
//! machine): it appends `pet <monotonic ms>` lines to a plain file.

pub mod pet_policy;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

pub use pet_policy::PetPolicy;

/// A watchdog that can be petted.
pub trait Watchdog {
    /// Resets the countdown.
    fn pet(&mut self) -> io::Result<()>;
    /// The countdown length.
    fn timeout(&self) -> Duration;
    /// Driver identity.
    fn identity(&self) -> String;
    /// `watchdog` if the last reset was the watchdog's, else `power_on`.
    fn last_boot(&self) -> String;
}

mod ioctl {
    /// `struct watchdog_info`.
    #[repr(C)]
    pub struct WatchdogInfo {
        pub options: u32,
        pub firmware_version: u32,
        pub identity: [u8; 32],
    }
    nix::ioctl_read!(get_support, b'W', 0, WatchdogInfo);
    nix::ioctl_read!(get_bootstatus, b'W', 2, libc::c_int);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, libc::c_int);
}

const WDIOF_SETTIMEOUT: u32 = 0x0080;
const WDIOF_CARDRESET: libc::c_int = 0x0020;

/// A Linux watchdog device.
pub struct DevWatchdog {
    file: ManuallyDrop<File>,
    timeout: Duration,
    identity: String,
    last_boot: String,
}

impl DevWatchdog {
    /// Opens the device (which starts the countdown), programs `timeout` if given and supported.
    pub fn open(path: &Path, timeout: Option<Duration>) -> io::Result<DevWatchdog> {
        let file = OpenOptions::new().write(true).open(path)?;
        let fd = file.as_raw_fd();
        let mut info = ioctl::WatchdogInfo {
            options: 0,
            firmware_version: 0,
            identity: [0; 32],
        };
        // SAFETY: fd is an open watchdog device and `info` has the kernel's layout.
        let have_info = unsafe { ioctl::get_support(fd, &mut info) }.is_ok();
        if let Some(t) = timeout {
            if !have_info || info.options & WDIOF_SETTIMEOUT != 0 {
                let mut secs = t.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
                // SAFETY: as above; the kernel writes back the timeout it chose.
                let _ = unsafe { ioctl::set_timeout(fd, &mut secs) };
            }
        }
        let mut secs: libc::c_int = 0;
        // SAFETY: as above.
        let timeout = match unsafe { ioctl::get_timeout(fd, &mut secs) } {
            Ok(_) if secs > 0 => Duration::from_secs(secs as u64),
            _ => timeout.unwrap_or(Duration::from_secs(10)),
        };
        let mut status: libc::c_int = 0;
        // SAFETY: as above.
        let last_boot = match unsafe { ioctl::get_bootstatus(fd, &mut status) } {
            Ok(_) if status & WDIOF_CARDRESET != 0 => "watchdog",
            _ => "power_on",
        };
        let identity = if have_info {
            let end = info.identity.iter().position(|&b| b == 0).unwrap_or(32);
            String::from_utf8_lossy(&info.identity[..end]).into_owned()
        } else {
            "unknown".into()
        };
        Ok(DevWatchdog {
            file: ManuallyDrop::new(file),
            timeout,
            identity,
            last_boot: last_boot.into(),
        })
    }
}

impl Watchdog for DevWatchdog {
    fn pet(&mut self) -> io::Result<()> {
        (&*self.file).write_all(b"\0")
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn identity(&self) -> String {
        self.identity.clone()
    }
    fn last_boot(&self) -> String {
        self.last_boot.clone()
    }
}

/// Test stand-in: records pets in a file.
pub struct FakeWatchdog {
    path: PathBuf,
    timeout: Duration,
}

impl FakeWatchdog {
    /// Appends to `path`; `timeout` defaults to 10 s.
    pub fn open(path: &Path, timeout: Option<Duration>) -> io::Result<FakeWatchdog> {
        let t = timeout.unwrap_or(Duration::from_secs(10));
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?
            .write_all(format!("open timeout={}ms\n", t.as_millis()).as_bytes())?;
        Ok(FakeWatchdog {
            path: path.to_path_buf(),
            timeout: t,
        })
    }
}

impl Watchdog for FakeWatchdog {
    fn pet(&mut self) -> io::Result<()> {
        let now = SystemClock.now().0;
        OpenOptions::new()
            .append(true)
            .open(&self.path)?
            .write_all(format!("pet {now}\n").as_bytes())
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn identity(&self) -> String {
        "fake".into()
    }
    fn last_boot(&self) -> String {
        "power_on".into()
    }
}
