//! `myelin-kv migrate-nerves` and the daemon's first-boot step: converts the single-copy
//! environment of a Nerves device that was upgraded to Myelin into Myelin's redundant one (see
//! `myelin_ubootenv::migrate` for the layout and why it is power-cut safe).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use myelin_ubootenv::migrate::{self, Migration};
use myelin_ubootenv::{EnvConfig, Location};

use crate::cli::EnvArgs;

/// `migrate-nerves`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Where the Nerves firmware kept its environment (one line, fw_env.config format).
    #[arg(long = "nerves-config", default_value = migrate::NERVES_CONFIG_PATH)]
    nerves_config: PathBuf,
}

/// Reads the one-copy Nerves location from a fw_env.config-style file.
pub fn nerves_location(path: &Path) -> Result<Location> {
    let config = EnvConfig::from_file(path)?;
    match config.copies() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "{}: a Nerves environment has one copy, this file describes two",
            path.display()
        ),
    }
}

/// Runs the conversion and says what happened, in one line.
pub fn migrate_nerves(config: &EnvConfig, nerves_config: &Path) -> Result<String> {
    let nerves = nerves_location(nerves_config)?;
    let outcome = migrate::migrate(config, &nerves)
        .with_context(|| format!("converting the Nerves environment at {nerves}"))?;
    Ok(match outcome {
        Migration::NotNerves => format!("no Nerves environment at {nerves}: nothing to convert"),
        Migration::Converted(vars) => {
            format!(
                "Nerves environment already converted ({} variables)",
                vars.len()
            )
        }
        Migration::Write { vars, .. } => format!(
            "converted the Nerves environment at {nerves} ({} variables) to Myelin's redundant layout",
            vars.len()
        ),
    })
}

/// The `migrate-nerves` subcommand.
pub fn run(args: &MigrateArgs) -> Result<()> {
    println!(
        "{}",
        migrate_nerves(&args.env.load()?, &args.nerves_config)?
    );
    Ok(())
}
