//! The record of the last install, and what became of it.
//!
//! After a successful install the daemon writes `<state_dir>/last-install.json` (by default
//! `/data/myelin/update/last-install.json`):
//!
//! ```json
//! {"v":1,"slot":"b","version":"2.0.0","uuid":"...","boot_id":"...","installed_at":1790000000}
//! ```
//!
//! `boot_id` is the kernel's `/proc/sys/kernel/random/boot_id` of the boot that installed it,
//! so a later start of the daemon can tell "installed, not rebooted yet" from "rebooted and came
//! back". The file is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory): after a power cut it holds the old record or the new one, never a mix.
//!
//! `<state_dir>/revert-requested` holds the boot id of a boot during which `Revert` ran, so a
//! daemon restarted before the reboot does not validate the reverted firmware again.
//!
//! [`assess`] is pure: given the record, the running slot, the environment and the boot id it
//! says what became of the install, e.g. [`Outcome::Reverted`] when the slot it wrote is neither
//! running nor validated (the trial failed and the bootloader went back).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use myelin_ubootenv::Vars;
use serde::{Deserialize, Serialize};

use crate::slot::{self, Slot};

/// File name of the record inside the state directory.
pub const FILE_NAME: &str = "last-install.json";
/// Version of the record's format.
pub const VERSION: u32 = 1;

/// One install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// The slot the install wrote.
    pub slot: SlotName,
    /// `meta-version` of the installed firmware, if the environment recorded it.
    #[serde(default)]
    pub version: Option<String>,
    /// The firmware UUID, if the environment recorded it.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Kernel boot id of the boot that installed it.
    pub boot_id: String,
    /// Seconds since the Unix epoch.
    pub installed_at: u64,
}

/// A slot as the record spells it (`"a"` / `"b"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotName {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl From<Slot> for SlotName {
    fn from(s: Slot) -> Self {
        match s {
            Slot::A => SlotName::A,
            Slot::B => SlotName::B,
        }
    }
}

impl From<SlotName> for Slot {
    fn from(s: SlotName) -> Self {
        match s {
            SlotName::A => Slot::A,
            SlotName::B => Slot::B,
        }
    }
}

/// What became of the last install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No install recorded.
    None,
    /// Installed during this boot; the reboot into it has not happened.
    PendingReboot(Slot),
    /// Running it, not validated yet.
    Trial(Slot),
    /// It was validated.
    Validated(Slot),
    /// Not running and not validated: its trial failed (or it was reverted).
    Reverted(Slot),
    /// The slot no longer holds that firmware (overwritten or cleared since).
    Superseded(Slot),
}

impl Outcome {
    /// A word for D-Bus and JSON: `none`, `pending-reboot`, `trial`, `validated`, `reverted`,
    /// `superseded`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::PendingReboot(_) => "pending-reboot",
            Outcome::Trial(_) => "trial",
            Outcome::Validated(_) => "validated",
            Outcome::Reverted(_) => "reverted",
            Outcome::Superseded(_) => "superseded",
        }
    }

    /// The slot concerned, if any.
    pub fn slot(self) -> Option<Slot> {
        match self {
            Outcome::None => None,
            Outcome::PendingReboot(s)
            | Outcome::Trial(s)
            | Outcome::Validated(s)
            | Outcome::Reverted(s)
            | Outcome::Superseded(s) => Some(s),
        }
    }
}

/// What became of `record`, given the running slot, the environment and this boot's id.
pub fn assess(record: Option<&Record>, running: Slot, vars: &Vars, boot_id: &str) -> Outcome {
    let Some(record) = record else {
        return Outcome::None;
    };
    let slot = Slot::from(record.slot);
    if let Some(uuid) = &record.uuid {
        if vars.get(&slot.key("nerves_fw_uuid")) != Some(uuid) {
            return Outcome::Superseded(slot);
        }
    }
    let validated = slot::validated(vars, slot) == Some(true);
    if record.boot_id == boot_id && running != slot {
        return Outcome::PendingReboot(slot);
    }
    match (running == slot, validated) {
        (true, true) | (false, true) => Outcome::Validated(slot),
        (true, false) => Outcome::Trial(slot),
        (false, false) => Outcome::Reverted(slot),
    }
}

/// Reads the record in `dir`; `Ok(None)` if there is none.
pub fn load(dir: &Path) -> io::Result<Option<Record>> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    if record.v != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unknown record version {}", path.display(), record.v),
        ));
    }
    Ok(Some(record))
}

/// Replaces the record in `dir` atomically, creating `dir` if needed.
pub fn store(dir: &Path, record: &Record) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomically(&dir.join(FILE_NAME), &bytes)
}

/// File (in the state directory) naming the boot during which a revert was asked for.
pub const REVERT_FILE: &str = "revert-requested";

/// Notes that a revert was asked for during boot `boot_id`: until the reboot, the firmware
/// still running must not be validated again, even by a restarted daemon (on some boards a
/// reverted firmware and one on trial look the same in the environment).
pub fn note_revert(dir: &Path, boot_id: &str) -> io::Result<()> {
    write_atomically(&dir.join(REVERT_FILE), format!("{boot_id}\n").as_bytes())
}

/// Whether a revert was asked for during boot `boot_id`.
pub fn reverted_during(dir: &Path, boot_id: &str) -> bool {
    fs::read_to_string(dir.join(REVERT_FILE)).is_ok_and(|s| s.trim() == boot_id)
}

/// Writes `bytes` to `path` so that a power cut leaves either the old or the new contents:
/// temporary file in the same directory, fsync, rename over `path`, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn record(slot: SlotName, uuid: Option<&str>, boot: &str) -> Record {
        Record {
            v: VERSION,
            slot,
            version: Some("2.0.0".into()),
            uuid: uuid.map(str::to_owned),
            boot_id: boot.into(),
            installed_at: 1,
        }
    }

    #[test]
    fn nothing_recorded() {
        assert_eq!(assess(None, Slot::A, &Vars::new(), "boot1"), Outcome::None);
    }

    #[test]
    fn same_boot_is_pending_reboot() {
        let r = record(SlotName::B, Some("u"), "boot1");
        let env = vars(&[("b.nerves_fw_uuid", "u"), ("b.nerves_fw_validated", "0")]);
        assert_eq!(
            assess(Some(&r), Slot::A, &env, "boot1"),
            Outcome::PendingReboot(Slot::B)
        );
    }

    #[test]
    fn running_the_install_is_a_trial_then_validated() {
        let r = record(SlotName::B, Some("u"), "boot1");
        let trial = vars(&[("b.nerves_fw_uuid", "u"), ("b.nerves_fw_validated", "0")]);
        assert_eq!(
            assess(Some(&r), Slot::B, &trial, "boot2"),
            Outcome::Trial(Slot::B)
        );
        let done = vars(&[("b.nerves_fw_uuid", "u"), ("b.nerves_fw_validated", "1")]);
        assert_eq!(
            assess(Some(&r), Slot::B, &done, "boot2"),
            Outcome::Validated(Slot::B)
        );
    }

    #[test]
    fn back_on_the_old_slot_unvalidated_is_reverted() {
        let r = record(SlotName::B, Some("u"), "boot1");
        let env = vars(&[
            ("a.nerves_fw_validated", "1"),
            ("b.nerves_fw_uuid", "u"),
            ("b.nerves_fw_validated", "0"),
        ]);
        let outcome = assess(Some(&r), Slot::A, &env, "boot2");
        assert_eq!(outcome, Outcome::Reverted(Slot::B));
        assert_eq!(outcome.name(), "reverted");
        // Without a uuid in the record (an environment that keeps none) the same holds.
        let r = record(SlotName::B, None, "boot1");
        assert_eq!(
            assess(Some(&r), Slot::A, &env, "boot2"),
            Outcome::Reverted(Slot::B)
        );
    }

    #[test]
    fn an_overwritten_slot_is_superseded() {
        let r = record(SlotName::B, Some("u"), "boot1");
        let env = vars(&[
            ("b.nerves_fw_uuid", "other"),
            ("b.nerves_fw_validated", "0"),
        ]);
        assert_eq!(
            assess(Some(&r), Slot::A, &env, "boot2"),
            Outcome::Superseded(Slot::B)
        );
        assert_eq!(
            assess(Some(&r), Slot::A, &Vars::new(), "boot2"),
            Outcome::Superseded(Slot::B)
        );
    }

    #[test]
    fn store_and_load_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("myelin/update");
        assert_eq!(load(&sub).unwrap(), None);
        let r = record(SlotName::A, Some("u"), "boot");
        store(&sub, &r).unwrap();
        assert_eq!(load(&sub).unwrap(), Some(r.clone()));
        let mut r2 = r;
        r2.slot = SlotName::B;
        store(&sub, &r2).unwrap();
        assert_eq!(load(&sub).unwrap(), Some(r2));
        // Only the record itself is left: no temporary files.
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn a_revert_is_remembered_for_its_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!reverted_during(dir.path(), "boot1"));
        note_revert(dir.path(), "boot1").unwrap();
        assert!(reverted_during(dir.path(), "boot1"));
        assert!(!reverted_during(dir.path(), "boot2"));
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"v\":1,\"slot\":\"c\"").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.to_string().contains(FILE_NAME), "{e}");
        fs::write(
            dir.path().join(FILE_NAME),
            b"{\"v\":9,\"slot\":\"a\",\"boot_id\":\"x\",\"installed_at\":0}",
        )
        .unwrap();
        assert!(
            load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
    }
}
