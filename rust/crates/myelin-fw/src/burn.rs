//! Finding the SD card to write on a development host (`myelin-fw burn`).
//!
//! Candidates are the whole disks in `/sys/block` that report `removable` = 1 (SD slots, USB
//! card readers) with a non-zero size; `loop`, `ram`, `zram`, device-mapper and md devices
//! are never candidates. The disk holding `/` is refused whatever it reports: it is found from
//! the device number of `/` through `/sys/dev/block/M:m` (a partition's parent directory is
//! its disk) and through device-mapper slaves. Before writing, the card's mounted partitions
//! are unmounted (read from `/proc/self/mounts`).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A disk that could be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`sdb`, `mmcblk0`).
    pub name: String,
    /// Device node (`/dev/sdb`).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Vendor and model, when the kernel reports them.
    pub model: String,
    /// Whether the kernel says the medium is removable.
    pub removable: bool,
}

/// Where to look: sysfs, /dev and the mount table (overridable for tests).
#[derive(Debug, Clone)]
pub struct Disks {
    /// sysfs mount point.
    pub sysfs: PathBuf,
    /// Device directory.
    pub dev: PathBuf,
    /// Mount table.
    pub mounts: PathBuf,
    /// The path whose disk must never be written.
    pub root: PathBuf,
}

impl Default for Disks {
    fn default() -> Self {
        Disks {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            mounts: PathBuf::from("/proc/self/mounts"),
            root: PathBuf::from("/"),
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Human-readable size (`7.9 GiB`).
pub fn pretty_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

impl Disks {
    fn disk(&self, name: &str) -> Option<Disk> {
        let base = self.sysfs.join("block").join(name);
        let sectors: u64 = read_trim(&base.join("size"))?.parse().ok()?;
        let removable = read_trim(&base.join("removable")).as_deref() == Some("1");
        let vendor = read_trim(&base.join("device/vendor")).unwrap_or_default();
        let model = read_trim(&base.join("device/model")).unwrap_or_default();
        Some(Disk {
            name: name.to_owned(),
            path: self.dev.join(name),
            size: sectors * 512,
            model: format!("{vendor} {model}").trim().to_owned(),
            removable,
        })
    }

    /// Every whole disk the kernel knows (except virtual ones).
    pub fn all(&self) -> Vec<Disk> {
        let Ok(entries) = std::fs::read_dir(self.sysfs.join("block")) else {
            return Vec::new();
        };
        let mut out: Vec<Disk> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                !["loop", "ram", "zram", "dm-", "md", "sr", "nbd"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .filter_map(|n| self.disk(&n))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The disk holding the root file system, if it can be found.
    pub fn root_disks(&self) -> Vec<String> {
        let Ok(meta) = std::fs::metadata(&self.root) else {
            return Vec::new();
        };
        let dev = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
        let mut found = Vec::new();
        self.disks_of(&dev, 4, &mut found);
        found
    }

    fn disks_of(&self, majmin: &str, depth: u32, found: &mut Vec<String>) {
        let link = self.sysfs.join("dev/block").join(majmin);
        let Ok(real) = std::fs::canonicalize(&link) else {
            return;
        };
        let is_partition = real.join("partition").exists();
        let disk_dir = if is_partition {
            real.parent().map(Path::to_path_buf)
        } else {
            Some(real.clone())
        };
        if let Some(name) = disk_dir
            .as_ref()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
        {
            found.push(name.to_owned());
        }
        if depth == 0 {
            return;
        }
        if let Ok(slaves) = std::fs::read_dir(real.join("slaves")) {
            for s in slaves.flatten() {
                if let Some(d) = read_trim(&s.path().join("dev")) {
                    self.disks_of(&d, depth - 1, found);
                }
            }
        }
    }

    /// Removable disks that are not the root disk.
    pub fn candidates(&self) -> Vec<Disk> {
        let root = self.root_disks();
        self.all()
            .into_iter()
            .filter(|d| d.removable && d.size > 0 && !root.contains(&d.name))
            .collect()
    }

    /// Refuses `path` if it is (or is a partition of) the disk holding `/`.
    pub fn check_not_root(&self, path: &Path) -> io::Result<()> {
        let root = self.root_disks();
        let meta = std::fs::metadata(path)?;
        let majmin = format!("{}:{}", libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let mut mine = Vec::new();
        self.disks_of(&majmin, 0, &mut mine);
        if mine.iter().any(|d| root.contains(d)) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} holds the running system's root file system; refusing to write it",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Mount points of partitions of `disk` (from the mount table).
    pub fn mounted_partitions(&self, disk: &Disk) -> Vec<PathBuf> {
        let Ok(table) = std::fs::read_to_string(&self.mounts) else {
            return Vec::new();
        };
        let prefix = disk.path.to_string_lossy().into_owned();
        table
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (src, dst) = (it.next()?, it.next()?);
                (src == prefix
                    || src.strip_prefix(&prefix).is_some_and(|rest| {
                        rest.trim_start_matches('p')
                            .chars()
                            .all(|c| c.is_ascii_digit())
                    }))
                .then(|| PathBuf::from(dst.replace("\\040", " ")))
            })
            .collect()
    }
}

/// Unmounts `mount_point` (lazily, so a busy file manager does not block the write).
pub fn unmount(mount_point: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: umount2 reads a NUL-terminated path that lives for the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, Disks) {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let devices = sys.join("devices/pci0/host");
        let root_meta = std::fs::metadata("/").unwrap();
        let root_dev = format!(
            "{}:{}",
            libc::major(root_meta.dev()),
            libc::minor(root_meta.dev())
        );
        // sda: internal disk holding / (partition sda2); sdb: removable card; loop0: ignored.
        for (name, removable, size) in [
            ("sda", "0", "500000000"),
            ("sdb", "1", "15523840"),
            ("loop0", "1", "100"),
        ] {
            let d = devices.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("removable"), removable).unwrap();
            std::fs::write(d.join("size"), size).unwrap();
            std::fs::create_dir_all(sys.join("block")).unwrap();
            symlink(&d, sys.join("block").join(name)).unwrap();
        }
        std::fs::create_dir_all(devices.join("sdb/device")).unwrap();
        std::fs::write(devices.join("sdb/device/model"), "SD Reader  \n").unwrap();
        let part = devices.join("sda/sda2");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), "2").unwrap();
        std::fs::create_dir_all(sys.join("dev/block")).unwrap();
        symlink(&part, sys.join("dev/block").join(root_dev)).unwrap();
        let mounts = dir.path().join("mounts");
        std::fs::write(&mounts, "/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 /media/u/BOOT vfat rw 0 0\n/dev/sdb2 /media/u/data\\040x ext4 rw 0 0\n").unwrap();
        let disks = Disks {
            sysfs: sys,
            dev: PathBuf::from("/dev"),
            mounts,
            root: PathBuf::from("/"),
        };
        (dir, disks)
    }

    #[test]
    fn only_removable_non_root_disks_are_candidates() {
        let (_d, disks) = fixture();
        assert_eq!(disks.root_disks(), vec!["sda".to_string()]);
        let c = disks.candidates();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "sdb");
        assert_eq!(c[0].size, 15523840 * 512);
        assert_eq!(c[0].model, "SD Reader");
        assert_eq!(pretty_size(c[0].size), "7.4 GiB");
        let m = disks.mounted_partitions(&c[0]);
        assert_eq!(
            m,
            vec![
                PathBuf::from("/media/u/BOOT"),
                PathBuf::from("/media/u/data x")
            ]
        );
    }

    #[test]
    fn the_root_disk_is_refused_even_if_removable() {
        let (dir, disks) = fixture();
        std::fs::write(dir.path().join("sys/devices/pci0/host/sda/removable"), "1").unwrap();
        let names: Vec<String> = disks.candidates().into_iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["sdb".to_string()]);
    }
}
