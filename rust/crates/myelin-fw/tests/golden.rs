//! Compatibility with fwup in both directions, against the golden corpus made by fwup 1.16.0
//! (tests/golden/README.md): archives made by fwup apply to the same bytes, and archives made
//! by myelin-fw from the same inputs are byte-identical to fwup's.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::progress::Event;
use myelin_fw::{ApplyOptions, CreateOptions, Error, Fixed, MemTarget, Vars, Verified, meta};

const MIB: usize = 1 << 20;
const ENV1: std::ops::Range<usize> = 0x2000..0x4000;
const ENV2: std::ops::Range<usize> = 0x4000..0x6000;
const SLOT_A: std::ops::Range<usize> = 10240 * 512..14336 * 512;
const SLOT_B: std::ops::Range<usize> = 14336 * 512..18432 * 512;
/// The boot sector's volume label field of the boot FAT: fwup (FatFs) leaves "NO NAME" there
/// and puts the label in the root directory only; so does Myelin.
const BS_LABEL: std::ops::Range<usize> = 2048 * 512 + 43..2048 * 512 + 54;

/// Offsets where `ours` and `theirs` differ outside `allowed`.
fn differences(ours: &[u8], theirs: &[u8], allowed: &[std::ops::Range<usize>]) -> Vec<usize> {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .enumerate()
        .filter(|(i, (a, b))| a != b && !allowed.iter().any(|r| r.contains(i)))
        .map(|(i, _)| i)
        .take(10)
        .collect()
}

fn create_golden(version: &str, rootfs: &str, signed: bool) -> (Vec<u8>, myelin_fw::Created) {
    let vars = Vars::from_pairs([
        ("VERSION", version.to_owned()),
        ("ROOTFS", golden(rootfs).to_str().unwrap().to_owned()),
        ("SOURCE_DATE_EPOCH", "1767225600".to_owned()),
    ]);
    let opts = CreateOptions {
        config: golden("fwup.conf"),
        vars,
        signing_key: signed.then(golden_priv),
        level: 9,
        ops_only: false,
    };
    let mut out = Vec::new();
    let created = myelin_fw::create(&opts, &mut out).unwrap();
    (out, created)
}

fn complete_v1() -> MemTarget {
    let mut t = MemTarget::zeroed(11 * MIB);
    apply_golden(&read_golden("v1.fw"), &mut t, "complete", &[golden_pub()]).unwrap();
    t
}

#[test]
fn fwup_archive_applies_to_a_byte_identical_image() {
    let t = complete_v1();
    let want = golden_image("complete-v1.img.xz");
    assert_eq!(differences(&t.data, &want, &[]), Vec::<usize>::new());
    assert_eq!(&t.data[BS_LABEL], b"NO NAME    ");
}

#[test]
fn created_archives_are_byte_identical_to_fwups() {
    let (v1, c1) = create_golden("1.0.0", "rootfs-v1.bin", true);
    assert_eq!(
        c1.meta_conf.as_bytes(),
        read_golden("v1.meta.conf").as_slice()
    );
    assert_eq!(c1.uuid, "7a8162cb-af94-5eae-123d-62063f07d9d7");
    assert!(v1 == read_golden("v1.fw"), "v1.fw differs from fwup's");
    let (v2, c2) = create_golden("2.0.0", "rootfs-v2.bin", true);
    assert_eq!(
        c2.meta_conf.as_bytes(),
        read_golden("v2.meta.conf").as_slice()
    );
    assert!(v2 == read_golden("v2.fw"), "v2.fw differs from fwup's");
    let (unsigned, _) = create_golden("1.0.0", "rootfs-v1.bin", false);
    assert!(
        unsigned == read_golden("v1-unsigned.fw"),
        "v1-unsigned.fw differs"
    );
    // Signature: Ed25519 is deterministic, so the 64 bytes are fwup's.
    assert_eq!(
        &v1[30 + 17 + 20..30 + 17 + 20 + 64],
        &read_golden("v1.fw")[67..131]
    );
}

#[test]
fn resigning_an_unsigned_archive_gives_fwups_signed_one() {
    let mut out = Vec::new();
    let uuid = myelin_fw::create::sign_archive(
        read_golden("v1-unsigned.fw").as_slice(),
        &mut out,
        &golden_priv(),
        9,
        &Vars::default(),
    )
    .unwrap();
    assert_eq!(uuid, "7a8162cb-af94-5eae-123d-62063f07d9d7");
    assert!(out == read_golden("v1.fw"));
}

#[test]
fn metadata_and_tasks_match_fwup() {
    let cfg = myelin_fw::metadata(read_golden("v1.fw").as_slice(), &[golden_pub()]).unwrap();
    // Every line of `fwup -m`, meta-nickname included.
    let want = String::from_utf8(read_golden("v1.metadata.txt")).unwrap();
    assert_eq!(meta::metadata_lines(&cfg), want);
    let tasks = myelin_fw::list(read_golden("v1.fw").as_slice(), &[]).unwrap();
    assert_eq!(
        tasks.join("\n") + "\n",
        String::from_utf8(read_golden("v1.tasks.txt")).unwrap()
    );
    assert_eq!(
        myelin_fw::verify(
            read_golden("v1.fw").as_slice(),
            &[golden_pub()],
            &Vars::default()
        )
        .unwrap(),
        Verified::GoodSignature
    );
    assert_eq!(
        myelin_fw::verify(read_golden("v1.fw").as_slice(), &[], &Vars::default()).unwrap(),
        Verified::UnverifiedSignature
    );
}

#[test]
fn progress_matches_fwups_framing_packets() {
    // fwup's `--framing` output for this apply: PR packets then OK.
    let framing = read_golden("complete-v1.framing.bin");
    let mut want = Vec::new();
    let mut i = 0;
    while i < framing.len() {
        let n = u32::from_be_bytes(framing[i..i + 4].try_into().unwrap()) as usize;
        let p = &framing[i + 4..i + 4 + n];
        if &p[..2] == b"PR" {
            want.push(u16::from_be_bytes([p[2], p[3]]));
        }
        i += 4 + n;
    }
    let mut got = Vec::new();
    let mut cb = |e: Event| {
        if let Event::Percent(p) = e {
            got.push(p)
        }
    };
    let mut t = MemTarget::zeroed(11 * MIB);
    let sys = Fixed::default();
    let keys = [golden_pub()];
    let opts = ApplyOptions {
        task: "complete",
        public_keys: &keys,
        vars: Vars::default(),
        system: &sys,
        enable_trim: false,
        progress_range: (0, 100),
    };
    myelin_fw::apply(
        read_golden("v1.fw").as_slice(),
        &mut t,
        &opts,
        Some(&mut cb),
    )
    .unwrap();
    assert_eq!(got, want);
}

#[test]
fn fwup_upgrade_lands_byte_for_byte_like_fwups() {
    let mut t = complete_v1();
    let before = t.data.clone();
    t.log.clear();
    let applied = apply_golden(&read_golden("v2.fw"), &mut t, "upgrade", &[golden_pub()]).unwrap();
    assert_eq!(applied.task, "upgrade.b");
    let want = golden_image("upgraded-v2.img.xz");
    // Every byte is fwup's: MBR, boot FAT, both slots, and both environment copies (one
    // environment write per uboot_* call, as fwup does, so the flags and copies match).
    assert_eq!(differences(&t.data, &want, &[]), Vec::<usize>::new());
    assert_eq!(
        &t.data[SLOT_A], &before[SLOT_A],
        "the running slot was written"
    );
    // The environment reaches the disk in an order that keeps a valid environment at every
    // cut: the copy that ends up active was the active one, so the new environment goes to
    // the other copy first, then to the active one, then the other copy gets its final bytes.
    let env_writes: Vec<_> = t
        .log
        .iter()
        .filter(|(o, l)| (*o as usize) < ENV2.end && *o as usize + l > ENV1.start)
        .collect();
    assert_eq!(
        env_writes,
        vec![
            &(0x4000u64, 0x2000usize),
            &(0x2000u64, 0x2000usize),
            &(0x4000u64, 0x2000usize)
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("upgraded.img");
    std::fs::write(&img, &t.data).unwrap();
    let cfg = fw_env_config(dir.path(), &img, &[(0x2000, 0x2000), (0x4000, 0x2000)]);
    let want_env: Vec<String> = String::from_utf8(read_golden("upgraded-v2.env.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(fw_printenv(&cfg), want_env);
    // The slot switch is the last write, after the data was synced.
    assert_eq!(t.log.last(), Some(&(0u64, 512usize)));
    assert!(t.syncs >= 3);
}

#[test]
fn on_init_invalidation_is_durable_before_the_slot_is_written() {
    // After v1 (slot a) and v2 (slot b), upgrade.a's on-init unsets a.nerves_fw_version. The
    // archive is cut inside the rootfs: the update fails halfway through slot a, and slot a must
    // not keep metadata that calls it the old, complete firmware.
    let mut t = complete_v1();
    apply_golden(&read_golden("v2.fw"), &mut t, "upgrade", &[golden_pub()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image");
    let cfg = fw_env_config(dir.path(), &img, &[(0x2000, 0x2000), (0x4000, 0x2000)]);
    std::fs::write(&img, &t.data).unwrap();
    assert!(fw_printenv(&cfg).contains(&"a.nerves_fw_version=1.0.0".to_string()));
    t.log.clear();
    let v1 = read_golden("v1.fw");
    let err =
        apply_golden(&v1[..v1.len() * 3 / 4], &mut t, "upgrade", &[golden_pub()]).unwrap_err();
    assert!(!err.to_string().is_empty());
    std::fs::write(&img, &t.data).unwrap();
    let env = fw_printenv(&cfg);
    assert!(
        !env.iter().any(|l| l.starts_with("a.nerves_fw_version=")),
        "slot a is half written but still described: {env:?}"
    );
    assert!(env.contains(&"nerves_fw_active=b".to_string()), "{env:?}");
    // And first: the environment write precedes every other write of the run (slot data is
    // gathered, then written, only after it).
    let first_env = t
        .log
        .iter()
        .position(|(o, l)| (*o as usize) < ENV2.end && *o as usize + l > ENV1.start);
    assert_eq!(first_env, Some(0), "writes: {:?}", t.log);
}

#[test]
fn corrupt_resource_is_refused_and_the_active_slot_untouched() {
    let mut t = complete_v1();
    let before = t.data.clone();
    let err = apply_golden(
        &read_golden("v2-corrupt.fw"),
        &mut t,
        "upgrade",
        &[golden_pub()],
    )
    .unwrap_err();
    // fwup: "ZIP bad CRC: 0x130a75bc should be 0x6ba3d80f".
    assert!(
        err.to_string()
            .contains("ZIP bad CRC for 'data/rootfs.img': 0x130a75bc should be 0x6ba3d80f"),
        "{err}"
    );
    assert_eq!(&t.data[..512], &before[..512], "MBR changed");
    assert_eq!(&t.data[ENV1], &before[ENV1], "environment changed");
    assert_eq!(&t.data[ENV2], &before[ENV2], "environment changed");
    assert_eq!(&t.data[SLOT_A], &before[SLOT_A], "slot A changed");
    // The boot FAT's structure (boot sector, FATs, root directory) is unchanged: the new
    // kernel's clusters were written to free space only.
    let boot = 2048 * 512;
    assert_eq!(
        &t.data[boot..boot + 99 * 512],
        &before[boot..boot + 99 * 512]
    );
    // Only slot B and free FAT clusters were written.
    for (i, (a, b)) in t.data.iter().zip(&before).enumerate() {
        if a != b {
            assert!(
                SLOT_B.contains(&i) || (boot + 99 * 512..boot + 8192 * 512).contains(&i),
                "byte {i} written outside slot B and free FAT space"
            );
        }
    }
    // fwup stopped the same way, leaving env and MBR naming slot A.
    let fwup_attempt = golden_image("corrupt-attempt.img.xz");
    assert_eq!(&fwup_attempt[ENV1], &t.data[ENV1]);
    assert_eq!(&fwup_attempt[..512], &t.data[..512]);
}

#[test]
fn unsigned_archive_is_refused_when_a_key_is_given_and_nothing_is_written() {
    let mut t = MemTarget::zeroed(11 * MIB);
    let err = apply_golden(
        &read_golden("v1-unsigned.fw"),
        &mut t,
        "complete",
        &[golden_pub()],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unsigned));
    // fwup's message, word for word.
    assert_eq!(
        format!("fwup: {err}\n"),
        String::from_utf8(read_golden("unsigned-attempt.stderr"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
            + "\n"
    );
    assert!(t.log.is_empty());
    assert!(t.data.iter().all(|&b| b == 0));
}

#[test]
fn wrong_key_is_refused_and_nothing_is_written() {
    let other = myelin_fw::PrivateKey::generate().unwrap().public();
    let mut t = MemTarget::zeroed(11 * MIB);
    let err = apply_golden(
        &read_golden("v1.fw"),
        &mut t,
        "complete",
        std::slice::from_ref(&other),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadSignature));
    assert!(t.log.is_empty());
    // Any of several keys may match.
    apply_golden(
        &read_golden("v1.fw"),
        &mut t,
        "complete",
        &[other, golden_pub()],
    )
    .unwrap();
}

#[test]
fn images_pass_the_real_tools() {
    let t = complete_v1();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("complete-v1.img");
    std::fs::write(&img, &t.data).unwrap();
    // sfdisk reads fwup's partition table.
    let want = String::from_utf8(read_golden("complete-v1.sfdisk.txt"))
        .unwrap()
        .replace("complete-v1.img", "IMG");
    let got: String = sfdisk(&img)
        .lines()
        .filter(|l| !l.starts_with("device:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, want);
    // mtools lists the boot FAT as it listed fwup's.
    let listing = mdir(&img, 2048 * 512, "/");
    let want = String::from_utf8(read_golden("complete-v1.boot-dir.txt")).unwrap();
    assert_eq!(listing.replace(" ", ""), want.replace(" ", ""));
    assert_eq!(mtype(&img, 2048 * 512, "zImage.a"), read_golden("zImage"));
    assert_eq!(
        mtype(&img, 2048 * 512, "config.txt"),
        read_golden("config.txt")
    );
    fsck_vfat(dir.path(), &img, 2048 * 512, 8192 * 512);
    // libubootenv's fw_printenv reads the redundant environment.
    let cfg = fw_env_config(dir.path(), &img, &[(0x2000, 0x2000), (0x4000, 0x2000)]);
    let want: Vec<String> = String::from_utf8(read_golden("complete-v1.env.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(fw_printenv(&cfg), want);
}
