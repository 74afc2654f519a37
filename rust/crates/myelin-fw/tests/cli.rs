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
    let uuid = ok(fw().args(["-z", "-i", s(&a)]).output().unwrap());
    let meta = String::from_utf8(read_golden("v1.metadata.txt")).unwrap();
    let want = meta
        .lines()
        .find_map(|l| l.strip_prefix("meta-uuid=\""))
        .unwrap()
        .trim_end_matches('"');
    assert_eq!(String::from_utf8(uuid.stdout).unwrap(), format!("{want}\n"));
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
