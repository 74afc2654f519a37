//! The join payload: the running firmware's metadata, from the U-Boot environment.
//!
//! NervesHubLink sends every variable of the active slot with the slot prefix removed (Nerves'
//! `KV.get_all_active`: with `nerves_fw_active=b`, `b.nerves_fw_version` is sent as
//! `nerves_fw_version`), which gives the server `nerves_fw_uuid`, `nerves_fw_version`,
//! `nerves_fw_platform`, `nerves_fw_architecture`, `nerves_fw_product`, `nerves_fw_author`,
//! `nerves_fw_description`, `nerves_fw_vcs_identifier`, `nerves_fw_misc` (the server recognises
//! fwup firmware by `nerves_fw_uuid`). On top come `device_api_version` (the protocol revision
//! the client speaks), `fwup_version`, `currently_downloading_uuid` and `meta`
//! (`firmware_validated`, `firmware_auto_revert_detected`).
//!
//! Myelin does not request the server's firmware keys (`fwup_public_keys: "on_connect"`):
//! myelin-update checks signatures against the keys in the device's own rootfs.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// The device API revision this client implements (NervesHubLink 2.x's).
pub const DEVICE_API_VERSION: &str = "2.3.0";
/// The fwup release whose `.fw` format myelin-fw reads and writes (myelin-fw's
/// `FWUP_COMPATIBLE_VERSION`; not linked, to keep the client free of the archive code).
pub const FWUP_VERSION: &str = "1.16.0";

/// What the join reports besides the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeState {
    /// The running firmware is validated.
    pub validated: bool,
    /// The bootloader fell back to this slot after a failed trial.
    pub auto_reverted: bool,
    /// The UUID of the firmware being installed, if any.
    pub downloading: Option<String>,
}

/// The running slot's variables, prefix removed (`nerves_fw_active`, default `a`).
pub fn active_metadata(env: &HashMap<String, String>) -> Map<String, Value> {
    let active = env.get("nerves_fw_active").map_or("a", String::as_str);
    let prefix = format!("{active}.");
    env.iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&prefix)?;
            Some((name.to_owned(), Value::String(v.clone())))
        })
        .collect()
}

/// Whether the running slot is validated: `<slot>.nerves_fw_validated` is not `0` (unset means
/// an image written whole, which is valid), or the plain `nerves_fw_validated` some layouts use.
pub fn validated(env: &HashMap<String, String>) -> bool {
    let active = env.get("nerves_fw_active").map_or("a", String::as_str);
    let v = env
        .get(&format!("{active}.nerves_fw_validated"))
        .or_else(|| env.get("nerves_fw_validated"));
    v.is_none_or(|v| v != "0")
}

/// The `phx_join` payload of the device topic.
pub fn join_payload(env: &HashMap<String, String>, runtime: &RuntimeState) -> Value {
    let mut p = active_metadata(env);
    p.insert("device_api_version".into(), json!(DEVICE_API_VERSION));
    p.insert("fwup_version".into(), json!(FWUP_VERSION));
    p.insert(
        "currently_downloading_uuid".into(),
        runtime
            .downloading
            .clone()
            .map_or(Value::Null, Value::String),
    );
    p.insert(
        "meta".into(),
        json!({
            "firmware_validated": runtime.validated,
            "firmware_auto_revert_detected": runtime.auto_reverted,
        }),
    );
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn active_slot_keys_without_prefix() {
        let e = env(&[
            ("nerves_fw_active", "b"),
            ("a.nerves_fw_version", "1.0.0"),
            ("b.nerves_fw_version", "1.1.0"),
            ("b.nerves_fw_uuid", "uuid-b"),
            ("b.nerves_fw_platform", "x86_64"),
            ("b.nerves_fw_architecture", "x86_64"),
            ("b.nerves_fw_product", "demo"),
            ("nerves_serial_number", "sn"),
        ]);
        let p = join_payload(
            &e,
            &RuntimeState {
                validated: true,
                ..Default::default()
            },
        );
        assert_eq!(p["nerves_fw_version"], "1.1.0");
        assert_eq!(p["nerves_fw_uuid"], "uuid-b");
        assert_eq!(p["nerves_fw_platform"], "x86_64");
        assert_eq!(p["nerves_fw_architecture"], "x86_64");
        assert_eq!(p["nerves_fw_product"], "demo");
        assert_eq!(p["device_api_version"], DEVICE_API_VERSION);
        assert_eq!(p["meta"]["firmware_validated"], true);
        assert_eq!(p["currently_downloading_uuid"], Value::Null);
        assert!(p.get("nerves_serial_number").is_none());
        assert!(p.get("a.nerves_fw_version").is_none());
    }

    #[test]
    fn slot_a_by_default_and_validation() {
        let e = env(&[("a.nerves_fw_uuid", "ua"), ("a.nerves_fw_validated", "0")]);
        assert_eq!(active_metadata(&e)["nerves_fw_uuid"], "ua");
        assert!(!validated(&e));
        assert!(validated(&env(&[("a.nerves_fw_validated", "1")])));
        assert!(validated(&env(&[])));
    }
}
