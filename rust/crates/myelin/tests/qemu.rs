//! The hardware I/O of the `myelin` crate against real kernel drivers: gpio-sim (GPIO chips made
//! through configfs), i2c-stub (an SMBus adapter with a chip at 0x48), and two 16550 UARTs
//! whose wires QEMU's host side joins.
//!
//! These need a kernel that has those drivers, which a build machine's does not: they run in the
//! x86_64 test image under QEMU, as the `hw` scenario of tests/system (built with
//! `cargo test -p myelin --features qemu-tests --test qemu --no-run`, shipped into the image by an
//! overlay, run as root with configfs mounted). The UART pair is named by `MYELIN_TEST_UARTS`
//! (`ttyS1,ttyS2`), and i2cget/i2cset (busybox) cross-check I2C from a second client.
//!
//! Elsewhere every test fails, saying what is missing: nothing is skipped.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use embedded_hal::digital::{InputPin, OutputPin, StatefulOutputPin};
use gpiosim::{Bank, Level};
use myelin::hw::gpio::{self, Edge, Edges, Input, InputOptions, LineId, Output};
use myelin::hw::i2c::{self, I2c};
use myelin::hw::uart::{self, Config, Uart};

/// i2c-stub's adapter name, and the address the test kernel's command line gives its chip.
const STUB: &str = "SMBus stub driver";
const ADDR: u16 = 0x48;
/// Generous bound on waits for events the kernel delivers at once; never a timing assertion.
const WAIT: Duration = Duration::from_secs(10);

/// A gpio-sim chip of 8 lines: line 0 named `name`, line 7 hogged by the kernel as `hog`.
fn sim(name: &str, hog: &str) -> gpiosim::Sim {
    assert!(
        std::path::Path::new("/sys/kernel/config/gpio-sim").is_dir(),
        "gpio-sim's configfs directory is missing: needs CONFIG_GPIO_SIM and configfs mounted \
         on /sys/kernel/config (tests/system/linux-test.fragment)"
    );
    let mut bank = Bank::new(8, format!("{name}-chip"));
    bank.name(0, name)
        .hog(7, hog, gpiosim::Direction::OutputLow);
    gpiosim::builder()
        .with_name(gpiosim::unique_name(name, None))
        .with_bank(&bank)
        .live()
        .unwrap()
}

fn chip_path(s: &gpiosim::Sim) -> String {
    s.chips()[0].dev_path().display().to_string()
}

fn chip_name(s: &gpiosim::Sim) -> String {
    s.chips()[0].chip_name.clone()
}

#[test]
fn gpio_output_is_read_back_through_gpio_sim() {
    let s = sim("myelin-led", "myelin-hog-a");
    let chip = &s.chips()[0];
    let mut led = Output::open("myelin-led", false).unwrap();
    assert_eq!(led.line().offset, 0);
    assert_eq!(led.line().chip.display().to_string(), chip_path(&s));
    assert_eq!(chip.get_level(0).unwrap(), Level::Low);
    led.set(true).unwrap();
    assert_eq!(chip.get_level(0).unwrap(), Level::High);
    led.toggle().unwrap();
    assert_eq!(chip.get_level(0).unwrap(), Level::Low);
    // The embedded-hal traits drive the same line.
    OutputPin::set_high(&mut led).unwrap();
    assert_eq!(chip.get_level(0).unwrap(), Level::High);
    assert!(StatefulOutputPin::is_set_high(&mut led).unwrap());

    // By chip and offset, the chip named by path, kernel name or label.
    let by_path = Output::open((chip_path(&s), 3), true).unwrap();
    assert_eq!(chip.get_level(3).unwrap(), Level::High);
    drop(by_path);
    let name = chip_name(&s);
    let _by_name = Output::open(LineId::from(format!("{name}:4").as_str()), true).unwrap();
    assert_eq!(chip.get_level(4).unwrap(), Level::High);
    let _by_label = Output::open(("myelin-led-chip", 5), true).unwrap();
    assert_eq!(chip.get_level(5).unwrap(), Level::High);

    // The enumeration sees the line and who holds it.
    let chips = gpio::chips().unwrap();
    let info = chips
        .iter()
        .find(|c| c.label == "myelin-led-chip")
        .expect("the simulated chip is listed");
    assert_eq!(info.lines.len(), 8);
    assert!(info.lines[0].used && info.lines[0].name == "myelin-led");
    assert_eq!(info.lines[0].direction, gpio::Direction::Output);
    assert_eq!(info.lines[7].consumer, "myelin-hog-a");
}

#[test]
fn gpio_edges_carry_kernel_timestamps() {
    let s = sim("myelin-button", "myelin-hog-b");
    let chip = &s.chips()[0];
    chip.pulldown(0).unwrap();
    let mut button = Input::with_options(
        "myelin-button",
        &InputOptions::new().edges(Edges::Both).consumer("edge-test"),
    )
    .unwrap();
    assert!(!button.is_high().unwrap());
    assert_eq!(button.try_event().unwrap(), None, "no edge yet");

    let before = gpio::now(gpio::Clock::Monotonic);
    chip.pullup(0).unwrap();
    let rise = button.wait_event(WAIT).unwrap().expect("a rising edge");
    let after = gpio::now(gpio::Clock::Monotonic);
    assert_eq!(rise.edge, Edge::Rising);
    assert_eq!(rise.seqno, 1);
    assert!(
        before <= rise.timestamp && rise.timestamp <= after,
        "the edge's timestamp {:?} is not between {before:?} and {after:?}",
        rise.timestamp
    );
    assert!(InputPin::is_high(&mut button).unwrap());

    chip.pulldown(0).unwrap();
    let fall = button.read_event().unwrap();
    assert_eq!(fall.edge, Edge::Falling);
    assert_eq!(fall.seqno, 2);
    assert!(fall.timestamp > rise.timestamp);
    assert!(InputPin::is_low(&mut button).unwrap());

    // Only rising edges when only those are asked for.
    drop(button);
    let mut rising =
        Input::with_options("myelin-button", &InputOptions::new().edges(Edges::Rising)).unwrap();
    // One edge at a time: gpio-sim raises its simulated interrupt from a work item, and two
    // rises before it runs are one interrupt, as two pulses too close together are on a chip.
    chip.pullup(0).unwrap();
    let first = rising.wait_event(WAIT).unwrap().expect("a rising edge");
    chip.pulldown(0).unwrap();
    chip.pullup(0).unwrap();
    let second = rising
        .wait_event(WAIT)
        .unwrap()
        .expect("a second rising edge");
    // The fall between them was no event: the next one is the second rise.
    assert_eq!((first.edge, first.seqno), (Edge::Rising, 1));
    assert_eq!((second.edge, second.seqno), (Edge::Rising, 2));
    assert_eq!(rising.try_event().unwrap(), None);

    // Without edge detection there are no events, and the error says so.
    let mut plain = Input::open(("myelin-button-chip", 1)).unwrap();
    let e = plain.try_event().unwrap_err();
    assert!(e.to_string().contains("without edge detection"), "{e}");
}

#[test]
fn gpio_edges_on_tokio() {
    let s = sim("myelin-async", "myelin-hog-c");
    let chip = &s.chips()[0];
    chip.pulldown(0).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        rt.block_on(async {
            let input =
                Input::with_options("myelin-async", &InputOptions::new().edges(Edges::Both))
                    .unwrap()
                    .into_async()
                    .unwrap();
            // The edge comes while the task waits for it.
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                chip.pullup(0).unwrap();
            });
            let e = tokio::time::timeout(WAIT, input.next_event())
                .await
                .expect("the edge woke the task")
                .unwrap();
            assert_eq!(e.edge, Edge::Rising);
            assert!(input.is_high().unwrap());
        });
    });
}

#[test]
fn gpio_errors_name_the_chip_and_line() {
    let s = sim("myelin-errors", "myelin-hog-d");
    let name = chip_name(&s);

    let e = Output::open("no-such-line-anywhere", false).unwrap_err();
    assert!(matches!(e, gpio::Error::NoSuchName { .. }), "{e}");
    assert!(
        e.to_string().contains("\"no-such-line-anywhere\"") && e.to_string().contains(&name),
        "names the line and the chips searched: {e}"
    );

    let e = Output::open((name.as_str(), 8), false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{name} [myelin-errors-chip] has no line 8: its lines are 0 to 7")
    );

    let e = Output::open(("gpiochip999", 0), false).unwrap_err();
    assert!(matches!(e, gpio::Error::NoSuchChip { .. }), "{e}");
    assert!(
        e.to_string().contains("gpiochip999") && e.to_string().contains(&name),
        "{e}"
    );

    // A line the kernel holds (a hog), named with its holder.
    let e = Input::open((name.as_str(), 7)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{name} line 7 is busy: in use by \"myelin-hog-d\"")
    );

    // A line this program holds already.
    let _held = Output::with_options(
        "myelin-errors",
        false,
        &gpio::OutputOptions::new().consumer("first-holder"),
    )
    .unwrap();
    let e = Input::open("myelin-errors").unwrap_err();
    assert!(matches!(e, gpio::Error::Busy { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{name} line 0 (\"myelin-errors\") is busy: in use by \"first-holder\"")
    );
}

fn stub_bus() -> i2c::Bus {
    i2c::buses()
        .into_iter()
        .find(|b| b.name == STUB)
        .unwrap_or_else(|| {
            panic!(
                "no i2c-stub adapter (needs CONFIG_I2C_STUB, i2c_stub.chip_addr=0x48); buses: {:?}",
                i2c::buses()
            )
        })
}

/// busybox's i2cget/i2cset on the stub: a second client reading what the crate wrote.
fn i2c_tool(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn i2c_registers_on_i2c_stub() {
    let bus = stub_bus();
    let n = bus.number.to_string();
    let mut i2c = I2c::open(STUB).unwrap();
    assert_eq!(i2c.bus(), &bus);
    assert!(!i2c.functions().is_i2c(), "i2c-stub is SMBus-only");

    // A register byte: written by the crate, read by i2cget, and back.
    i2c.write(ADDR, &[0x10, 0xab]).unwrap();
    assert_eq!(i2c_tool(&["i2cget", "-y", &n, "0x48", "0x10", "b"]), "0xab");
    i2c_tool(&["i2cset", "-y", &n, "0x48", "0x11", "0x5a", "b"]);
    let mut b = [0u8; 1];
    i2c.write_read(ADDR, &[0x11], &mut b).unwrap();
    assert_eq!(b, [0x5a]);

    // A 16-bit register: low byte first on the wire, as SMBus words are.
    i2c.write(ADDR, &[0x20, 0x34, 0x12]).unwrap();
    assert_eq!(
        i2c_tool(&["i2cget", "-y", &n, "0x48", "0x20", "w"]),
        "0x1234"
    );
    let mut w = [0u8; 2];
    i2c.write_read(ADDR, &[0x20], &mut w).unwrap();
    assert_eq!(w, [0x34, 0x12]);

    // A block from a register on: I2C block write and read.
    i2c.write(ADDR, &[0x30, 1, 2, 3, 4, 5]).unwrap();
    let mut block = [0u8; 5];
    i2c.write_read(ADDR, &[0x30], &mut block).unwrap();
    assert_eq!(block, [1, 2, 3, 4, 5]);
    assert_eq!(i2c_tool(&["i2cget", "-y", &n, "0x48", "0x32", "b"]), "0x03");

    // The same through the embedded-hal trait.
    let mut r = [0u8; 1];
    embedded_hal::i2c::I2c::write_read(&mut i2c, ADDR as u8, &[0x10], &mut r).unwrap();
    assert_eq!(r, [0xab]);

    // Probing finds the stub's one chip.
    let found = i2c.detect().unwrap();
    assert_eq!(found.iter().map(|d| d.addr).collect::<Vec<_>>(), [ADDR]);
}

#[test]
fn tmp102_driver_reads_the_stub() {
    let n = stub_bus().number.to_string();
    // The temperature register (pointer 0) as a TMP102 sends it, MSB first: 0x19 0x00 is
    // 25.0 °C; an SMBus word puts the first byte on the wire in its low half.
    i2c_tool(&["i2cset", "-y", &n, "0x48", "0x00", "0x0019", "w"]);
    let i2c = I2c::open(n.as_str()).unwrap();
    let mut sensor = tmp1x2::Tmp1x2::new(i2c, tmp1x2::SlaveAddr::default());
    assert_eq!(sensor.read_temperature().unwrap(), 25.0);
    // -10 °C: 12-bit two's complement 0xF60, sent as 0xF6 0x00.
    i2c_tool(&["i2cset", "-y", &n, "0x48", "0x00", "0x00f6", "w"]);
    assert_eq!(sensor.read_temperature().unwrap(), -10.0);
    // The driver's writes land in the registers a TMP102 has: T_HIGH (pointer 3).
    sensor.set_high_temperature_threshold(80.0).unwrap();
    assert_eq!(
        i2c_tool(&["i2cget", "-y", &n, "0x48", "0x03", "w"]),
        "0x0050"
    );
}

#[test]
fn i2c_errors_name_the_bus() {
    let bus = stub_bus();
    let e = I2c::open("i2c-99").unwrap_err();
    assert!(matches!(e, i2c::Error::NoSuchBus { .. }), "{e}");
    assert!(
        e.to_string().contains("i2c-99") && e.to_string().contains(STUB),
        "names the bus asked for and those there are: {e}"
    );

    let mut i2c = I2c::open(bus.number).unwrap();
    let mut buf = [0u8; 1];
    let e = i2c.write_read(0x50, &[0], &mut buf).unwrap_err();
    assert!(matches!(e, i2c::Error::NoAck { addr: 0x50, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("i2c-{} (\"{STUB}\"): no device answers at 0x50", bus.number)
    );
    use embedded_hal::i2c::Error as _;
    assert!(matches!(
        e.kind(),
        embedded_hal::i2c::ErrorKind::NoAcknowledge(_)
    ));

    let e = i2c.write(0x80, &[0]).unwrap_err();
    assert!(e.to_string().contains("0x80 is not a 7-bit"), "{e}");

    // Five bytes without a register: no SMBus command does that.
    let mut five = [0u8; 5];
    let e = i2c.read(ADDR, &mut five).unwrap_err();
    assert!(matches!(e, i2c::Error::Unsupported { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("i2c-{}", bus.number)),
        "{e}"
    );
}

fn uart_pair() -> (String, String) {
    let pair = std::env::var("MYELIN_TEST_UARTS")
        .expect("MYELIN_TEST_UARTS names the two UARTs whose wires QEMU joins (ttyS1,ttyS2)");
    let (a, b) = pair.split_once(',').expect("MYELIN_TEST_UARTS is A,B");
    (a.to_string(), b.to_string())
}

#[test]
fn uart_round_trip() {
    let (a, b) = uart_pair();
    let ports = uart::ports();
    for name in [&a, &b] {
        let p = ports
            .iter()
            .find(|p| &p.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {ports:?}"));
        // The 8250 driver's platform or PNP side, depending on how the port was found.
        assert!(!p.driver.is_empty(), "{p:?}");
        assert!(!p.console);
    }
    let config: Config = "115200 8N1".parse().unwrap();
    let mut left = Uart::open(&a, &config).unwrap();
    let mut right = Uart::open(&b, &config).unwrap();
    left.clear().unwrap();
    right.clear().unwrap();

    let msg = b"hello over a wire\n";
    left.write_all(msg).unwrap();
    let mut got = [0u8; 18];
    right.read_exact(&mut got, WAIT).unwrap();
    assert_eq!(&got, msg);

    // And back, 4 KiB this time: more than a 16550's FIFO, so the driver's buffering works.
    let big: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        left.read_exact(&mut buf, Duration::from_secs(60)).unwrap();
        (left, buf)
    });
    right.write_all(&big).unwrap();
    right.drain().unwrap();
    let (mut left, echoed) = reader.join().unwrap();
    assert_eq!(echoed, big);

    // Nothing more is on the wire: a read times out empty.
    assert_eq!(left.read(&mut got, Duration::from_millis(50)).unwrap(), 0);

    // Exclusive: a second opener is refused, naming the port.
    let e = Uart::open(&a, &config).unwrap_err();
    assert!(matches!(e, uart::Error::Busy { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("{a} is busy")), "{e}");

    // Async: the same wire on tokio.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut l = left.into_async().unwrap();
        let mut r = right.into_async().unwrap();
        l.write_all(b"async ping").await.unwrap();
        let mut buf = [0u8; 10];
        tokio::time::timeout(WAIT, r.read_exact(&mut buf))
            .await
            .expect("the bytes arrived")
            .unwrap();
        assert_eq!(&buf, b"async ping");
    });
}

#[test]
fn uart_errors_name_the_port() {
    let e = Uart::open("ttyS77", &Config::default()).unwrap_err();
    assert!(matches!(e, uart::Error::NoSuchPort { .. }), "{e}");
    let (a, _) = uart_pair();
    assert!(
        e.to_string().contains("ttyS77") && e.to_string().contains(&a),
        "{e}"
    );
}
