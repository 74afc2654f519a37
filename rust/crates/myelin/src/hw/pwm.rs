//! PWM through sysfs (`/sys/class/pwm/pwmchipN/pwmM`), the kernel's user-space PWM interface.
//!
//! Opening a channel exports it (unless it already is), and dropping a [`Pwm`] that exported
//! its channel unexports it again, which stops the output. Times are whole nanoseconds, as the
//! kernel takes them; a channel whose period or duty cycle the controller cannot produce is
//! refused with [`Error::Refused`] naming the value.
//!
//! On a Raspberry Pi the PWM block appears once `dtoverlay=pwm` or `pwm-2chan` is in
//! config.txt; on a BeagleBone the eHRPWM channels need a device tree overlay that enables them.
//!
//! [`Pwm`] implements embedded-hal's `SetDutyCycle`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A PWM controller: what enumerations list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chip {
    /// N of `pwmchipN`.
    pub number: u32,
    /// How many channels it has.
    pub channels: u32,
    /// The device behind it, e.g. `fe20c000.pwm`; empty if unknown.
    pub device: String,
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pwmchip{}", self.number)
    }
}

/// Output polarity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polarity {
    /// High for the duty cycle.
    #[default]
    Normal,
    /// Low for the duty cycle.
    Inversed,
}

/// What the kernel needs for these to appear.
const CHIPS_NEED: &str =
    "the kernel needs CONFIG_PWM, a PWM driver, and the controller enabled in the device tree";

/// A PWM error; each names the chip and channel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chip does not exist.
    #[error(
        "no PWM chip pwmchip{chip} (chips: {})",
        super::existing(available, CHIPS_NEED)
    )]
    NoSuchChip {
        /// As asked.
        chip: u32,
        /// The chips there are.
        available: Vec<String>,
    },
    /// The chip has fewer channels.
    #[error("pwmchip{chip} has no channel {channel}: its channels are 0 to {}", channels.saturating_sub(1))]
    NoSuchChannel {
        /// The chip.
        chip: u32,
        /// As asked.
        channel: u32,
        /// How many it has.
        channels: u32,
    },
    /// A kernel driver uses the channel.
    #[error("pwmchip{chip} channel {channel} is busy: a kernel driver uses it")]
    Busy {
        /// The chip.
        chip: u32,
        /// The channel.
        channel: u32,
    },
    /// A value that cannot be right.
    #[error("{pwm}: {what}")]
    Invalid {
        /// `pwmchipN/pwmM`.
        pwm: String,
        /// What is wrong.
        what: String,
    },
    /// The controller refused a value.
    #[error("{pwm}: the controller refused {attr} = {value}: {source}")]
    Refused {
        /// `pwmchipN/pwmM`.
        pwm: String,
        /// The attribute.
        attr: &'static str,
        /// The value written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// An attribute could not be read or written.
    #[error("{pwm}: {attr}: {source}")]
    Io {
        /// `pwmchipN/pwmM` (or the chip).
        pwm: String,
        /// The attribute.
        attr: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl embedded_hal::pwm::Error for Error {
    fn kind(&self) -> embedded_hal::pwm::ErrorKind {
        embedded_hal::pwm::ErrorKind::Other
    }
}

pub(crate) fn chips_in(root: &Path) -> Vec<Chip> {
    let class = root.join("sys/class/pwm");
    let mut out: Vec<Chip> = fs::read_dir(&class)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let number = name.strip_prefix("pwmchip")?.parse().ok()?;
                    let channels = fs::read_to_string(e.path().join("npwm"))
                        .ok()?
                        .trim()
                        .parse()
                        .ok()?;
                    let device = fs::read_link(e.path().join("device"))
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_default();
                    Some(Chip {
                        number,
                        channels,
                        device,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|c| c.number);
    out
}

/// Every PWM chip.
pub fn chips() -> Vec<Chip> {
    chips_in(Path::new("/"))
}

/// The order to write period and duty cycle in so that the kernel, which refuses a duty cycle
/// longer than the period at every step, accepts both: shrinking the period, the duty cycle
/// first; growing it, the period first.
fn write_order(current_period: u64, period: u64) -> [&'static str; 2] {
    if period < current_period {
        ["duty_cycle", "period"]
    } else {
        ["period", "duty_cycle"]
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One PWM channel.
#[derive(Debug)]
pub struct Pwm {
    dir: PathBuf,
    chip_dir: PathBuf,
    name: String,
    channel: u32,
    exported: bool,
}

impl Pwm {
    /// Opens channel `channel` of `pwmchip{chip}`, exporting it if needed.
    pub fn open(chip: u32, channel: u32) -> Result<Pwm, Error> {
        Pwm::open_in(Path::new("/"), chip, channel)
    }

    pub(crate) fn open_in(root: &Path, chip: u32, channel: u32) -> Result<Pwm, Error> {
        let chips = chips_in(root);
        let Some(c) = chips.iter().find(|c| c.number == chip) else {
            return Err(Error::NoSuchChip {
                chip,
                available: chips.iter().map(Chip::to_string).collect(),
            });
        };
        if channel >= c.channels {
            return Err(Error::NoSuchChannel {
                chip,
                channel,
                channels: c.channels,
            });
        }
        let chip_dir = root.join(format!("sys/class/pwm/pwmchip{chip}"));
        let dir = chip_dir.join(format!("pwm{channel}"));
        let name = format!("pwmchip{chip}/pwm{channel}");
        let mut pwm = Pwm {
            dir,
            chip_dir,
            name,
            channel,
            exported: false,
        };
        if !pwm.dir.exists() {
            fs::write(pwm.chip_dir.join("export"), channel.to_string()).map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    Error::Busy { chip, channel }
                } else {
                    Error::Io {
                        pwm: format!("pwmchip{chip}"),
                        attr: "export",
                        source: e,
                    }
                }
            })?;
            pwm.exported = true;
        }
        Ok(pwm)
    }

    /// Keeps the channel exported (and running) after this value is dropped.
    pub fn keep_on_drop(&mut self) {
        self.exported = false;
    }

    fn read_u64(&self, attr: &'static str) -> Result<u64, Error> {
        let text =
            fs::read_to_string(self.dir.join(attr)).map_err(|source| self.io(attr, source))?;
        text.trim().parse().map_err(|_| Error::Invalid {
            pwm: self.name.clone(),
            what: format!("{attr} reads {:?}, not a number", text.trim()),
        })
    }

    fn write(&self, attr: &'static str, value: &str) -> Result<(), Error> {
        fs::write(self.dir.join(attr), value).map_err(|source| {
            if source.raw_os_error() == Some(libc::EINVAL)
                || source.raw_os_error() == Some(libc::ERANGE)
            {
                Error::Refused {
                    pwm: self.name.clone(),
                    attr,
                    value: value.to_string(),
                    source,
                }
            } else {
                self.io(attr, source)
            }
        })
    }

    fn io(&self, attr: &'static str, source: io::Error) -> Error {
        Error::Io {
            pwm: self.name.clone(),
            attr,
            source,
        }
    }

    /// The period.
    pub fn period(&self) -> Result<Duration, Error> {
        self.read_u64("period").map(Duration::from_nanos)
    }

    /// The duty cycle (time active per period).
    pub fn duty_cycle(&self) -> Result<Duration, Error> {
        self.read_u64("duty_cycle").map(Duration::from_nanos)
    }

    /// Sets period and duty cycle together, in the order the kernel accepts.
    pub fn set(&mut self, period: Duration, duty: Duration) -> Result<(), Error> {
        let (p, d) = (nanos(period), nanos(duty));
        if p == 0 {
            return Err(Error::Invalid {
                pwm: self.name.clone(),
                what: "a period of 0 ns".into(),
            });
        }
        if d > p {
            return Err(Error::Invalid {
                pwm: self.name.clone(),
                what: format!("duty cycle {duty:?} is longer than the period {period:?}"),
            });
        }
        let current = self.read_u64("period")?;
        for attr in write_order(current, p) {
            let v = if attr == "period" { p } else { d };
            self.write(attr, &v.to_string())?;
        }
        Ok(())
    }

    /// Sets the frequency, keeping the duty cycle's fraction of the period.
    pub fn set_frequency(&mut self, hz: f64) -> Result<(), Error> {
        if !(hz.is_finite() && hz > 0.0) {
            return Err(Error::Invalid {
                pwm: self.name.clone(),
                what: format!("frequency {hz} Hz"),
            });
        }
        let fraction = self.duty_fraction()?;
        let period = Duration::from_secs_f64(1.0 / hz);
        self.set(period, period.mul_f64(fraction))
    }

    /// Sets the duty cycle as a fraction (0.0 to 1.0) of the period.
    pub fn set_duty_fraction(&mut self, fraction: f64) -> Result<(), Error> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::Invalid {
                pwm: self.name.clone(),
                what: format!("duty fraction {fraction} is not within 0.0..=1.0"),
            });
        }
        let period = self.period()?;
        self.set(period, period.mul_f64(fraction))
    }

    /// The duty cycle as a fraction of the period (0 when the period is 0).
    pub fn duty_fraction(&self) -> Result<f64, Error> {
        let p = self.read_u64("period")?;
        let d = self.read_u64("duty_cycle")?;
        Ok(if p == 0 { 0.0 } else { d as f64 / p as f64 })
    }

    /// Sets the polarity (most controllers take it only while disabled).
    pub fn set_polarity(&mut self, polarity: Polarity) -> Result<(), Error> {
        self.write(
            "polarity",
            match polarity {
                Polarity::Normal => "normal",
                Polarity::Inversed => "inversed",
            },
        )
    }

    /// Starts the output.
    pub fn enable(&mut self) -> Result<(), Error> {
        self.write("enable", "1")
    }

    /// Stops the output.
    pub fn disable(&mut self) -> Result<(), Error> {
        self.write("enable", "0")
    }

    /// Whether the output runs.
    pub fn is_enabled(&self) -> Result<bool, Error> {
        self.read_u64("enable").map(|v| v != 0)
    }
}

impl Drop for Pwm {
    fn drop(&mut self) {
        if self.exported {
            let _ = fs::write(self.chip_dir.join("unexport"), self.channel.to_string());
        }
    }
}

impl embedded_hal::pwm::ErrorType for Pwm {
    type Error = Error;
}

impl embedded_hal::pwm::SetDutyCycle for Pwm {
    fn max_duty_cycle(&self) -> u16 {
        u16::MAX
    }
    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Error> {
        self.set_duty_fraction(f64::from(duty) / f64::from(u16::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root: &Path, chip: u32, channels: u32, exported: &[(u32, u64, u64)]) {
        let d = root.join(format!("sys/class/pwm/pwmchip{chip}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("npwm"), format!("{channels}\n")).unwrap();
        for (ch, period, duty) in exported {
            let p = d.join(format!("pwm{ch}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("period"), format!("{period}\n")).unwrap();
            fs::write(p.join("duty_cycle"), format!("{duty}\n")).unwrap();
            fs::write(p.join("enable"), "0\n").unwrap();
        }
    }

    #[test]
    fn shrinking_the_period_writes_the_duty_cycle_first() {
        assert_eq!(write_order(1_000_000, 500_000), ["duty_cycle", "period"]);
        assert_eq!(write_order(1_000_000, 2_000_000), ["period", "duty_cycle"]);
        assert_eq!(write_order(0, 20_000_000), ["period", "duty_cycle"]);
    }

    #[test]
    fn set_period_and_duty() {
        let root = tempfile::tempdir().unwrap();
        fake(root.path(), 0, 2, &[(1, 1_000_000, 250_000)]);
        let mut pwm = Pwm::open_in(root.path(), 0, 1).unwrap();
        pwm.set(Duration::from_micros(20_000), Duration::from_micros(1_500))
            .unwrap();
        assert_eq!(pwm.period().unwrap(), Duration::from_millis(20));
        assert_eq!(pwm.duty_cycle().unwrap(), Duration::from_micros(1500));
        pwm.set_duty_fraction(0.5).unwrap();
        assert_eq!(pwm.duty_cycle().unwrap(), Duration::from_millis(10));
        pwm.set_frequency(1000.0).unwrap();
        assert_eq!(pwm.period().unwrap(), Duration::from_millis(1));
        assert_eq!(pwm.duty_cycle().unwrap(), Duration::from_micros(500));
        pwm.enable().unwrap();
        assert!(pwm.is_enabled().unwrap());
        use embedded_hal::pwm::SetDutyCycle;
        pwm.set_duty_cycle_fully_off().unwrap();
        assert_eq!(pwm.duty_cycle().unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_values_name_the_channel() {
        let root = tempfile::tempdir().unwrap();
        fake(root.path(), 0, 2, &[(0, 1_000_000, 0)]);
        let mut pwm = Pwm::open_in(root.path(), 0, 0).unwrap();
        let e = pwm
            .set(Duration::from_millis(1), Duration::from_millis(2))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pwmchip0/pwm0: duty cycle 2ms is longer than the period 1ms"
        );
        assert!(pwm.set_duty_fraction(1.5).is_err());
        assert!(pwm.set_frequency(0.0).is_err());
        // Nothing was written by the refused calls.
        assert_eq!(pwm.period().unwrap(), Duration::from_millis(1));
        let e = Pwm::open_in(root.path(), 0, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pwmchip0 has no channel 2: its channels are 0 to 1"
        );
        let e = Pwm::open_in(root.path(), 3, 0).unwrap_err();
        assert_eq!(e.to_string(), "no PWM chip pwmchip3 (chips: pwmchip0)");
    }

    #[test]
    fn lists_chips() {
        let root = tempfile::tempdir().unwrap();
        fake(root.path(), 2, 4, &[]);
        fake(root.path(), 0, 2, &[]);
        let chips = chips_in(root.path());
        assert_eq!(
            chips
                .iter()
                .map(|c| (c.number, c.channels))
                .collect::<Vec<_>>(),
            [(0, 2), (2, 4)]
        );
    }
}
