//! `/dev/rootdisk0` and `/dev/rootdisk0pN`: stable names for the disk holding the root
//! filesystem, whatever the kernel called it (`mmcblk0`, `sda`, `vda`, `nvme0n1`), so
//! `fw_env.config`, fwup configurations and the data partition can be written once per board.
//!
//! The root filesystem's device number (`stat("/")`) is looked up among the partitions in
//! `/sys/block/<disk>/<part>/dev`; the links point at that disk and at every partition of it
//! (`pN` from the partition's `partition` file). Nothing is done if `/dev/rootdisk0` exists
//! already or if root is not on a block device (initramfs, NFS).

use std::io;

use crate::log::Level;
use crate::sys::Sys;

fn dev_of(sys: &mut dyn Sys, path: &str) -> Option<(u32, u32)> {
    let text = String::from_utf8(sys.read_file(path).ok()?).ok()?;
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

struct Part {
    name: String,
    number: u32,
    dev: Option<(u32, u32)>,
}

/// Creates the links; the disk found, if any.
pub fn create_links(sys: &mut dyn Sys) -> io::Result<Option<String>> {
    if sys.exists("/dev/rootdisk0") {
        return Ok(None);
    }
    let root = sys.device_of("/")?;
    for disk in sys.read_dir("/sys/block")? {
        let base = format!("/sys/block/{disk}");
        let disk_dev = dev_of(sys, &format!("{base}/dev"));
        let mut parts: Vec<Part> = Vec::new();
        for e in sys.read_dir(&base).unwrap_or_default() {
            let number = sys
                .read_file(&format!("{base}/{e}/partition"))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(n) = number {
                let d = dev_of(sys, &format!("{base}/{e}/dev"));
                parts.push(Part {
                    name: e,
                    number: n,
                    dev: d,
                });
            }
        }
        let holds_root = disk_dev == Some(root) || parts.iter().any(|p| p.dev == Some(root));
        if !holds_root {
            continue;
        }
        // sysfs writes '/' in device names as '!' (cciss!c0d0).
        let node = |n: &str| format!("/dev/{}", n.replace('!', "/"));
        sys.symlink(&node(&disk), "/dev/rootdisk0")?;
        parts.sort_by_key(|p| p.number);
        for Part {
            name, number: n, ..
        } in parts
        {
            if let Err(e) = sys.symlink(&node(&name), &format!("/dev/rootdisk0p{n}")) {
                sys.log(
                    Level::Warning,
                    &format!("cannot link /dev/rootdisk0p{n}: {e}"),
                );
            }
        }
        return Ok(Some(disk));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    fn sysfs() -> FakeSys {
        let mut s = FakeSys::default();
        s.file("/sys/block/sda/dev", "8:0\n");
        s.file("/sys/block/sda/sda1/partition", "1\n");
        s.file("/sys/block/sda/sda1/dev", "8:1\n");
        s.file("/sys/block/sda/queue/rotational", "0\n");
        s.file("/sys/block/mmcblk0/dev", "179:0\n");
        for (p, n) in [
            ("mmcblk0p1", 1),
            ("mmcblk0p2", 2),
            ("mmcblk0p3", 3),
            ("mmcblk0p4", 4),
        ] {
            s.file(
                &format!("/sys/block/mmcblk0/{p}/partition"),
                &format!("{n}\n"),
            );
            s.file(
                &format!("/sys/block/mmcblk0/{p}/dev"),
                &format!("179:{n}\n"),
            );
        }
        s.file("/sys/block/loop0/dev", "7:0\n");
        s
    }

    #[test]
    fn links_the_disk_holding_root() {
        let mut s = sysfs();
        s.root_dev = (179, 2);
        assert_eq!(create_links(&mut s).unwrap().as_deref(), Some("mmcblk0"));
        assert_eq!(
            s.take(),
            [
                "symlink /dev/rootdisk0 -> /dev/mmcblk0",
                "symlink /dev/rootdisk0p1 -> /dev/mmcblk0p1",
                "symlink /dev/rootdisk0p2 -> /dev/mmcblk0p2",
                "symlink /dev/rootdisk0p3 -> /dev/mmcblk0p3",
                "symlink /dev/rootdisk0p4 -> /dev/mmcblk0p4",
            ]
        );
        // Second boot stage or a rerun: already there.
        assert_eq!(create_links(&mut s).unwrap(), None);
        assert!(s.take().is_empty());
    }

    #[test]
    fn root_not_on_a_disk() {
        let mut s = sysfs();
        s.root_dev = (0, 23);
        assert_eq!(create_links(&mut s).unwrap(), None);
        assert!(s.take().is_empty());
    }

    #[test]
    fn whole_disk_root_and_sysfs_names() {
        let mut s = FakeSys::default();
        s.file("/sys/block/cciss!c0d0/dev", "104:0\n");
        s.root_dev = (104, 0);
        assert_eq!(create_links(&mut s).unwrap().as_deref(), Some("cciss!c0d0"));
        assert_eq!(s.take(), ["symlink /dev/rootdisk0 -> /dev/cciss/c0d0"]);
    }
}
