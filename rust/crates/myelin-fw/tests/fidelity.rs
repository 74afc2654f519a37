//! fwup's bytes where the golden corpus (made on zero-filled images) cannot show them: free
//! space of a new FAT volume on a used disk, empty environment values, one environment write
//! per call.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::{MemTarget, Vars};

const MIB: usize = 1 << 20;
const SEGMENT: usize = 128 * 1024;

#[test]
fn fat_mkfs_zero_fills_the_segments_it_writes_as_fwup_does() {
    // fwup's fat_mkfs trims the volume in its block cache: every 128 KiB segment the task then
    // writes goes to the disk whole, zeros where nothing was written; segments never written
    // keep their old bytes. On a zero-filled image that is the golden complete-v1; on a used
    // disk, the segments with golden data are exactly golden, the others keep the old bytes.
    let mut t = MemTarget::zeroed(11 * MIB);
    t.data.fill(0xa5);
    apply_golden(&read_golden("v1.fw"), &mut t, "complete", &[golden_pub()]).unwrap();
    let golden = golden_image("complete-v1.img.xz");
    let boot = 2048 * 512..(2048 + 8192) * 512;
    let mut zero_filled = 0;
    for seg in boot.clone().step_by(SEGMENT) {
        let r = seg..seg + SEGMENT;
        if golden[r.clone()].iter().any(|&b| b != 0) {
            assert!(
                t.data[r.clone()] == golden[r.clone()],
                "segment at {seg:#x}"
            );
            zero_filled += 1;
        } else {
            assert!(t.data[r].iter().all(|&b| b == 0xa5), "segment at {seg:#x}");
        }
    }
    assert!(zero_filled >= 2, "{zero_filled} segments written");
    let dir = scratch_dir();
    let img = dir.path().join("img");
    std::fs::write(&img, &t.data).unwrap();
    fsck_vfat(
        dir.path(),
        &img,
        boot.start as u64,
        (boot.end - boot.start) as u64,
    );
    assert_eq!(
        mtype(&img, boot.start as u64, "zImage.a"),
        read_golden("zImage")
    );
}

#[test]
fn empty_values_are_kept_and_each_call_is_one_environment_write() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fwup.conf");
    std::fs::write(
        &conf,
        r#"
uboot-environment env { block-offset = 16 block-offset-redund = 32 block-count = 16 }
task complete { on-init {
    uboot_clearenv(env)
    uboot_setenv(env, "bootdir", "")
    uboot_setenv(env, "nerves_fw_active", "a")
} }
task upgrade { on-finish {
    uboot_setenv(env, "cleared", "")
    uboot_unsetenv(env, "not_there")
    uboot_setenv(env, "nerves_fw_active", "b")
} }
"#,
    )
    .unwrap();
    let fw = create_with(&conf, Vars::default(), None).unwrap();
    let mut t = MemTarget::zeroed(64 * 1024);
    apply_golden(&fw, &mut t, "complete", &[]).unwrap();
    // clear + 2 calls: copy 1 (flags 3) is the newest, copy 2 (flags 2) one call behind.
    assert_eq!((t.data[16 * 512 + 4], t.data[32 * 512 + 4]), (3, 2));
    apply_golden(&fw, &mut t, "upgrade", &[]).unwrap();
    // Three more calls (the unset of a missing name included): flags 6 in copy 2, 5 in copy 1.
    assert_eq!((t.data[16 * 512 + 4], t.data[32 * 512 + 4]), (5, 6));
    let img = dir.path().join("img");
    std::fs::write(&img, &t.data).unwrap();
    let cfg = fw_env_config(
        dir.path(),
        &img,
        &[(16 * 512, 16 * 512), (32 * 512, 16 * 512)],
    );
    assert_eq!(
        fw_printenv(&cfg),
        vec!["bootdir=", "cleared=", "nerves_fw_active=b"]
    );
}
