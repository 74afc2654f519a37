//! The `myelin-fw` command line: fwup's flags and the subcommands, `--framing` byte for byte,
//! exit codes and messages, keys.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn fw() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myelin-fw"))
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "myelin-fw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn framing_output_is_fwups_byte_for_byte() {
    let dir = scratch_dir();
    let img = dir.path().join("img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(11 << 20)
        .unwrap();
    let out = ok(fw()
        .args(["-a", "-t", "complete", "--framing", "-d", s(&img)])
        .args([
            "-i",
            s(&golden("v1.fw")),
            "-p",
            s(&golden("golden-key.pub")),
        ])
        .output()
        .unwrap());
    assert!(out.stdout == read_golden("complete-v1.framing.bin"));
    // The same archive sent framed on stdin.
    let mut framed = Vec::new();
    for chunk in read_golden("v1.fw").chunks(4000) {
        framed.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        framed.extend_from_slice(chunk);
    }
    framed.extend_from_slice(&[0, 0, 0, 0]);
    let img2 = dir.path().join("img2");
    std::fs::File::create(&img2)
        .unwrap()
        .set_len(11 << 20)
        .unwrap();
    let mut child = fw()
        .args([
            "apply",
            "-t",
            "complete",
            "--framing",
            "-i",
            "-",
            "-d",
            s(&img2),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&framed).unwrap();
    let out = ok(child.wait_with_output().unwrap());
    assert!(out.stdout.ends_with(b"\0\0\0\x04OK\0\0"));
    assert!(std::fs::read(&img).unwrap() == std::fs::read(&img2).unwrap());
}

#[test]
fn errors_exit_1_with_fwups_messages() {
    let dir = scratch_dir();
    let img = dir.path().join("never-created.img");
    let out = fw()
        .args([
            "-a",
            "-t",
            "complete",
            "-d",
            s(&img),
            "-i",
            s(&golden("v1-unsigned.fw")),
        ])
        .args(["-p", s(&golden("golden-key.pub"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "myelin-fw: Expecting signed firmware archive.\n"
    );
    // The signature is checked before the output is opened: nothing was created.
    assert!(!img.exists());
    // With framing, the error is an ER packet on stdout.
    let out = fw()
        .args(["-a", "-t", "complete", "--framing", "-d", s(&img)])
        .args([
            "-i",
            s(&golden("v1-unsigned.fw")),
            "-p",
            s(&golden("golden-key.pub")),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = b"Expecting signed firmware archive.";
    let mut want = ((msg.len() + 4) as u32).to_be_bytes().to_vec();
    want.extend_from_slice(b"ER\0\0");
    want.extend_from_slice(msg);
    assert_eq!(out.stdout, want);
    // A configuration error names the file and line.
    let conf = dir.path().join("bad.conf");
    std::fs::write(
        &conf,
        "meta-product = x\n\ntask t { on-init { raw_wirte(1) } }\n",
    )
    .unwrap();
    let out = fw()
        .args(["create", "-f", s(&conf), "-o", s(&dir.path().join("x.fw"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:3: no such function 'raw_wirte'"),
        "{err}"
    );
    assert!(!dir.path().join("x.fw").exists());
}

#[test]
fn fwup_flags_and_subcommands_agree() {
    let dir = scratch_dir();
    let (a, b) = (dir.path().join("a.fw"), dir.path().join("b.fw"));
    let rootfs = golden("rootfs-v1.bin");
    let env = [
        ("VERSION", "1.0.0"),
        ("ROOTFS", rootfs.to_str().unwrap()),
        ("SOURCE_DATE_EPOCH", "1767225600"),
    ];
    let conf = golden("fwup.conf");
    let key = golden("golden-key.priv");
    ok(fw()
        .envs(env)
        .args(["-c", "-f", s(&conf), "-o", s(&a), "-s", s(&key)])
        .output()
        .unwrap());
    ok(fw()
        .envs(env)
        .args([
            "create",
            "-f",
            s(&conf),
            "-o",
            s(&b),
            "--private-key",
            s(&key),
        ])
        .output()
        .unwrap());
    assert!(std::fs::read(&a).unwrap() == read_golden("v1.fw"));
    assert!(std::fs::read(&b).unwrap() == read_golden("v1.fw"));
    let list = ok(fw().args(["-l", "-i", s(&a)]).output().unwrap());
    assert_eq!(list.stdout, read_golden("v1.tasks.txt"));
    let list = ok(fw().args(["list", s(&a)]).output().unwrap());
    assert_eq!(list.stdout, read_golden("v1.tasks.txt"));
    let v = ok(fw()
        .args(["-m", "-i", s(&a), "--metadata-key", "meta-version"])
        .output()
        .unwrap());
    assert_eq!(v.stdout, b"1.0.0\n");
    let v = ok(fw()
        .args(["-V", "-i", s(&a), "-p", s(&golden("golden-key.pub"))])
        .output()
        .unwrap());
    assert_eq!(v.stdout, b"Valid archive with a good signature\n");
    // -m prints every line of fwup -m, meta-nickname included.
    let m = ok(fw().args(["-m", "-i", s(&a)]).output().unwrap());
    assert_eq!(m.stdout, read_golden("v1.metadata.txt"));
}

#[test]
fn fwup_options_with_fwups_meaning() {
    let dir = scratch_dir();
    let img = dir.path().join("img");
    // --max-size: the image may not grow past it, and that is known before writing.
    let out = fw()
        .args([
            "-a",
            "-t",
            "complete",
            "-d",
            s(&img),
            "-q",
            "--max-size",
            "8192",
        ])
        .args(["-i", s(&golden("v1.fw"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("past the end of the target"), "{err}");
    assert!(
        std::fs::metadata(&img).map_or(0, |m| m.len()) == 0,
        "an image was written"
    );
    std::fs::File::create(&img)
        .unwrap()
        .set_len(11 << 20)
        .unwrap();
    ok(fw()
        .args([
            "-a",
            "-t",
            "complete",
            "-d",
            s(&img),
            "-q",
            "--max-size",
            "0x5800",
        ])
        .args(["-i", s(&golden("v1.fw"))])
        .output()
        .unwrap());
    let want = golden_image("complete-v1.img.xz");
    let got = std::fs::read(&img).unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.iter().zip(&want).position(|(a, b)| a != b), None);
    // --minimize-writes: the same bytes (the writes that change nothing are skipped).
    let img2 = dir.path().join("img2");
    std::fs::write(&img2, &want).unwrap();
    ok(fw()
        .args([
            "-a",
            "-t",
            "upgrade",
            "-d",
            s(&img2),
            "-q",
            "--minimize-writes",
        ])
        .args(["-i", s(&golden("v2.fw"))])
        .output()
        .unwrap());
    assert!(std::fs::read(&img2).unwrap() == golden_image("upgraded-v2.img.xz"));
    ok(fw()
        .args([
            "-a",
            "-t",
            "upgrade",
            "-d",
            s(&img2),
            "-q",
            "--no-minimize-writes",
        ])
        .args(["-i", s(&golden("v1.fw"))])
        .output()
        .unwrap());
    // --sparse-check PATH [--sparse-check-size BYTES]
    let probe = dir.path().join("probe");
    let out = ok(fw()
        .args(["--sparse-check", s(&probe), "--sparse-check-size", "65536"])
        .output()
        .unwrap());
    assert_eq!(out.stdout, b"Sparse files supported\n");
    assert!(!probe.exists());
    // -z prints the card burn would pick (none here), not a UUID.
    let z = fw()
        .args(["-z", "-i", s(&golden("v1.fw"))])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&z.stdout).contains("7a8162cb"));
    // Deliberate differences from fwup are named in --help.
    let help = ok(fw().arg("--help").output().unwrap());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Differences from fwup"), "{help}");
}

#[test]
fn delta_archives_apply_like_fwups() {
    // myelin-fw delta v1 -> v2 with the golden delta configuration: the same structure as the
    // delta fwup's documentation makes by hand (v2-delta.fw), and it applies to the same image.
    let dir = scratch_dir();
    let conf = golden("fwup-delta.conf");
    let key = golden("golden-key.priv");
    let (v1, v2, d) = (
        dir.path().join("v1.fw"),
        dir.path().join("v2.fw"),
        dir.path().join("delta.fw"),
    );
    for (ver, rootfs, out) in [
        ("1.0.0", "rootfs-v1.bin", &v1),
        ("2.0.0", "rootfs-v2.bin", &v2),
    ] {
        let r = golden(rootfs);
        ok(fw()
            .envs([
                ("VERSION", ver),
                ("ROOTFS", r.to_str().unwrap()),
                ("SOURCE_DATE_EPOCH", "1767225600"),
            ])
            .args(["-c", "-f", s(&conf), "-o", s(out), "-s", s(&key)])
            .output()
            .unwrap());
    }
    assert!(std::fs::read(&v2).unwrap() == read_golden("v2-delta-full.fw"));
    let out = ok(fw()
        .args(["delta", s(&v1), s(&v2), "-o", s(&d)])
        .output()
        .unwrap());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("rootfs.img: 524288 bytes as a"), "{report}");
    let ours = std::fs::read(&d).unwrap();
    let theirs = read_golden("v2-delta.fw");
    // Same entries in the same order, same signature and meta.conf bytes.
    let entries = |fw: &[u8]| {
        let mut r = myelin_fw::archive::ZipReader::new(fw);
        let mut v = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let data = r.read_to_vec(1 << 20).unwrap();
            v.push((e.name, data));
        }
        v
    };
    let (o, t) = (entries(&ours), entries(&theirs));
    assert_eq!(
        o.iter().map(|e| &e.0).collect::<Vec<_>>(),
        t.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    assert_eq!(o[0], t[0], "signature");
    assert_eq!(o[1], t[1], "meta.conf");
    // zImage is the same in v1 and v2: a tiny copy, as xdelta3's.
    assert!(o[2].1.len() < 64, "zImage delta of {} bytes", o[2].1.len());
    assert!(o[4].1.len() < 200, "rootfs delta of {} bytes", o[4].1.len());
    // Debian's xdelta3 decodes our deltas to the new resources.
    for (entry, src, tgt) in [
        (4usize, "rootfs-v1.bin", "rootfs-v2.bin"),
        (2, "zImage", "zImage"),
    ] {
        let p = dir.path().join("patch");
        std::fs::write(&p, &o[entry].1).unwrap();
        let decoded = dir.path().join("decoded");
        run(
            "xdelta3",
            &["-f", "-d", "-s", s(&golden(src)), s(&p), s(&decoded)],
        );
        assert!(std::fs::read(&decoded).unwrap() == read_golden(tgt));
    }
    // Applied (as the reference fwup applies v2-delta.fw) to complete-v1: the upgraded image.
    let img = dir.path().join("img");
    std::fs::write(&img, golden_image("complete-v1.img.xz")).unwrap();
    ok(fw()
        .args(["-a", "-t", "upgrade", "-q", "-d", s(&img), "-i", s(&d)])
        .args(["-p", s(&golden("golden-key.pub"))])
        .output()
        .unwrap());
    assert!(std::fs::read(&img).unwrap() == golden_image("upgraded-v2.img.xz"));
}

#[test]
fn keys_sign_and_verify() {
    let dir = scratch_dir();
    let prefix = dir.path().join("k");
    ok(fw().args(["gen-keys", "-o", s(&prefix)]).output().unwrap());
    let (pub_, priv_) = (dir.path().join("k.pub"), dir.path().join("k.priv"));
    assert_eq!(std::fs::read(&pub_).unwrap().len(), 44);
    assert_eq!(std::fs::read(&priv_).unwrap().len(), 88);
    // Existing keys are never overwritten.
    let again = fw().args(["-g", "-o", s(&prefix)]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    let signed = dir.path().join("signed.fw");
    ok(fw()
        .args([
            "-S",
            "-s",
            s(&priv_),
            "-i",
            s(&golden("v1-unsigned.fw")),
            "-o",
            s(&signed),
        ])
        .output()
        .unwrap());
    let v = ok(fw()
        .args(["verify", s(&signed), "-p", s(&pub_)])
        .output()
        .unwrap());
    assert_eq!(v.stdout, b"Valid archive with a good signature\n");
    let bad = fw()
        .args(["verify", s(&signed), "-p", s(&golden("golden-key.pub"))])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    // The public key can also be given inline, as fwup's --public-key takes it.
    let inline = std::fs::read_to_string(&pub_).unwrap();
    ok(fw()
        .args(["verify", s(&signed), "--public-key", &inline])
        .output()
        .unwrap());
}

#[test]
fn ops_archives_need_no_host_files() {
    let dir = scratch_dir();
    let conf = dir.path().join("fwup.conf");
    std::fs::write(
        &conf,
        r#"
file-resource rootfs.img { host-path = "${BINARIES_DIR}/rootfs.img" }
file-resource marker { contents = "validated" }
uboot-environment env { block-offset = 16 block-count = 16 }
task complete { on-resource rootfs.img { raw_write(64) } }
task upgrade { on-resource rootfs.img { raw_write(64) } }
task validate { on-init { uboot_clearenv(env) uboot_setenv(env, "validated", "1") } }
task mark { on-resource marker { raw_write(100) } }
"#,
    )
    .unwrap();
    let full = fw()
        .args([
            "create",
            "-f",
            s(&conf),
            "-o",
            s(&dir.path().join("full.fw")),
        ])
        .env("BINARIES_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1));
    let ops = dir.path().join("ops.fw");
    ok(fw()
        .args(["create", "--ops", "-f", s(&conf), "-o", s(&ops)])
        .env("BINARIES_DIR", "/nonexistent")
        .output()
        .unwrap());
    let list = ok(fw().args(["list", s(&ops)]).output().unwrap());
    assert_eq!(String::from_utf8_lossy(&list.stdout), "mark\nvalidate\n");
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    ok(fw()
        .args(["apply", s(&ops), "-d", s(&img), "-t", "validate"])
        .output()
        .unwrap());
    ok(fw()
        .args(["apply", s(&ops), "-d", s(&img), "-t", "mark", "-q"])
        .output()
        .unwrap());
    let data = std::fs::read(&img).unwrap();
    assert_eq!(&data[100 * 512..100 * 512 + 9], b"validated");
    let cfg = fw_env_config(dir.path(), &img, &[(16 * 512, 16 * 512)]);
    assert_eq!(fw_printenv_value(&cfg, "validated").as_deref(), Some("1"));
}
