//! Commands answered by PID 1 (myelin-init) over its control socket.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use myelin_api::init::{
    Body, BootRecord, Client, DataReport, Level, LogEntry, NodeStatus, Op, ReadinessReport,
    StatusReport,
};

use crate::Cli;

/// PID 1's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the supervision tree: state, pid, restarts and uptime of every service.
    Status,
    /// Show whether services are ready; exit 0 only if they all are.
    Ready {
        /// Only the services marked critical.
        #[arg(long)]
        critical: bool,
        /// Wait up to this many seconds for readiness.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Show the boot timeline: the kernel's share, PID 1's phases, each service from start to
    /// ready, and the slowest services.
    Boot {
        /// Write an SVG chart of the timeline to FILE instead.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
    /// Print captured service output (and PID 1's own messages, service `init`).
    Log {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
        /// Only lines at least this severe: emerg, alert, crit, err (error), warning (warn),
        /// notice, info or debug.
        #[arg(short = 'l', long, value_name = "LEVEL", value_parser = parse_level)]
        level: Option<Level>,
        /// Only this service.
        service: Option<String>,
        /// Instead: how the previous boot ended, from the records the kernel kept across the
        /// reset (pstore: its console to the last line, the kernel log at a panic or oops).
        #[arg(long, conflicts_with_all = ["follow", "lines", "level", "service"])]
        previous_boot: bool,
    },
    /// Start a stopped service or supervisor.
    Start {
        /// Service or supervisor name.
        name: String,
    },
    /// Stop a service or supervisor; it stays stopped until started.
    Stop {
        /// Service or supervisor name.
        name: String,
    },
    /// Stop then start a service or supervisor (not counted as a failure).
    Restart {
        /// Service or supervisor name.
        name: String,
    },
    /// Stop all services cleanly and reboot.
    Reboot {
        /// reboot(2) argument, e.g. "0 tryboot" on a Raspberry Pi.
        #[arg(conflicts_with = "now")]
        arg: Option<String>,
        /// Reboot at once: stop no service and unmount nothing (after erasing a partition
        /// that a clean unmount could write back).
        #[arg(long)]
        now: bool,
    },
    /// Stop all services cleanly and power off.
    Poweroff,
    /// Stop all services cleanly and halt.
    Halt,
    /// The hardware watchdog.
    #[command(subcommand)]
    Watchdog(WatchdogCommand),
}

/// `myelinctl watchdog ...`.
#[derive(Debug, Subcommand)]
pub enum WatchdogCommand {
    /// Pet the watchdog unconditionally for a while (15 minutes by default), e.g. while
    /// debugging a service marked critical.
    Snooze,
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| {
        format!("unknown level `{s}`: emerg, alert, crit, err, warning, notice, info or debug")
    })
}

fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let mut c = Client::connect(&cli.socket)
        .with_context(|| format!("cannot reach myelin-init at {}", cli.socket.display()))?;
    c.set_timeout(Some(Duration::from_secs(30)))?;
    Ok(c)
}

/// Runs a PID 1 command.
pub fn run(cmd: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        Command::Status => {
            let mut c = connect(cli)?;
            let Body::Status(s) = c.call(Op::Status)? else {
                bail!("unexpected answer from init")
            };
            let time = time_status(cli);
            if cli.json {
                let mut v = serde_json::to_value(&s)?;
                if let (Some(o), Ok(t)) = (v.as_object_mut(), &time) {
                    o.insert("time".into(), serde_json::to_value(t)?);
                }
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                out.write_all(render_status(&s).as_bytes())?;
                match time {
                    Ok(t) => writeln!(out, "{}", t.line())?,
                    Err(e) => writeln!(out, "time: unknown ({})", crate::error_message(&e))?,
                }
            }
            Ok(0)
        }
        Command::Boot { svg } => {
            let mut c = connect(cli)?;
            let Body::Boot(t) = c.call(Op::Boot)? else {
                bail!("unexpected answer from init")
            };
            if let Some(path) = svg {
                std::fs::write(path, crate::boot::render_svg(&t))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            } else if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&t)?)?;
            } else {
                out.write_all(crate::boot::render_text(&t).as_bytes())?;
            }
            Ok(0)
        }
        Command::Ready { critical, wait } => {
            let deadline = Instant::now() + Duration::from_secs(wait.unwrap_or(0));
            loop {
                let mut c = connect(cli)?;
                let Body::Readiness(r) = c.call(Op::Readiness)? else {
                    bail!("unexpected answer from init")
                };
                let ok = if *critical {
                    r.critical_ready
                } else {
                    r.all_ready
                };
                if ok || Instant::now() >= deadline {
                    if cli.json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
                    } else {
                        out.write_all(render_readiness(&r, *critical).as_bytes())?;
                    }
                    return Ok(if ok { 0 } else { 1 });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Command::Log {
            previous_boot: true,
            ..
        } => {
            let mut c = connect(cli)?;
            c.send(Op::PreviousBoot)?;
            let mut n = 0;
            while let Some(b) = c.receive()? {
                match b {
                    Body::Record(r) => {
                        n += 1;
                        if cli.json {
                            writeln!(out, "{}", serde_json::to_string(&r)?)?;
                        } else {
                            out.write_all(render_record(&r).as_bytes())?;
                        }
                    }
                    Body::End => break,
                    Body::Error { message } => bail!(message),
                    _ => bail!("unexpected answer from init"),
                }
            }
            if n == 0 && !cli.json {
                writeln!(
                    out,
                    "the previous boot left no records (a power-on, or a board without pstore)"
                )?;
            }
            Ok(0)
        }
        Command::Log {
            follow,
            lines,
            level,
            service,
            previous_boot: false,
        } => {
            let mut c = connect(cli)?;
            if *follow {
                c.set_timeout(None)?;
            }
            c.send(Op::Log {
                service: service.clone(),
                lines: *lines,
                level: *level,
                follow: *follow,
            })?;
            while let Some(b) = c.receive()? {
                match b {
                    Body::Log(e) => {
                        if cli.json {
                            writeln!(out, "{}", serde_json::to_string(&e)?)?;
                        } else {
                            writeln!(out, "{}", render_entry(&e))?;
                        }
                        if *follow {
                            out.flush()?;
                        }
                    }
                    Body::End => break,
                    Body::Error { message } => bail!(message),
                    _ => bail!("unexpected answer from init"),
                }
            }
            Ok(0)
        }
        Command::Start { name } => simple(cli, out, Op::Start { name: name.clone() }),
        Command::Stop { name } => simple(cli, out, Op::Stop { name: name.clone() }),
        Command::Restart { name } => simple(cli, out, Op::Restart { name: name.clone() }),
        Command::Reboot { now: true, .. } => simple(cli, out, Op::RebootNow),
        Command::Reboot { arg, now: false } => power(cli, out, Op::Reboot { arg: arg.clone() }),
        Command::Poweroff => power(cli, out, Op::Poweroff),
        Command::Halt => power(cli, out, Op::Halt),
        Command::Watchdog(WatchdogCommand::Snooze) => simple(cli, out, Op::WatchdogSnooze),
    }
}

fn simple(cli: &Cli, out: &mut dyn Write, op: Op) -> anyhow::Result<i32> {
    let mut c = connect(cli)?;
    match c.call(op)? {
        Body::Ok { message } => {
            writeln!(out, "{message}")?;
            Ok(0)
        }
        _ => bail!("unexpected answer from init"),
    }
}

/// Power requests fall back to busybox's signals when PID 1 cannot be reached, so `myelinctl
/// reboot` works even if the control socket is gone.
fn power(cli: &Cli, out: &mut dyn Write, op: Op) -> anyhow::Result<i32> {
    match connect(cli) {
        Ok(_) => simple(cli, out, op),
        Err(e) => {
            let sig = match &op {
                Op::Reboot { arg } => {
                    if let Some(a) = arg {
                        std::fs::write("/run/reboot-param", format!("{a}\n"))
                            .context("cannot write /run/reboot-param")?;
                    }
                    libc::SIGTERM
                }
                Op::Poweroff => libc::SIGUSR2,
                _ => libc::SIGUSR1,
            };
            // SAFETY: kill(2) has no memory-safety preconditions.
            if unsafe { libc::kill(1, sig) } != 0 {
                return Err(e.context("and signalling PID 1 failed too"));
            }
            writeln!(out, "control socket unavailable ({e:#}); signalled PID 1")?;
            Ok(0)
        }
    }
}

/// `1h 2m`, `3m 4s`, `5.2s`.
pub fn format_uptime(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 86_400 {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, ms % 1000 / 100)
    }
}

fn node_line(n: &NodeStatus) -> String {
    let mut parts = vec![n.state.clone()];
    if let Some(p) = n.pid {
        parts.push(format!("pid {p}"));
    }
    if let Some(u) = n.uptime_ms {
        if n.state == "running" {
            parts.push(format!("up {}", format_uptime(u)));
        }
    }
    if n.restarts > 0 {
        parts.push(format!(
            "{} restart{}",
            n.restarts,
            if n.restarts == 1 { "" } else { "s" }
        ));
    }
    if n.kind == "service" && n.state != "running" {
        if let Some(e) = &n.last_exit {
            parts.push(format!("last: {e}"));
        }
    }
    if let Some(s) = &n.status {
        parts.push(format!("\"{s}\""));
    }
    parts.join(", ")
}

fn render_node(n: &NodeStatus, depth: usize, out: &mut String) {
    // Indentation only, no drawing characters: the first word of a line is the node's name,
    // which is what scripts look for.
    let mut label = format!("{}{}", "  ".repeat(depth), n.name);
    if let Some(s) = &n.strategy {
        label.push_str(&format!(" ({s})"));
    }
    if n.critical {
        label.push_str(" [critical]");
    }
    out.push_str(&format!("{label:<40} {}\n", node_line(n)));
    for c in &n.children {
        render_node(c, depth + 1, out);
    }
}

/// myelin-time's status, for the line under the tree; bounded so a stuck bus never stalls
/// `myelinctl status`, which must work when everything else is broken.
fn time_status(cli: &Cli) -> anyhow::Result<myelin_api::time::Status> {
    crate::bus::block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let conn = crate::bus::connect(cli).await?;
            Ok(myelin_api::time::status(&conn).await?)
        })
        .await
        .map_err(|_| anyhow::anyhow!("myelin-time did not answer within 5 s"))?
    })
}

/// The status report as text.
pub fn render_status(s: &StatusReport) -> String {
    let mut out = format!(
        "myelin-init {}, {}, up {}\n",
        s.version,
        s.phase,
        format_uptime(s.uptime_ms)
    );
    if let Some(w) = &s.watchdog {
        let last = w
            .policy
            .last_pet_ms_ago
            .map(|m| format!("last pet {} ago", format_uptime(m)))
            .unwrap_or("never petted".into());
        let state = if w.policy.disarmed {
            "disarmed (shutting down)".to_string()
        } else if w.policy.snooze_left_ms > 0 {
            format!("snoozed for {}", format_uptime(w.policy.snooze_left_ms))
        } else if w.policy.healthy {
            "healthy".to_string()
        } else if w.policy.grace_left_ms > 0 {
            format!(
                "critical service down, grace {} left",
                format_uptime(w.policy.grace_left_ms)
            )
        } else {
            "critical service down: not petting".to_string()
        };
        out.push_str(&format!(
            "watchdog {} ({}, timeout {}s, last boot: {}): {state}, {last}\n",
            w.device,
            w.identity,
            w.timeout_ms / 1000,
            w.last_boot
        ));
    }
    if let Some(d) = &s.data {
        out.push_str(&render_data(d));
    }
    render_node(&s.tree, 0, &mut out);
    out
}

/// The data partition's line of the status: loud when it is not the partition itself.
pub fn render_data(d: &DataReport) -> String {
    let why = d
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    if d.state == "tmpfs_fallback" {
        format!(
            "data {}: NOT MOUNTED, {} is a tmpfs for this boot (nothing there survives a reboot){why}\n",
            d.device, d.mountpoint
        )
    } else {
        format!(
            "data {} on {} ({}): {}{why}\n",
            d.device, d.mountpoint, d.fstype, d.state
        )
    }
}

/// The readiness report as text.
pub fn render_readiness(r: &ReadinessReport, critical_only: bool) -> String {
    let mut out = String::new();
    for s in r.services.iter().filter(|s| !critical_only || s.critical) {
        out.push_str(&format!(
            "{:<24} {:<9} {}{}\n",
            s.name,
            if s.ready { "ready" } else { "not ready" },
            s.state,
            if s.critical { " [critical]" } else { "" }
        ));
    }
    let ok = if critical_only {
        r.critical_ready
    } else {
        r.all_ready
    };
    out.push_str(if ok { "all ready" } else { "not all ready" });
    if let Some(ms) = r.critical_ready_for_ms {
        out.push_str(&format!(
            ", critical services stable for {}",
            format_uptime(ms)
        ));
    }
    if r.restarts_total > 0 {
        out.push_str(&format!(", {} restarts since boot", r.restarts_total));
    }
    out.push('\n');
    out
}

/// `2026-11-21 05:40:20.123 name[pid]: text` (UTC); lines at warning or worse name their
/// level: `name[pid]: warning: text`.
pub fn render_entry(e: &LogEntry) -> String {
    let who = if e.pid == 0 {
        e.service.clone()
    } else {
        format!("{}[{}]", e.service, e.pid)
    };
    let level = if e.level.passes(Level::Warning) {
        format!("{}: ", e.level.name())
    } else {
        String::new()
    };
    format!("{} {who}: {level}{}", format_time(e.time_ms), e.text)
}

/// One pstore record of the previous boot, under a header naming what it is.
pub fn render_record(r: &BootRecord) -> String {
    let what = if r.name.starts_with("dmesg-") {
        "kernel log at a panic or oops"
    } else if r.name.starts_with("console-") {
        "console to the end of the boot"
    } else if r.name.starts_with("pmsg-") {
        "user-space messages"
    } else {
        "record"
    };
    let mut s = format!("== {} ({what}) ==\n{}", r.name, r.text);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Milliseconds since the epoch as a UTC date and time.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_api::init::{Level, PolicyStatus, ServiceReadiness, Stream, WatchdogReport};

    #[test]
    fn previous_boot_records_are_named_for_what_they_hold() {
        let panic = BootRecord {
            name: "dmesg-ramoops-0".into(),
            text: "Panic#1 Part1\nKernel panic - not syncing: sysrq triggered crash".into(),
        };
        assert_eq!(
            render_record(&panic),
            "== dmesg-ramoops-0 (kernel log at a panic or oops) ==\nPanic#1 Part1\nKernel panic - not syncing: sysrq triggered crash\n"
        );
        let console = BootRecord {
            name: "console-ramoops-0".into(),
            text: "last line\n".into(),
        };
        assert!(render_record(&console).starts_with("== console-ramoops-0 (console to the end"));
        assert!(render_record(&console).ends_with("last line\n"));
    }

    fn node(name: &str, kind: &str, state: &str) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            kind: kind.into(),
            state: state.into(),
            strategy: None,
            pid: None,
            restarts: 0,
            uptime_ms: None,
            ready: state == "running",
            critical: false,
            status: None,
            last_exit: None,
            children: Vec::new(),
        }
    }

    #[test]
    fn status_tree() {
        let mut root = node("root", "supervisor", "running");
        root.strategy = Some("one_for_one".into());
        let mut kv = node("myelin-kv", "service", "running");
        kv.pid = Some(130);
        kv.uptime_ms = Some(7_500_000);
        kv.critical = true;
        kv.status = Some("serving".into());
        let mut app = node("app", "supervisor", "starting");
        app.strategy = Some("one_for_all".into());
        let mut hello = node("hello", "service", "restarting");
        hello.restarts = 4;
        hello.last_exit = Some("exit 1".into());
        app.children.push(hello);
        root.children = vec![kv, app];
        let s = StatusReport {
            version: "0.1.0".into(),
            uptime_ms: 7_600_000,
            phase: "running".into(),
            tree: root,
            watchdog: Some(WatchdogReport {
                device: "/dev/watchdog0".into(),
                identity: "i6300ESB timer".into(),
                timeout_ms: 30_000,
                last_boot: "power_on".into(),
                policy: PolicyStatus {
                    healthy: true,
                    disarmed: false,
                    last_pet_ms_ago: Some(4200),
                    grace_left_ms: 0,
                    snooze_left_ms: 0,
                    interval_ms: 15_000,
                },
            }),
            data: Some(DataReport {
                state: "repaired".into(),
                device: "/dev/mmcblk0p4".into(),
                fstype: "ext4".into(),
                mountpoint: "/data".into(),
                reason: Some("repaired by e2fsck -p /dev/mmcblk0p4".into()),
            }),
        };
        let text = render_status(&s);
        let mut tmp = s.data.clone().unwrap();
        tmp.state = "tmpfs_fallback".into();
        tmp.reason = Some("mount: I/O error".into());
        assert_eq!(
            render_data(&tmp),
            "data /dev/mmcblk0p4: NOT MOUNTED, /data is a tmpfs for this boot (nothing there survives a reboot) (mount: I/O error)\n"
        );
        let expected = "\
myelin-init 0.1.0, running, up 2h 6m
watchdog /dev/watchdog0 (i6300ESB timer, timeout 30s, last boot: power_on): healthy, last pet 4.2s ago
data /dev/mmcblk0p4 on /data (ext4): repaired (repaired by e2fsck -p /dev/mmcblk0p4)
root (one_for_one)                       running
  myelin-kv [critical]                   running, pid 130, up 2h 5m, \"serving\"
  app (one_for_all)                      starting
    hello                                restarting, 4 restarts, last: exit 1
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn readiness_text() {
        let r = ReadinessReport {
            all_ready: false,
            critical_ready: true,
            critical_ready_for_ms: Some(65_000),
            restarts_total: 3,
            services: vec![
                ServiceReadiness {
                    name: "kv".into(),
                    ready: true,
                    critical: true,
                    state: "running".into(),
                },
                ServiceReadiness {
                    name: "app".into(),
                    ready: false,
                    critical: false,
                    state: "starting".into(),
                },
            ],
        };
        assert_eq!(
            render_readiness(&r, true),
            "kv                       ready     running [critical]\n\
             all ready, critical services stable for 1m 5s, 3 restarts since boot\n"
        );
        assert!(
            render_readiness(&r, false)
                .contains("app                      not ready starting\nnot all ready,")
        );
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_time(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_time(1_795_239_620_456), "2026-11-21 05:40:20.456");
        assert_eq!(format_uptime(5_234), "5.2s");
        assert_eq!(format_uptime(185_000), "3m 5s");
        assert_eq!(format_uptime(90_061_000), "1d 1h");
        let e = LogEntry {
            seq: 1,
            time_ms: 0,
            service: "kv".into(),
            pid: 7,
            stream: Stream::Stdout,
            level: Level::Info,
            text: "hi".into(),
        };
        assert_eq!(render_entry(&e), "1970-01-01 00:00:00.000 kv[7]: hi");
        let w = LogEntry {
            level: Level::Err,
            ..e
        };
        assert_eq!(render_entry(&w), "1970-01-01 00:00:00.000 kv[7]: err: hi");
        assert!(parse_level("Warning").is_ok());
        assert!(
            parse_level("loud")
                .unwrap_err()
                .contains("unknown level `loud`")
        );
    }
}
