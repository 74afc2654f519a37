//! What the applier asks of the running system, behind a trait so tests can use fixtures.
//!
//! * `require-path-on-device(path, dev)`: the file system holding `path` is on block device
//!   `dev`, directly or through device-mapper layers (`/sys/dev/block/M:m/slaves`, three
//!   levels deep).
//! * `require-path-at-offset(path, blocks)`: the partition holding `path` starts at `blocks`
//!   (`/sys/dev/block/M:m/start`). This is how A/B tasks tell which slot is running.
//! * `reboot_param(text)`: written to the configured file, else `/run/systemd/reboot-param`,
//!   else `/run/reboot-param` (where Myelin's init and erlinit read it). The applier runs it
//!   only after the update has been committed.
//! * the environment lock: taken around the environment writes of a commit, so that
//!   `uboot_setenv` and friends serialize with myelin-kv and `fw_setenv` (see
//!   [`myelin_ubootenv::lock`]). Applying to an image file on a build host takes none.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use myelin_ubootenv::{Access, EnvLock, LockError};

/// Side effects and queries that depend on the running system.
pub trait System {
    /// Whether the file system holding `path` lives on block device `device`.
    fn path_on_device(&self, path: &str, device: &str) -> bool;
    /// Whether the partition holding `path` starts at 512-byte block `block_offset`.
    fn path_at_offset(&self, path: &str, block_offset: u64) -> bool;
    /// Records the argument for the next reboot.
    fn reboot_param(&self, param: &str) -> io::Result<()>;
    /// Takes the U-Boot environment lock for writing; `None` when there is none to take.
    fn lock_environment(&self) -> Result<Option<EnvLock>, LockError> {
        Ok(None)
    }
}

/// The real system (or one rooted elsewhere for tests).
#[derive(Debug, Clone)]
pub struct Host {
    /// Where sysfs is mounted (`/sys`).
    pub sysfs: PathBuf,
    /// Explicit reboot parameter file (`--reboot-param-path`).
    pub reboot_param_path: Option<PathBuf>,
    /// Candidate files tried in order when no explicit path is set.
    pub reboot_param_defaults: Vec<PathBuf>,
    /// The environment lock file (libubootenv's) and how long to wait for it; `None` takes no
    /// lock (an image file on a build host).
    pub env_lock: Option<(PathBuf, Duration)>,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            sysfs: PathBuf::from("/sys"),
            reboot_param_path: None,
            reboot_param_defaults: vec![
                PathBuf::from("/run/systemd/reboot-param"),
                PathBuf::from("/run/reboot-param"),
            ],
            env_lock: None,
        }
    }
}

fn dev_string(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

impl Host {
    fn slaves_reach(&self, start: &str, goal: &str, depth: u32) -> bool {
        if start == goal {
            return true;
        }
        if depth == 0 {
            return false;
        }
        let dir = self.sysfs.join("dev/block").join(start).join("slaves");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return false;
        };
        for e in entries.flatten() {
            let devfile = self
                .sysfs
                .join("class/block")
                .join(e.file_name())
                .join("dev");
            if let Ok(s) = std::fs::read_to_string(devfile) {
                if self.slaves_reach(s.trim(), goal, depth - 1) {
                    return true;
                }
            }
        }
        false
    }
}

impl System for Host {
    fn path_on_device(&self, path: &str, device: &str) -> bool {
        let (Ok(p), Ok(d)) = (std::fs::metadata(path), std::fs::metadata(device)) else {
            return false;
        };
        self.slaves_reach(&dev_string(p.dev()), &dev_string(d.rdev()), 3)
    }

    fn path_at_offset(&self, path: &str, block_offset: u64) -> bool {
        let Ok(p) = std::fs::metadata(path) else {
            return false;
        };
        let start = self
            .sysfs
            .join("dev/block")
            .join(dev_string(p.dev()))
            .join("start");
        std::fs::read_to_string(start)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            == Some(block_offset)
    }

    fn reboot_param(&self, param: &str) -> io::Result<()> {
        if let Some(p) = &self.reboot_param_path {
            return std::fs::write(p, param);
        }
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no reboot-param location");
        for p in &self.reboot_param_defaults {
            match std::fs::write(p, param) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(io::Error::new(
            last.kind(),
            format!("reboot-param can't be written under /run: {last}"),
        ))
    }

    fn lock_environment(&self) -> Result<Option<EnvLock>, LockError> {
        let Some((path, wait)) = &self.env_lock else {
            return Ok(None);
        };
        myelin_ubootenv::lock::acquire(path, Access::Write, *wait).map(Some)
    }
}

/// A system whose answers are fixed, for tests and for applying to image files on a host
/// (where "which slot is running" has no meaning).
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    /// `(path, device)` pairs for which `path_on_device` is true.
    pub on_device: Vec<(String, String)>,
    /// `(path, block offset)` pairs for which `path_at_offset` is true.
    pub at_offset: Vec<(String, u64)>,
    /// Where `reboot_param` writes (nowhere if unset).
    pub reboot_param_file: Option<PathBuf>,
}

impl System for Fixed {
    fn path_on_device(&self, path: &str, device: &str) -> bool {
        self.on_device.iter().any(|(p, d)| p == path && d == device)
    }
    fn path_at_offset(&self, path: &str, block_offset: u64) -> bool {
        self.at_offset
            .iter()
            .any(|(p, o)| p == path && *o == block_offset)
    }
    fn reboot_param(&self, param: &str) -> io::Result<()> {
        match &self.reboot_param_file {
            Some(p) => std::fs::write(p, param),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_slaves_from_a_sysfs_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::metadata("/").unwrap();
        let devs = dev_string(root.dev());
        let part = dir.path().join("dev/block").join(&devs);
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("start"), "110080\n").unwrap();
        let host = Host {
            sysfs: dir.path().to_path_buf(),
            reboot_param_path: Some(dir.path().join("reboot-param")),
            reboot_param_defaults: Vec::new(),
            env_lock: None,
        };
        assert!(host.path_at_offset("/", 110080));
        assert!(!host.path_at_offset("/", 382746));
        assert!(!host.path_at_offset("/nonexistent", 110080));
        // A device-mapper layer: / sits on dm, whose slave is 8:2.
        std::fs::create_dir_all(part.join("slaves/sda2")).unwrap();
        let class = dir.path().join("class/block/sda2");
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("dev"), "8:2\n").unwrap();
        assert!(host.slaves_reach(&devs, "8:2", 3));
        assert!(!host.slaves_reach(&devs, "8:3", 3));
        host.reboot_param("0 tryboot").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reboot-param")).unwrap(),
            "0 tryboot"
        );
    }
}
