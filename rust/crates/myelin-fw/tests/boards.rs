//! The five board layouts (board/<board>/fwup.conf): each creates a signed .fw from small
//! generated stand-ins for Buildroot's images, applies `complete` to an image file, then an
//! `upgrade` while "running" slot A, then the ops tasks (from an ops-only archive made without
//! any host file) while running slot B. After each step the image is inspected with real tools:
//! sfdisk (partition table), fsck.vfat and mtools (boot partitions), unsquashfs (root file
//! systems) and fw_printenv (environment).
#![allow(clippy::unwrap_used)]

mod common;

use common::boards::*;
use common::*;
use myelin_fw::config::model::parse_c_uint;
use myelin_fw::{PrivateKey, Vars};
use std::path::Path;

const BOARDS: [&str; 5] = ["rpi0", "rpi3", "rpi4", "bbb", "x86_64"];

/// The boot FAT partitions that hold a file system after `complete`.
fn fat_partitions(board: &str) -> Vec<&'static str> {
    if is_rpi(board) {
        vec!["0", "1"]
    } else {
        vec!["0"]
    }
}

fn check_board(board: &str) {
    let work = scratch_dir();
    let w = work.path();
    let key = PrivateKey::generate().unwrap();
    let public = key.public();
    let layout = Layout::of(board, w);
    let (ra, rb) = rootfs_partitions(board);
    let (slot_a, slot_b) = (layout.part(ra), layout.part(rb));

    // Firmware v1 and v2, and the ops archive made without any input file.
    let v1 = firmware(board, &layout, w, "1.0.0", &key);
    let v2 = firmware(board, &layout, w, "2.0.0", &key);
    let (fw1, fw2, uuid1, uuid2) = (v1.fw, v2.fw, v1.uuid, v2.uuid);
    let (bin1, bin2) = (v1.inputs, v2.inputs);
    let ops = ops_firmware(board, w, "1.0.0", &key);
    let ops_tasks = myelin_fw::list(
        std::fs::File::open(&ops).unwrap(),
        std::slice::from_ref(&public),
    )
    .unwrap();
    // Tasks that write resources are left out; resource-less ones (even error-only ones) stay.
    for t in ["complete", "upgrade.a", "upgrade.b"] {
        assert!(
            !ops_tasks.iter().any(|x| x == t),
            "{board}: ops.fw has {t}: {ops_tasks:?}"
        );
    }
    for t in [
        "validate.a",
        "validate.b",
        "factory-reset",
        "status.fail",
        "revert.fail",
    ] {
        assert!(
            ops_tasks.iter().any(|x| x == t),
            "{board}: ops.fw lacks {t}: {ops_tasks:?}"
        );
    }

    // complete, onto a sparse image file as large as the layout.
    let image = w.join(format!("{board}.img"));
    layout.blank_image(&image);
    let rp = w.join("reboot-param");
    let (task, _) = apply(&fw1, &image, "complete", &public, None, &rp).unwrap();
    assert_eq!(task, "complete");

    let table = sfdisk(&image);
    for title in ["0", ra, rb] {
        let (start, size) = layout.part(title);
        assert!(
            table.contains(&format!("start={start:>12}, size={size:>12}")),
            "{board}: partition {title} ({start}+{size}) not in\n{table}"
        );
    }
    let env_cfg = fw_env_config(w, &image, &layout.env());
    let env = |name: &str| fw_printenv_value(&env_cfg, name);
    assert_eq!(
        env("a.nerves_fw_version").as_deref(),
        Some("1.0.0"),
        "{board}"
    );
    assert_eq!(
        env("a.nerves_fw_uuid").as_deref(),
        Some(uuid1.as_str()),
        "{board}"
    );
    assert_eq!(
        env("a.nerves_fw_validated").as_deref(),
        Some("1"),
        "{board}"
    );
    assert_eq!(env("nerves_fw_active").as_deref(), Some("a"), "{board}");
    assert_eq!(
        env("nerves_fw_devpath").as_deref(),
        Some("/dev/rootdisk0"),
        "{board}"
    );
    assert_eq!(
        squashfs_file(w, &image, slot_a, "etc/version"),
        format!("{board} 1.0.0\n")
    );
    for p in fat_partitions(board) {
        let (o, c) = layout.part(p);
        fsck_vfat(w, &image, o * 512, c * 512);
    }
    let boot = layout.part(if is_rpi(board) { "1" } else { "0" }).0 * 512;
    match board {
        "bbb" => {
            assert_eq!(
                mtype(&image, boot, "a/zImage"),
                std::fs::read(bin1.join("zImage")).unwrap()
            );
            assert_eq!(
                mtype(&image, boot, "MLO"),
                std::fs::read(bin1.join("MLO")).unwrap()
            );
            assert!(mdir(&image, boot, "/").contains("BOOT"));
        }
        "x86_64" => {
            let grubenv = mtype(&image, boot, "boot/grub/grubenv");
            assert_eq!(
                grubenv,
                std::fs::read(board_dir(board).join("grubenv/a")).unwrap()
            );
            // GRUB's boot.img is in the MBR with the disk signature.
            let mbr = read_range(&image, 0, 512);
            assert_eq!(
                &mbr[..440],
                &std::fs::read(bin1.join("boot.img")).unwrap()[..440]
            );
            assert_eq!(&mbr[440..444], &[1, 2, 3, 4]);
        }
        _ => {
            assert_eq!(
                mtype(&image, boot, "cmdline.txt"),
                std::fs::read(board_dir(board).join("cmdline-a.txt")).unwrap()
            );
            let auto = layout.part("0").0 * 512;
            assert_eq!(
                mtype(&image, auto, "autoboot.txt"),
                std::fs::read(bin1.join("autoboot-a.txt")).unwrap()
            );
        }
    }

    // upgrade while running A: slot B gets v2, A is untouched, the switch is armed.
    let a_before = read_range(&image, slot_a.0 * 512, slot_a.1 * 512);
    let (task, infos) = apply(&fw2, &image, "upgrade", &public, Some(slot_a.0), &rp).unwrap();
    assert_eq!(task, "upgrade.b", "{board}");
    assert!(
        infos.iter().any(|m| m.contains("B") || m.contains("b")),
        "{board}: {infos:?}"
    );
    assert!(
        read_range(&image, slot_a.0 * 512, slot_a.1 * 512) == a_before,
        "{board}: slot A changed"
    );
    assert_eq!(
        squashfs_file(w, &image, slot_b, "etc/version"),
        format!("{board} 2.0.0\n")
    );
    assert_eq!(
        env("b.nerves_fw_version").as_deref(),
        Some("2.0.0"),
        "{board}"
    );
    assert_eq!(
        env("b.nerves_fw_uuid").as_deref(),
        Some(uuid2.as_str()),
        "{board}"
    );
    assert_eq!(
        env("b.nerves_fw_validated").as_deref(),
        Some("0"),
        "{board}"
    );
    assert_eq!(
        env("a.nerves_fw_version").as_deref(),
        Some("1.0.0"),
        "{board}"
    );
    match board {
        "bbb" => {
            assert_eq!(env("nerves_fw_active").as_deref(), Some("b"));
            assert_eq!(env("upgrade_available").as_deref(), Some("1"));
            assert_eq!(
                mtype(&image, boot, "b/zImage"),
                std::fs::read(bin2.join("zImage")).unwrap()
            );
            assert_eq!(
                mtype(&image, boot, "a/zImage"),
                std::fs::read(bin1.join("zImage")).unwrap()
            );
        }
        "x86_64" => {
            assert_eq!(env("nerves_fw_active").as_deref(), Some("b"));
            assert_eq!(
                mtype(&image, boot, "boot/grub/grubenv"),
                std::fs::read(board_dir(board).join("grubenv/a-try-b")).unwrap()
            );
        }
        _ => {
            assert_eq!(std::fs::read_to_string(&rp).unwrap(), "0 tryboot");
            let boot_b = layout.part("2").0 * 512;
            assert_eq!(
                mtype(&image, boot_b, "cmdline.txt"),
                std::fs::read(board_dir(board).join("cmdline-b.txt")).unwrap()
            );
            fsck_vfat(w, &image, boot_b, layout.part("2").1 * 512);
        }
    }
    for p in fat_partitions(board) {
        let (o, c) = layout.part(p);
        fsck_vfat(w, &image, o * 512, c * 512);
    }
    // A second upgrade from A would overwrite the pending slot B: the same task runs again.
    // Running the trial (slot B, not validated) no upgrade is allowed.
    let err = apply(&fw2, &image, "upgrade", &public, Some(slot_b.0), &rp).unwrap_err();
    assert!(matches!(err, myelin_fw::Error::Task(_)), "{board}: {err}");

    // Ops tasks, running the trial in slot B.
    let status = |image: &Path| {
        let (_, infos) = apply(&ops, image, "status", &public, Some(slot_b.0), &rp).unwrap();
        infos.last().cloned().unwrap_or_default()
    };
    assert_eq!(status(&image), "b->a", "{board}");
    let (task, _) = apply(&ops, &image, "validate", &public, Some(slot_b.0), &rp).unwrap();
    assert_eq!(task, "validate.b", "{board}");
    assert_eq!(
        env("b.nerves_fw_validated").as_deref(),
        Some("1"),
        "{board}"
    );
    assert_eq!(status(&image), "b", "{board}");
    match board {
        "x86_64" => assert_eq!(
            mtype(&image, boot, "boot/grub/grubenv"),
            std::fs::read(board_dir(board).join("grubenv/b")).unwrap()
        ),
        "bbb" => assert_eq!(env("upgrade_available").as_deref(), Some("0")),
        _ => {
            let auto = layout.part("0").0 * 512;
            assert_eq!(
                mtype(&image, auto, "autoboot.txt"),
                std::fs::read(bin1.join("autoboot-b.txt")).unwrap()
            );
        }
    }
    let (task, _) = apply(&ops, &image, "revert", &public, Some(slot_b.0), &rp).unwrap();
    assert_eq!(task, "revert.b", "{board}");
    assert_eq!(env("nerves_fw_active").as_deref(), Some("a"), "{board}");
    for p in fat_partitions(board) {
        let (o, c) = layout.part(p);
        fsck_vfat(w, &image, o * 512, c * 512);
    }
    // factory-reset wipes the start of /data.
    let app = layout.cfg.mbr("mbr").unwrap().partitions.last().unwrap();
    let app_off = parse_c_uint(app.block_offset.as_deref().unwrap()).unwrap() * 512;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        f.write_all_at(b"ext4 superblock stand-in", app_off + 1024)
            .unwrap();
    }
    let (task, _) = apply(&ops, &image, "factory-reset", &public, Some(slot_b.0), &rp).unwrap();
    assert_eq!(task, "factory-reset");
    assert!(
        read_range(&image, app_off, 256 * 512)
            .iter()
            .all(|&b| b == 0xff),
        "{board}"
    );
    // prevent-revert running A (after the revert): B can no longer be booted.
    let (task, _) = apply(&ops, &image, "prevent-revert", &public, Some(slot_a.0), &rp).unwrap();
    assert_eq!(task, "prevent-revert.a", "{board}");
    assert_eq!(env("nerves_fw_active").as_deref(), Some("a"), "{board}");
    if board == "bbb" {
        assert_eq!(env("upgrade_available").as_deref(), Some("0"));
    } else {
        assert_eq!(
            env("b.nerves_fw_validated").as_deref(),
            Some("0"),
            "{board}"
        );
    }
    assert_eq!(env("b.nerves_fw_version"), None, "{board}");
    assert!(
        read_range(&image, slot_b.0 * 512, 256 * 512)
            .iter()
            .all(|&b| b == 0xff),
        "{board}: slot B still looks like a file system"
    );
    let (_, infos) = apply(&ops, &image, "status", &public, Some(slot_a.0), &rp).unwrap();
    assert_eq!(infos.last().map(String::as_str), Some("a"), "{board}");
    for p in fat_partitions(board) {
        let (o, c) = layout.part(p);
        fsck_vfat(w, &image, o * 512, c * 512);
    }
    // provision reads the serial number from the environment at apply time.
    let serial = Vars::from_pairs([("MYELIN_SERIAL_NUMBER", "SN-0042")]);
    let (task, _) = apply_with(
        &ops,
        &image,
        "provision",
        &public,
        Some(slot_a.0),
        &rp,
        serial,
    )
    .unwrap();
    assert_eq!(task, "provision");
    assert_eq!(
        env("nerves_serial_number").as_deref(),
        Some("SN-0042"),
        "{board}"
    );
    // Running from neither slot, status says so.
    let err = apply(&ops, &image, "status", &public, Some(12345), &rp).unwrap_err();
    assert!(err.to_string().contains("neither slot"), "{board}: {err}");
}

#[test]
fn rpi0() {
    check_board(BOARDS[0]);
}

#[test]
fn rpi3() {
    check_board(BOARDS[1]);
}

#[test]
fn rpi4() {
    check_board(BOARDS[2]);
}

#[test]
fn bbb() {
    check_board(BOARDS[3]);
}

#[test]
fn x86_64() {
    check_board(BOARDS[4]);
}
