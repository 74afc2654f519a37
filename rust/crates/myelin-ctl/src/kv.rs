//! Commands answered by myelin-kv (`org.myelin.KV1`): the U-Boot environment as a key/value
//! store. Every change goes through the daemon, so it is one locked, fsync'd write and every
//! subscriber sees a `Changed` signal.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use myelin_api::kv::Kv1Proxy;

use crate::{Cli, bus};

/// `myelinctl kv ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print one variable's value.
    Get {
        /// Variable name.
        name: String,
    },
    /// Print every variable, sorted.
    List,
    /// Set variables, all in one write: NAME=VALUE ...
    Set {
        /// `NAME=VALUE` pairs.
        #[arg(required = true, value_name = "NAME=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove variables, all in one write.
    Unset {
        /// Variable names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Splits `NAME=VALUE` arguments; the daemon checks names and values itself.
fn parse_pairs(pairs: &[String]) -> anyhow::Result<BTreeMap<&str, &str>> {
    let mut vars = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("'{pair}' is not NAME=VALUE (use `myelinctl kv unset NAME` to remove one)");
        };
        if vars.insert(name, value).is_some() {
            bail!("'{name}' is given twice");
        }
    }
    Ok(vars)
}

/// Runs a `kv` command.
pub fn run(command: &Command, cli: &Cli, out: &mut dyn Write) -> anyhow::Result<i32> {
    // Bad arguments are refused before the bus is touched.
    let pairs = match command {
        Command::Set { pairs } => parse_pairs(pairs)?,
        _ => BTreeMap::new(),
    };
    bus::block_on(async {
        let conn = bus::connect(cli).await?;
        let kv = Kv1Proxy::new(&conn)
            .await
            .context("cannot reach myelin-kv (org.myelin.KV1)")?;
        match command {
            Command::Get { name } => match kv.get(name).await {
                Ok(value) => {
                    if cli.json {
                        writeln!(out, "{}", serde_json::json!({ name: value }))?;
                    } else {
                        writeln!(out, "{value}")?;
                    }
                    Ok(0)
                }
                Err(e) if bus::is_error(&e, "org.myelin.KV1.Error.NotFound") => {
                    eprintln!("myelinctl: {name} is not set");
                    Ok(1)
                }
                Err(e) => Err(e).context("myelin-kv refused Get"),
            },
            Command::List => {
                let all: BTreeMap<String, String> = kv
                    .get_all()
                    .await
                    .context("myelin-kv refused GetAll")?
                    .into_iter()
                    .collect();
                if cli.json {
                    writeln!(out, "{}", serde_json::to_string(&all)?)?;
                } else {
                    for (k, v) in &all {
                        writeln!(out, "{k}={v}")?;
                    }
                }
                Ok(0)
            }
            Command::Set { .. } => {
                let map: HashMap<&str, &str> = pairs.into_iter().collect();
                kv.set(map).await.context("myelin-kv refused the change")?;
                Ok(0)
            }
            Command::Unset { names } => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                kv.unset(&names)
                    .await
                    .context("myelin-kv refused the change")?;
                Ok(0)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_split_at_the_first_equals_sign() {
        let args = vec!["a=1".to_owned(), "b=x=y".to_owned()];
        let vars = parse_pairs(&args).unwrap();
        assert_eq!(vars.get("a"), Some(&"1"));
        assert_eq!(vars.get("b"), Some(&"x=y"));
    }

    #[test]
    fn bad_pairs_are_refused() {
        let err = parse_pairs(&["novalue".to_owned()]).unwrap_err();
        assert!(
            err.to_string().contains("'novalue' is not NAME=VALUE"),
            "{err}"
        );
        let err = parse_pairs(&["a=1".to_owned(), "a=2".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("'a' is given twice"), "{err}");
    }
}
