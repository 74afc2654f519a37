//! What the myelin crate adds to an application's binary, for `scripts/bench hw`: built once
//! without features (readiness, watchdog, logs) and once with `hw` (plus every kind of hardware
//! I/O and a TMP102 driver on it), release profile, stripped. The calls only run when asked, so
//! the program links the same code either way it is run.

use myelin::log::{LevelFilter, info};

fn main() {
    myelin::logger::init(LevelFilter::Info);
    let mut watchdog = myelin::notify::Watchdog::from_env();
    if let Some(w) = watchdog.as_mut() {
        let _ = w.pet_if_due();
    }
    let _ = myelin::ready();
    info!("size probe");
    #[cfg(feature = "hw")]
    if std::env::args().len() > 1 {
        if let Err(e) = hardware() {
            myelin::log::error!("{e}");
        }
    }
}

#[cfg(feature = "hw")]
fn hardware() -> Result<(), Box<dyn std::error::Error>> {
    use myelin::hw::{gpio, i2c, pwm, spi, uart};
    let mut led = gpio::Output::open("LED", false)?;
    led.toggle()?;
    let mut button = gpio::Input::with_options(
        "BUTTON",
        &gpio::InputOptions::new().edges(gpio::Edges::Both),
    )?;
    let _ = button.wait_event(std::time::Duration::from_secs(1))?;
    let mut sensor = tmp1x2::Tmp1x2::new(i2c::I2c::open(1)?, tmp1x2::SlaveAddr::default());
    info!("{:?}", sensor.read_temperature());
    let mut spi = spi::Spi::open((0, 0), &spi::Config::new(1_000_000))?;
    spi.transfer_in_place(&mut [0u8; 4])?;
    let mut port = uart::Uart::open("ttyS1", &uart::Config::default())?;
    port.write_all(b"x")?;
    let mut pwm = pwm::Pwm::open(0, 0)?;
    pwm.set_duty_fraction(0.5)?;
    info!("{:?}", myelin::hw::enumerate()?.i2c);
    Ok(())
}
