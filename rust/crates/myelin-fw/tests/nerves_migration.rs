//! A Nerves device upgraded in place to Myelin, on real Nerves disk images (tests/golden/nerves:
//! written by the reference fwup 1.16 from nerves_system_rpi4 / nerves_system_x86_64's own
//! fwup.conf, then user keys set with Debian's fw_setenv).
//!
//! Myelin's `.fw` (built from board/<board>/fwup.conf like the board tests do) is applied with
//! task `upgrade`, as the Nerves device's fwup runs it, and the running slot is found the way
//! the device finds it: `require-path-at-offset("/", ...)` through the real [`Host`] code, on a
//! sysfs tree that says where the partition holding `/` starts. Then the first boot's
//! environment conversion runs (myelin_ubootenv::migrate, as myelin-kv runs it), Myelin's ops.fw
//! validates the new slot, and a further Myelin upgrade goes back the other way. After each step
//! the image is inspected with sfdisk, mtools, unsquashfs and Debian's fw_printenv.
#![allow(clippy::unwrap_used)]

mod common;

use common::boards::*;
use common::*;
use myelin_fw::{Host, PrivateKey, PublicKey, Vars};
use myelin_ubootenv::migrate::{self, Migration};
use myelin_ubootenv::{EnvConfig, Location};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What differs between the two golden boards.
struct Board {
    name: &'static str,
    /// (offset, count) in blocks of rootfs A and B.
    rootfs: [(u64, u64); 2],
    /// Byte offset and size of the Nerves environment.
    nerves_env: (u64, u64),
    /// Byte offsets of Myelin's two copies, and their size.
    myelin_env: [u64; 2],
    myelin_env_size: u64,
    /// Regions (blocks) that the migration must leave byte-identical besides rootfs A.
    untouched: &'static [(u64, u64)],
}

const RPI4: Board = Board {
    name: "rpi4",
    rootfs: [(110_080, 272_666), (382_746, 272_666)],
    nerves_env: (0x2000, 0x2000),
    myelin_env: [0x2000, 0x4000],
    myelin_env_size: 0x2000,
    // MBR, BOOT-A.
    untouched: &[(0, 1), (63, 38_630)],
};

const X86_64: Board = Board {
    name: "x86_64",
    rootfs: [(35_328, 524_288), (559_616, 524_288)],
    nerves_env: (0x10_0000, 0x2000),
    myelin_env: [0x10_0000, 0x12_0000],
    myelin_env_size: 0x2_0000,
    // MBR with GRUB's boot.img, GRUB's core image.
    untouched: &[(0, 1), (1, 2047)],
};

/// User keys set on the golden images after `complete`, which must survive every step.
const USER_KEYS: [&str; 4] = [
    "nerves_serial_number=MYL0001",
    "wifi_ssid=home",
    "app_key=keep-me",
    "empty_key=",
];

/// Decompresses a golden Nerves image (sparse) into `dir`.
fn nerves_image(dir: &Path, board: &str) -> PathBuf {
    let xz = dir.join(format!("{board}-nerves.img.xz"));
    std::fs::copy(
        golden(&format!("nerves/{board}-nerves-complete.img.xz")),
        &xz,
    )
    .unwrap();
    run("xz", &["-d", "-k", xz.to_str().unwrap()]);
    dir.join(format!("{board}-nerves.img"))
}

/// A sparse copy of `image`: one per scenario, so each starts from the golden state.
fn copy_of(image: &Path, to: &Path) -> PathBuf {
    run(
        "cp",
        &[
            "--sparse=always",
            image.to_str().unwrap(),
            to.to_str().unwrap(),
        ],
    );
    to.to_owned()
}

/// The device's view of itself: `/` is on the partition starting at `block_offset`.
fn running_from(dir: &Path, block_offset: u64, reboot_param: &Path) -> Host {
    let dev = std::fs::metadata("/").unwrap().dev();
    // glibc's gnu_dev_major / gnu_dev_minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let sysfs = dir.join(format!("sysfs-{block_offset}"));
    let node = sysfs.join(format!("dev/block/{major}:{minor}"));
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(node.join("start"), format!("{block_offset}\n")).unwrap();
    Host {
        sysfs,
        reboot_param_path: Some(reboot_param.to_owned()),
        reboot_param_defaults: Vec::new(),
        // An image file: no other writer to serialize with.
        env_lock: None,
    }
}

/// Asserts that `len` blocks at `offset` are the same in both images.
fn assert_same_blocks(a: &Path, b: &Path, (offset, count): (u64, u64), what: &str) {
    use std::io::{Seek, SeekFrom};
    let open = |p: &Path| {
        let mut f = std::fs::File::open(p).unwrap();
        f.seek(SeekFrom::Start(offset * 512)).unwrap();
        f.take(count * 512)
    };
    let (mut fa, mut fb) = (open(a), open(b));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = offset * 512;
    loop {
        let n = fa.read(&mut ba).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if n == 0 {
            break;
        }
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!("{what}: byte {} differs", at + i as u64);
        }
        at += n as u64;
    }
}

fn assert_same_file(a: &Path, b: &Path, what: &str) {
    let len = std::fs::metadata(a).unwrap().len();
    assert_eq!(len, std::fs::metadata(b).unwrap().len(), "{what}: size");
    assert_same_blocks(a, b, (0, len / 512), what);
}

/// fw_printenv's lines for the Nerves layout (one copy) and for Myelin's (two copies).
struct Envs {
    nerves: PathBuf,
    myelin: PathBuf,
}

impl Envs {
    fn new(dir: &Path, image: &Path, board: &Board) -> Envs {
        let (n, m) = (dir.join("nerves-env"), dir.join("myelin-env"));
        std::fs::create_dir_all(&n).unwrap();
        std::fs::create_dir_all(&m).unwrap();
        let size = board.myelin_env_size;
        Envs {
            nerves: fw_env_config(&n, image, &[board.nerves_env]),
            myelin: fw_env_config(
                &m,
                image,
                &[(board.myelin_env[0], size), (board.myelin_env[1], size)],
            ),
        }
    }
}

fn has_lines<S: AsRef<str>>(listing: &[String], lines: &[S], what: &str) {
    for line in lines.iter().map(AsRef::as_ref) {
        assert!(
            listing.iter().any(|l| l == line),
            "{what}: {line:?} missing from\n{}",
            listing.join("\n")
        );
    }
}

/// Every line of the golden fw_printenv listing (Nerves' keys and the user keys).
fn golden_env(board: &str) -> Vec<String> {
    String::from_utf8(read_golden(&format!("nerves/{board}.env.txt")))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Myelin firmware for `board`: the full .fw and the ops.fw, signed with `key`.
fn myelin_fw(dir: &Path, board: &str, key: &PrivateKey) -> (PathBuf, PathBuf) {
    let layout = Layout::of(board, dir);
    let fw = firmware(board, &layout, dir, "2.0.0", key).fw;
    (fw, ops_firmware(board, dir, "2.0.0", key))
}

/// The conversion myelin-kv runs on the first boot.
fn first_boot(dir: &Path, image: &Path, board: &Board) -> Migration {
    let size = board.myelin_env_size as usize;
    let config = EnvConfig::redundant(
        Location::new(image, board.myelin_env[0] as i64, size),
        Location::new(image, board.myelin_env[1] as i64, size),
    )
    .unwrap()
    .with_lock_path(dir.join("lock/fw_printenv.lock"));
    let nerves = Location::new(
        image,
        board.nerves_env.0 as i64,
        board.nerves_env.1 as usize,
    );
    migrate::migrate(&config, &nerves).unwrap()
}

fn upgrade(fw: &Path, image: &Path, key: &PublicKey, host: &Host) -> String {
    let (task, _) = apply_on(fw, image, "upgrade", key, host, Vars::default())
        .unwrap_or_else(|e| panic!("upgrade of {} failed: {e}", image.display()));
    task
}

/// A device running Nerves from slot A of a copy of `board`'s golden image, and Myelin 2.0.0
/// for it (the full and the ops firmware) signed with a fresh key.
struct Device {
    board: &'static Board,
    golden: PathBuf,
    image: PathBuf,
    public: PublicKey,
    fw: PathBuf,
    ops: PathBuf,
    rp: PathBuf,
    envs: Envs,
}

impl Device {
    fn new(w: &Path, board: &'static Board) -> Device {
        let golden = nerves_image(w, board.name);
        let image = copy_of(&golden, &w.join("device.img"));
        let key = PrivateKey::generate().unwrap();
        let (fw, ops) = myelin_fw(w, board.name, &key);
        let envs = Envs::new(w, &image, board);
        Device {
            board,
            golden,
            image,
            public: key.public(),
            fw,
            ops,
            rp: w.join("reboot-param"),
            envs,
        }
    }

    /// Nerves, running slot A, applies Myelin's .fw with its own `upgrade` task. Only the
    /// inactive slot and boot files may change: the partition table, rootfs A and the board's
    /// untouched regions stay as the golden image has them.
    fn upgrade_from_nerves(&self, w: &Path) {
        let from_a = running_from(w, self.board.rootfs[0].0, &self.rp);
        let task = upgrade(&self.fw, &self.image, &self.public, &from_a);
        assert_eq!(task, "upgrade.nerves-b");
        let table = sfdisk(&self.image).replace("IMG", "IMAGE");
        let golden_table = read_golden(&format!("nerves/{}.sfdisk.txt", self.board.name));
        assert_eq!(table, String::from_utf8(golden_table).unwrap());
        assert_same_blocks(&self.golden, &self.image, self.board.rootfs[0], "rootfs A");
        for region in self.board.untouched {
            assert_same_blocks(&self.golden, &self.image, *region, "boot regions");
        }
    }
}

fn rpi_boot_file(image: &Path, block: u64, path: &str) -> String {
    String::from_utf8(mtype(image, block * 512, path)).unwrap()
}

const AUTOBOOT: u64 = 77_323;
const BOOT_B: u64 = 38_693;
const X86_BOOT: u64 = 4096;

fn common_file(name: &str) -> String {
    std::fs::read_to_string(board_dir("rpi4").join("../common").join(name)).unwrap()
}

#[test]
fn rpi4_nerves_card_upgrades_to_myelin_validates_and_upgrades_again() {
    let work = scratch_dir();
    let w = work.path();
    let d = Device::new(w, &RPI4);
    let (board, golden_img, image, public) = (d.board, &d.golden, &d.image, &d.public);
    let (fw, ops, rp, envs) = (&d.fw, &d.ops, &d.rp, &d.envs);

    // The Nerves card, running slot A, applies Myelin's .fw with its own upgrade task: only
    // the inactive slot and AUTOBOOT's new files change (MBR and BOOT-A stay).
    d.upgrade_from_nerves(w);
    for file in ["autoboot.txt", "start4.elf", "config.txt"] {
        assert_eq!(
            mtype(image, AUTOBOOT * 512, file),
            mtype(golden_img, AUTOBOOT * 512, file),
            "AUTOBOOT {file}"
        );
    }
    assert_eq!(
        rpi_boot_file(image, AUTOBOOT, "autoboot-a.txt"),
        common_file("autoboot-a.txt")
    );
    assert_eq!(
        rpi_boot_file(image, AUTOBOOT, "autoboot-b.txt"),
        common_file("autoboot-b.txt")
    );
    // Nerves' autoboot.txt tries partition 3 (BOOT-B) on a tryboot reboot.
    let autoboot = rpi_boot_file(image, AUTOBOOT, "autoboot.txt");
    assert!(
        autoboot.contains("[tryboot]\nboot_partition=3"),
        "{autoboot}"
    );
    assert_eq!(
        rpi_boot_file(image, BOOT_B, "cmdline.txt"),
        std::fs::read_to_string(board_dir("rpi4").join("cmdline-b.txt")).unwrap()
    );
    assert!(
        rpi_boot_file(image, BOOT_B, "cmdline.txt").contains("root=/dev/mmcblk0p6"),
        "BOOT-B boots rootfs B"
    );
    assert!(mdir(image, BOOT_B * 512, "/").contains("BOOT"));
    assert_eq!(
        squashfs_file(w, image, board.rootfs[1], "etc/version"),
        "rpi4 2.0.0\n"
    );
    assert_eq!(std::fs::read_to_string(rp).unwrap(), "0 tryboot");
    // Files added to the FAT that fwup made are where fsck expects them.
    fsck_vfat(w, image, AUTOBOOT * 512, 32_749 * 512);
    fsck_vfat(w, image, BOOT_B * 512, 38_630 * 512);

    // The Nerves environment keeps every key and describes slot B for trying.
    let listing = fw_printenv(&envs.nerves);
    has_lines(&listing, &golden_env(board.name), "after upgrade");
    has_lines(
        &listing,
        &[
            "b.nerves_fw_validated=0",
            "b.nerves_fw_platform=rpi4",
            "b.nerves_fw_architecture=aarch64",
            "b.nerves_fw_version=2.0.0",
            "b.nerves_fw_application_part0_devpath=/dev/rootdisk0p7",
        ],
        "after upgrade",
    );

    // First boot of Myelin (slot B): the environment becomes redundant, every key kept, and
    // the Nerves copy is still readable by Nerves (a failed trial returns there).
    assert!(matches!(
        first_boot(w, image, board),
        Migration::Write { .. }
    ));
    assert!(matches!(
        first_boot(w, image, board),
        Migration::Converted(_)
    ));
    let myelin = fw_printenv(&envs.myelin);
    assert_eq!(
        myelin, listing,
        "the converted environment is the Nerves one"
    );
    assert_eq!(fw_printenv(&envs.nerves), listing);

    // Myelin validates itself: autoboot.txt now boots B, B is validated, keys stay.
    let (task, _) = apply_on(
        ops,
        image,
        "validate",
        public,
        &running_from(w, board.rootfs[1].0, rp),
        Vars::default(),
    )
    .unwrap();
    assert_eq!(task, "validate.b");
    assert_eq!(
        rpi_boot_file(image, AUTOBOOT, "autoboot.txt"),
        common_file("autoboot-b.txt")
    );
    let validated = fw_printenv(&envs.myelin);
    has_lines(&validated, &USER_KEYS, "after validate");
    has_lines(
        &validated,
        &["b.nerves_fw_validated=1", "nerves_fw_active=b"],
        "after validate",
    );
    assert_eq!(first_boot(w, image, board), Migration::NotNerves);

    // Revert to Nerves' slot works as on a native card (and is undone by validating again).
    let from_b = running_from(w, board.rootfs[1].0, rp);
    let (task, _) = apply_on(ops, image, "revert", public, &from_b, Vars::default()).unwrap();
    assert_eq!(task, "revert.b");
    assert_eq!(
        rpi_boot_file(image, AUTOBOOT, "autoboot.txt"),
        common_file("autoboot-a.txt")
    );
    let (task, _) = apply_on(ops, image, "validate", public, &from_b, Vars::default()).unwrap();
    assert_eq!(task, "validate.b");

    // And a later Myelin upgrade, from B to A, works as on a native Myelin card.
    std::fs::remove_file(rp).unwrap();
    let task = upgrade(fw, image, public, &running_from(w, board.rootfs[1].0, rp));
    assert_eq!(task, "upgrade.a");
    assert_eq!(std::fs::read_to_string(rp).unwrap(), "0 tryboot");
    let again = fw_printenv(&envs.myelin);
    has_lines(&again, &USER_KEYS, "after the second upgrade");
    has_lines(
        &again,
        &[
            "a.nerves_fw_validated=0",
            "a.nerves_fw_architecture=aarch64",
        ],
        "after the second upgrade",
    );
}

#[test]
fn x86_64_nerves_disk_upgrades_to_myelin_validates_and_upgrades_again() {
    let work = scratch_dir();
    let w = work.path();
    let d = Device::new(w, &X86_64);
    let (board, image, public) = (d.board, &d.image, &d.public);
    let (fw, ops, rp, envs) = (&d.fw, &d.ops, &d.rp, &d.envs);
    let grub_dir = |img: &Path| mdir(img, X86_BOOT * 512, "/boot/grub");
    let grub_file =
        |img: &Path, name: &str| mtype(img, X86_BOOT * 512, &format!("/boot/grub/{name}"));
    let board_file = |name: &str| std::fs::read(board_dir("x86_64").join(name)).unwrap();

    // MBR (GRUB's boot.img) and GRUB's core image stay.
    d.upgrade_from_nerves(w);
    assert_eq!(
        squashfs_file(w, image, board.rootfs[1], "etc/version"),
        "x86_64 2.0.0\n"
    );
    // GRUB now runs Myelin's grub.cfg, armed to try B once; the staged copy is gone.
    assert_eq!(grub_file(image, "grub.cfg"), board_file("grub.cfg"));
    assert_eq!(grub_file(image, "grubenv"), board_file("grubenv/a-try-b"));
    assert!(
        !grub_dir(image).contains("grub.cfg.myelin"),
        "{}",
        grub_dir(image)
    );
    assert!(
        !std::fs::exists(rp).unwrap(),
        "x86_64 needs no reboot parameter"
    );
    fsck_vfat(w, image, X86_BOOT * 512, 31_232 * 512);

    let listing = fw_printenv(&envs.nerves);
    has_lines(&listing, &golden_env(board.name), "after upgrade");
    has_lines(
        &listing,
        &[
            // Nerves' own upgrade picks its slot by this key alone: it names Nerves' slot
            // until Myelin validates.
            "nerves_fw_active=a",
            "a.nerves_fw_validated=1",
            "b.nerves_fw_validated=0",
            "b.nerves_fw_platform=x86_64",
            "b.nerves_fw_architecture=x86_64",
            "b.nerves_fw_version=2.0.0",
        ],
        "after upgrade",
    );

    assert!(matches!(
        first_boot(w, image, board),
        Migration::Write { .. }
    ));
    assert_eq!(fw_printenv(&envs.myelin), listing);
    assert_eq!(fw_printenv(&envs.nerves), listing);

    let (task, _) = apply_on(
        ops,
        image,
        "validate",
        public,
        &running_from(w, board.rootfs[1].0, rp),
        Vars::default(),
    )
    .unwrap();
    assert_eq!(task, "validate.b");
    assert_eq!(grub_file(image, "grubenv"), board_file("grubenv/b"));
    let validated = fw_printenv(&envs.myelin);
    has_lines(&validated, &USER_KEYS, "after validate");
    has_lines(
        &validated,
        &["b.nerves_fw_validated=1", "nerves_fw_active=b"],
        "after validate",
    );

    // Revert returns to Nerves' slot as on a native device (and can be undone the same way).
    let from_b = running_from(w, board.rootfs[1].0, rp);
    let (task, _) = apply_on(ops, image, "revert", public, &from_b, Vars::default()).unwrap();
    assert_eq!(task, "revert.b");
    assert_eq!(grub_file(image, "grubenv"), board_file("grubenv/a"));
    has_lines(
        &fw_printenv(&envs.myelin),
        &["nerves_fw_active=a"],
        "after revert",
    );
    let (task, _) = apply_on(ops, image, "validate", public, &from_b, Vars::default()).unwrap();
    assert_eq!(task, "validate.b");

    let task = upgrade(fw, image, public, &from_b);
    assert_eq!(task, "upgrade.a");
    assert_eq!(grub_file(image, "grubenv"), board_file("grubenv/b-try-a"));
    has_lines(
        &fw_printenv(&envs.myelin),
        &USER_KEYS,
        "after the second upgrade",
    );
}

/// A trial of Myelin that returns to Nerves (never validated) leaves Myelin's converted copy 2
/// behind, valid and stale. When Nerves then upgrades again, its own `upgrade.nerves-*` task
/// must run, on its single-copy environment: Myelin's native tasks read the redundant layout,
/// would take that stale copy 2 for the environment, and their first write would replace the
/// Nerves copy, so Nerves, still running, would lose every key.
#[test]
fn nerves_upgrades_again_after_a_reverted_trial() {
    for board in [&RPI4, &X86_64] {
        let work = scratch_dir();
        let w = work.path();
        let d = Device::new(w, board);
        d.upgrade_from_nerves(w);
        // Myelin's trial boot converts the environment, then the trial fails: the bootloader
        // goes back to Nerves, which writes nothing Myelin would see.
        assert!(matches!(
            first_boot(w, &d.image, board),
            Migration::Write { .. }
        ));
        let from_a = running_from(w, board.rootfs[0].0, &d.rp);
        let task = upgrade(&d.fw, &d.image, &d.public, &from_a);
        assert_eq!(task, "upgrade.nerves-b", "{}", board.name);
        let listing = fw_printenv(&d.envs.nerves);
        has_lines(&listing, &USER_KEYS, board.name);
        has_lines(
            &listing,
            &["a.nerves_fw_version=1.0.0", "b.nerves_fw_version=2.0.0"],
            board.name,
        );
        // The next trial reads the environment Nerves has now (converted again, or already
        // the same as the copy the first trial wrote: the same firmware was installed twice).
        assert!(!matches!(
            first_boot(w, &d.image, board),
            Migration::NotNerves
        ));
        assert_eq!(fw_printenv(&d.envs.myelin), listing, "{}", board.name);
    }
}

/// A .fw for another board is refused before anything is written; a .fw cut short (a download
/// or power failure during the upgrade) leaves the Nerves slot the one that boots, keys intact.
#[test]
fn wrong_platform_and_interrupted_upgrades_leave_nerves_booting() {
    let work = scratch_dir();
    let w = work.path();
    let key = PrivateKey::generate().unwrap();
    let public = key.public();
    let rp = w.join("reboot-param");
    let rpi4_img = nerves_image(w, "rpi4");
    let x86_img = nerves_image(w, "x86_64");
    let (rpi3_fw, _) = myelin_fw(w, "rpi3", &key);
    let (rpi4_fw, _) = myelin_fw(w, "rpi4", &key);
    let (x86_fw, _) = myelin_fw(w, "x86_64", &key);

    for (fw, golden_img, slot_a) in [
        (&rpi3_fw, &rpi4_img, RPI4.rootfs[0].0),
        (&rpi4_fw, &x86_img, X86_64.rootfs[0].0),
        (&x86_fw, &rpi4_img, RPI4.rootfs[0].0),
    ] {
        let image = copy_of(golden_img, &w.join("wrong.img"));
        let err = apply_on(
            fw,
            &image,
            "upgrade",
            &public,
            &running_from(w, slot_a, &rp),
            Vars::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("the running firmware is not"),
            "{}: {err}",
            fw.display()
        );
        assert_same_file(golden_img, &image, "refused upgrade");
    }
    assert!(!std::fs::exists(&rp).unwrap());

    for (board, fw, golden_img) in [(&RPI4, &rpi4_fw, &rpi4_img), (&X86_64, &x86_fw, &x86_img)] {
        let len = std::fs::metadata(fw).unwrap().len();
        let cut = w.join("cut.fw");
        std::fs::write(&cut, &std::fs::read(fw).unwrap()[..len as usize / 2]).unwrap();
        let image = copy_of(golden_img, &w.join("cut.img"));
        apply_on(
            &cut,
            &image,
            "upgrade",
            &public,
            &running_from(w, board.rootfs[0].0, &rp),
            Vars::default(),
        )
        .unwrap_err();
        assert!(!std::fs::exists(&rp).unwrap(), "{}: no tryboot", board.name);
        assert_same_blocks(golden_img, &image, board.rootfs[0], "rootfs A");
        for region in board.untouched {
            assert_same_blocks(golden_img, &image, *region, "boot regions");
        }
        if board.name == "rpi4" {
            assert_eq!(
                mtype(&image, AUTOBOOT * 512, "autoboot.txt"),
                mtype(golden_img, AUTOBOOT * 512, "autoboot.txt")
            );
        } else {
            for f in ["/boot/grub/grub.cfg", "/boot/grub/grubenv"] {
                assert_eq!(
                    mtype(&image, X86_BOOT * 512, f),
                    mtype(golden_img, X86_BOOT * 512, f),
                    "{f}"
                );
            }
        }
        let envs = Envs::new(w, &image, board);
        has_lines(
            &fw_printenv(&envs.nerves),
            &USER_KEYS,
            "after a cut upgrade",
        );
        std::fs::remove_file(&image).unwrap();
    }
}
