//! `sensor-node [--config FILE]`: the product's application, started by myelin-init.

use std::collections::HashMap;

use anyhow::{Context, bail};
use myelin::log::LevelFilter;
use sensor_node::config::{self, Config};
use sensor_node::sensor::Tmp102;

fn main() -> anyhow::Result<()> {
    myelin::logger::init(LevelFilter::Info);
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut args = std::env::args().skip(1);
    let mut path = env.get("SENSOR_NODE_CONFIG").cloned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = Some(args.next().context("--config needs a file")?),
            "-h" | "--help" => {
                println!(
                    "usage: sensor-node [--config FILE] (default {})",
                    config::DEFAULT_PATH
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: sensor-node [--config FILE])"),
        }
    }
    // The default file may be absent (environment only); a file asked for must exist.
    let text = match &path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {p}"))?,
        None => std::fs::read_to_string(config::DEFAULT_PATH).unwrap_or_default(),
    };
    let shown = path.as_deref().unwrap_or(config::DEFAULT_PATH);
    let config = Config::parse(shown, &text, &env)?;
    let sensor = Tmp102::open(&config.bus, config.address)?;
    sensor_node::app::run(config, Box::new(sensor))
}
