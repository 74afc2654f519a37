//! The myelin crate's side of `scripts/bench hw`, run in the QEMU guest; the other side of each
//! comparison is scripts/bench.d/hw-baseline.c (libgpiod, raw i2c-dev ioctls) or busybox.
//!
//! ```text
//! hw-bench toggle CHIP OFFSET N        N level changes of an output line
//! hw-bench edges CHIP OFFSET PULL N    N edges on an input, each made by writing gpio-sim's
//!                                      pull attribute PULL: time from that write to the
//!                                      event in hand, and from the kernel's timestamp to it
//! hw-bench i2c BUS ADDR N              N register reads (SMBus read byte data)
//! ```
//!
//! Each prints one line of `key=value` fields: `op`, `n`, `seconds`, and for edges the medians
//! `write_to_read_ns` and `irq_to_read_ns`.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use myelin::hw::gpio::{self, Clock, Edges, Input, InputOptions, Output};
use myelin::hw::i2c::I2c;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage(&format!("missing or bad {what}")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "hw-bench: {why}\nusage: hw-bench toggle CHIP OFFSET N | edges CHIP OFFSET PULL N | i2c BUS ADDR N"
    );
    std::process::exit(2)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("toggle") => {
            let chip: String = arg(&args, 2, "CHIP");
            let offset: u32 = arg(&args, 3, "OFFSET");
            let n: u64 = arg(&args, 4, "N");
            let mut out = Output::open((chip, offset), false)?;
            let t0 = Instant::now();
            for i in 0..n {
                out.set(i & 1 == 0)?;
            }
            println!("op=toggle n={n} seconds={:.6}", t0.elapsed().as_secs_f64());
        }
        Some("edges") => {
            let chip: String = arg(&args, 2, "CHIP");
            let offset: u32 = arg(&args, 3, "OFFSET");
            let pull: String = arg(&args, 4, "PULL");
            let n: usize = arg(&args, 5, "N");
            let pull = OpenOptions::new().write(true).open(&pull)?;
            pull.write_at(b"pull-down", 0)?;
            let mut input =
                Input::with_options((chip, offset), &InputOptions::new().edges(Edges::Both))?;
            let (mut total, mut from_irq) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let t0 = Instant::now();
            for i in 0..n {
                let level: &[u8] = if i % 2 == 0 { b"pull-up" } else { b"pull-down" };
                let before = gpio::now(Clock::Monotonic);
                pull.write_at(level, 0)?;
                let e = input
                    .wait_event(Duration::from_secs(10))?
                    .ok_or("no edge within 10 s")?;
                let after = gpio::now(Clock::Monotonic);
                total.push((after - before).as_nanos() as u64);
                from_irq.push(after.saturating_sub(e.timestamp).as_nanos() as u64);
            }
            println!(
                "op=edges n={n} seconds={:.6} write_to_read_ns={} irq_to_read_ns={}",
                t0.elapsed().as_secs_f64(),
                median(&mut total),
                median(&mut from_irq)
            );
        }
        Some("i2c") => {
            let bus: String = arg(&args, 2, "BUS");
            let addr: String = arg(&args, 3, "ADDR");
            let addr = u16::from_str_radix(addr.trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| usage("ADDR is hex, e.g. 0x48"));
            let n: u64 = arg(&args, 4, "N");
            let mut i2c = I2c::open(bus.as_str())?;
            let mut b = [0u8; 1];
            let t0 = Instant::now();
            for _ in 0..n {
                i2c.write_read(addr, &[0], &mut b)?;
            }
            println!("op=i2c n={n} seconds={:.6}", t0.elapsed().as_secs_f64());
        }
        _ => usage("no such operation"),
    }
    Ok(())
}
