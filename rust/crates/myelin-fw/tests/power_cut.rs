//! Power cuts during x86_64's `upgrade`, on the host: the upgrade of board/x86_64/fwup.conf is
//! applied to an image file while every write is recorded, then replayed sector by sector onto
//! a copy of the image as it was before. After each sector (a cut can land anywhere, even in
//! the middle of one write) the disk is read the way the next boot would read it: GRUB's
//! choice from /boot/grub/grubenv (grub.cfg's rules), the U-Boot environment by fwup's rules
//! (the redundant copy when the other one is torn). The slot GRUB boots must hold, byte for
//! byte, the root filesystem of the version the environment names for it; a slot the
//! environment calls valid must too.
//!
//! Writes reach the disk in the order they are issued here. That is the order QEMU's power-cut
//! scenario approximates (tests/system, writeback forced at once); `sync` between steps is what
//! makes it true on a real disk.
#![allow(clippy::unwrap_used)]

mod common;

use common::boards::*;
use common::*;
use myelin_fw::fat::{Fat, VolState};
use myelin_fw::output::Output;
use myelin_fw::uboot::{self, Location};
use myelin_fw::{ApplyOptions, FileTarget, Fixed, PrivateKey, Target};
use std::collections::BTreeMap;
use std::io;

const BOARD: &str = "x86_64";
const SECTOR: usize = 512;

/// A target that applies writes to an image file and records them, in order.
struct Recorder {
    inner: FileTarget,
    writes: Vec<(u64, Vec<u8>)>,
}

impl Target for Recorder {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writes.push((offset, buf.to_vec()));
        self.inner.write_at(buf, offset)
    }
    fn size(&self) -> Option<u64> {
        self.inner.size()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// GRUB's environment block: `name=value` lines after the header, padded with `#`.
fn grub_vars(block: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(block)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The slot board/x86_64/grub.cfg boots: `load_env` failing leaves the variables empty.
fn grub_choice(image: &mut FileTarget, boot_block: u64) -> &'static str {
    let mut out = Output::new(image);
    let mut st = VolState::default();
    let mut block = Vec::new();
    let read = Fat::open(&mut out, boot_block, &mut st).and_then(|mut fat| {
        fat.read_file("/boot/grub/grubenv", |b| {
            block.extend_from_slice(b);
            Ok(())
        })
    });
    let vars = if read.is_ok() {
        grub_vars(&block)
    } else {
        BTreeMap::new()
    };
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    match (get("myelin_try"), get("myelin_slot"), get("boot")) {
        ("a", _, _) => "a",
        ("b", _, _) => "b",
        (_, "b", _) => "b",
        (_, "", "1") => "b",
        _ => "a",
    }
}

/// The environment's variables as fwup (and, for these layouts, U-Boot) read them.
fn env_vars(image: &mut FileTarget, loc: &Location) -> BTreeMap<String, String> {
    let copies: Vec<Vec<u8>> = loc
        .ranges()
        .iter()
        .map(|&(off, len)| {
            let mut b = vec![0u8; len as usize];
            image.read_at(&mut b, off).unwrap();
            b
        })
        .collect();
    match uboot::fwup_read(loc, &copies) {
        Ok(r) => r.vars.into_iter().collect(),
        Err(e) => panic!("the environment is unreadable: {e}"),
    }
}

#[test]
fn every_cut_of_an_upgrade_boots_a_complete_firmware() {
    let work = scratch_dir();
    let w = work.path();
    let key = PrivateKey::generate().unwrap();
    let public = key.public();
    let layout = Layout::of(BOARD, w);
    let loc = Location::from_config(layout.cfg.uboot_env("uboot-env").unwrap()).unwrap();
    let (ra, rb) = rootfs_partitions(BOARD);
    let slots = [("a", layout.part(ra).0), ("b", layout.part(rb).0)];
    let boot_block = layout.part("0").0;

    let mut rootfs = BTreeMap::new();
    let mut fws = Vec::new();
    for version in ["1.0.0", "2.0.0"] {
        let f = firmware(BOARD, &layout, w, version, &key);
        rootfs.insert(
            version,
            std::fs::read(f.inputs.join("rootfs.squashfs")).unwrap(),
        );
        fws.push(f.fw);
    }
    let image = w.join("disk.img");
    layout.blank_image(&image);
    let rp = w.join("reboot-param");
    apply(&fws[0], &image, "complete", &public, None, &rp).unwrap();
    let before = w.join("before.img");
    run(
        "cp",
        &[
            "--sparse=always",
            image.to_str().unwrap(),
            before.to_str().unwrap(),
        ],
    );

    // The upgrade, recorded, while running slot a.
    let mut rec = Recorder {
        inner: FileTarget::open(&image).unwrap(),
        writes: Vec::new(),
    };
    let keys = [public.clone()];
    let system = Fixed {
        at_offset: vec![("/".to_owned(), slots[0].1)],
        ..Fixed::default()
    };
    let opts = ApplyOptions {
        task: "upgrade",
        public_keys: &keys,
        vars: Default::default(),
        system: &system,
        enable_trim: false,
        progress_range: (0, 100),
    };
    let applied = myelin_fw::apply(
        std::io::BufReader::new(std::fs::File::open(&fws[1]).unwrap()),
        &mut rec,
        &opts,
        None,
    )
    .unwrap();
    assert_eq!(applied.task, "upgrade.b");

    // Replays the writes sector by sector, checking the disk after each.
    let mut disk = FileTarget::open(&before).unwrap();
    let check = |disk: &mut FileTarget, at: &str| -> (&'static str, String) {
        let slot = grub_choice(disk, boot_block);
        let env = env_vars(disk, &loc);
        let holds = |disk: &mut FileTarget, slot: &str, version: &str| -> bool {
            let Some(want) = rootfs.get(version) else {
                return false;
            };
            let off = slots.iter().find(|s| s.0 == slot).unwrap().1 * 512;
            let mut have = vec![0u8; want.len()];
            disk.read_at(&mut have, off).unwrap();
            &have == want
        };
        let version = env
            .get(&format!("{slot}.nerves_fw_version"))
            .cloned()
            .unwrap_or_default();
        assert!(
            holds(disk, slot, &version),
            "{at}: GRUB boots slot {slot}, which does not hold the root filesystem of the \
             version the environment names for it ({version:?}); environment: {env:?}"
        );
        for (other, _) in slots.iter().filter(|s| s.0 != slot) {
            if env
                .get(&format!("{other}.nerves_fw_validated"))
                .map(String::as_str)
                == Some("1")
            {
                let v = env
                    .get(&format!("{other}.nerves_fw_version"))
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    holds(disk, other, &v),
                    "{at}: slot {other} is marked valid ({v:?}) but does not hold it"
                );
            }
        }
        (slot, version)
    };
    let mut seen = BTreeMap::new();
    let (slot, version) = check(&mut disk, "before the upgrade");
    assert_eq!((slot, version.as_str()), ("a", "1.0.0"));
    let mut cuts = 0;
    for (i, (offset, data)) in rec.writes.iter().enumerate() {
        for (j, sector) in data.chunks(SECTOR).enumerate() {
            disk.write_at(sector, offset + (j * SECTOR) as u64).unwrap();
            let at = format!(
                "cut after sector {j} of write {i} of {} (byte {offset}, {} bytes)",
                rec.writes.len(),
                data.len()
            );
            let (slot, version) = check(&mut disk, &at);
            *seen.entry((slot, version)).or_insert(0) += 1;
            cuts += 1;
        }
    }
    // The replay ends where the recorded upgrade did: the new firmware on trial in slot b.
    let last = check(&mut disk, "after the upgrade");
    assert_eq!((last.0, last.1.as_str()), ("b", "2.0.0"));
    assert!(
        seen.contains_key(&("a", "1.0.0".to_owned())),
        "no cut came back to the old firmware: {seen:?}"
    );
    println!("{cuts} cuts: {seen:?}");
}
