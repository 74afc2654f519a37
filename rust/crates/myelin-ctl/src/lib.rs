//! Myelinctl: the one command line over Myelin's services.
//!
//! One clap CLI, one module per service: [`init`] talks to PID 1 over its control socket
//! (status, readiness, logs, start/stop/restart, reboot, watchdog); [`kv`], [`net`] and [`fw`]
//! talk to myelin-kv, myelin-net and myelin-update over D-Bus (the system bus, or `--bus`).
//!
//! ```text
//! myelinctl status                 the supervision tree: states, pids, restarts, uptime; the clock
//! myelinctl ready [--critical] [--wait 60]
//! myelinctl boot [--svg FILE]          the boot timeline: kernel, init phases, services
//! myelinctl log [-f] [-n 100] [SERVICE]
//! myelinctl start|stop|restart NAME
//! myelinctl reboot [ARG] | reboot --now | poweroff | halt
//! myelinctl watchdog snooze
//! myelinctl kv get NAME | list | set NAME=VALUE... | unset NAME...
//! myelinctl net status [IFNAME] | configure IFNAME JSON | get-config IFNAME | check-hosts H:P...
//! myelinctl fw status | install PATH|URL|- [--reboot] | validate | revert | factory-reset
//! myelinctl hw [gpio|i2c|spi|uart|pwm] | hw --detect BUS
//! myelinctl ssh keys | add-key KEY...|-
//! myelinctl hub status
//! ```
//!
//! [`hw`] reads the kernel's interfaces directly, through the `myelin` crate an application uses.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod boot;
mod bus;
pub mod fw;
pub mod hub;
pub mod hw;
pub mod init;
pub mod kv;
pub mod net;
pub mod ssh;

/// `myelinctl` command line.
#[derive(Debug, Parser)]
#[command(name = "myelinctl", version, about = "Control Myelin's services")]
pub struct Cli {
    /// PID 1's control socket.
    #[arg(long, global = true, env = "MYELIN_INIT_SOCKET", default_value = myelin_api::init::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// D-Bus address of the bus the daemons are on (default: the system bus).
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub bus: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand, grouped by the service that answers it.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// PID 1: services, logs, power.
    #[command(flatten)]
    Init(init::Command),
    /// The key/value store (U-Boot environment), through myelin-kv.
    #[command(subcommand)]
    Kv(kv::Command),
    /// Network interfaces, through myelin-net.
    #[command(subcommand)]
    Net(net::Command),
    /// Firmware: status, install, validate, revert, through myelin-update.
    #[command(subcommand)]
    Fw(fw::Command),
    /// The hardware applications can open: GPIO, I2C, SPI, UART, PWM.
    Hw(hw::Command),
    /// SSH keys authorized to log in (kept on /data).
    #[command(subcommand)]
    Ssh(ssh::Command),
    /// The NervesHub connection, from myelin-hub.
    #[command(subcommand)]
    Hub(hub::Command),
}

/// The daemons behind the bus names myelinctl calls, to name one that is not running.
const DAEMONS: &[(&str, &str)] = &[
    (myelin_api::kv::BUS_NAME, "myelin-kv"),
    (myelin_api::update::BUS_NAME, "myelin-update"),
    (myelin_api::net::BUS_NAME, "myelin-net"),
    (myelin_api::time::BUS_NAME, "myelin-time"),
];

/// The one line `myelinctl` prints for an error: a daemon that is not on the bus is named as
/// such (not as the bus's raw ServiceUnknown error), and a cause whose text the line already
/// holds is not repeated (zbus errors repeat their description in their source).
pub fn error_message(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        let text = cause.to_string();
        if text.contains("org.freedesktop.DBus.Error.ServiceUnknown")
            || text.contains("org.freedesktop.DBus.Error.NameHasNoOwner")
        {
            if let Some((_, daemon)) = DAEMONS.iter().find(|(name, _)| text.contains(name)) {
                return format!(
                    "{daemon} is not running (`myelinctl status` shows its state, \
                     `myelinctl start {daemon}` starts it)"
                );
            }
        }
    }
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Runs a parsed command line, writing to `out`; the process exit code.
pub fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Init(c) => init::run(c, cli, out),
        Command::Kv(c) => kv::run(c, cli, out),
        Command::Net(c) => net::run(c, cli, out),
        Command::Fw(c) => fw::run(c, cli, out),
        Command::Hw(c) => hw::run(c, cli, out),
        Command::Ssh(c) => ssh::run(c, out),
        Command::Hub(c) => hub::run(c, cli.json, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn error_lines_name_a_stopped_daemon_and_repeat_nothing() {
        let raw = "org.freedesktop.DBus.Error.ServiceUnknown: The name org.myelin.Update1 was \
                   not provided by any .service files";
        let e = anyhow::anyhow!(raw.to_string()).context(raw.to_string());
        assert!(error_message(&e).starts_with("myelin-update is not running"));
        let e = anyhow::anyhow!("disk full").context("cannot write x: disk full");
        assert_eq!(error_message(&e), "cannot write x: disk full");
        let e = anyhow::anyhow!("disk full").context("cannot write x");
        assert_eq!(error_message(&e), "cannot write x: disk full");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn previous_boot_is_a_listing_of_its_own() {
        let c = Cli::try_parse_from(["myelinctl", "log", "--previous-boot"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Init(init::Command::Log {
                previous_boot: true,
                ..
            })
        ));
        for with in [&["-f"][..], &["-n", "5"], &["kv"]] {
            let mut args = vec!["myelinctl", "log", "--previous-boot"];
            args.extend_from_slice(with);
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn parses_init_commands() {
        let c = Cli::try_parse_from([
            "myelinctl",
            "log",
            "-f",
            "-n",
            "20",
            "--level",
            "warn",
            "kv",
        ])
        .unwrap();
        match c.command {
            Command::Init(init::Command::Log {
                follow,
                lines,
                level,
                service,
                previous_boot,
            }) => {
                assert!(!previous_boot);
                assert!(follow);
                assert_eq!(lines, Some(20));
                assert_eq!(level, Some(myelin_api::init::Level::Warning));
                assert_eq!(service.as_deref(), Some("kv"));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["myelinctl", "--json", "reboot", "0 tryboot"]).unwrap();
        assert!(c.json);
        assert!(
            matches!(c.command, Command::Init(init::Command::Reboot { arg: Some(ref a), now: false }) if a == "0 tryboot")
        );
        let c = Cli::try_parse_from([
            "myelinctl",
            "ready",
            "--critical",
            "--wait",
            "5",
            "--socket",
            "/x",
        ])
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/x"));
        assert!(Cli::try_parse_from(["myelinctl", "restart"]).is_err());
        assert!(Cli::try_parse_from(["myelinctl", "watchdog", "snooze"]).is_ok());
    }

    #[test]
    fn parses_service_commands() {
        let c = Cli::try_parse_from(["myelinctl", "kv", "set", "a=1", "b=2"]).unwrap();
        assert!(
            matches!(c.command, Command::Kv(kv::Command::Set { ref pairs }) if pairs.len() == 2)
        );
        assert!(Cli::try_parse_from(["myelinctl", "kv", "set"]).is_err());
        let c = Cli::try_parse_from([
            "myelinctl",
            "--bus",
            "unix:path=/b",
            "fw",
            "install",
            "-",
            "--reboot",
        ])
        .unwrap();
        assert_eq!(c.bus.as_deref(), Some("unix:path=/b"));
        assert!(matches!(
            c.command,
            Command::Fw(fw::Command::Install { reboot: true, .. })
        ));
        let c = Cli::try_parse_from(["myelinctl", "net", "configure", "eth0", "{}", "--temporary"])
            .unwrap();
        assert!(matches!(
            c.command,
            Command::Net(net::Command::Configure {
                temporary: true,
                ..
            })
        ));
        let c = Cli::try_parse_from(["myelinctl", "hw", "i2c"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Hw(hw::Command {
                kind: Some(hw::Kind::I2c),
                detect: None
            })
        ));
        let c = Cli::try_parse_from(["myelinctl", "hw", "--detect", "i2c-1"]).unwrap();
        assert!(
            matches!(c.command, Command::Hw(hw::Command { detect: Some(ref b), .. }) if b == "i2c-1")
        );
        assert!(Cli::try_parse_from(["myelinctl", "hw", "leds"]).is_err());
    }
}
