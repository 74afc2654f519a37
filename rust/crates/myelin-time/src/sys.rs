//! The side effects, each behind a small trait: the system clock, the RTC, the time file.
//! The daemon uses the real implementations here; tests use their own.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The system clock (CLOCK_REALTIME).
pub trait Clock {
    /// Seconds since the epoch.
    fn now(&self) -> f64;
    /// Sets it (needs CAP_SYS_TIME).
    fn set(&mut self, t: f64) -> io::Result<()>;
}

/// A battery-backed real-time clock, kept in UTC as Linux does.
pub trait Rtc {
    /// Its time, seconds since the epoch.
    fn read(&mut self) -> io::Result<i64>;
    /// Sets it.
    fn write(&mut self, t: i64) -> io::Result<()>;
}

/// The time file: its mtime is myelin-init's clock floor at the next boot.
pub trait TimeFile {
    /// Creates it if needed and sets its mtime to `t`.
    fn save(&mut self, t: i64) -> io::Result<()>;
}

/// CLOCK_REALTIME through clock_gettime/clock_settime.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    fn set(&mut self, t: f64) -> io::Result<()> {
        let secs = t.floor();
        let ts = nix::sys::time::TimeSpec::new(secs as libc::time_t, ((t - secs) * 1e9) as _);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(io::Error::from)
    }
}

/// `struct rtc_time` of <linux/rtc.h>: the fields of `struct tm`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Seconds, 0-59.
    pub tm_sec: i32,
    /// Minutes, 0-59.
    pub tm_min: i32,
    /// Hours, 0-23.
    pub tm_hour: i32,
    /// Day of the month, 1-31.
    pub tm_mday: i32,
    /// Month, 0-11.
    pub tm_mon: i32,
    /// Years since 1900.
    pub tm_year: i32,
    /// Unused by the kernel.
    pub tm_wday: i32,
    /// Unused by the kernel.
    pub tm_yday: i32,
    /// Unused by the kernel.
    pub tm_isdst: i32,
}

nix::ioctl_read!(
    /// RTC_RD_TIME.
    rtc_rd_time, b'p', 0x09, RtcTime);
nix::ioctl_write_ptr!(
    /// RTC_SET_TIME.
    rtc_set_time, b'p', 0x0a, RtcTime);

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl RtcTime {
    /// The broken-down UTC time of `t`.
    pub fn from_epoch(t: i64) -> RtcTime {
        let (y, m, d) = civil_from_days(t.div_euclid(86_400));
        let s = t.rem_euclid(86_400);
        RtcTime {
            tm_sec: (s % 60) as i32,
            tm_min: (s / 60 % 60) as i32,
            tm_hour: (s / 3600) as i32,
            tm_mday: d as i32,
            tm_mon: (m - 1) as i32,
            tm_year: (y - 1900) as i32,
            ..RtcTime::default()
        }
    }

    /// Seconds since the epoch.
    pub fn to_epoch(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.tm_year) + 1900,
            i64::from(self.tm_mon) + 1,
            i64::from(self.tm_mday),
        );
        days * 86_400
            + i64::from(self.tm_hour) * 3600
            + i64::from(self.tm_min) * 60
            + i64::from(self.tm_sec)
    }
}

/// A Linux RTC character device (`/dev/rtc0`), through the RTC_RD_TIME/RTC_SET_TIME ioctls.
#[derive(Debug)]
pub struct DeviceRtc {
    path: PathBuf,
}

impl DeviceRtc {
    /// The device at `path`, if it exists.
    pub fn open(path: &Path) -> Option<DeviceRtc> {
        path.exists().then(|| DeviceRtc {
            path: path.to_owned(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Rtc for DeviceRtc {
    fn read(&mut self) -> io::Result<i64> {
        use std::os::fd::AsRawFd;
        let f = File::open(&self.path)?;
        let mut tm = RtcTime::default();
        // SAFETY: the fd is open for the call's duration and `tm` is the struct the ioctl fills.
        unsafe { rtc_rd_time(f.as_raw_fd(), &mut tm) }.map_err(io::Error::from)?;
        Ok(tm.to_epoch())
    }

    fn write(&mut self, t: i64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = File::open(&self.path)?;
        let tm = RtcTime::from_epoch(t);
        // SAFETY: the fd is open for the call's duration and `tm` is the struct the ioctl reads.
        unsafe { rtc_set_time(f.as_raw_fd(), &tm) }.map_err(io::Error::from)?;
        Ok(())
    }
}

/// The time file on disk.
#[derive(Debug)]
pub struct DiskTimeFile {
    path: PathBuf,
}

impl DiskTimeFile {
    /// The file at `path`.
    pub fn new(path: PathBuf) -> DiskTimeFile {
        DiskTimeFile { path }
    }
}

impl TimeFile for DiskTimeFile {
    fn save(&mut self, t: i64) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let when = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        f.set_modified(when)?;
        // The mtime is all myelin-init reads; fsync so a power cut right after keeps it.
        f.sync_all()
    }
}

/// The build-time floor: the larger of the file's number and `compiled_in`.
pub fn read_floor(file: Option<&Path>, compiled_in: i64) -> i64 {
    file.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .max(compiled_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_time_round_trips_through_the_calendar() {
        for t in [
            0,
            951_782_400,   // 2000-02-29
            1_700_000_000, // 2023-11-14 22:13:20
            4_102_444_800, // 2100-01-01
            1_709_251_199, // 2024-02-29 23:59:59
        ] {
            assert_eq!(RtcTime::from_epoch(t).to_epoch(), t, "{t}");
        }
        let tm = RtcTime::from_epoch(1_700_000_000);
        assert_eq!(
            (
                tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
            ),
            (123, 10, 14, 22, 13, 20)
        );
    }

    #[test]
    fn the_time_file_gets_the_mtime_and_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("myelin/time");
        let mut f = DiskTimeFile::new(path.clone());
        f.save(1_800_000_123).expect("save");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(
            mtime.duration_since(UNIX_EPOCH).expect("after").as_secs(),
            1_800_000_123
        );
        f.save(1_800_000_500).expect("save again");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(
            mtime.duration_since(UNIX_EPOCH).expect("after").as_secs(),
            1_800_000_500
        );
    }

    #[test]
    fn the_floor_is_the_later_of_file_and_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("build-time");
        std::fs::write(&p, "1800000000\n").expect("write");
        assert_eq!(read_floor(Some(&p), 1_700_000_000), 1_800_000_000);
        assert_eq!(read_floor(Some(&p), 1_900_000_000), 1_900_000_000);
        assert_eq!(read_floor(Some(&dir.path().join("none")), 5), 5);
    }
}
