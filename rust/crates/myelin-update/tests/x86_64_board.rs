//! The daemon on a real board layout: board/x86_64/fwup.conf (the board the QEMU system tests
//! boot) with small stand-ins for Buildroot's images. The ops archive is made from the same
//! file, as post-build does. GRUB's part of a reboot (it clears `myelin_try` before booting a
//! trial) is played with mtools on the boot FAT; the rest is the board's own tasks: grubenv
//! switching, `status` with its "(b reverted)" detail, validate.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use myelin_fw::{ApplyOptions, CreateOptions, FileTarget, Fixed, Vars as FwVars};
use myelin_ubootenv::{Layout, format, text};
use myelin_update::client;

// board/x86_64/fwup.conf, in 512-byte blocks.
const BOOT_PART: u64 = 4096;
const ROOTFS_A: u64 = 35328;
const ROOTFS_B: u64 = 559616;
const DISK_END: u64 = 1083904 + 524288;
const ENV_SIZE: usize = 0x20000;

fn board_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../board/x86_64")
        .canonicalize()
        .unwrap()
}

struct Board {
    dir: tempfile::TempDir,
    disk: PathBuf,
    boot_id: PathBuf,
    sysfs: PathBuf,
    boots: u32,
}

impl Board {
    /// Stand-ins for BINARIES_DIR of one build.
    fn binaries(&self, version: &str, seed: u64) -> PathBuf {
        let dir = self.dir.path().join(format!("binaries-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("boot.img"), noise(3, 440)).unwrap();
        std::fs::write(dir.join("grub.img"), noise(4, 100_000)).unwrap();
        std::fs::write(dir.join("rootfs.squashfs"), noise(seed, 600_000)).unwrap();
        // What post-image.sh makes of uboot-env.txt: one redundant copy, flags 1.
        let defaults =
            text::parse_defaults(&std::fs::read(board_dir().join("uboot-env.txt")).unwrap())
                .unwrap();
        let env = format::encode(&defaults, ENV_SIZE, Layout::Redundant, 1).unwrap();
        std::fs::write(dir.join("uboot-env.img"), env).unwrap();
        dir
    }

    fn create(&self, version: &str, seed: u64, ops: bool) -> PathBuf {
        let binaries = self.binaries(version, seed);
        let out = self.dir.path().join(if ops {
            "ops.fw".to_owned()
        } else {
            format!("x86_64-{version}.fw")
        });
        let opts = CreateOptions {
            config: board_dir().join("fwup.conf"),
            vars: FwVars::from_pairs([
                ("BINARIES_DIR", binaries.display().to_string()),
                ("MYELIN_BOARD_DIR", board_dir().display().to_string()),
                ("MYELIN_FW_VERSION", version.to_owned()),
                ("SOURCE_DATE_EPOCH", "1767225600".to_owned()),
            ]),
            signing_key: None,
            level: 1,
            ops_only: ops,
        };
        myelin_fw::create_file(&opts, &out).unwrap();
        out
    }

    fn new() -> (Board, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let mut board = Board {
            boot_id: dir.path().join("boot_id"),
            sysfs: dir.path().join("sys"),
            disk,
            dir,
            boots: 0,
        };
        let v1 = board.create("1.0.0", 1, false);
        let f = std::fs::File::create(&board.disk).unwrap();
        f.set_len(DISK_END * 512).unwrap();
        drop(f);
        let mut target = FileTarget::open(&board.disk).unwrap();
        let system = Fixed::default();
        let opts = ApplyOptions {
            task: "complete",
            public_keys: &[],
            vars: FwVars::default(),
            system: &system,
            enable_trim: false,
            progress_range: (0, 100),
        };
        myelin_fw::apply(std::fs::File::open(&v1).unwrap(), &mut target, &opts, None).unwrap();
        let ops = board.create("1.0.0", 1, true);
        board.boot(ROOTFS_A);
        (board, ops)
    }

    /// A boot of the partition at `offset` (the kernel's view: a new boot id, `/` there).
    fn boot(&mut self, offset: u64) {
        self.boots += 1;
        std::fs::write(&self.boot_id, format!("boot-{}\n", self.boots)).unwrap();
        let dir = self.sysfs.join("dev/block").join(root_dev());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("start"), format!("{offset}\n")).unwrap();
    }

    /// GRUB's side of a reboot: load grubenv, clear myelin_try, boot the slot it named (or the
    /// committed one). Returns the slot's offset.
    fn grub_reboot(&mut self) -> u64 {
        let image = format!("{}@@{}", self.disk.display(), BOOT_PART * 512);
        let out = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &image, "::/boot/grub/grubenv"])
            .output()
            .expect("mtype (mtools) could not run: install mtools (scripts/deps/apt.txt)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let grubenv = String::from_utf8_lossy(&out.stdout).to_string();
        let value = |k: &str| {
            grubenv
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_owned()
        };
        let (committed, try_) = (value("myelin_slot"), value("myelin_try"));
        let slot = if try_.is_empty() {
            committed.clone()
        } else {
            try_
        };
        // save_env myelin_try (now empty): the same block as the committed slot's grubenv file.
        let st = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i", &image])
            .arg(board_dir().join("grubenv").join(&committed))
            .arg("::/boot/grub/grubenv")
            .status()
            .unwrap();
        assert!(st.success());
        let offset = if slot == "b" { ROOTFS_B } else { ROOTFS_A };
        self.boot(offset);
        offset
    }

    fn env(&self, config: &Path) -> myelin_ubootenv::Vars {
        myelin_ubootenv::read_vars(&myelin_ubootenv::EnvConfig::from_file(config).unwrap()).unwrap()
    }

    fn read(&self, offset_blocks: u64, len: usize) -> Vec<u8> {
        let f = std::fs::File::open(&self.disk).unwrap();
        let mut buf = vec![0; len];
        f.read_exact_at(&mut buf, offset_blocks * 512).unwrap();
        buf
    }
}

#[tokio::test]
async fn update_revert_and_update_again_on_the_x86_64_layout() {
    let (mut board, ops) = Board::new();
    let dir = board.dir.path().to_owned();
    let env_config = dir.join("fw_env.config");
    std::fs::write(
        &env_config,
        format!(
            "{d} 0x100000 0x20000\n{d} 0x120000 0x20000\n",
            d = board.disk.display()
        ),
    )
    .unwrap();
    let bus = Bus::start();
    let init = FakeInit::start(&dir);
    let config = dir.join("update.toml");
    // A development image: an empty keys directory and the marker.
    std::fs::create_dir_all(dir.join("fw-keys")).unwrap();
    std::fs::write(dir.join("development"), "tests\n").unwrap();
    std::fs::write(
        &config,
        format!(
            r#"device = "{disk}"
ops_fw = "{ops}"
keys_dir = "{dir}/fw-keys"
development_marker = "{dir}/development"
env_config = "{env}"
state_dir = "{dir}/data/myelin/update"
init_socket = "{init}"
reboot_param = "{dir}/reboot-param"
sysfs = "{sysfs}"
ready_poll = "100ms"
validate_timeout = "2s"
stable_period = "0s"
"#,
            disk = board.disk.display(),
            ops = ops.display(),
            dir = dir.display(),
            env = env_config.display(),
            init = init.path.display(),
            sysfs = board.sysfs.display(),
        ),
    )
    .unwrap();
    let start = |board: &Board| Daemon::spawn(&bus, &board.boot_id, &config);

    let daemon = start(&board);
    let update = bus.proxy().await;
    let status = client::status(&update).await.unwrap();
    assert_eq!(
        (status.status.as_str(), status.version.as_str()),
        ("a", "1.0.0")
    );
    assert!(!status.trial);

    // A broken update arrives over HTTP: installed into b, armed as a one-shot try.
    let server = HttpServer::start();
    let v2 = board.create("2.0.0", 2, false);
    let url = server.route("/x86_64.fw", Reply::Full(std::fs::read(&v2).unwrap()));
    let rootfs_a = board.read(ROOTFS_A, 600_000);
    client::install(
        &update,
        client::InstallSource::Location(url.clone()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(board.read(ROOTFS_A, 600_000), rootfs_a);
    assert_eq!(board.read(ROOTFS_B, 600_000), noise(2, 600_000));
    assert_eq!(update.status().await.unwrap(), "a->b");
    assert_eq!(board.env(&env_config)["b.nerves_fw_version"], "2.0.0");
    daemon.stop();

    // Its trial boot never gets ready: the daemon asks for the reboot, GRUB goes back to a.
    assert_eq!(board.grub_reboot(), ROOTFS_B);
    let daemon = start(&board);
    let update = bus.proxy().await;
    let status = client::status(&update).await.unwrap();
    assert_eq!((status.status.as_str(), status.trial), ("b->a", true));
    assert_eq!(status.version, "2.0.0");
    eventually("the reboot request", || async { init.reboot_count() == 1 }).await;
    daemon.stop();
    assert_eq!(board.grub_reboot(), ROOTFS_A);
    let daemon = start(&board);
    let update = bus.proxy().await;
    let status = client::status(&update).await.unwrap();
    assert_eq!(status.status, "a (b reverted)");
    assert_eq!(status.running_slot, "a");
    assert!(!status.trial);
    assert_eq!(status.version, "1.0.0");
    assert_eq!(status.last_install.outcome, "reverted");
    assert_eq!(status.last_install.version.as_deref(), Some("2.0.0"));

    // A good update: this time the critical services come up and the daemon validates it.
    let v3 = board.create("3.0.0", 3, false);
    client::install(
        &update,
        client::InstallSource::Location(v3.display().to_string()),
        |_| {},
    )
    .await
    .unwrap();
    daemon.stop();
    assert_eq!(board.grub_reboot(), ROOTFS_B);
    init.set_ready(true);
    let daemon = start(&board);
    let update = bus.proxy().await;
    eventually("validation", || async { !update.trial().await.unwrap() }).await;
    let status = client::status(&update).await.unwrap();
    assert_eq!(
        (status.status.as_str(), status.version.as_str()),
        ("b", "3.0.0")
    );
    assert_eq!(status.last_install.outcome, "validated");
    let env = board.env(&env_config);
    assert_eq!(env["nerves_fw_active"], "b");
    assert_eq!(env["b.nerves_fw_validated"], "1");
    daemon.stop();
    // And GRUB keeps booting b.
    assert_eq!(board.grub_reboot(), ROOTFS_B);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(init.reboot_count(), 1);
}
