//! The temperature sensor: a trait the app reads through, and its real implementation, a TMP102
//! (or TMP112) on an I2C bus through the `tmp1x2` embedded-hal driver and myelin's I2C.

use myelin::hw::i2c::I2c;
use tmp1x2::marker::mode::Continuous;
use tmp1x2::{SlaveAddr, Tmp1x2};

/// Something that measures a temperature.
pub trait Sensor: Send {
    /// One measurement in degrees Celsius, unchecked: the app validates it.
    fn read_celsius(&mut self) -> Result<f32, String>;
    /// What it is, for logs and the page (`TMP102 at 0x48 on i2c-1`).
    fn describe(&self) -> String;
}

/// A TMP102 on an I2C bus, in its power-on continuous conversion mode.
pub struct Tmp102 {
    driver: Tmp1x2<I2c, Continuous>,
    name: String,
}

impl Tmp102 {
    /// Opens `bus` and addresses the sensor at `address` (0x48..=0x4b). Fails, naming the bus,
    /// when the bus does not exist; a missing sensor shows at the first read.
    pub fn open(bus: &str, address: u8) -> Result<Tmp102, myelin::hw::i2c::Error> {
        let i2c = I2c::open(bus)?;
        let name = format!("TMP102 at 0x{address:02x} on {}", i2c.bus());
        // The driver takes the address as its A1/A0 pin straps over 0x48.
        let slave = SlaveAddr::Alternative(address & 0b10 != 0, address & 0b01 != 0);
        Ok(Tmp102 {
            driver: Tmp1x2::new(i2c, slave),
            name,
        })
    }
}

impl Sensor for Tmp102 {
    fn read_celsius(&mut self) -> Result<f32, String> {
        self.driver
            .read_temperature()
            .map_err(|tmp1x2::Error::I2C(e)| format!("{}: {e}", self.name))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
