//! WiFi keys for the command-line `configure` (`myelin-net configure`, `myelinctl net
//! configure`): read from a file or from standard input, never from the command line, where
//! every user of the device can read it (`ps`, `/proc/<pid>/cmdline`).
//!
//! The configuration JSON names the network without its key (`{"ssid": "home"}`, optionally
//! with `key_mgmt`); `--psk-file FILE` or `--psk-stdin` supplies the key, which goes into the
//! one network of the configuration that has none. A key of 64 hex digits is a PSK, anything
//! else a passphrase (SAE takes only a passphrase). A JSON argument that carries a key itself
//! is refused.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The options that supply a key, shared by both command lines.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// Read the WiFi passphrase (or 64-hex-digit PSK) from FILE (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "psk_stdin")]
    pub psk_file: Option<PathBuf>,
    /// Read the WiFi passphrase (or 64-hex-digit PSK) from standard input (its first line).
    #[arg(long)]
    pub psk_stdin: bool,
}

/// Why a configuration and its key could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The configuration is not JSON.
    #[error("the configuration is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The configuration on the command line carries a key.
    #[error(
        "{0}: a key on the command line can be read by every user of the device (ps, /proc); \
         leave it out and give it with --psk-file FILE or --psk-stdin"
    )]
    OnCommandLine(String),
    /// The key file cannot be read.
    #[error("cannot read the key from {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// The key is empty.
    #[error("the key is empty")]
    Empty,
    /// Not exactly one network can take the key.
    #[error(
        "--psk-file and --psk-stdin give the key of exactly one network of wifi.networks that \
         has none (and key_mgmt other than \"none\"); this configuration has {0}"
    )]
    NoSingleTarget(usize),
}

/// Where the key comes from, if anywhere.
impl KeyArgs {
    /// Reads the key the options name (`None` if they name none).
    pub fn read(&self) -> Result<Option<String>, KeyError> {
        if let Some(path) = &self.psk_file {
            let file = std::fs::File::open(path).map_err(|e| KeyError::Read(path.clone(), e))?;
            return read_key(file, path).map(Some);
        }
        if self.psk_stdin {
            return read_key(std::io::stdin().lock(), Path::new("standard input")).map(Some);
        }
        Ok(None)
    }
}

/// The first line of `from` (without its line end); nothing after it is read, so a key typed
/// at a terminal ends with Enter.
pub fn read_key(from: impl Read, name: &Path) -> Result<String, KeyError> {
    let mut line = String::new();
    std::io::BufReader::new(from.take(4096))
        .read_line(&mut line)
        .map_err(|e| KeyError::Read(name.to_owned(), e))?;
    let key = line.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(key.to_owned())
}

fn networks(config: &mut Value) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    config
        .get_mut("wifi")
        .and_then(|w| w.get_mut("networks"))
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The configuration `json` from the command line, with `key` put into the network that has
/// none; an error if `json` carries a key itself.
pub fn prepare(json: &str, key: Option<&str>) -> Result<String, KeyError> {
    let mut config: Value = serde_json::from_str(json).map_err(KeyError::NotJson)?;
    for (i, n) in networks(&mut config).enumerate() {
        for field in ["passphrase", "psk"] {
            if n.contains_key(field) {
                return Err(KeyError::OnCommandLine(format!(
                    "wifi.networks[{i}].{field}"
                )));
            }
        }
    }
    let Some(key) = key else {
        return Ok(json.to_owned());
    };
    let mut targets: Vec<_> = networks(&mut config)
        .filter(|n| n.get("key_mgmt").and_then(Value::as_str) != Some("none"))
        .collect();
    let [network] = targets.as_mut_slice() else {
        return Err(KeyError::NoSingleTarget(targets.len()));
    };
    let sae = network.get("key_mgmt").and_then(Value::as_str) == Some("sae");
    let psk = !sae && key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    let field = if psk { "psk" } else { "passphrase" };
    network.insert(field.into(), Value::from(key));
    Ok(config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIFI: &str = r#"{"type":"wifi","wifi":{"networks":[{"ssid":"home"},{"ssid":"cafe","key_mgmt":"none"}]}}"#;

    #[test]
    fn the_key_goes_into_the_network_without_one() {
        let out: Value =
            serde_json::from_str(&prepare(WIFI, Some("correct horse")).unwrap()).unwrap();
        assert_eq!(out["wifi"]["networks"][0]["passphrase"], "correct horse");
        assert!(out["wifi"]["networks"][1].get("passphrase").is_none());
        let hex = "ab".repeat(32);
        let out: Value = serde_json::from_str(&prepare(WIFI, Some(&hex)).unwrap()).unwrap();
        assert_eq!(out["wifi"]["networks"][0]["psk"], hex.as_str());
        let sae = r#"{"type":"wifi","wifi":{"networks":[{"ssid":"w3","key_mgmt":"sae"}]}}"#;
        let out: Value = serde_json::from_str(&prepare(sae, Some(&hex)).unwrap()).unwrap();
        assert_eq!(out["wifi"]["networks"][0]["passphrase"], hex.as_str());
        // Without a key the configuration passes unchanged.
        assert_eq!(prepare(WIFI, None).unwrap(), WIFI);
    }

    #[test]
    fn keys_on_the_command_line_and_ambiguity_are_refused() {
        let inline =
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a","passphrase":"hunter2hunter2"}]}}"#;
        let e = prepare(inline, None).unwrap_err();
        assert!(
            e.to_string().starts_with("wifi.networks[0].passphrase: "),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let two = r#"{"type":"wifi","wifi":{"networks":[{"ssid":"a"},{"ssid":"b"}]}}"#;
        assert!(matches!(
            prepare(two, Some("password1")),
            Err(KeyError::NoSingleTarget(2))
        ));
        let eth = r#"{"type":"ethernet"}"#;
        assert!(matches!(
            prepare(eth, Some("password1")),
            Err(KeyError::NoSingleTarget(0))
        ));
        assert!(matches!(prepare("{", None), Err(KeyError::NotJson(_))));
    }

    #[test]
    fn the_key_is_the_first_line() {
        let name = Path::new("test");
        assert_eq!(
            read_key(&b"secret words\n"[..], name).unwrap(),
            "secret words"
        );
        assert_eq!(
            read_key(&b"secret words\r\nmore"[..], name).unwrap(),
            "secret words"
        );
        assert!(matches!(read_key(&b"\n"[..], name), Err(KeyError::Empty)));
    }
}
