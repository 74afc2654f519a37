//! Hostile archives against a device that runs slot B (complete v1, then the v2 upgrade): a bad
//! hash behind a valid signed meta.conf, truncated downloads, offsets past the device, and a
//! zip bomb in an entry the task does not use. None may touch the active slot, the boot
//! selection (MBR, `nerves_fw_active`) or any environment key other than the inactive slot's
//! validity (`a.nerves_fw_version`, which `upgrade.a`'s on-init removes before writing slot A).
//! What can be known without the resources' data is refused before the first write.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::archive::{Index, ZipReader, ZipWriter};
use myelin_fw::{CreateOptions, Error, MemTarget, Vars};
use std::collections::BTreeMap;

const MIB: usize = 1 << 20;
const MBR: std::ops::Range<usize> = 0..512;
const SLOT_B: std::ops::Range<usize> = 14336 * 512..18432 * 512;
const BOOT_FAT_STRUCTURE: std::ops::Range<usize> = 2048 * 512..(2048 + 99) * 512;

/// A device (fixed size) running slot B.
fn running_b() -> MemTarget {
    let mut t = MemTarget::device(11 * MIB);
    apply_golden(&read_golden("v1.fw"), &mut t, "complete", &[golden_pub()]).unwrap();
    apply_golden(&read_golden("v2.fw"), &mut t, "upgrade", &[golden_pub()]).unwrap();
    t.log.clear();
    t
}

fn env(data: &[u8]) -> BTreeMap<String, String> {
    let loc = myelin_fw::uboot::Location {
        offset: 0x2000,
        size: 0x2000,
        redund: Some(0x4000),
    };
    let copies = vec![data[0x2000..0x4000].to_vec(), data[0x4000..0x6000].to_vec()];
    myelin_fw::uboot::active(&loc, &copies).unwrap().1
}

/// The device state that must survive: MBR, slot B, the boot FAT's structure, and every key
/// but slot A's validity.
fn assert_running_b_intact(before: &[u8], t: &MemTarget, case: &str) {
    assert!(before[MBR] == t.data[MBR], "{case}: the MBR changed");
    assert!(
        before[SLOT_B] == t.data[SLOT_B],
        "{case}: the active slot changed"
    );
    assert!(
        before[BOOT_FAT_STRUCTURE] == t.data[BOOT_FAT_STRUCTURE],
        "{case}: the boot FAT changed"
    );
    let (mut old, mut new) = (env(before), env(&t.data));
    assert_eq!(new.get("nerves_fw_active").map(String::as_str), Some("b"));
    old.remove("a.nerves_fw_version");
    new.remove("a.nerves_fw_version");
    assert_eq!(old, new, "{case}: environment keys changed");
}

/// Rebuilds an archive entry by entry, letting `edit` replace an entry's data.
fn rebuild(fw: &[u8], mut edit: impl FnMut(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut r = ZipReader::new(fw);
    let mut w = ZipWriter::new(Vec::new(), 9);
    while let Some(e) = r.next_entry().unwrap() {
        let data = edit(&e.name, r.read_to_vec(64 * MIB).unwrap());
        if e.method == 0 {
            w.add_stored(&e.name, &data, None).unwrap();
        } else {
            let mtime = (e.name == "meta.conf").then_some(e.mtime as u32);
            w.add_deflated(&e.name, &data, mtime).unwrap();
        }
    }
    w.finish().unwrap()
}

#[test]
fn bad_hash_behind_a_valid_signature_never_reaches_the_boot_selection() {
    // v1.fw's signed meta.conf, with v2's rootfs in its place: the ZIP is sound (CRC right),
    // the BLAKE2b-256 is not.
    let fw = rebuild(&read_golden("v1.fw"), |name, data| {
        if name == "data/rootfs.img" {
            read_golden("rootfs-v2.bin")
        } else {
            data
        }
    });
    let mut t = running_b();
    let before = t.data.clone();
    let err = apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]).unwrap_err();
    assert!(err.to_string().contains("blake2b-256 mismatch"), "{err}");
    assert_running_b_intact(&before, &t, "bad hash");
    assert!(!env(&t.data).contains_key("a.nerves_fw_version"));
}

#[test]
fn truncated_downloads_leave_the_running_slot() {
    let fw = read_golden("v1.fw");
    let meta_end = fw.windows(9).position(|w| w == b"data/zIma").unwrap();
    // The last cut falls inside rootfs.img's data descriptor, just before the central
    // directory (a download cut after every resource was verified would be complete).
    let index = Index::read(&mut std::io::Cursor::new(fw.clone())).unwrap();
    let rootfs = index.get("data/rootfs.img").unwrap();
    let data_end = rootfs.offset as usize + 30 + 15 + 24 + rootfs.compressed as usize;
    for cut in [
        meta_end,
        fw.len() / 3,
        fw.len() / 2,
        fw.len() * 3 / 4,
        data_end + 8,
    ] {
        let mut t = running_b();
        let before = t.data.clone();
        let err = match apply_golden(&fw[..cut], &mut t, "upgrade", &[golden_pub()]) {
            Ok(a) => panic!("cut at {cut} of {}: accepted ({a:?})", fw.len()),
            Err(e) => e,
        };
        assert!(!err.to_string().is_empty());
        assert_running_b_intact(&before, &t, &format!("cut at {cut}"));
    }
}

#[test]
fn offsets_past_the_device_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(golden("fwup.conf")).unwrap();
    for (case, replaced) in [
        (
            "raw_write",
            conf.replace(
                "on-resource rootfs.img { raw_write(${ROOTFS_A_PART_OFFSET}) }",
                "on-resource rootfs.img { raw_write(22000) }",
            ),
        ),
        (
            "raw_memset",
            conf.replace(
                "uboot_unsetenv(uboot-env, \"a.nerves_fw_version\")",
                "uboot_unsetenv(uboot-env, \"a.nerves_fw_version\")\n raw_memset(30000, 8, 0)",
            ),
        ),
        (
            "mbr",
            conf.replace(
                "partition 1 { block-offset = ${ROOTFS_A_PART_OFFSET}",
                "partition 1 { block-offset = 40000",
            ),
        ),
    ] {
        assert_ne!(replaced, conf, "{case}: the configuration did not change");
        let path = dir.path().join("fwup.conf");
        std::fs::write(&path, &replaced).unwrap();
        for f in ["zImage", "config.txt", "rootfs-v1.bin"] {
            std::fs::copy(golden(f), dir.path().join(f)).unwrap();
        }
        let mut fw = Vec::new();
        myelin_fw::create(
            &CreateOptions {
                config: path,
                vars: Vars::from_pairs([("VERSION", "3.0.0"), ("ROOTFS", "rootfs-v1.bin")]),
                signing_key: Some(golden_priv()),
                level: 1,
                ops_only: false,
            },
            &mut fw,
        )
        .unwrap();
        let mut t = running_b();
        let before = t.data.clone();
        let err = match apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]) {
            Ok(a) => panic!("{case}: accepted ({a:?})"),
            Err(e) => e,
        };
        assert!(
            matches!(err, Error::OutOfRange { .. } | Error::Mbr(_)),
            "{case}: {err}"
        );
        assert!(t.log.is_empty(), "{case}: wrote {:?}", t.log);
        assert_eq!(t.data, before, "{case}");
    }
}

#[test]
fn a_zip_bomb_in_an_unused_entry_is_never_inflated() {
    // 64 MiB of zeros in an entry no task uses, with its deflate data broken in the middle and
    // its CRC wrong: inflating it would fail; skipping it by its descriptor does not.
    let zeros = vec![0u8; 64 * MIB];
    let fw = read_golden("v1.fw");
    let mut r = ZipReader::new(fw.as_slice());
    let mut w = ZipWriter::new(Vec::new(), 9);
    while let Some(e) = r.next_entry().unwrap() {
        let data = r.read_to_vec(64 * MIB).unwrap();
        if e.method == 0 {
            w.add_stored(&e.name, &data, None).unwrap();
        } else {
            let mtime = (e.name == "meta.conf").then_some(e.mtime as u32);
            w.add_deflated(&e.name, &data, mtime).unwrap();
        }
        if e.name == "meta.conf" {
            w.add_deflated("data/bomb", &zeros, None).unwrap();
        }
    }
    let mut bomb = w.finish().unwrap();
    let index = Index::read(&mut std::io::Cursor::new(bomb.clone())).unwrap();
    let entry = index.get("data/bomb").unwrap().clone();
    assert!(entry.size == 64 * MIB as u64 && entry.compressed < 256 * 1024);
    let data_start = entry.offset as usize + 30 + "data/bomb".len() + 24;
    for b in &mut bomb[data_start + 1000..data_start + 1100] {
        *b = 0xff;
    }
    let mut t = running_b();
    let applied = apply_golden(&bomb, &mut t, "upgrade", &[golden_pub()]).unwrap();
    assert_eq!(applied.task, "upgrade.a");
    assert_eq!(env(&t.data)["nerves_fw_active"], "a");
    // The same entry, read, is caught.
    let err = myelin_fw::verify(bomb.as_slice(), &[golden_pub()], &Vars::default()).unwrap_err();
    assert!(!err.to_string().is_empty());
}
