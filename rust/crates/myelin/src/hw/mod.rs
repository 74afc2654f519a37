//! Hardware I/O on the kernel's user-space interfaces (feature `hw`), on every board.
//!
//! What Nerves' Circuits libraries give an Elixir application, for Rust, with the embedded-hal
//! 1.0 traits implemented so that existing embedded-hal sensor and display drivers work
//! unchanged. Each call takes one path through the kernel:
//!
//! | kind | module | kernel interface | through | embedded-hal |
//! |---|---|---|---|---|
//! | GPIO | [`gpio`] | GPIO character device `/dev/gpiochipN`, uAPI v2 (line requests, edge events with kernel timestamps, bias, drive, debounce) | gpiocdev | `digital::{OutputPin, StatefulOutputPin, InputPin}` |
//! | I2C | [`i2c`] | `/dev/i2c-N`: `I2C_RDWR` on I2C adapters, SMBus commands on SMBus-only ones | i2cdev | `i2c::I2c` |
//! | SPI | [`spi`] | spidev `/dev/spidevB.C`: `SPI_IOC_MESSAGE`, mode/speed/word ioctls | spidev | `spi::SpiDevice` |
//! | UART | [`uart`] | tty + termios: raw mode, baud, framing, flow control, exclusive open | serialport | embedded-io `Read`, `Write`, `ReadReady` |
//! | PWM | [`pwm`] | sysfs `/sys/class/pwm` | std::fs | `pwm::SetDutyCycle` |
//! | delays | [`Delay`] | `clock_nanosleep` | std::thread::sleep | `delay::DelayNs` |
//! | Raspberry Pi | `rpi` (feature `rpi`) | GPIO registers via `/dev/gpiomem`, software PWM, the Pi's PWM channel map | rppal | rppal's |
//!
//! Enumeration ([`enumerate`], and each module's own: [`gpio::chips`], [`i2c::buses`],
//! [`spi::devices`], [`uart::ports`], [`pwm::chips`]) reads the same interfaces and sysfs;
//! `myelinctl hw` prints it.
//!
//! Every error names what it concerns: the chip and line, the bus and address, the device or
//! port, and what exists instead when the thing asked for does not.
//!
//! The kernel options these need are in every board's kernel configuration
//! (`board/common/linux.fragment`: `GPIO_CDEV`, `I2C_CHARDEV`, `SPI_SPIDEV`, `PWM`; the boards'
//! fragments add their controllers' drivers).

pub mod gpio;
pub mod i2c;
pub mod pwm;
#[cfg(feature = "rpi")]
pub mod rpi;
pub mod spi;
mod termios;
pub mod uart;

use std::time::Duration;

/// What exists, for an error saying that what was asked for does not: `a, b`, or when nothing
/// does, `none;` and what the kernel needs for it to.
pub(crate) fn existing(items: &[String], needs: &str) -> String {
    if items.is_empty() {
        format!("none; {needs}")
    } else {
        items.join(", ")
    }
}

/// Blocking delays for embedded-hal drivers: the calling thread sleeps.
///
/// Linux wakes a sleeping thread up to its timer slack (50 µs by default) late; a driver's
/// "wait at least" delays are always honoured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

/// Every piece of hardware an application can open, like Circuits' `enumerate()` functions.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// GPIO chips and their lines.
    pub gpio: Vec<gpio::ChipInfo>,
    /// I2C buses.
    pub i2c: Vec<i2c::Bus>,
    /// spidev devices.
    pub spi: Vec<spi::Device>,
    /// Serial ports.
    pub uart: Vec<uart::Port>,
    /// PWM chips.
    pub pwm: Vec<pwm::Chip>,
}

/// Lists every GPIO chip and line, I2C bus, SPI device, serial port and PWM chip.
pub fn enumerate() -> Result<Inventory, gpio::Error> {
    Ok(Inventory {
        gpio: gpio::chips()?,
        i2c: i2c::buses(),
        spi: spi::devices(),
        uart: uart::ports(),
        pwm: pwm::chips(),
    })
}
