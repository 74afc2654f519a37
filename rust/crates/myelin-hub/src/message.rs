//! What NervesHub tells a device on the `device` channel, and what the device reports back.
//!
//! Server to device (as nerves_hub_web's device channel pushes them):
//! - `update`: `{"firmware_url": "...", "firmware_meta": {"uuid", "version", "platform",
//!   "architecture", "product", "author", "description", "vcs_identifier", "misc",
//!   "fwup_version"}, "size"?, "checksum"?, "partials_checksums"?}`;
//! - `reboot`: the device answers `rebooting` and reboots;
//! - `identify`: the device makes itself seen (an LED);
//! - `fwup_public_keys`, `archive_public_keys`: `{"keys": [...]}`;
//! - `extensions:get`: the device joins the `extensions` topic with the extensions it has
//!   ([`crate::health`]);
//! - anything else (`archive`, `scripts/run`, newer events): logged, ignored.
//!
//! Device to server: `fwup_progress` `{"stage": "downloading"|"updating", "value": percent}`,
//! `status_update` `{"status": "received"|"started"|"completed"|"ignored"|"rescheduled"|
//! "failed", ...}`, `firmware_validated` `{}`, `rebooting` `{}`.

use serde::Deserialize;
use serde_json::{Value, json};

/// The firmware an update offers (the fields a device uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct FirmwareMeta {
    /// The firmware UUID.
    pub uuid: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Its platform (the board).
    pub platform: Option<String>,
    /// Its architecture.
    pub architecture: Option<String>,
    /// Its product.
    pub product: Option<String>,
}

/// An `update` message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UpdateInfo {
    /// Where to download the `.fw` from (a pre-signed URL).
    pub firmware_url: String,
    /// What the firmware is.
    pub firmware_meta: FirmwareMeta,
    /// Its size in bytes, from newer servers.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A server message, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// Install this firmware.
    Update(UpdateInfo),
    /// Reboot now.
    Reboot,
    /// Show yourself.
    Identify,
    /// Keys the server holds for firmware or archives (Myelin verifies with its own keys).
    PublicKeys {
        /// `fwup_public_keys` or `archive_public_keys`.
        kind: String,
        /// How many keys it sent.
        count: usize,
    },
    /// The server asks which extensions the device has.
    ExtensionsGet,
    /// An event this client does not handle.
    Unknown(String),
}

/// A known event whose payload is not what the protocol says.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{event}` message: {reason}")]
pub struct BadMessage {
    /// The event.
    pub event: String,
    /// What is wrong (names the field).
    pub reason: String,
}

/// Parses a push on the `device` topic.
pub fn parse(event: &str, payload: &Value) -> Result<ServerEvent, BadMessage> {
    let bad = |reason: String| BadMessage {
        event: event.to_owned(),
        reason,
    };
    match event {
        "update" => {
            let info: UpdateInfo = serde_path_to_error::deserialize(payload)
                .map_err(|e| bad(format!("field {}: {}", e.path(), e.inner())))?;
            if !(info.firmware_url.starts_with("https://")
                || info.firmware_url.starts_with("http://"))
            {
                return Err(bad("field firmware_url: not an http(s) URL".into()));
            }
            Ok(ServerEvent::Update(info))
        }
        "reboot" => Ok(ServerEvent::Reboot),
        "identify" => Ok(ServerEvent::Identify),
        "extensions:get" => Ok(ServerEvent::ExtensionsGet),
        "fwup_public_keys" | "archive_public_keys" => Ok(ServerEvent::PublicKeys {
            kind: event.to_owned(),
            count: payload
                .get("keys")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        }),
        other => Ok(ServerEvent::Unknown(other.to_owned())),
    }
}

/// The stage of an install that `fwup_progress` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the `.fw` from the server.
    Downloading,
    /// Writing it (Myelin streams, so both happen together: it reports `updating`).
    Updating,
}

/// `fwup_progress`'s payload.
pub fn progress(stage: Stage, percent: u32) -> Value {
    let stage = match stage {
        Stage::Downloading => "downloading",
        Stage::Updating => "updating",
    };
    json!({ "stage": stage, "value": percent.min(100) })
}

/// What a device says about an update in `status_update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The update message arrived.
    Received,
    /// The install started.
    Started,
    /// The install finished; a reboot runs the new firmware.
    Completed,
    /// Not installed, with the reason (e.g. another platform).
    Ignored(String),
    /// Later: in how many seconds, and why.
    Rescheduled(u64, String),
    /// The install failed.
    Failed(String),
}

/// `status_update`'s payload.
pub fn status(s: &Status) -> Value {
    match s {
        Status::Received => json!({"status": "received"}),
        Status::Started => json!({"status": "started"}),
        Status::Completed => json!({"status": "completed"}),
        Status::Ignored(why) => json!({"status": "ignored", "reason": why}),
        Status::Rescheduled(secs, why) => {
            json!({"status": "rescheduled", "delay_for": secs, "reason": why})
        }
        Status::Failed(why) => json!({"status": "failed", "reason": why}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_parses_with_and_without_optional_fields() {
        let p = json!({
            "firmware_url": "https://fw.example/x.fw?sig=1",
            "firmware_meta": {"uuid": "u1", "version": "1.2.0", "platform": "x86_64",
                              "architecture": "x86_64", "product": "demo", "author": null},
            "size": 1234
        });
        let ServerEvent::Update(info) = parse("update", &p).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(info.firmware_url, "https://fw.example/x.fw?sig=1");
        assert_eq!(info.firmware_meta.version.as_deref(), Some("1.2.0"));
        assert_eq!(info.size, Some(1234));
    }

    #[test]
    fn bad_update_names_the_field() {
        let e = parse("update", &json!({"firmware_meta": {}})).unwrap_err();
        assert!(e.to_string().contains("firmware_url"), "{e}");
        let e = parse("update", &json!({"firmware_url": 3, "firmware_meta": {}})).unwrap_err();
        assert!(e.to_string().contains("firmware_url"), "{e}");
        let e = parse(
            "update",
            &json!({"firmware_url": "file:///etc/passwd", "firmware_meta": {}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn other_events() {
        assert_eq!(parse("reboot", &json!({})), Ok(ServerEvent::Reboot));
        assert_eq!(parse("identify", &json!({})), Ok(ServerEvent::Identify));
        assert_eq!(
            parse("fwup_public_keys", &json!({"keys": ["a", "b"]})),
            Ok(ServerEvent::PublicKeys {
                kind: "fwup_public_keys".into(),
                count: 2
            })
        );
        assert_eq!(
            parse("scripts/run", &json!({"text": "x"})),
            Ok(ServerEvent::Unknown("scripts/run".into()))
        );
    }

    #[test]
    fn reports() {
        assert_eq!(
            progress(Stage::Updating, 140),
            json!({"stage": "updating", "value": 100})
        );
        assert_eq!(
            status(&Status::Failed("no".into())),
            json!({"status": "failed", "reason": "no"})
        );
        assert_eq!(
            status(&Status::Rescheduled(30, "not validated".into())),
            json!({"status": "rescheduled", "delay_for": 30, "reason": "not validated"})
        );
    }
}
