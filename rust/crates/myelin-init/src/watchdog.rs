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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Instant, SystemClock};

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

/// When to pet.
#[derive(Clone, Debug)]
pub struct PetPolicy {
    interval: Duration,
    grace_until: Instant,
    snooze_until: Instant,
    next_pet: Instant,
    last_pet: Option<Instant>,
    disarmed: bool,
}

impl PetPolicy {
    /// A policy for a watchdog with `timeout`, started at `now`: the first pet is due at once.
    pub fn new(now: Instant, timeout: Duration, grace: Duration) -> PetPolicy {
        PetPolicy {
            interval: (timeout / 2).max(Duration::from_millis(100)),
            grace_until: now.after(grace),
            snooze_until: now,
            next_pet: now,
            last_pet: None,
            disarmed: false,
        }
    }

    /// Whether to pet now, given whether the tree is healthy.
    pub fn due(&self, now: Instant, healthy: bool) -> bool {
        !self.disarmed && now >= self.next_pet && (healthy || self.forced(now))
    }

    fn forced(&self, now: Instant) -> bool {
        now < self.grace_until || now < self.snooze_until
    }

    /// Records a pet.
    pub fn petted(&mut self, now: Instant) {
        self.last_pet = Some(now);
        self.next_pet = now.after(self.interval);
    }

    /// When the loop must wake up for the next pet (health changes wake it anyway).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.disarmed {
            None
        } else if self.next_pet > now {
            Some(self.next_pet)
        } else if self.forced(now) {
            Some(now)
        } else {
            None
        }
    }

    /// Pets unconditionally until `now + d`.
    pub fn snooze(&mut self, now: Instant, d: Duration) {
        self.snooze_until = now.after(d);
    }

    /// No pet ever again (shutdown: the hardware finishes the job if it hangs).
    pub fn disarm(&mut self) {
        self.disarmed = true;
    }

    /// Petting again after a shutdown that deliberately ended in `hang`.
    pub fn rearm(&mut self) {
        self.disarmed = false;
    }

    /// Status for `myelinctl`.
    pub fn status(&self, now: Instant, healthy: bool) -> PolicyStatus {
        PolicyStatus {
            healthy,
            disarmed: self.disarmed,
            last_pet_ms_ago: self.last_pet.map(|t| now.since(t).as_millis() as u64),
            grace_left_ms: self.grace_until.since(now).as_millis() as u64,
            snooze_left_ms: self.snooze_until.since(now).as_millis() as u64,
            interval_ms: self.interval.as_millis() as u64,
        }
    }
}

/// The policy's view, reported over the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Every critical service alive.
    pub healthy: bool,
    /// Shutdown started: no more pets.
    pub disarmed: bool,
    /// Milliseconds since the last pet.
    pub last_pet_ms_ago: Option<u64>,
    /// Remaining initial grace.
    pub grace_left_ms: u64,
    /// Remaining snooze.
    pub snooze_left_ms: u64,
    /// Pet interval.
    pub interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pets_while_healthy_and_during_grace() {
        let t0 = Instant(1000);
        let mut p = PetPolicy::new(t0, Duration::from_secs(10), Duration::from_secs(30));
        // First pet at once, even unhealthy (grace).
        assert!(p.due(t0, false));
        p.petted(t0);
        assert!(!p.due(Instant(5999), true));
        assert_eq!(p.next_deadline(Instant(2000)), Some(Instant(6000)));
        assert!(p.due(Instant(6000), false), "grace forces pets");
        p.petted(Instant(6000));
        // After the grace period, only a healthy tree gets pets.
        let late = Instant(40_000);
        assert!(!p.due(late, false));
        assert_eq!(p.next_deadline(late), None);
        assert!(p.due(late, true));
    }

    #[test]
    fn snooze_and_disarm() {
        let t0 = Instant(0);
        let mut p = PetPolicy::new(t0, Duration::from_secs(4), Duration::ZERO);
        p.petted(t0);
        assert!(!p.due(Instant(2000), false));
        p.snooze(Instant(2000), Duration::from_secs(60));
        assert!(p.due(Instant(2000), false));
        assert!(p.due(Instant(61_999), false));
        assert!(!p.due(Instant(62_000), false));
        p.disarm();
        assert!(!p.due(Instant(62_000), true));
        assert_eq!(p.next_deadline(Instant(62_000)), None);
        let s = p.status(Instant(62_000), true);
        let mut q = p.clone();
        q.rearm();
        assert!(q.due(Instant(62_000), true));
        assert!(s.disarmed);
        assert_eq!(s.interval_ms, 2000);
        assert_eq!(s.last_pet_ms_ago, Some(62_000));
    }

    #[test]
    fn fake_records_pets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        let mut w = FakeWatchdog::open(&path, Some(Duration::from_secs(3))).unwrap();
        w.pet().unwrap();
        w.pet().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "open timeout=3000ms");
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("pet "));
        assert_eq!(w.timeout(), Duration::from_secs(3));
    }
}
