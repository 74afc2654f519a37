//! GPIO through the GPIO character device (`/dev/gpiochipN`, uAPI v2), with gpiocdev.
//!
//! A line is named the way the board names it ([`LineId::Name`], the device tree's
//! `gpio-line-names`, e.g. `"GPIO17"` on a Raspberry Pi) or by chip and offset
//! ([`LineId::Offset`]; the chip as `gpiochip0`, `/dev/gpiochip0` or its label such as
//! `pinctrl-bcm2711`). As text ([`LineId::from_str`]): `CHIP:OFFSET` or a name.
//!
//! Opening a line requests it from the kernel, which gives it to one holder at a time: a second
//! request, or a line a kernel driver holds, fails with [`Error::Busy`] naming the holder. The
//! request ends when the [`Output`] or [`Input`] is dropped; an output keeps its last level.
//!
//! Levels are electrical (`true` is high). Inputs may detect edges; each [`Event`] carries the
//! kernel's timestamp of the interrupt (CLOCK_MONOTONIC unless [`Clock::Realtime`] is asked), so
//! the time between two edges is exact even when the application reads them late.
//!
//! [`Output`] implements embedded-hal's `OutputPin` and `StatefulOutputPin`, [`Input`] its
//! `InputPin`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gpiocdev::line::{EdgeKind, Value};
use gpiocdev::request::Builder;
use gpiocdev::{Chip, Request};

/// How an application names a GPIO line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LineId {
    /// The line's name (`gpio-line-names`), searched on every chip.
    Name(String),
    /// A chip (`gpiochip0`, `/dev/gpiochip0` or the chip's label) and an offset on it.
    Offset {
        /// The chip.
        chip: String,
        /// The line's offset on the chip.
        offset: u32,
    },
}

impl FromStr for LineId {
    type Err = std::convert::Infallible;

    /// `CHIP:OFFSET` (e.g. `gpiochip0:17`) or a line name.
    fn from_str(s: &str) -> Result<LineId, Self::Err> {
        if let Some((chip, offset)) = s.rsplit_once(':') {
            if let (false, Ok(offset)) = (chip.is_empty(), offset.parse::<u32>()) {
                return Ok(LineId::Offset {
                    chip: chip.to_string(),
                    offset,
                });
            }
        }
        Ok(LineId::Name(s.to_string()))
    }
}

impl From<&str> for LineId {
    fn from(s: &str) -> LineId {
        match s.parse() {
            Ok(id) => id,
            Err(never) => match never {},
        }
    }
}

impl From<String> for LineId {
    fn from(s: String) -> LineId {
        LineId::from(s.as_str())
    }
}

impl<S: Into<String>> From<(S, u32)> for LineId {
    fn from((chip, offset): (S, u32)) -> LineId {
        LineId::Offset {
            chip: chip.into(),
            offset,
        }
    }
}

impl fmt::Display for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineId::Name(n) => write!(f, "{n}"),
            LineId::Offset { chip, offset } => write!(f, "{chip}:{offset}"),
        }
    }
}

/// A line found on a chip: what errors and enumerations name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The chip's device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// The chip's label, e.g. `pinctrl-bcm2711` or `gpio-sim.0-node0`.
    pub chip_label: String,
    /// The offset on the chip.
    pub offset: u32,
    /// The line's name, empty if the board gives none.
    pub name: String,
}

impl Line {
    /// The chip's kernel name, e.g. `gpiochip0`.
    pub fn chip_name(&self) -> String {
        file_name(&self.chip)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.chip_name(), self.offset)?;
        if !self.name.is_empty() {
            write!(f, " ({:?})", self.name)?;
        }
        Ok(())
    }
}

/// Pull resistor of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    /// No pull resistor.
    Disabled,
    /// Pulled up.
    PullUp,
    /// Pulled down.
    PullDown,
}

/// How an output drives its line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drive {
    /// Drives both levels.
    #[default]
    PushPull,
    /// Drives low only; high is the pull-up's job.
    OpenDrain,
    /// Drives high only.
    OpenSource,
}

/// Edges an input reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edges {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
    /// Both.
    Both,
}

/// One edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
}

/// The clock of event timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// CLOCK_MONOTONIC: time since boot, never jumps; compare with [`now`].
    #[default]
    Monotonic,
    /// CLOCK_REALTIME: wall-clock time since the Unix epoch.
    Realtime,
}

/// An edge the kernel saw on an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Which edge.
    pub edge: Edge,
    /// When the kernel saw it, on [`Event::clock`].
    pub timestamp: Duration,
    /// The clock of `timestamp`.
    pub clock: Clock,
    /// Sequence number of this event on its line, from 1: a gap means the kernel's buffer
    /// overflowed and events were lost.
    pub seqno: u32,
}

/// The current time on a clock, comparable with [`Event::timestamp`].
pub fn now(clock: Clock) -> Duration {
    let id = match clock {
        Clock::Monotonic => libc::CLOCK_MONOTONIC,
        Clock::Realtime => libc::CLOCK_REALTIME,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Options of an output line.
#[derive(Clone, Debug, Default)]
pub struct OutputOptions {
    drive: Drive,
    bias: Option<Bias>,
    consumer: Option<String>,
}

impl OutputOptions {
    /// Push-pull, bias as the board set it, consumer named after the program.
    pub fn new() -> OutputOptions {
        OutputOptions::default()
    }
    /// How the line is driven.
    pub fn drive(mut self, drive: Drive) -> OutputOptions {
        self.drive = drive;
        self
    }
    /// The pull resistor (useful with open drain).
    pub fn bias(mut self, bias: Bias) -> OutputOptions {
        self.bias = Some(bias);
        self
    }
    /// The consumer name other programs see (`myelinctl hw`); default: the program's name.
    pub fn consumer(mut self, name: impl Into<String>) -> OutputOptions {
        self.consumer = Some(name.into());
        self
    }
}

/// Options of an input line.
#[derive(Clone, Debug, Default)]
pub struct InputOptions {
    bias: Option<Bias>,
    edges: Option<Edges>,
    debounce: Option<Duration>,
    clock: Clock,
    consumer: Option<String>,
}

impl InputOptions {
    /// No edge detection, bias as the board set it, consumer named after the program.
    pub fn new() -> InputOptions {
        InputOptions::default()
    }
    /// The pull resistor.
    pub fn bias(mut self, bias: Bias) -> InputOptions {
        self.bias = Some(bias);
        self
    }
    /// The edges to report as [`Event`]s.
    pub fn edges(mut self, edges: Edges) -> InputOptions {
        self.edges = Some(edges);
        self
    }
    /// Ignore changes shorter than this (in the kernel, where the chip or gpiolib supports it).
    pub fn debounce(mut self, period: Duration) -> InputOptions {
        self.debounce = Some(period);
        self
    }
    /// The clock of event timestamps.
    pub fn clock(mut self, clock: Clock) -> InputOptions {
        self.clock = clock;
        self
    }
    /// The consumer name other programs see; default: the program's name.
    pub fn consumer(mut self, name: impl Into<String>) -> InputOptions {
        self.consumer = Some(name.into());
        self
    }
}

/// What the kernel needs for GPIO chips to appear.
const CHIPS_NEED: &str = "the kernel needs CONFIG_GPIO_CDEV and a GPIO driver";

/// A GPIO error; each names the chip and line, or what was searched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPIO character devices at all.
    #[error(
        "no GPIO chips: /dev/gpiochip* does not exist (kernel without CONFIG_GPIO_CDEV, or no GPIO driver)"
    )]
    NoChips,
    /// The chip named does not exist.
    #[error(
        "no GPIO chip {chip:?} (chips: {})",
        super::existing(available, CHIPS_NEED)
    )]
    NoSuchChip {
        /// As asked.
        chip: String,
        /// The chips there are, as `gpiochipN [label]`.
        available: Vec<String>,
    },
    /// No line has this name.
    #[error(
        "no GPIO line named {name:?} on any chip (searched {})",
        super::existing(chips, CHIPS_NEED)
    )]
    NoSuchName {
        /// As asked.
        name: String,
        /// The chips searched.
        chips: Vec<String>,
    },
    /// The chip has fewer lines.
    #[error("{chip} has no line {offset}: its lines are 0 to {}", lines.saturating_sub(1))]
    NoSuchLine {
        /// The chip, as `gpiochipN [label]`.
        chip: String,
        /// As asked.
        offset: u32,
        /// How many lines the chip has.
        lines: u32,
    },
    /// Someone else holds the line.
    #[error("{line} is busy: {}", holder(consumer))]
    Busy {
        /// The line.
        line: Box<Line>,
        /// Its holder's consumer name, empty if it gave none.
        consumer: String,
    },
    /// Edge events were asked of an input opened without edge detection.
    #[error("{line} was opened without edge detection: no events to read")]
    NoEdges {
        /// The line.
        line: Box<Line>,
    },
    /// A chip could not be opened or queried.
    #[error("GPIO chip {chip}: {source}")]
    Chip {
        /// The chip's device.
        chip: String,
        /// The cause.
        #[source]
        source: Box<gpiocdev::Error>,
    },
    /// An operation on a line failed.
    #[error("{line}: {op}: {source}")]
    Line {
        /// The line.
        line: Box<Line>,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: Box<gpiocdev::Error>,
    },
}

fn holder(consumer: &str) -> String {
    if consumer.is_empty() {
        "in use by a consumer that gave no name".into()
    } else {
        format!("in use by {consumer:?}")
    }
}

impl embedded_hal::digital::Error for Error {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

/// The OS error number inside a gpiocdev error, if any.
fn errno(e: &gpiocdev::Error) -> Option<i32> {
    match e {
        gpiocdev::Error::Os(gpiocdev_uapi::Errno(n)) => Some(*n),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(gpiocdev_uapi::Errno(n))) => Some(*n),
        _ => None,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `gpiochipN [label]` for the chips there are.
fn chip_names() -> Vec<String> {
    gpiocdev::chip::chips()
        .unwrap_or_default()
        .iter()
        .map(|p| match Chip::from_path(p).and_then(|c| c.info()) {
            Ok(info) if !info.label.is_empty() => format!("{} [{}]", info.name, info.label),
            _ => file_name(p),
        })
        .collect()
}

fn open_chip(path: &Path) -> Result<(Chip, gpiocdev::chip::Info), Error> {
    let chip_err = |source| Error::Chip {
        chip: path.display().to_string(),
        source: Box::new(source),
    };
    let chip = Chip::from_path(path).map_err(chip_err)?;
    let info = chip.info().map_err(chip_err)?;
    Ok((chip, info))
}

/// The device of a chip named as [`LineId::Offset`] takes it.
fn find_chip(chip: &str) -> Result<PathBuf, Error> {
    let direct = if chip.starts_with('/') {
        Some(PathBuf::from(chip))
    } else if !chip.contains('/') {
        Some(Path::new("/dev").join(chip))
    } else {
        None
    };
    if let Some(p) = direct.filter(|p| gpiocdev::chip::is_chip(p).is_ok()) {
        return Ok(p);
    }
    let chips = gpiocdev::chip::chips().unwrap_or_default();
    for p in &chips {
        if let Ok((_, info)) = open_chip(p) {
            if info.label == chip {
                return Ok(p.clone());
            }
        }
    }
    if chips.is_empty() {
        return Err(Error::NoChips);
    }
    Err(Error::NoSuchChip {
        chip: chip.to_string(),
        available: chip_names(),
    })
}

/// Finds a line: its chip, offset and name.
pub fn find(id: &LineId) -> Result<Line, Error> {
    match id {
        LineId::Offset { chip, offset } => {
            let path = find_chip(chip)?;
            let (c, info) = open_chip(&path)?;
            if *offset >= info.num_lines {
                return Err(Error::NoSuchLine {
                    chip: format!("{} [{}]", info.name, info.label),
                    offset: *offset,
                    lines: info.num_lines,
                });
            }
            let name = c.line_info(*offset).map(|l| l.name).unwrap_or_default();
            Ok(Line {
                chip: path,
                chip_label: info.label,
                offset: *offset,
                name,
            })
        }
        LineId::Name(name) => {
            let chips = gpiocdev::chip::chips().unwrap_or_default();
            if chips.is_empty() {
                return Err(Error::NoChips);
            }
            for p in &chips {
                let Ok((c, info)) = open_chip(p) else {
                    continue;
                };
                if let Some(l) = c.find_line_info(name) {
                    return Ok(Line {
                        chip: p.clone(),
                        chip_label: info.label,
                        offset: l.offset,
                        name: l.name,
                    });
                }
            }
            Err(Error::NoSuchName {
                name: name.clone(),
                chips: chip_names(),
            })
        }
    }
}

/// The default consumer name: the program's.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| file_name(Path::new(&a)))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "myelin".into())
}

fn request(
    line: &Line,
    consumer: Option<&str>,
    configure: impl FnOnce(&mut Builder),
) -> Result<Request, Error> {
    let mut b = Request::builder();
    b.on_chip(&line.chip)
        .with_consumer(consumer.map_or_else(program_name, str::to_string))
        .with_line(line.offset);
    configure(&mut b);
    b.request().map_err(|source| {
        if errno(&source) == Some(libc::EBUSY) {
            let consumer = Chip::from_path(&line.chip)
                .and_then(|c| c.line_info(line.offset))
                .map(|i| i.consumer)
                .unwrap_or_default();
            Error::Busy {
                line: Box::new(line.clone()),
                consumer,
            }
        } else {
            Error::Line {
                line: Box::new(line.clone()),
                op: "request",
                source: Box::new(source),
            }
        }
    })
}

fn to_cdev_bias(b: Bias) -> gpiocdev::line::Bias {
    match b {
        Bias::Disabled => gpiocdev::line::Bias::Disabled,
        Bias::PullUp => gpiocdev::line::Bias::PullUp,
        Bias::PullDown => gpiocdev::line::Bias::PullDown,
    }
}

fn level(v: bool) -> Value {
    if v { Value::Active } else { Value::Inactive }
}

fn to_event(e: &gpiocdev::line::EdgeEvent, clock: Clock) -> Event {
    Event {
        edge: match e.kind {
            EdgeKind::Rising => Edge::Rising,
            EdgeKind::Falling => Edge::Falling,
        },
        timestamp: Duration::from_nanos(e.timestamp_ns),
        clock,
        seqno: e.line_seqno,
    }
}

/// An output line, held until dropped.
#[derive(Debug)]
pub struct Output {
    req: Request,
    line: Line,
    high: bool,
}

impl Output {
    /// Requests a line as a push-pull output at `high`.
    pub fn open(id: impl Into<LineId>, high: bool) -> Result<Output, Error> {
        Output::with_options(id, high, &OutputOptions::default())
    }

    /// Requests a line as an output at `high`, with options.
    pub fn with_options(
        id: impl Into<LineId>,
        high: bool,
        options: &OutputOptions,
    ) -> Result<Output, Error> {
        let line = find(&id.into())?;
        let req = request(&line, options.consumer.as_deref(), |b| {
            b.as_output(level(high)).with_drive(match options.drive {
                Drive::PushPull => gpiocdev::line::Drive::PushPull,
                Drive::OpenDrain => gpiocdev::line::Drive::OpenDrain,
                Drive::OpenSource => gpiocdev::line::Drive::OpenSource,
            });
            if let Some(bias) = options.bias {
                b.with_bias(to_cdev_bias(bias));
            }
        })?;
        Ok(Output { req, line, high })
    }

    /// Drives the line high (`true`) or low.
    pub fn set(&mut self, high: bool) -> Result<(), Error> {
        self.req
            .set_value(self.line.offset, level(high))
            .map_err(|source| Error::Line {
                line: Box::new(self.line.clone()),
                op: "set value",
                source: Box::new(source),
            })?;
        self.high = high;
        Ok(())
    }

    /// Inverts the level.
    pub fn toggle(&mut self) -> Result<(), Error> {
        self.set(!self.high)
    }

    /// The level last set.
    pub fn is_set_high(&self) -> bool {
        self.high
    }

    /// The line.
    pub fn line(&self) -> &Line {
        &self.line
    }
}

impl embedded_hal::digital::ErrorType for Output {
    type Error = Error;
}

impl embedded_hal::digital::OutputPin for Output {
    fn set_low(&mut self) -> Result<(), Error> {
        self.set(false)
    }
    fn set_high(&mut self) -> Result<(), Error> {
        self.set(true)
    }
}

impl embedded_hal::digital::StatefulOutputPin for Output {
    fn is_set_high(&mut self) -> Result<bool, Error> {
        Ok(self.high)
    }
    fn is_set_low(&mut self) -> Result<bool, Error> {
        Ok(!self.high)
    }
}

/// An input line, held until dropped.
#[derive(Debug)]
pub struct Input {
    req: Request,
    line: Line,
    edges: Option<Edges>,
    clock: Clock,
}

impl Input {
    /// Requests a line as an input, without edge detection.
    pub fn open(id: impl Into<LineId>) -> Result<Input, Error> {
        Input::with_options(id, &InputOptions::default())
    }

    /// Requests a line as an input, with options (edges, bias, debounce).
    pub fn with_options(id: impl Into<LineId>, options: &InputOptions) -> Result<Input, Error> {
        let line = find(&id.into())?;
        let req = request(&line, options.consumer.as_deref(), |b| {
            b.as_input();
            if let Some(bias) = options.bias {
                b.with_bias(to_cdev_bias(bias));
            }
            if let Some(edges) = options.edges {
                b.with_edge_detection(match edges {
                    Edges::Rising => gpiocdev::line::EdgeDetection::RisingEdge,
                    Edges::Falling => gpiocdev::line::EdgeDetection::FallingEdge,
                    Edges::Both => gpiocdev::line::EdgeDetection::BothEdges,
                });
                b.with_event_clock(match options.clock {
                    Clock::Monotonic => gpiocdev::line::EventClock::Monotonic,
                    Clock::Realtime => gpiocdev::line::EventClock::Realtime,
                });
            }
            if let Some(period) = options.debounce {
                b.with_debounce_period(period);
            }
        })?;
        Ok(Input {
            req,
            line,
            edges: options.edges,
            clock: options.clock,
        })
    }

    /// The line's level now.
    pub fn is_high(&self) -> Result<bool, Error> {
        self.req
            .value(self.line.offset)
            .map(|v| v == Value::Active)
            .map_err(|source| self.err("get value", source))
    }

    /// Waits for the next edge; `None` when `timeout` passes first.
    pub fn wait_event(&mut self, timeout: Duration) -> Result<Option<Event>, Error> {
        self.need_edges()?;
        if !self
            .req
            .wait_edge_event(timeout)
            .map_err(|source| self.err("wait for an edge", source))?
        {
            return Ok(None);
        }
        self.read_event().map(Some)
    }

    /// Waits for the next edge, however long it takes.
    pub fn read_event(&mut self) -> Result<Event, Error> {
        self.need_edges()?;
        let e = self
            .req
            .read_edge_event()
            .map_err(|source| self.err("read an edge", source))?;
        Ok(self.event(e))
    }

    /// The next edge if one is waiting, without blocking.
    pub fn try_event(&mut self) -> Result<Option<Event>, Error> {
        self.wait_event(Duration::ZERO)
    }

    /// The line.
    pub fn line(&self) -> &Line {
        &self.line
    }

    fn need_edges(&self) -> Result<(), Error> {
        match self.edges {
            Some(_) => Ok(()),
            None => Err(Error::NoEdges {
                line: Box::new(self.line.clone()),
            }),
        }
    }

    fn event(&self, e: gpiocdev::line::EdgeEvent) -> Event {
        to_event(&e, self.clock)
    }

    fn err(&self, op: &'static str, source: gpiocdev::Error) -> Error {
        Error::Line {
            line: Box::new(self.line.clone()),
            op,
            source: Box::new(source),
        }
    }

    /// This input, waiting for edges on tokio.
    ///
    /// Must be called within a tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn into_async(self) -> Result<AsyncInput, Error> {
        self.need_edges()?;
        let Input {
            req,
            line,
            edges: _,
            clock,
        } = self;
        // SAFETY: the request owns its descriptor, open until the AsyncFd drops it.
        match unsafe { tokio::io::unix::AsyncFd::register(req) } {
            Ok(fd) => Ok(AsyncInput { fd, line, clock }),
            Err(e) => Err(Error::Line {
                line: Box::new(line),
                op: "register with tokio",
                source: Box::new(gpiocdev::Error::from(e.into_parts().1)),
            }),
        }
    }
}

impl embedded_hal::digital::ErrorType for Input {
    type Error = Error;
}

impl embedded_hal::digital::InputPin for Input {
    fn is_high(&mut self) -> Result<bool, Error> {
        Input::is_high(self)
    }
    fn is_low(&mut self) -> Result<bool, Error> {
        Input::is_high(self).map(|h| !h)
    }
}

/// An input with edge detection whose events are awaited on tokio.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncInput {
    fd: tokio::io::unix::AsyncFd<Request>,
    line: Line,
    clock: Clock,
}

#[cfg(feature = "tokio")]
impl AsyncInput {
    /// The next edge.
    pub async fn next_event(&self) -> Result<Event, Error> {
        let err = |op, source| Error::Line {
            line: Box::new(self.line.clone()),
            op,
            source: Box::new(source),
        };
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| err("wait for an edge", gpiocdev::Error::from(e)))?;
            let req = self.fd.get_ref();
            // The request's descriptor is blocking: read only what poll says is there.
            if req
                .has_edge_event()
                .map_err(|e| err("wait for an edge", e))?
            {
                let e = req.read_edge_event().map_err(|e| err("read an edge", e))?;
                return Ok(to_event(&e, self.clock));
            }
            guard.clear_ready();
        }
    }

    /// The line's level now.
    pub fn is_high(&self) -> Result<bool, Error> {
        self.fd
            .get_ref()
            .value(self.line.offset)
            .map(|v| v == Value::Active)
            .map_err(|source| Error::Line {
                line: Box::new(self.line.clone()),
                op: "get value",
                source: Box::new(source),
            })
    }

    /// The line.
    pub fn line(&self) -> &Line {
        &self.line
    }
}

/// Direction of a line as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Input.
    Input,
    /// Output.
    Output,
}

/// A line as [`chips`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Offset on the chip.
    pub offset: u32,
    /// Name, empty if none.
    pub name: String,
    /// Whether someone holds it (a program or a kernel driver).
    pub used: bool,
    /// The holder's consumer name.
    pub consumer: String,
    /// Input or output.
    pub direction: Direction,
    /// Pull resistor, if known.
    pub bias: Option<Bias>,
    /// Edges detected, if any.
    pub edges: Option<Edges>,
    /// Whether the line is active-low.
    pub active_low: bool,
}

/// A chip as [`chips`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipInfo {
    /// Device, e.g. `/dev/gpiochip0`.
    pub path: PathBuf,
    /// Kernel name, e.g. `gpiochip0`.
    pub name: String,
    /// Label, e.g. `pinctrl-bcm2711`.
    pub label: String,
    /// Every line.
    pub lines: Vec<LineInfo>,
}

/// Every GPIO chip and line, like Circuits.GPIO's `enumerate()`; empty without GPIO chips.
pub fn chips() -> Result<Vec<ChipInfo>, Error> {
    let mut out = Vec::new();
    for path in gpiocdev::chip::chips().unwrap_or_default() {
        let (chip, info) = open_chip(&path)?;
        let mut lines = Vec::with_capacity(info.num_lines as usize);
        for offset in 0..info.num_lines {
            let l = chip.line_info(offset).map_err(|source| Error::Chip {
                chip: path.display().to_string(),
                source: Box::new(source),
            })?;
            lines.push(LineInfo {
                offset,
                name: l.name,
                used: l.used,
                consumer: l.consumer,
                direction: match l.direction {
                    gpiocdev::line::Direction::Input => Direction::Input,
                    gpiocdev::line::Direction::Output => Direction::Output,
                },
                bias: l.bias.map(|b| match b {
                    gpiocdev::line::Bias::Disabled => Bias::Disabled,
                    gpiocdev::line::Bias::PullUp => Bias::PullUp,
                    gpiocdev::line::Bias::PullDown => Bias::PullDown,
                }),
                edges: l.edge_detection.map(|e| match e {
                    gpiocdev::line::EdgeDetection::RisingEdge => Edges::Rising,
                    gpiocdev::line::EdgeDetection::FallingEdge => Edges::Falling,
                    gpiocdev::line::EdgeDetection::BothEdges => Edges::Both,
                }),
                active_low: l.active_low,
            });
        }
        out.push(ChipInfo {
            path,
            name: info.name,
            label: info.label,
            lines,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ids_from_text() {
        assert_eq!(
            LineId::from("gpiochip0:17"),
            LineId::Offset {
                chip: "gpiochip0".into(),
                offset: 17
            }
        );
        assert_eq!(
            LineId::from("/dev/gpiochip2:0"),
            LineId::Offset {
                chip: "/dev/gpiochip2".into(),
                offset: 0
            }
        );
        assert_eq!(LineId::from("GPIO17"), LineId::Name("GPIO17".into()));
        // Not an offset after the colon, or nothing before it: a name.
        assert_eq!(LineId::from("LED:red"), LineId::Name("LED:red".into()));
        assert_eq!(LineId::from(":3"), LineId::Name(":3".into()));
        assert_eq!(
            LineId::from(("pinctrl-bcm2711", 4)).to_string(),
            "pinctrl-bcm2711:4"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let line = Line {
            chip: "/dev/gpiochip3".into(),
            chip_label: "gpio-sim.0-node0".into(),
            offset: 5,
            name: "LED".into(),
        };
        let busy = Error::Busy {
            line: Box::new(line.clone()),
            consumer: "sensor-node".into(),
        };
        assert_eq!(
            busy.to_string(),
            "gpiochip3 line 5 (\"LED\") is busy: in use by \"sensor-node\""
        );
        let e = Error::NoSuchLine {
            chip: "gpiochip3 [gpio-sim.0-node0]".into(),
            offset: 9,
            lines: 8,
        };
        assert_eq!(
            e.to_string(),
            "gpiochip3 [gpio-sim.0-node0] has no line 9: its lines are 0 to 7"
        );
        let e = Error::NoSuchChip {
            chip: "gpiochip9".into(),
            available: vec!["gpiochip0 [a]".into()],
        };
        assert_eq!(
            e.to_string(),
            "no GPIO chip \"gpiochip9\" (chips: gpiochip0 [a])"
        );
    }

    #[test]
    fn clocks_advance() {
        let a = now(Clock::Monotonic);
        let b = now(Clock::Monotonic);
        assert!(b >= a);
        // The realtime clock is far past the epoch; the monotonic one counts from boot.
        assert!(now(Clock::Realtime) > Duration::from_secs(1_000_000_000));
    }
}
