//! The previous boot's last words: the records the kernel kept in pstore (ramoops: the console
//! of the boot that ended, the kernel log at a panic or oops) moved to a directory on /data at
//! every boot, where `myelinctl log --previous-boot` reads them.
//!
//! Why move them: pstore keeps a panic record until someone deletes it, so a record left in place
//! would be shown again after every later boot, as if each one had crashed. Why one generation
//! only: the directory answers "how did the last boot end", and a clean boot's console record
//! replaces an older crash's. Each record is written durably before its pstore copy is deleted,
//! so a power cut in between repeats the move at the next boot and loses nothing.

use crate::log::Level;
use crate::sys::Sys;

/// Where the kernel's pstore filesystem is mounted.
pub const PSTORE_MOUNT: &str = "/sys/fs/pstore";

/// What [`collect`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Records moved, by name (`console-ramoops-0`, `dmesg-ramoops-0`, ...).
    pub records: Vec<String>,
    /// Whether a record shows the previous boot ended in a panic or an oops.
    pub crashed: bool,
}

/// Replaces the contents of `archive` with the records in `pstore` and deletes them there.
pub fn collect(sys: &mut dyn Sys, pstore: &str, archive: &str) -> Collected {
    let mut out = Collected::default();
    if let Err(e) = sys.secure_dir(archive, 0o700) {
        sys.log(
            Level::Warning,
            &format!("cannot keep the previous boot's records in {archive}: {e}"),
        );
        return out;
    }
    for old in sys.read_dir(archive).unwrap_or_default() {
        let _ = sys.remove_file(&format!("{archive}/{old}"));
    }
    let mut names = match sys.read_dir(pstore) {
        Ok(n) => n,
        // No pstore (kernel without it, or not mounted): nothing survived, nothing to say.
        Err(_) => return out,
    };
    names.sort();
    for name in names {
        let from = format!("{pstore}/{name}");
        let data = match sys.read_file(&from) {
            Ok(d) => d,
            Err(e) => {
                sys.log(Level::Warning, &format!("cannot read {from}: {e}"));
                continue;
            }
        };
        if let Err(e) = sys.replace_file(&format!("{archive}/{name}"), &data, 0o600) {
            // Left in pstore: the next boot tries again.
            sys.log(Level::Warning, &format!("cannot save {from}: {e}"));
            continue;
        }
        if let Err(e) = sys.remove_file(&from) {
            sys.log(Level::Warning, &format!("cannot delete {from}: {e}"));
        }
        out.crashed |= name.starts_with("dmesg-");
        out.records.push(name);
    }
    if out.crashed {
        sys.log(
            Level::Warning,
            &format!(
                "the previous boot ended in a kernel panic or oops: `myelinctl log --previous-boot` shows its last words ({archive})"
            ),
        );
    } else if !out.records.is_empty() {
        sys.log(
            Level::Info,
            &format!(
                "kept the previous boot's console in {archive} ({})",
                out.records.join(", ")
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    const ARCHIVE: &str = "/data/myelin/previous-boot";

    #[test]
    fn records_move_to_the_archive_durably_then_leave_pstore() {
        let mut s = FakeSys::default();
        s.file(
            "/data/myelin/previous-boot/console-ramoops-0",
            "two boots ago",
        );
        s.file(
            "/sys/fs/pstore/dmesg-ramoops-0",
            "Kernel panic - not syncing",
        );
        s.file("/sys/fs/pstore/console-ramoops-0", "last console line");
        let c = collect(&mut s, PSTORE_MOUNT, ARCHIVE);
        assert_eq!(c.records, ["console-ramoops-0", "dmesg-ramoops-0"]);
        assert!(c.crashed);
        let trace: Vec<&str> = s
            .trace
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("log "))
            .collect();
        assert_eq!(
            trace,
            [
                "secure_dir /data/myelin/previous-boot 700 root",
                "remove /data/myelin/previous-boot/console-ramoops-0",
                "replace /data/myelin/previous-boot/console-ramoops-0 17 bytes mode 600",
                "remove /sys/fs/pstore/console-ramoops-0",
                "replace /data/myelin/previous-boot/dmesg-ramoops-0 26 bytes mode 600",
                "remove /sys/fs/pstore/dmesg-ramoops-0",
            ]
        );
        assert_eq!(
            s.files["/data/myelin/previous-boot/console-ramoops-0"],
            b"last console line"
        );
        assert!(s.trace.iter().any(|l| l.contains("kernel panic or oops")));
    }

    #[test]
    fn a_boot_after_a_cold_start_clears_an_older_boot_record() {
        let mut s = FakeSys::default();
        s.file("/data/myelin/previous-boot/dmesg-ramoops-0", "an old panic");
        let c = collect(&mut s, PSTORE_MOUNT, ARCHIVE);
        assert_eq!(c, Collected::default());
        assert!(!s.files.keys().any(|k| k.starts_with(ARCHIVE)));
    }

    #[test]
    fn an_unreadable_record_stays_in_pstore_for_the_next_boot() {
        let mut s = FakeSys::default();
        s.file("/sys/fs/pstore/dmesg-ramoops-0", "panic");
        s.read_error
            .insert("/sys/fs/pstore/dmesg-ramoops-0".into(), libc::EIO);
        let c = collect(&mut s, PSTORE_MOUNT, ARCHIVE);
        assert!(c.records.is_empty());
        assert!(s.files.contains_key("/sys/fs/pstore/dmesg-ramoops-0"));
        assert!(s.trace.iter().any(|l| l.contains("cannot read")));
    }
}
