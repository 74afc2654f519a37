//! `myelinctl hw`: the hardware an application can open, as the `myelin` crate's enumeration
//! sees it (GPIO chips and lines, I2C buses, spidev devices, serial ports, PWM chips), and an
//! i2cdetect-style probe of one I2C bus.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use myelin::hw::{self, Inventory, gpio, i2c};
use serde_json::{Value, json};

use crate::Cli;

/// One kind of hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// GPIO chips and lines.
    Gpio,
    /// I2C buses.
    I2c,
    /// spidev devices.
    Spi,
    /// Serial ports.
    Uart,
    /// PWM chips.
    Pwm,
}

/// `myelinctl hw [KIND] [--detect BUS]`.
#[derive(Debug, Args)]
pub struct Command {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Probe the addresses of this I2C bus (number, i2c-N or adapter name) instead; this writes
    /// to devices, as i2cdetect does.
    #[arg(long, value_name = "BUS", conflicts_with = "kind")]
    pub detect: Option<String>,
}

/// Runs `hw`.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    if let Some(bus) = &command.detect {
        let mut i2c = i2c::I2c::open(bus.as_str())?;
        let found = i2c.detect()?;
        if cli.json {
            let list: Vec<Value> = found
                .iter()
                .map(|d| json!({"address": d.addr, "in_use": d.in_use}))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"bus": i2c.bus().to_string(), "devices": list})
            )?;
        } else {
            writeln!(out, "{}", i2c.bus())?;
            for d in &found {
                let note = if d.in_use {
                    "  in use by a kernel driver"
                } else {
                    ""
                };
                writeln!(out, "  0x{:02x}{note}", d.addr)?;
            }
            if found.is_empty() {
                writeln!(out, "  no device answers")?;
            }
        }
        return Ok(0);
    }
    let inventory = hw::enumerate().context("listing GPIO chips")?;
    if cli.json {
        writeln!(out, "{}", to_json(&inventory, command.kind))?;
    } else {
        write!(out, "{}", render(&inventory, command.kind))?;
    }
    Ok(0)
}

fn wanted(only: Option<Kind>, kind: Kind) -> bool {
    only.is_none_or(|k| k == kind)
}

fn bias(b: Option<gpio::Bias>) -> &'static str {
    match b {
        Some(gpio::Bias::PullUp) => "pull-up",
        Some(gpio::Bias::PullDown) => "pull-down",
        Some(gpio::Bias::Disabled) => "bias-disabled",
        None => "",
    }
}

fn edges(e: Option<gpio::Edges>) -> &'static str {
    match e {
        Some(gpio::Edges::Rising) => "rising-edge",
        Some(gpio::Edges::Falling) => "falling-edge",
        Some(gpio::Edges::Both) => "both-edges",
        None => "",
    }
}

fn line_flags(l: &gpio::LineInfo) -> String {
    let mut flags: Vec<&str> = vec![match l.direction {
        gpio::Direction::Input => "input",
        gpio::Direction::Output => "output",
    }];
    flags.extend(
        [bias(l.bias), edges(l.edges)]
            .into_iter()
            .filter(|f| !f.is_empty()),
    );
    if l.active_low {
        flags.push("active-low");
    }
    flags.join(" ")
}

/// The inventory as text, one section per kind.
pub fn render(inv: &Inventory, only: Option<Kind>) -> String {
    let mut s = String::new();
    let none = |s: &mut String| s.push_str("  none\n");
    if wanted(only, Kind::Gpio) {
        s.push_str("GPIO\n");
        for c in &inv.gpio {
            let _ = writeln!(s, "  {} [{}], {} lines", c.name, c.label, c.lines.len());
            for l in &c.lines {
                let name = if l.name.is_empty() { "-" } else { &l.name };
                let used = if l.used {
                    format!("  used by {:?}", l.consumer)
                } else {
                    String::new()
                };
                let _ = writeln!(s, "    {:>3}  {name:<16} {}{used}", l.offset, line_flags(l));
            }
        }
        if inv.gpio.is_empty() {
            none(&mut s);
        }
    }
    if wanted(only, Kind::I2c) {
        s.push_str("I2C\n");
        for b in &inv.i2c {
            let _ = writeln!(s, "  i2c-{:<4} {}", b.number, b.name);
        }
        if inv.i2c.is_empty() {
            none(&mut s);
        }
    }
    if wanted(only, Kind::Spi) {
        s.push_str("SPI\n");
        for d in &inv.spi {
            let _ = writeln!(s, "  {d:<12} {}", d.path.display());
        }
        if inv.spi.is_empty() {
            none(&mut s);
        }
    }
    if wanted(only, Kind::Uart) {
        s.push_str("UART\n");
        for p in &inv.uart {
            let console = if p.console { "  (console)" } else { "" };
            let _ = writeln!(s, "  {:<12} {}{console}", p.name, p.driver);
        }
        if inv.uart.is_empty() {
            none(&mut s);
        }
    }
    if wanted(only, Kind::Pwm) {
        s.push_str("PWM\n");
        for c in &inv.pwm {
            let _ = writeln!(
                s,
                "  {:<12} {} channels  {}",
                c.to_string(),
                c.channels,
                c.device
            );
        }
        if inv.pwm.is_empty() {
            none(&mut s);
        }
    }
    s
}

/// The inventory as JSON: one array per kind.
pub fn to_json(inv: &Inventory, only: Option<Kind>) -> Value {
    let gpio = inv.gpio.iter().map(|c| {
        let lines: Vec<Value> = c
            .lines
            .iter()
            .map(|l| {
                json!({"offset": l.offset, "name": l.name, "used": l.used,
                       "consumer": l.consumer, "flags": line_flags(l)})
            })
            .collect();
        json!({"name": c.name, "label": c.label, "path": c.path, "lines": lines})
    });
    let i2c = inv
        .i2c
        .iter()
        .map(|b| json!({"number": b.number, "name": b.name, "path": b.path}));
    let spi = inv
        .spi
        .iter()
        .map(|d| json!({"bus": d.bus, "cs": d.cs, "path": d.path}));
    let uart = inv
        .uart
        .iter()
        .map(|p| json!({"name": p.name, "path": p.path, "driver": p.driver, "console": p.console}));
    let pwm = inv
        .pwm
        .iter()
        .map(|c| json!({"number": c.number, "channels": c.channels, "device": c.device}));
    let sections: [(Kind, &str, Vec<Value>); 5] = [
        (Kind::Gpio, "gpio", gpio.collect()),
        (Kind::I2c, "i2c", i2c.collect()),
        (Kind::Spi, "spi", spi.collect()),
        (Kind::Uart, "uart", uart.collect()),
        (Kind::Pwm, "pwm", pwm.collect()),
    ];
    Value::Object(
        sections
            .into_iter()
            .filter(|(kind, _, _)| wanted(only, *kind))
            .map(|(_, name, items)| (name.to_string(), Value::Array(items)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn inventory() -> Inventory {
        Inventory {
            gpio: vec![gpio::ChipInfo {
                path: PathBuf::from("/dev/gpiochip0"),
                name: "gpiochip0".into(),
                label: "gpio-sim.0-node0".into(),
                lines: vec![
                    gpio::LineInfo {
                        offset: 0,
                        name: "LED".into(),
                        used: true,
                        consumer: "sensor-node".into(),
                        direction: gpio::Direction::Output,
                        bias: None,
                        edges: None,
                        active_low: false,
                    },
                    gpio::LineInfo {
                        offset: 1,
                        name: String::new(),
                        used: false,
                        consumer: String::new(),
                        direction: gpio::Direction::Input,
                        bias: Some(gpio::Bias::PullUp),
                        edges: Some(gpio::Edges::Both),
                        active_low: false,
                    },
                ],
            }],
            i2c: vec![i2c::Bus {
                number: 1,
                path: PathBuf::from("/dev/i2c-1"),
                name: "SMBus stub driver".into(),
            }],
            spi: vec![],
            uart: vec![hw::uart::Port {
                name: "ttyS0".into(),
                path: PathBuf::from("/dev/ttyS0"),
                driver: "serial8250".into(),
                console: true,
            }],
            pwm: vec![],
        }
    }

    #[test]
    fn text_lists_every_kind() {
        let text = render(&inventory(), None);
        assert_eq!(
            text,
            "GPIO\n  gpiochip0 [gpio-sim.0-node0], 2 lines\n      0  LED              output  used by \"sensor-node\"\n      1  -                input pull-up both-edges\nI2C\n  i2c-1    SMBus stub driver\nSPI\n  none\nUART\n  ttyS0        serial8250  (console)\nPWM\n  none\n"
        );
        assert_eq!(
            render(&inventory(), Some(Kind::I2c)),
            "I2C\n  i2c-1    SMBus stub driver\n"
        );
    }

    #[test]
    fn json_has_one_array_per_kind() {
        let v = to_json(&inventory(), None);
        assert_eq!(v["gpio"][0]["lines"][0]["consumer"], "sensor-node");
        assert_eq!(v["i2c"][0]["name"], "SMBus stub driver");
        assert_eq!(v["uart"][0]["console"], true);
        assert_eq!(v["spi"], json!([]));
        let only = to_json(&inventory(), Some(Kind::Uart));
        assert!(only.get("gpio").is_none());
    }
}
