//! Myelin and libubootenv read each other's writes, byte-compatibly, on files and on a real
//! loop block device; `myelin-kv mkenvimage` matches U-Boot's `mkenvimage`; both tools serialize
//! on the same lock file.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use myelin_ubootenv::{Layout, Vars};

fn initial() -> Vars {
    vars(&[
        ("bootcmd", "run nerves_init"),
        ("nerves_fw_active", "a"),
        ("a.nerves_fw_version", "1.0.0"),
    ])
}

/// Values that stress the format: blanks, '=', backslashes, UTF-8, a leading dash.
fn tricky() -> Vec<(&'static str, &'static str)> {
    vec![
        ("spaces", "a value with  spaces "),
        ("equals", "k=v;x=y"),
        ("backslash", r"C:\path\n"),
        ("utf8", "héllo wörld ✓"),
        ("dash", "-5"),
        ("a.nerves_fw_uuid", "6f1a1a9e-8c65-4d5c-9d0e-1c0ffee00001"),
    ]
}

fn cross_check(layout: Layout, size: usize) {
    let env = EnvFile::new(layout, size, &initial());
    // Myelin writes, Debian reads.
    let mut setenv = env.kv("setenv");
    for (k, v) in tricky() {
        setenv.arg(k).arg(v);
    }
    ok(&mut setenv);
    let mut expected = initial();
    for (k, v) in tricky() {
        expected.insert(k.into(), v.into());
    }
    assert_eq!(parse_listing(&ok(&mut env.debian("fw_printenv"))), expected);
    assert_eq!(
        ok(env.debian("fw_printenv").args(["-n", "utf8"])),
        "héllo wörld ✓\n"
    );

    // Debian writes (set and delete), Myelin reads: the same listing, byte for byte.
    ok(env
        .debian("fw_setenv")
        .args(["from_debian", "yes", "spaces"]));
    expected.insert("from_debian".into(), "yes".into());
    expected.remove("spaces");
    let ours = ok(&mut env.kv("printenv"));
    assert_eq!(ours, ok(&mut env.debian("fw_printenv")));
    assert_eq!(parse_listing(&ours), expected);

    // Ping-pong: every write lands in the other copy with flags + 1, whoever writes.
    for round in 0..6 {
        let value = format!("r{round}");
        if round % 2 == 0 {
            ok(env.kv("setenv").args(["round", &value]));
        } else {
            ok(env.debian("fw_setenv").args(["round", &value]));
        }
        expected.insert("round".into(), value.clone());
        assert_eq!(parse_listing(&ok(&mut env.debian("fw_printenv"))), expected);
        assert_eq!(parse_listing(&ok(&mut env.kv("printenv"))), expected);
    }
    if layout == Layout::Redundant {
        let copies = env.copies();
        let flags: Vec<u8> = copies
            .iter()
            .map(|c| c.as_ref().unwrap().0.unwrap())
            .collect();
        // 2 writes before the loop + 6 in it, starting from flags 1/1.
        assert_eq!(flags.iter().max(), Some(&9), "flags {flags:?}");
        assert_eq!(flags.iter().min(), Some(&8), "flags {flags:?}");
    }
}

#[test]
fn single_environment_both_ways() {
    cross_check(Layout::Single, 0x2000);
}

#[test]
fn redundant_environment_both_ways() {
    cross_check(Layout::Redundant, 0x20000);
}

#[test]
fn a_batch_is_one_write() {
    let env = EnvFile::new(Layout::Redundant, 0x4000, &initial());
    std::fs::write(
        env.path("script"),
        "# comment\nx=1\ny=2\nnerves_fw_active=\n",
    )
    .unwrap();
    ok(env
        .kv("setenv")
        .arg("-s")
        .arg(env.path("script"))
        .args(["z", "3", "x", "10"]));
    let copies = env.copies();
    // Copy 1 untouched (flags 1, old vars), copy 2 holds everything with flags 2.
    assert_eq!(copies[0].as_ref().unwrap(), &(Some(1), initial()));
    let (flags, new) = copies[1].as_ref().unwrap();
    assert_eq!(*flags, Some(2));
    let mut expected = initial();
    expected.remove("nerves_fw_active");
    expected.extend(vars(&[("x", "10"), ("y", "2"), ("z", "3")]));
    assert_eq!(new, &expected);
}

#[test]
fn mkenvimage_images_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("env.txt");
    std::fs::write(
        &txt,
        "bootdelay=0\nnerves_fw_active=a\nmulti=line one\\\nline two\n",
    )
    .unwrap();
    for (flags, layout) in [
        (&["-s", "0x2000"][..], Layout::Single),
        (&["-s", "0x2000", "-p", "0"][..], Layout::Single),
        (&["-s", "0x2000", "-r"][..], Layout::Redundant),
    ] {
        let env = EnvFile::new(layout, 0x2000, &Vars::new());
        let img = dir.path().join("u-boot-env.bin");
        ok(debian("mkenvimage")
            .args(flags)
            .arg("-o")
            .arg(&img)
            .arg(&txt));
        let block = std::fs::read(&img).unwrap();
        let mut bytes = env.bytes();
        for &o in &env.offsets {
            bytes[o..o + 0x2000].copy_from_slice(&block);
        }
        env.set_bytes(&bytes);
        assert_eq!(
            parse_listing(&ok(env
                .kv("printenv")
                .args(["bootdelay", "nerves_fw_active"]))),
            vars(&[("bootdelay", "0"), ("nerves_fw_active", "a")]),
            "mkenvimage {flags:?}"
        );
        assert_eq!(
            ok(env.kv("printenv").args(["-n", "multi"])),
            "line one\nline two\n"
        );
    }
}

#[test]
fn myelin_mkenvimage_matches_uboot() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("uboot-env.txt");
    std::fs::write(
        &txt,
        "# Default environment of a test board\n\
         \n\
         bootdelay=0\n\
         nerves_fw_active=a\n\
         #commented=out\n\
         bootcmd=if test ${nerves_fw_booted} = 1; then \\\n\
         run revert; fi; run boot_${nerves_fw_active}\n\
         a.nerves_fw_platform=bbb\n\
         spaces=x y  z\n\
         eq=a=b\n\
         last=no newline at end",
    )
    .unwrap();
    let cases: &[&[&str]] = &[
        &["-s", "0x20000"],
        &["-s", "131072", "-r"],
        &["-s", "0x2000", "-p", "0"],
        &["-s", "8192", "-r", "-p", "0x5a"],
        &["-s", "0x2000", "-b"],
    ];
    for flags in cases {
        let theirs = dir.path().join("theirs.bin");
        let ours = dir.path().join("ours.bin");
        ok(debian("mkenvimage")
            .args(*flags)
            .arg("-o")
            .arg(&theirs)
            .arg(&txt));
        ok(myelin_kv()
            .arg("mkenvimage")
            .args(*flags)
            .arg("-o")
            .arg(&ours)
            .arg(&txt));
        let (theirs, ours) = (
            std::fs::read(&theirs).unwrap(),
            std::fs::read(&ours).unwrap(),
        );
        assert_eq!(theirs.len(), ours.len(), "{flags:?}");
        if let Some(i) = theirs.iter().zip(&ours).position(|(a, b)| a != b) {
            panic!("mkenvimage {flags:?}: first difference at byte {i:#x}");
        }
    }
    // Standard input and output, as the tool allows.
    let out = run(myelin_kv()
        .args(["mkenvimage", "-s", "32", "-"])
        .stdin(std::fs::File::open(dir.path().join("uboot-env.txt")).unwrap()));
    assert!(!out.status.success(), "32 bytes cannot hold the file");
    let mut child = myelin_kv()
        .args(["mkenvimage", "-s", "32", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a=1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(&out.stdout[..9], b"\x88\x21\x9c\x41a=1\0\0");
}

#[test]
fn mkenvimage_keeps_empty_values_as_ubootss_mkenvimage_does() {
    // bbb's default environment holds `bootdir=`: U-Boot's mkenvimage stores it as is.
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("empty.txt");
    std::fs::write(&txt, "bootdir=\nbootcmd=run x\nempty=\n").unwrap();
    let (theirs, ours) = (dir.path().join("theirs.bin"), dir.path().join("ours.bin"));
    ok(debian("mkenvimage")
        .args(["-s", "0x2000", "-r", "-o"])
        .arg(&theirs)
        .arg(&txt));
    ok(myelin_kv()
        .args(["mkenvimage", "-s", "0x2000", "-r", "-o"])
        .arg(&ours)
        .arg(&txt));
    let ours = std::fs::read(&ours).unwrap();
    assert_eq!(std::fs::read(&theirs).unwrap(), ours);
    assert_eq!(&ours[5..14], b"bootdir=\0");
}

#[test]
fn mkenvimage_input_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("a=1\nb=2\nnot a variable\n", "line 3: expected name=value"),
        ("a=1\n=x\n", "line 2: variable name is empty"),
        ("a=1\n\na=2\n", "line 3: \"a\" is already set on line 1"),
    ] {
        let txt = dir.path().join("bad.txt");
        std::fs::write(&txt, text).unwrap();
        let out = run(myelin_kv()
            .args(["mkenvimage", "-s", "0x2000", "-o"])
            .arg(dir.path().join("out.bin"))
            .arg(&txt));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(stderr.contains("bad.txt"), "{text:?}: {stderr}");
        assert!(
            !dir.path().join("out.bin").exists(),
            "{text:?}: an image was written"
        );
    }
}

#[test]
fn printenv_output_forms() {
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    let json = ok(env.kv("printenv").arg("--json"));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["nerves_fw_active"], "a");
    assert_eq!(parsed.as_object().unwrap().len(), 3);
    let json = ok(env.kv("printenv").args(["--json", "bootcmd"]));
    assert_eq!(json, "{\"bootcmd\":\"run nerves_init\"}\n");
    // A missing name: U-Boot's message, status 1, the others still printed.
    let out = run(env.kv("printenv").args(["nerves_fw_active", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "nerves_fw_active=a\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "## Error: \"nope\" not defined\n"
    );
    // -n without a name is a usage error.
    assert!(!run(env.kv("printenv").arg("-n")).status.success());
}

/// The device links fw_printenv and fw_setenv to the small fw_env; myelin-kv (the multi-call
/// program) answers to the same names.
#[test]
fn symlinks_behave_as_fw_printenv_and_fw_setenv() {
    for bin in [
        env!("CARGO_BIN_EXE_fw_env"),
        env!("CARGO_BIN_EXE_myelin-kv"),
    ] {
        let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
        for name in ["fw_printenv", "fw_setenv"] {
            std::os::unix::fs::symlink(bin, env.path(name)).unwrap();
        }
        let lock = env.lock.clone();
        ok(Command::new(env.path("fw_setenv"))
            .arg("-c")
            .arg(&env.config)
            .arg("--lock")
            .arg(&lock)
            .args(["k", "v"]));
        let out = ok(Command::new(env.path("fw_printenv"))
            .arg("-c")
            .arg(&env.config)
            .arg("--lock")
            .arg(&lock)
            .args(["-n", "k"]));
        assert_eq!(out, "v\n", "{bin}");
        assert_eq!(ok(env.debian("fw_printenv").args(["-n", "k"])), "v\n");
        // Errors name the personality, as libubootenv's tools do.
        let out = run(Command::new(env.path("fw_printenv"))
            .arg("-c")
            .arg(&env.config)
            .arg("nope"));
        assert!(!out.status.success(), "{bin}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "## Error: \"nope\" not defined\n",
            "{bin}"
        );
    }
}

/// Holds libubootenv's lock: both Debian's fw_setenv and myelin-kv (default lock path) must wait
/// for it, then both changes land (each one's read-modify-write saw the other's result).
#[test]
fn myelin_and_libubootenv_share_the_lock() {
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    ensure_lock_dir();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(myelin_ubootenv::DEFAULT_LOCK_PATH)
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut ours = myelin_kv()
        .args(["setenv", "-c"])
        .arg(&env.config)
        .args(["by_myelin", "1"])
        .spawn()
        .unwrap();
    let mut theirs = env
        .debian("fw_setenv")
        .args(["by_debian", "1"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        ours.try_wait().unwrap().is_none(),
        "myelin-kv wrote while the lock was held"
    );
    assert!(
        theirs.try_wait().unwrap().is_none(),
        "fw_setenv wrote while the lock was held"
    );
    assert_eq!(env.copies()[0].as_ref().unwrap().1, initial());
    assert_eq!(env.copies()[1].as_ref().unwrap().1, initial());
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    for child in [&mut ours, &mut theirs] {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            assert!(Instant::now() < deadline, "a writer never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let all = parse_listing(&ok(&mut env.debian("fw_printenv")));
    assert_eq!(all.get("by_myelin").map(String::as_str), Some("1"));
    assert_eq!(all.get("by_debian").map(String::as_str), Some("1"));
}

/// A loop block device (root only): offsets in a real disk, and a negative offset from the end.
#[test]
fn block_device_round_trip() {
    require_root("the block-device test");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let loopdev = LoopDevice::attach(&disk);
    let dev = loopdev.path.clone();
    // Both copies unwritten: fill them as an image build would, through mkenvimage -r.
    let txt = dir.path().join("env.txt");
    std::fs::write(&txt, "nerves_fw_active=a\nbootdelay=0\n").unwrap();
    let block = dir.path().join("env.bin");
    ok(debian("mkenvimage")
        .args(["-r", "-s", "0x20000", "-o"])
        .arg(&block)
        .arg(&txt));
    for offset in ["1048576", "1179648"] {
        ok(Command::new("dd")
            .arg(format!("if={}", block.display()))
            .arg(format!("of={}", dev.display()))
            .args(["bs=1", "conv=notrunc,fsync", "status=none"])
            .arg(format!("seek={offset}")));
    }
    let config = dir.path().join("fw_env.config");
    std::fs::write(
        &config,
        format!(
            "{d} 0x100000 0x20000 0x200 0x100\n{d} 0x120000 0x20000 0x200 0x100\n",
            d = dev.display()
        ),
    )
    .unwrap();
    let kv = |sub: &str| {
        let mut c = myelin_kv();
        c.arg(sub)
            .arg("-c")
            .arg(&config)
            .arg("--lock")
            .arg(dir.path().join("lock"));
        c
    };
    let fw = |tool: &str| {
        let mut c = debian(tool);
        c.arg("-c").arg(&config);
        c
    };
    ok(kv("setenv").args(["nerves_fw_validated", "1", "a.nerves_fw_version", "2.0.0"]));
    let listing = ok(&mut fw("fw_printenv"));
    assert_eq!(
        parse_listing(&listing),
        vars(&[
            ("a.nerves_fw_version", "2.0.0"),
            ("bootdelay", "0"),
            ("nerves_fw_active", "a"),
            ("nerves_fw_validated", "1"),
        ])
    );
    ok(fw("fw_setenv").args(["nerves_fw_active", "b"]));
    assert_eq!(ok(kv("printenv").args(["-n", "nerves_fw_active"])), "b\n");
    assert_eq!(ok(&mut kv("printenv")), ok(&mut fw("fw_printenv")));

    // A copy addressed from the end of the device (libubootenv's negative offsets).
    let tail = dir.path().join("tail.config");
    std::fs::write(&tail, format!("{} -0x2000 0x2000\n", dev.display())).unwrap();
    let out = run(myelin_kv()
        .args(["printenv", "-c"])
        .arg(&tail)
        .arg("--lock")
        .arg(dir.path().join("lock")));
    assert!(
        !out.status.success(),
        "an unwritten area must not read as an environment"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRC mismatch"));
    ok(myelin_kv()
        .args(["setenv", "--force-init", "-c"])
        .arg(&tail)
        .arg("--lock")
        .arg(dir.path().join("lock"))
        .args(["at_end", "yes"]));
    let bytes = std::fs::read(&disk).unwrap();
    let end = bytes.len();
    let decoded = myelin_ubootenv::format::decode(&bytes[end - 0x2000..], Layout::Single).unwrap();
    assert_eq!(decoded.vars, vars(&[("at_end", "yes")]));
}

/// A loop device attached for one test and detached on drop.
struct LoopDevice {
    path: std::path::PathBuf,
}

impl LoopDevice {
    fn attach(file: &std::path::Path) -> Self {
        let out = ok(Command::new("losetup").args(["--find", "--show"]).arg(file));
        LoopDevice {
            path: out.trim().into(),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Every board's default environment (board/<board>/uboot-env.txt) and fw_env.config: both
/// parse, `myelin-kv mkenvimage` builds the same image as U-Boot's tool at the size and layout
/// the config declares (as board/common/post-image.sh does), and fw_printenv reads it back.
#[test]
fn board_default_environments() {
    let boards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../board");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&boards).unwrap() {
        let board = entry.unwrap().path();
        let txt = board.join("uboot-env.txt");
        if !txt.is_file() {
            continue;
        }
        let name = board.file_name().unwrap().to_string_lossy().into_owned();
        let config =
            myelin_ubootenv::EnvConfig::from_file(board.join("rootfs_overlay/etc/fw_env.config"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let defaults = myelin_ubootenv::text::parse_defaults(&std::fs::read(&txt).unwrap())
            .unwrap_or_else(|e| panic!("{name}: uboot-env.txt: {e}"));
        let size = format!("{:#x}", config.size());
        let mut flags = vec!["-s", size.as_str()];
        if config.layout() == Layout::Redundant {
            flags.push("-r");
        }
        let (ours, theirs) = (
            dir.path().join(format!("{name}.ours")),
            dir.path().join(format!("{name}.theirs")),
        );
        ok(myelin_kv()
            .arg("mkenvimage")
            .args(&flags)
            .arg("-o")
            .arg(&ours)
            .arg(&txt));
        ok(debian("mkenvimage")
            .args(&flags)
            .arg("-o")
            .arg(&theirs)
            .arg(&txt));
        let image = std::fs::read(&ours).unwrap();
        assert!(
            image == std::fs::read(&theirs).unwrap(),
            "{name}: images differ"
        );
        // Both copies as fwup's complete task leaves them (second one erased), read by Debian.
        let disk = dir.path().join(format!("{name}.disk"));
        let mut bytes = image.clone();
        bytes.extend(std::iter::repeat_n(0xFF, image.len()));
        std::fs::write(&disk, bytes).unwrap();
        let cfg = dir.path().join(format!("{name}.config"));
        let lines = match config.layout() {
            Layout::Redundant => format!("{d} 0 {size}\n{d} {size} {size}\n", d = disk.display()),
            Layout::Single => format!("{} 0 {size}\n", disk.display()),
        };
        std::fs::write(&cfg, lines).unwrap();
        let listing = ok(debian("fw_printenv").arg("-c").arg(&cfg));
        assert_eq!(
            parse_listing(&listing),
            defaults,
            "{name}: fw_printenv reads something else"
        );
        checked.push(name);
    }
    assert!(!checked.is_empty(), "no board/*/uboot-env.txt found");
    println!("board default environments checked: {checked:?}");
}
