//! What the D-Bus properties show, rendered from the daemon's snapshot, and the install
//! options read from a call.

use std::collections::HashMap;

use super::{BusError, Snapshot};
use crate::record::Outcome;
use crate::slot::Slot;

pub(super) fn version(s: &Snapshot) -> String {
    s.running
        .and_then(|r| s.slots.iter().find(|(slot, _)| *slot == r))
        .and_then(|(_, info)| info.version())
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn last_install(s: &Snapshot) -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert(
        "outcome".to_owned(),
        s.outcome.unwrap_or(Outcome::None).name().to_owned(),
    );
    if let Some(r) = &s.last_install {
        map.insert("slot".to_owned(), Slot::from(r.slot).name().to_owned());
        if let Some(v) = &r.version {
            map.insert("version".to_owned(), v.clone());
        }
        if let Some(u) = &r.uuid {
            map.insert("uuid".to_owned(), u.clone());
        }
        map.insert("installed_at".to_owned(), r.installed_at.to_string());
    }
    map
}

pub(super) fn slots(s: &Snapshot) -> HashMap<String, HashMap<String, String>> {
    s.slots
        .iter()
        .map(|(slot, info)| {
            let mut m: HashMap<String, String> = info
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            m.insert(
                "validated".into(),
                if info.validated { "1" } else { "0" }.into(),
            );
            (slot.name().to_owned(), m)
        })
        .collect()
}

/// Reads the options of an install: `allow-downgrade` (boolean); anything else is an error
/// naming the option.
pub(super) fn install_options(
    options: &HashMap<String, zbus::OwnedVariant>,
) -> Result<bool, BusError> {
    let mut allow_downgrade = false;
    for (name, value) in options {
        match name.as_str() {
            "allow-downgrade" => {
                allow_downgrade = bool::try_from(value).map_err(|_| {
                    BusError::InvalidArgument(format!(
                        "install option {name:?} must be a boolean (b), not {}",
                        value.value_signature()
                    ))
                })?;
            }
            other => {
                return Err(BusError::InvalidArgument(format!(
                    "unknown install option {other:?} (known: \"allow-downgrade\")"
                )));
            }
        }
    }
    Ok(allow_downgrade)
}
