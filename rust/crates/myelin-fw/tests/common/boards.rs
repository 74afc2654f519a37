//! The board layouts' test inputs: stand-ins for what Buildroot and post-image.sh put in
//! BINARIES_DIR, .fw creation from board/<board>/fwup.conf, and applying tasks to image files.

use super::*;
use myelin_fw::config::model::parse_c_uint;
use myelin_fw::progress::Event;
use myelin_fw::{ApplyOptions, Config, CreateOptions, FileTarget, Fixed, PrivateKey, Vars};
use std::path::{Path, PathBuf};

pub fn board_dir(board: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../board")
        .join(board)
        .canonicalize()
        .unwrap()
}

pub fn is_rpi(board: &str) -> bool {
    board.starts_with("rpi")
}

/// Partition numbers (MBR titles) of rootfs A and B.
pub fn rootfs_partitions(board: &str) -> (&'static str, &'static str) {
    if is_rpi(board) {
        ("4", "5")
    } else {
        ("1", "2")
    }
}

pub struct Layout {
    /// The parsed fwup.conf.
    pub cfg: Config,
}

impl Layout {
    /// `board`'s fwup.conf as the image build reads it (offsets do not depend on the version
    /// or the inputs, so none are needed).
    pub fn of(board: &str, work: &Path) -> Layout {
        let cfg = myelin_fw::create::load_config(
            &board_dir(board).join("fwup.conf"),
            &vars(board, &work.join("none"), "1.0.0"),
        )
        .unwrap();
        Layout { cfg }
    }
    /// A sparse image file as large as the layout, for `complete`.
    pub fn blank_image(&self, path: &Path) {
        std::fs::File::create(path)
            .unwrap()
            .set_len(self.end_blocks() * 512)
            .unwrap();
    }
    pub fn part(&self, title: &str) -> (u64, u64) {
        let p = self
            .cfg
            .mbr("mbr")
            .unwrap()
            .partitions
            .iter()
            .find(|p| p.title == title)
            .unwrap();
        (
            parse_c_uint(p.block_offset.as_deref().unwrap()).unwrap(),
            p.block_count as u64,
        )
    }
    pub fn env(&self) -> [(u64, u64); 2] {
        let loc = myelin_fw::uboot::Location::from_config(self.cfg.uboot_env("uboot-env").unwrap())
            .unwrap();
        [
            (loc.offset, loc.size as u64),
            (loc.redund.unwrap(), loc.size as u64),
        ]
    }
    pub fn end_blocks(&self) -> u64 {
        self.cfg
            .mbr("mbr")
            .unwrap()
            .partitions
            .iter()
            .filter(|p| p.block_count < i64::from(i32::MAX))
            .map(|p| {
                parse_c_uint(p.block_offset.as_deref().unwrap()).unwrap() + p.block_count as u64
            })
            .max()
            .unwrap()
    }
}

pub fn vars(board: &str, binaries: &Path, version: &str) -> Vars {
    Vars::from_pairs([
        ("BINARIES_DIR", binaries.to_str().unwrap().to_owned()),
        (
            "MYELIN_BOARD_DIR",
            board_dir(board).to_str().unwrap().to_owned(),
        ),
        ("MYELIN_FW_VERSION", version.to_owned()),
        ("SOURCE_DATE_EPOCH", "1767225600".to_owned()),
    ])
}

pub fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn mtools(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stand-ins for what Buildroot and post-image.sh put in BINARIES_DIR.
pub fn make_inputs(board: &str, layout: &Layout, dir: &Path, version: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tree = dir.join("rootfs-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/version"), format!("{board} {version}\n")).unwrap();
    std::fs::write(
        tree.join("etc/blob"),
        pseudo_random(50_000, version.len() as u32),
    )
    .unwrap();
    let squash = dir.join("rootfs.squashfs");
    let _ = std::fs::remove_file(&squash);
    run(
        "mksquashfs",
        &[
            tree.to_str().unwrap(),
            squash.to_str().unwrap(),
            "-noappend",
            "-quiet",
            "-all-root",
        ],
    );
    let env_size = layout.env()[0].1;
    run(
        "mkenvimage",
        &[
            "-r",
            "-s",
            &format!("{env_size:#x}"),
            "-o",
            dir.join("uboot-env.img").to_str().unwrap(),
            board_dir(board).join("uboot-env.txt").to_str().unwrap(),
        ],
    );
    match board {
        "bbb" => {
            for (name, len) in [
                ("MLO", 100_000),
                ("u-boot.img", 400_000),
                ("zImage", 600_000),
                ("am335x-boneblack.dtb", 60_000),
                ("am335x-bone.dtb", 60_000),
                ("am335x-bonegreen.dtb", 60_000),
                ("am335x-bonegreen-wireless.dtb", 60_000),
                ("am335x-boneblack-wireless.dtb", 60_000),
            ] {
                let seed = name.len() as u32 + version.len() as u32 * 7;
                std::fs::write(dir.join(name), pseudo_random(len, seed)).unwrap();
            }
        }
        "x86_64" => {
            std::fs::write(dir.join("boot.img"), pseudo_random(512, 3)).unwrap();
            std::fs::write(dir.join("grub.img"), pseudo_random(200_000, 4)).unwrap();
        }
        _ => {
            // As post-image.sh builds them: mkfs.vfat images filled with mtools (smaller than
            // the partitions, which assert-size-lte allows, to keep the test quick).
            for (name, label, title) in [
                ("autoboot.vfat", "AUTOBOOT", "0"),
                ("boot.vfat", "BOOT", "1"),
            ] {
                let img = dir.join(name);
                let _ = std::fs::remove_file(&img);
                let f = std::fs::File::create(&img).unwrap();
                f.set_len(layout.part(title).1.min(4096) * 512).unwrap();
                run(
                    "mkfs.vfat",
                    &["-n", label, "--invariant", img.to_str().unwrap()],
                );
            }
            for (slot, boot, try_) in [("a", 2, 3), ("b", 3, 2)] {
                std::fs::write(
                    dir.join(format!("autoboot-{slot}.txt")),
                    format!("[all]\ntryboot_a_b=1\nboot_partition={boot}\n[tryboot]\nboot_partition={try_}\n"),
                )
                .unwrap();
            }
            std::fs::copy(dir.join("autoboot-a.txt"), dir.join("autoboot.txt")).unwrap();
            let auto = dir.join("autoboot.vfat");
            let i = auto.to_str().unwrap();
            for f in ["autoboot.txt", "autoboot-a.txt", "autoboot-b.txt"] {
                mtools(&["mcopy", "-o", "-i", i, dir.join(f).to_str().unwrap(), "::"]);
            }
            std::fs::write(dir.join("kernel.img"), pseudo_random(900_000, 9)).unwrap();
            let boot = dir.join("boot.vfat");
            let b = boot.to_str().unwrap();
            for f in [board_dir(board).join("config.txt"), dir.join("kernel.img")] {
                mtools(&["mcopy", "-o", "-i", b, f.to_str().unwrap(), "::"]);
            }
        }
    }
}

/// A signed full firmware of `version` for `board`, made from fresh inputs.
pub struct Firmware {
    /// The .fw file.
    pub fw: PathBuf,
    /// The inputs it was made from (rootfs.squashfs, ...).
    pub inputs: PathBuf,
    /// Its meta-uuid.
    pub uuid: String,
}

/// Makes inputs for `version` under `work` and the .fw from them, signed with `key`.
pub fn firmware(
    board: &str,
    layout: &Layout,
    work: &Path,
    version: &str,
    key: &PrivateKey,
) -> Firmware {
    let inputs = work.join(format!("bin-{board}-{version}"));
    make_inputs(board, layout, &inputs, version);
    let fw = work.join(format!("{board}-{version}.fw"));
    let uuid = create(board, &inputs, version, key, false, &fw);
    Firmware { fw, inputs, uuid }
}

/// The ops-only firmware of `version` (validate, revert, factory-reset, ...), made without
/// any input file.
pub fn ops_firmware(board: &str, work: &Path, version: &str, key: &PrivateKey) -> PathBuf {
    let empty = work.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ops = work.join(format!("{board}-{version}-ops.fw"));
    create(board, &empty, version, key, true, &ops);
    ops
}

pub fn create(
    board: &str,
    binaries: &Path,
    version: &str,
    key: &PrivateKey,
    ops: bool,
    out: &Path,
) -> String {
    let opts = CreateOptions {
        config: board_dir(board).join("fwup.conf"),
        vars: vars(board, binaries, version),
        signing_key: Some(PrivateKey::from_fwup(key.to_fwup().as_bytes()).unwrap()),
        level: 6,
        ops_only: ops,
    };
    myelin_fw::create_file(&opts, out)
        .unwrap_or_else(|e| panic!("{board}: creating {} failed: {e}", out.display()))
        .uuid
}

/// Applies `task` of `fw` to `image` as a device running `running` would (Some(block offset
/// of its root partition)). Returns the task that ran and the info() messages.
pub fn apply(
    fw: &Path,
    image: &Path,
    task: &str,
    key: &myelin_fw::PublicKey,
    running: Option<u64>,
    reboot_param: &Path,
) -> Result<(String, Vec<String>), myelin_fw::Error> {
    apply_with(fw, image, task, key, running, reboot_param, Vars::default())
}

/// [`apply`] with environment variables for `\${...}` escapes evaluated at apply time.
pub fn apply_with(
    fw: &Path,
    image: &Path,
    task: &str,
    key: &myelin_fw::PublicKey,
    running: Option<u64>,
    reboot_param: &Path,
    vars: Vars,
) -> Result<(String, Vec<String>), myelin_fw::Error> {
    let sys = Fixed {
        at_offset: running
            .map(|o| vec![("/".to_owned(), o)])
            .unwrap_or_default(),
        reboot_param_file: Some(reboot_param.to_path_buf()),
        ..Fixed::default()
    };
    apply_on(fw, image, task, key, &sys, vars)
}

/// Applies `task` of `fw` to `image` with `system` answering the running-slot questions.
pub fn apply_on(
    fw: &Path,
    image: &Path,
    task: &str,
    key: &myelin_fw::PublicKey,
    system: &dyn myelin_fw::System,
    vars: Vars,
) -> Result<(String, Vec<String>), myelin_fw::Error> {
    let keys = [key.clone()];
    let opts = ApplyOptions {
        task,
        public_keys: &keys,
        vars,
        system,
        enable_trim: false,
        progress_range: (0, 100),
    };
    let mut infos = Vec::new();
    let mut cb = |e: Event| {
        if let Event::Info(m) = e {
            infos.push(m)
        }
    };
    let mut target = FileTarget::open(image).unwrap();
    let applied = myelin_fw::apply(
        std::io::BufReader::new(std::fs::File::open(fw).unwrap()),
        &mut target,
        &opts,
        Some(&mut cb),
    )?;
    Ok((applied.task, infos))
}

pub fn squashfs_file(work: &Path, image: &Path, part: (u64, u64), file: &str) -> String {
    let slot = work.join("slot.squashfs");
    extract(image, part.0 * 512, part.1 * 512, &slot);
    let out = run("unsquashfs", &["-cat", slot.to_str().unwrap(), file]);
    std::fs::remove_file(slot).unwrap();
    String::from_utf8(out).unwrap()
}

pub fn read_range(image: &Path, offset: u64, len: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut v = vec![0u8; len as usize];
    f.read_exact(&mut v).unwrap();
    v
}
