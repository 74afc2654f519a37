//! Raspberry Pi extras through rppal (feature `rpi`), where the generic interfaces fall short.
//!
//! | call | path |
//! |---|---|
//! | [`output`], [`input`] | the SoC's GPIO registers mapped from `/dev/gpiomem`: a level change is a memory write, no system call (the generic [`super::gpio`] makes one ioctl per change) |
//! | [`soft_pwm`] | a thread of rppal's toggling any GPIO through those registers: PWM on pins without a PWM block (jittery; for LEDs, not servos) |
//! | [`hardware_pwm`] | the Pi's PWM block through sysfs, with rppal's knowledge of which `pwmchip` and channel a Pi model uses (`dtoverlay=pwm` or `pwm-2chan` in config.txt) |
//! | [`model`] | the board's model, from the device tree |
//!
//! Pins are BCM GPIO numbers. A pin used through the registers bypasses the kernel's
//! ownership of GPIO lines: a request through the character device by another program does not
//! see it, so use one path per pin. The pins implement embedded-hal 1.0's digital traits
//! (rppal's `embedded-hal` feature).

use std::time::Duration;

pub use rppal;
use rppal::gpio::{Gpio, InputPin, OutputPin};

/// An error of the Raspberry Pi path, naming the pin or channel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GPIO pin could not be had or driven.
    #[error("GPIO{pin} (through /dev/gpiomem): {source}")]
    Gpio {
        /// BCM GPIO number.
        pin: u8,
        /// rppal's error.
        #[source]
        source: rppal::gpio::Error,
    },
    /// The PWM channel could not be had or set.
    #[error("hardware PWM channel {channel}: {source}")]
    Pwm {
        /// The channel.
        channel: u8,
        /// rppal's error.
        #[source]
        source: rppal::pwm::Error,
    },
    /// The board is not a Raspberry Pi rppal knows.
    #[error("not a known Raspberry Pi: {0}")]
    Model(#[source] rppal::system::Error),
}

fn pin(number: u8) -> Result<rppal::gpio::Pin, Error> {
    let err = |source| Error::Gpio {
        pin: number,
        source,
    };
    Gpio::new().map_err(err)?.get(number).map_err(err)
}

/// The board's model, e.g. "Raspberry Pi 4 B".
pub fn model() -> Result<String, Error> {
    let info = rppal::system::DeviceInfo::new().map_err(Error::Model)?;
    Ok(info.model().to_string())
}

/// A pin as an output at `high`, driven through the GPIO registers.
pub fn output(number: u8, high: bool) -> Result<OutputPin, Error> {
    let p = pin(number)?;
    Ok(if high {
        p.into_output_high()
    } else {
        p.into_output_low()
    })
}

/// A pin as an input, with a pull resistor (`Some(true)` up, `Some(false)` down) or none.
pub fn input(number: u8, pull_up: Option<bool>) -> Result<InputPin, Error> {
    let p = pin(number)?;
    Ok(match pull_up {
        Some(true) => p.into_input_pullup(),
        Some(false) => p.into_input_pulldown(),
        None => p.into_input(),
    })
}

/// Software PWM on any pin: `period`, high for `pulse`.
pub fn soft_pwm(number: u8, period: Duration, pulse: Duration) -> Result<OutputPin, Error> {
    let mut out = output(number, false)?;
    out.set_pwm(period, pulse).map_err(|source| Error::Gpio {
        pin: number,
        source,
    })?;
    Ok(out)
}

/// Hardware PWM channel 0 to 3 (which ones exist depends on the model and the overlay).
pub fn hardware_pwm(channel: u8) -> Result<rppal::pwm::Pwm, Error> {
    let ch = match channel {
        0 => rppal::pwm::Channel::Pwm0,
        1 => rppal::pwm::Channel::Pwm1,
        2 => rppal::pwm::Channel::Pwm2,
        3 => rppal::pwm::Channel::Pwm3,
        _ => {
            return Err(Error::Pwm {
                channel,
                source: rppal::pwm::Error::InvalidChannel,
            });
        }
    };
    rppal::pwm::Pwm::new(ch).map_err(|source| Error::Pwm { channel, source })
}
