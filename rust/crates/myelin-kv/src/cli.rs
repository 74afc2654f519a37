//! The `myelin-kv` command line, a multi-call program.
//!
//! Invoked as `fw_printenv` or `fw_setenv` (symlinks on the device) it behaves like
//! libubootenv's tools; otherwise it takes a subcommand: `printenv`, `setenv`, `daemon`,
//! `mkenvimage` or `migrate-nerves`.
//!
//! * `fw_printenv [-c config] [-f defaults] [-n] [--json] [name ...]`: all variables or the
//!   named ones as `name=value` (`-n`: the value only). A missing name prints U-Boot's
//!   `## Error: "name" not defined` and the exit status is 1.
//! * `fw_setenv [-c config] [-f defaults | --force-init] [-s script] [name value ...] [name]`:
//!   every change of one invocation (script first, then arguments) is one write. A lone trailing
//!   name or an empty value deletes. Unlike old U-Boot tools, arguments are `name value` pairs,
//!   not one value joined from all words (libubootenv's rule).
//! * `-f defaults` (both tools) is used only when no copy of the environment is valid;
//!   `--force-init` starts from an empty environment in that case.
//! * `mkenvimage -s size [-r] [-b] [-p byte] [-o out] input`: the same bytes as U-Boot's
//!   `mkenvimage` for a valid input, with errors naming the line for an invalid one.
//! * `--lock path` replaces `/var/lock/fw_printenv.lock` (tests); `--lock-wait seconds` bounds
//!   the wait for it (15 s by default), after which a write fails naming the lock file.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use myelin_ubootenv::format::{self, ImageOptions, Layout, Vars};
use myelin_ubootenv::{
    DEFAULT_CONFIG_PATH, DEFAULT_LOCK_PATH, EnvConfig, EnvError, Recovery, text,
};

use crate::batch::Batch;
use crate::store::{KvError, Store};

/// Options every environment command takes.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Configuration file (fw_env.config format).
    #[arg(short = 'c', long = "config", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Lock file shared with libubootenv's tools.
    #[arg(long = "lock", default_value = DEFAULT_LOCK_PATH)]
    pub lock: PathBuf,
    /// Seconds a write waits for the lock before failing with an error naming the lock file.
    #[arg(long = "lock-wait", default_value_t = myelin_ubootenv::DEFAULT_LOCK_WAIT.as_secs_f64())]
    pub lock_wait: f64,
}

impl EnvArgs {
    /// Reads the configuration and applies the lock options.
    pub fn load(&self) -> Result<EnvConfig> {
        let wait = std::time::Duration::try_from_secs_f64(self.lock_wait)
            .map_err(|e| anyhow!("--lock-wait {}: {e}", self.lock_wait))?;
        Ok(EnvConfig::from_file(&self.config)?
            .with_lock_path(&self.lock)
            .with_lock_wait(wait))
    }
}

/// `printenv` / `fw_printenv`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Default environment (text) to print if no copy is valid.
    #[arg(short = 'f', long = "defenv")]
    defenv: Option<PathBuf>,
    /// Print only the values of the named variables.
    #[arg(short = 'n', long = "no-header")]
    no_header: bool,
    /// Print one JSON object of names and values.
    #[arg(long)]
    json: bool,
    /// Variables to print (all if none).
    names: Vec<String>,
}

/// `setenv` / `fw_setenv`.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Default environment (text) to start from if no copy is valid.
    #[arg(short = 'f', long = "defenv")]
    defenv: Option<PathBuf>,
    /// Start from an empty environment if no copy is valid.
    #[arg(long)]
    force_init: bool,
    /// Script of `name=value` lines (`name=` deletes); `-` reads standard input.
    #[arg(short = 's', long = "script")]
    script: Option<PathBuf>,
    /// `name value` pairs; a lone trailing name, or an empty value, deletes.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `mkenvimage`.
#[derive(Debug, Args)]
pub struct MkenvimageArgs {
    /// Size of the environment (of one copy), C notation (0x hex, 0 octal, decimal).
    #[arg(short = 's', value_parser = parse_size)]
    size: usize,
    /// The image is one copy of a redundant environment (flags byte, set to 1).
    #[arg(short = 'r')]
    redundant: bool,
    /// Store the CRC big-endian.
    #[arg(short = 'b')]
    big_endian: bool,
    /// Padding byte after the variables.
    #[arg(short = 'p', value_parser = parse_byte, default_value = "0xff")]
    pad: u8,
    /// Output file (standard output if absent or `-`).
    #[arg(short = 'o')]
    output: Option<PathBuf>,
    /// Text environment (`name=value` lines); `-` reads standard input.
    input: PathBuf,
}

/// `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    /// Configuration and lock file.
    pub env: EnvArgs,
    /// Seconds between checks for writes nobody announced (0 disables).
    #[arg(long, default_value = "5")]
    pub poll_interval: f64,
    /// D-Bus address to use instead of the system bus.
    #[arg(long)]
    pub address: Option<String>,
    /// Before serving, convert a Nerves environment described by this file, if it exists
    /// (`migrate-nerves`): a device upgraded from Nerves boots Myelin with it.
    #[arg(long = "nerves-config")]
    pub nerves_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print variables (fw_printenv).
    Printenv(PrintArgs),
    /// Set or delete variables in one write (fw_setenv).
    Setenv(SetArgs),
    /// Serve org.myelin.KV1 on the system bus.
    Daemon(DaemonArgs),
    /// Turn a text environment into a binary image (U-Boot's mkenvimage).
    Mkenvimage(MkenvimageArgs),
    /// Convert a Nerves device's single-copy environment to Myelin's redundant one.
    MigrateNerves(crate::nerves::MigrateArgs),
}

#[derive(Debug, Parser)]
#[command(
    name = "myelin-kv",
    version,
    about = "The U-Boot environment as a key/value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Parser)]
#[command(
    name = "fw_printenv",
    version,
    about = "Print U-Boot environment variables"
)]
struct FwPrintenv {
    #[command(flatten)]
    args: PrintArgs,
}

#[derive(Debug, Parser)]
#[command(
    name = "fw_setenv",
    version,
    about = "Set U-Boot environment variables"
)]
struct FwSetenv {
    #[command(flatten)]
    args: SetArgs,
}

/// Runs the program with these arguments (`args[0]` selects the personality).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let (prog, command) = match personality(&args).as_str() {
        "fw_printenv" => (
            "fw_printenv",
            Command::Printenv(FwPrintenv::parse_from(args).args),
        ),
        "fw_setenv" => (
            "fw_setenv",
            Command::Setenv(FwSetenv::parse_from(args).args),
        ),
        _ => ("myelin-kv", Cli::parse_from(args).command),
    };
    exit_code(prog, run(prog, command))
}

/// The name the program was invoked as (the file name of `args[0]`): what selects the
/// fw_printenv or fw_setenv personality.
fn personality(args: &[OsString]) -> String {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// The exit status of a command's result; an error is printed after the program's name.
fn exit_code(prog: &str, result: Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|err| {
        eprintln!("{prog}: {err:#}");
        ExitCode::FAILURE
    })
}

/// The `fw_printenv`/`fw_setenv` personalities only (`args[0]` selects one): what the small
/// `fw_env` binary runs. It links neither the D-Bus service nor the other subcommands, so a
/// shell script calling fw_printenv in a loop pays for a small program's start.
pub fn fw_main(args: Vec<OsString>) -> ExitCode {
    match personality(&args).as_str() {
        "fw_setenv" => exit_code("fw_setenv", setenv(&FwSetenv::parse_from(args).args)),
        _ => exit_code(
            "fw_printenv",
            printenv("fw_printenv", &FwPrintenv::parse_from(args).args),
        ),
    }
}

fn run(prog: &str, command: Command) -> Result<ExitCode> {
    match command {
        Command::Printenv(args) => printenv(prog, &args),
        Command::Setenv(args) => setenv(&args),
        Command::Mkenvimage(args) => mkenvimage(&args).map(|()| ExitCode::SUCCESS),
        Command::Daemon(args) => daemon(args),
        Command::MigrateNerves(args) => crate::nerves::run(&args).map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(feature = "dbus")]
fn daemon(args: DaemonArgs) -> Result<ExitCode> {
    crate::service::run_daemon(args).map(|()| ExitCode::SUCCESS)
}

#[cfg(not(feature = "dbus"))]
fn daemon(_args: DaemonArgs) -> Result<ExitCode> {
    bail!("this build of myelin-kv has no D-Bus support (feature \"dbus\")")
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn read_defaults(path: &Path) -> Result<Vars> {
    let bytes = read_input(path)?;
    text::parse_defaults(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn printenv(prog: &str, args: &PrintArgs) -> Result<ExitCode> {
    if args.no_header && args.names.is_empty() {
        bail!("-n needs at least one variable name");
    }
    let store = Store::new(args.env.load()?);
    let vars = match store.read() {
        Ok(snapshot) => snapshot.vars,
        Err(err) if err.is_unreadable() && args.defenv.is_some() => {
            let path = args.defenv.as_deref().unwrap_or(Path::new("-"));
            eprintln!(
                "{prog}: warning: {err}; printing the defaults from {}",
                path.display()
            );
            read_defaults(path)?
        }
        Err(err) => return Err(err.into()),
    };
    let mut missing = false;
    let selected: Vec<(&str, &str)> = if args.names.is_empty() {
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    } else {
        let mut selected = Vec::new();
        for name in &args.names {
            match vars.get_key_value(name) {
                Some((k, v)) => selected.push((k.as_str(), v.as_str())),
                None => {
                    eprintln!("## Error: \"{name}\" not defined");
                    missing = true;
                }
            }
        }
        selected
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = if args.json {
        let map: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        writeln!(out, "{}", serde_json::Value::Object(map))
    } else {
        selected.iter().try_for_each(|(k, v)| {
            if args.no_header {
                writeln!(out, "{v}")
            } else {
                writeln!(out, "{k}={v}")
            }
        })
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        // `fw_printenv | head` is fine.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("cannot write to standard output"),
    }
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn setenv(args: &SetArgs) -> Result<ExitCode> {
    let mut batch = Batch::new();
    if let Some(script) = &args.script {
        let bytes = read_input(script)?;
        let entries = text::parse(&bytes).map_err(|e| anyhow!("{}: {e}", script.display()))?;
        batch.extend(Batch::from_script(&entries));
    }
    if !args.args.is_empty() {
        batch.extend(Batch::from_args(&args.args)?);
    } else if args.script.is_none() {
        bail!("no variable name given (usage: fw_setenv name [value] ... or fw_setenv -s script)");
    }
    batch
        .validate()
        .map_err(|e| anyhow!("{e}; nothing was written"))?;
    let defaults = match &args.defenv {
        Some(path) => Some(read_defaults(path)?),
        None if args.force_init => Some(Vars::new()),
        None => None,
    };
    let recovery = defaults.as_ref().map_or(Recovery::Refuse, Recovery::From);
    let store = Store::new(args.env.load()?);
    match store.apply(&batch, recovery) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(KvError::Env(err)) if err.during_write() => Err(anyhow!(
            "{err}; the copy being written may be incomplete{}",
            if store.env().config().layout() == Layout::Redundant {
                ", the previous state is still valid in the other copy"
            } else {
                ""
            }
        )),
        Err(KvError::Env(EnvError::Lock(err))) => Err(anyhow!("{err}; nothing was written")),
        Err(err) => Err(anyhow!("{err}; nothing was written")),
    }
}

fn mkenvimage(args: &MkenvimageArgs) -> Result<()> {
    let input = read_input(&args.input)?;
    let name = args.input.display();
    let entries = text::parse(&input).map_err(|e| anyhow!("{name}: {e}"))?;
    // Same checks as a default environment (no name twice; `name=` is kept with an empty value,
    // as U-Boot's mkenvimage keeps it), but the image keeps the input order, as mkenvimage does.
    text::to_vars(&entries).map_err(|e| anyhow!("{name}: {e}"))?;
    let layout = if args.redundant {
        Layout::Redundant
    } else {
        Layout::Single
    };
    let options = ImageOptions {
        pad: args.pad,
        big_endian: args.big_endian,
    };
    let image = format::encode_with(
        entries.iter().map(|e| (e.name.as_str(), e.value.as_str())),
        args.size,
        layout,
        1,
        &options,
    )
    .map_err(|e| anyhow!("{name}: {e}"))?;
    match &args.output {
        Some(path) if path != Path::new("-") => {
            std::fs::write(path, &image).with_context(|| format!("cannot write {}", path.display()))
        }
        _ => io::stdout()
            .lock()
            .write_all(&image)
            .context("cannot write to standard output"),
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    myelin_ubootenv::config::parse_c_integer(s)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (C notation: 0x hex, 0 octal, decimal)"))
}

fn parse_byte(s: &str) -> Result<u8, String> {
    myelin_ubootenv::config::parse_c_integer(s)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| format!("{s:?} is not a byte value (0 to 0xff)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
        FwPrintenv::command().debug_assert();
        FwSetenv::command().debug_assert();
    }

    #[test]
    fn setenv_values_may_start_with_a_dash() {
        let parsed =
            FwSetenv::try_parse_from(["fw_setenv", "-c", "x.conf", "offset", "-5"]).unwrap();
        assert_eq!(parsed.args.args, vec!["offset", "-5"]);
        assert_eq!(parsed.args.env.config, PathBuf::from("x.conf"));
        let parsed = FwSetenv::try_parse_from(["fw_setenv", "-s", "-"]).unwrap();
        assert_eq!(parsed.args.script, Some(PathBuf::from("-")));
    }

    #[test]
    fn mkenvimage_numbers_use_c_notation() {
        assert_eq!(parse_size("0x20000"), Ok(0x20000));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_byte("0"), Ok(0));
        assert!(parse_byte("256").is_err());
    }
}
