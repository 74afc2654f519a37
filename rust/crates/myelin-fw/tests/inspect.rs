//! Images written by `apply -t complete` inspected with real tools: sfdisk (MBR with logical
//! partitions, GPT), fsck.vfat and mtools (FAT16 and FAT32 file systems made by fat_mkfs),
//! unsquashfs (a squashfs root file system in its slot) and fw_printenv (the environment).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::{ApplyOptions, CreateOptions, FileTarget, Fixed, Vars};
use std::path::Path;

const CONF: &str = r#"
define(BOOT_OFFSET, 2048)
define(BOOT_COUNT, 81920)
define-eval(EXT_OFFSET, "${BOOT_OFFSET} + ${BOOT_COUNT}")
define-eval(ROOTFS_A, "${EXT_OFFSET} + 8")
define(ROOTFS_COUNT, 8192)
define-eval(ROOTFS_B, "${ROOTFS_A} + ${ROOTFS_COUNT}")
define-eval(DATA, "${ROOTFS_B} + ${ROOTFS_COUNT}")

meta-product = "inspect"
meta-version = "${VERSION}"

file-resource kernel { host-path = "${INPUTS}/kernel" }
file-resource overlay.dtbo { host-path = "${INPUTS}/overlay.dtbo" }
file-resource rootfs.img { host-path = "${INPUTS}/rootfs.squashfs" assert-size-lte = ${ROOTFS_COUNT} }

mbr mbr {
    signature = 0x12345678
    partition 0 { block-offset = ${BOOT_OFFSET} block-count = ${BOOT_COUNT} type = 0xc boot = true }
    partition 3 { block-offset = ${EXT_OFFSET} type = 0xf }
    partition 4 { block-offset = ${ROOTFS_A} block-count = ${ROOTFS_COUNT} type = 0x83 }
    partition 5 { block-offset = ${ROOTFS_B} block-count = ${ROOTFS_COUNT} type = 0x83 }
    partition 6 { block-offset = ${DATA} block-count = 4096 type = 0x83 expand = true }
}

gpt gpt {
    guid = b443fbeb-2c93-481b-88b3-0ecb0aeba911
    partition 0 {
        block-offset = ${BOOT_OFFSET}
        block-count = ${BOOT_COUNT}
        type = c12a7328-f81f-11d2-ba4b-00a0c93ec93b
        guid = 5278721d-0089-4768-85df-b8f1b97e6684
        name = "boot"
        boot = true
    }
    partition 1 {
        block-offset = ${ROOTFS_A}
        block-count = ${ROOTFS_COUNT}
        type = 0fc63daf-8483-4772-8e79-3d69d8477de4
        guid = fcc205c8-2f1c-4dcd-bef4-7b209aa15cca
        name = "rootfs-a"
    }
}

uboot-environment env { block-offset = 16 block-offset-redund = 32 block-count = 16 }

task complete {
    on-init {
        mbr_write(mbr)
        fat_mkfs(${BOOT_OFFSET}, ${BOOT_COUNT})
        fat_setlabel(${BOOT_OFFSET}, "BOOT")
        fat_mkdir(${BOOT_OFFSET}, "overlays")
        uboot_clearenv(env)
        uboot_setenv(env, "slot", "a")
        uboot_setenv(env, "uuid", "\${FWUP_META_UUID}")
    }
    on-resource kernel { fat_write(${BOOT_OFFSET}, "kernel8.img") }
    on-resource overlay.dtbo { fat_write(${BOOT_OFFSET}, "overlays/overlay.dtbo") }
    on-resource rootfs.img { raw_write(${ROOTFS_A}) }
    on-finish {
        fat_touch(${BOOT_OFFSET}, "empty.txt")
        fat_cp(${BOOT_OFFSET}, "kernel8.img", "kernel-backup.img")
        fat_mv(${BOOT_OFFSET}, "kernel-backup.img", "kernel.old")
        uboot_setenv(env, "version", "${VERSION}")
    }
}

task complete-gpt {
    on-init { gpt_write(gpt) }
    on-resource rootfs.img { raw_write(${ROOTFS_A}) }
}
"#;

fn build(dir: &Path) -> std::path::PathBuf {
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(inputs.join("tree/etc")).unwrap();
    std::fs::write(
        inputs.join("tree/etc/os-release"),
        "NAME=inspect\nVERSION_ID=3.1.4\n",
    )
    .unwrap();
    let kernel: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(inputs.join("kernel"), kernel).unwrap();
    std::fs::write(inputs.join("overlay.dtbo"), vec![0xd0; 1234]).unwrap();
    run(
        "mksquashfs",
        &[
            s(&inputs.join("tree")),
            s(&inputs.join("rootfs.squashfs")),
            "-noappend",
            "-quiet",
            "-all-root",
        ],
    );
    let conf = dir.join("fwup.conf");
    std::fs::write(&conf, CONF).unwrap();
    let fw = dir.join("inspect.fw");
    myelin_fw::create_file(
        &CreateOptions {
            config: conf,
            vars: Vars::from_pairs([("INPUTS", s(&inputs)), ("VERSION", "3.1.4")]),
            signing_key: None,
            level: 6,
            ops_only: false,
        },
        &fw,
    )
    .unwrap();
    fw
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn apply(fw: &Path, img: &Path, task: &str) -> myelin_fw::Applied {
    let sys = Fixed::default();
    let opts = ApplyOptions {
        task,
        public_keys: &[],
        vars: Vars::default(),
        system: &sys,
        enable_trim: false,
        progress_range: (0, 100),
    };
    let mut t = FileTarget::open(img).unwrap();
    myelin_fw::apply(std::fs::File::open(fw).unwrap(), &mut t, &opts, None).unwrap()
}

#[test]
fn mbr_fat32_squashfs_and_environment() {
    let dir = scratch_dir();
    let d = dir.path();
    let fw = build(d);
    let img = d.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let applied = apply(&fw, &img, "complete");

    // Partition table: the primary FAT, the extended partition and three logical ones, the
    // last grown to the end of the 64 MiB image.
    let table = sfdisk(&img);
    assert!(table.contains("label-id: 0x12345678"), "{table}");
    for line in [
        "IMG1 : start=        2048, size=       81920, type=c, bootable",
        "IMG4 : start=       83968, size=       47104, type=f",
        "IMG5 : start=       83976, size=        8192, type=83",
        "IMG6 : start=       92168, size=        8192, type=83",
        "IMG7 : start=      100360, size=       30712, type=83",
    ] {
        assert!(table.contains(line), "missing '{line}' in\n{table}");
    }
    let (ok, out, err) = try_run("sfdisk", &["--verify", s(&img)]);
    assert!(ok, "sfdisk --verify: {out}{err}");

    // The boot partition: FAT32 (fat_mkfs of 40 MiB with 512-byte clusters), clean for fsck.
    let boot = 2048 * 512;
    fsck_vfat(d, &img, boot, 81920 * 512);
    let listing = mdir(&img, boot, "/");
    assert!(listing.contains("Volume in drive : is BOOT"), "{listing}");
    for name in [
        "kernel8  img",
        "kernel   old",
        "empty    txt",
        "overlays     <DIR>",
    ] {
        assert!(listing.contains(name), "{name} missing from\n{listing}");
    }
    let kernel = std::fs::read(d.join("inputs/kernel")).unwrap();
    assert!(mtype(&img, boot, "kernel8.img") == kernel);
    assert!(mtype(&img, boot, "kernel.old") == kernel);
    assert_eq!(mtype(&img, boot, "overlays/overlay.dtbo"), vec![0xd0; 1234]);
    assert!(mtype(&img, boot, "empty.txt").is_empty());

    // The root file system in slot A, read by unsquashfs.
    let slot = d.join("slot-a");
    extract(&img, 83976 * 512, 8192 * 512, &slot);
    let release = run("unsquashfs", &["-cat", s(&slot), "etc/os-release"]);
    assert_eq!(release, b"NAME=inspect\nVERSION_ID=3.1.4\n");

    // The environment, by libubootenv.
    let cfg = fw_env_config(d, &img, &[(16 * 512, 16 * 512), (32 * 512, 16 * 512)]);
    assert_eq!(
        fw_printenv(&cfg),
        vec![
            "slot=a".to_string(),
            format!("uuid={}", applied.uuid),
            "version=3.1.4".to_string()
        ]
    );
}

#[test]
fn gpt_layout() {
    let dir = scratch_dir();
    let d = dir.path();
    let fw = build(d);
    let img = d.join("gpt.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    apply(&fw, &img, "complete-gpt");
    let (ok, out, err) = try_run("sfdisk", &["--verify", s(&img)]);
    assert!(ok, "sfdisk --verify: {out}{err}");
    let table = sfdisk(&img);
    assert!(table.contains("label: gpt"), "{table}");
    assert!(
        table.contains("label-id: B443FBEB-2C93-481B-88B3-0ECB0AEBA911"),
        "{table}"
    );
    assert!(table.contains("IMG1 : start=        2048, size=       81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=5278721D-0089-4768-85DF-B8F1B97E6684, name=\"boot\", attrs=\"LegacyBIOSBootable\""), "{table}");
    assert!(table.contains("name=\"rootfs-a\""), "{table}");
    assert!(table.contains("last-lba: 131038"), "{table}");
}
