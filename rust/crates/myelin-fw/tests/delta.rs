//! Delta updates as fwup applies them, against the golden corpus made by fwup 1.16.0
//! (tests/golden/README.md, "Delta update"), and the VCDIFF decoder against Debian's xdelta3.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::{ApplyOptions, Error, Fixed, MemTarget, Vars};
use std::io::Cursor;

const MIB: usize = 1 << 20;
const ENV: std::ops::Range<usize> = 0x2000..0x6000;
const SLOT_A: std::ops::Range<usize> = 10240 * 512..14336 * 512;
const SLOT_B: std::ops::Range<usize> = 14336 * 512..18432 * 512;

fn complete_v1() -> MemTarget {
    let mut t = MemTarget::zeroed(11 * MIB);
    apply_golden(&read_golden("v1.fw"), &mut t, "complete", &[golden_pub()]).unwrap();
    t
}

fn sha256(data: &[u8]) -> String {
    let dir = scratch_dir();
    let f = dir.path().join("img");
    std::fs::write(&f, data).unwrap();
    let out = String::from_utf8(run("sha256sum", &[f.to_str().unwrap()])).unwrap();
    out.split_whitespace().next().unwrap().to_owned()
}

fn golden_sha(name: &str) -> String {
    String::from_utf8(read_golden("images.sha256"))
        .unwrap()
        .lines()
        .find(|l| l.ends_with(&format!("  {name}")))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Applies from a seekable input (as the CLI does with a file): the central directory is read
/// first.
fn apply_seekable(fw: &[u8], t: &mut MemTarget, task: &str) -> Result<myelin_fw::Applied, Error> {
    let keys = [golden_pub()];
    let sys = Fixed::default();
    let opts = ApplyOptions {
        task,
        public_keys: &keys,
        vars: Vars::default(),
        system: &sys,
        enable_trim: false,
        progress_range: (0, 100),
    };
    let opened = myelin_fw::open_seekable(Cursor::new(fw.to_vec()), &keys, &Vars::default())?;
    myelin_fw::apply_opened(opened, t, &opts, None)
}

#[test]
fn fwup_delta_applies_byte_for_byte_like_fwup() {
    // fwup: complete-v1, then `-t upgrade` of v2-delta.fw gives the same image as the full
    // v2.fw (same sha256).
    for seekable in [false, true] {
        let mut t = complete_v1();
        let fw = read_golden("v2-delta.fw");
        let applied = if seekable {
            apply_seekable(&fw, &mut t, "upgrade").unwrap()
        } else {
            apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]).unwrap()
        };
        assert_eq!(applied.task, "upgrade.b");
        assert_eq!(sha256(&t.data), golden_sha("upgraded-v2-delta.img"));
        assert_eq!(
            golden_sha("upgraded-v2-delta.img"),
            golden_sha("upgraded-v2.img")
        );
        let dir = scratch_dir();
        let img = dir.path().join("img");
        std::fs::write(&img, &t.data).unwrap();
        let cfg = fw_env_config(dir.path(), &img, &[(0x2000, 0x2000), (0x4000, 0x2000)]);
        let want: Vec<String> = String::from_utf8(read_golden("upgraded-v2-delta.env.txt"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(fw_printenv(&cfg), want);
        assert_eq!(mtype(&img, 2048 * 512, "zImage.b"), read_golden("zImage"));
    }
    // The same configuration with full resources lands on the same bytes too.
    let mut t = complete_v1();
    apply_golden(
        &read_golden("v2-delta-full.fw"),
        &mut t,
        "upgrade",
        &[golden_pub()],
    )
    .unwrap();
    assert_eq!(sha256(&t.data), golden_sha("upgraded-v2.img"));
    // fwup -V: a delta cannot be checked without its source; it only has to be VCDIFF.
    assert_eq!(
        myelin_fw::verify(
            read_golden("v2-delta.fw").as_slice(),
            &[golden_pub()],
            &Vars::default()
        )
        .unwrap(),
        myelin_fw::Verified::GoodSignature
    );
}

#[test]
fn wrong_source_is_caught_while_decoding_and_only_slot_b_could_change() {
    for seekable in [false, true] {
        let mut t = complete_v1();
        let before = t.data.clone();
        let fw = read_golden("v2-delta-wrongsource.fw");
        let err = if seekable {
            apply_seekable(&fw, &mut t, "upgrade").unwrap_err()
        } else {
            apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]).unwrap_err()
        };
        // fwup: "xdelta3 error: target window checksum mismatch".
        assert!(matches!(err, Error::Delta { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("xdelta3 error: target window checksum mismatch"),
            "{err}"
        );
        // What fwup left: complete-v1 with the first 256 KiB it decoded in slot B (its cache
        // wrote them before the window's checksum failed). Outside slot B, Myelin's image is
        // fwup's byte for byte: MBR, environment, boot FAT (zImage.b never written).
        let mut fwups = golden_image("complete-v1.img.xz");
        let v1 = read_golden("rootfs-v1.bin");
        fwups[SLOT_B.start..SLOT_B.start + 0x40000].copy_from_slice(&v1[..0x40000]);
        assert_eq!(sha256(&fwups), golden_sha("wrongsource-attempt.img"));
        for (i, (a, b)) in t.data.iter().zip(&fwups).enumerate() {
            if a != b {
                assert!(SLOT_B.contains(&i), "byte {i} differs outside slot B");
            }
        }
        assert_eq!(&t.data[ENV], &before[ENV]);
        assert_eq!(&t.data[SLOT_A], &before[SLOT_A]);
        // Myelin checks each window before writing it: nothing of the bad window reached
        // slot B (a deliberate difference, named in the README).
        assert_eq!(&t.data[SLOT_B], &before[SLOT_B]);
    }
}

#[test]
fn a_delta_for_a_task_without_a_source_is_refused_before_any_write() {
    // fwup: rc 1, its message, and the raw_memset of on-init had reached the image. Myelin
    // reads the first resource's header (or the central directory) before on-init writes.
    let want = String::from_utf8(read_golden("delta-complete-attempt.stderr")).unwrap();
    let want = want.lines().next().unwrap().trim_start_matches("fwup: ");
    for seekable in [false, true] {
        let mut t = MemTarget::zeroed(11 * MIB);
        let fw = read_golden("v2-delta.fw");
        let err = if seekable {
            apply_seekable(&fw, &mut t, "complete").unwrap_err()
        } else {
            apply_golden(&fw, &mut t, "complete", &[golden_pub()]).unwrap_err()
        };
        assert!(err.to_string().ends_with(want), "{err}\nwant: {want}");
        assert!(t.log.is_empty(), "wrote {:?}", t.log);
        assert!(t.data.iter().all(|&b| b == 0));
    }
}

#[test]
fn a_missing_delta_source_is_refused_before_any_write() {
    // The running kernel zImage.a is gone from the boot FAT: the delta for zImage cannot be
    // decoded, and this is known before anything is written.
    let mut t = complete_v1();
    {
        let mut o = myelin_fw::output::Output::new(&mut t);
        let mut st = myelin_fw::fat::VolState::default();
        let mut fat = myelin_fw::fat::Fat::open(&mut o, 2048, &mut st).unwrap();
        assert!(fat.remove("zImage.a").unwrap());
        o.flush_cache().unwrap();
    }
    t.log.clear();
    let before = t.data.clone();
    for seekable in [false, true] {
        let fw = read_golden("v2-delta.fw");
        let err = if seekable {
            apply_seekable(&fw, &mut t, "upgrade").unwrap_err()
        } else {
            apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]).unwrap_err()
        };
        assert!(
            err.to_string()
                .contains("delta source 'zImage.a' is missing"),
            "{err}"
        );
        assert!(t.log.is_empty(), "wrote {:?}", t.log);
        assert_eq!(t.data, before);
    }
    // A full update of the same configuration does not need the source.
    apply_golden(
        &read_golden("v2-delta-full.fw"),
        &mut t,
        "upgrade",
        &[golden_pub()],
    )
    .unwrap();
}

/// Source and target pairs like firmware versions: changed bytes, an insertion, a deletion,
/// a moved block, runs of one byte, several windows.
fn pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    };
    let base = rnd(700_000);
    let mut t1 = base.clone();
    for i in (0..t1.len()).step_by(65536) {
        t1[i] ^= 0x5a;
    }
    let mut t2 = base[..100_000].to_vec();
    t2.extend_from_slice(&rnd(3000));
    t2.extend_from_slice(&base[100_000..400_000]);
    t2.extend_from_slice(&vec![0u8; 50_000]);
    t2.extend_from_slice(&base[500_000..]);
    t2.extend_from_slice(&base[..20_000]);
    let text: Vec<u8> = b"abcabcabc".repeat(20_000);
    let mut t3 = text.clone();
    t3.splice(1000..1000, b"inserted".iter().copied());
    vec![
        (base.clone(), t1),
        (base, t2),
        (text, t3),
        (Vec::new(), rnd(1000)),
    ]
}

#[test]
fn decodes_what_debians_xdelta3_encodes() {
    let dir = scratch_dir();
    for (i, (src, tgt)) in pairs().into_iter().enumerate() {
        let (s, t, p) = (
            dir.path().join(format!("s{i}")),
            dir.path().join(format!("t{i}")),
            dir.path().join(format!("p{i}")),
        );
        std::fs::write(&s, &src).unwrap();
        std::fs::write(&t, &tgt).unwrap();
        // fwup's recipe (no application header, no secondary compression), then smaller
        // windows and other levels.
        for flags in [
            &["-A", "-S", "-f"][..],
            &["-A", "-S", "-f", "-9", "-W", "16384"],
            &["-S", "-f", "-0"],
            &["-A", "-S", "-f", "-B", "524288", "-W", "65536"],
        ] {
            let mut args: Vec<&str> = flags.to_vec();
            args.extend(["-e", "-s", s.to_str().unwrap(), t.to_str().unwrap()]);
            args.push(p.to_str().unwrap());
            run("xdelta3", &args);
            let patch = std::fs::read(&p).unwrap();
            let got = myelin_fw::vcdiff::decode_all(&patch, &src)
                .unwrap_or_else(|e| panic!("pair {i} {flags:?}: {e}"));
            assert!(got == tgt, "pair {i} {flags:?}: wrong output");
            // The wrong source is refused by a window checksum (or an address outside it).
            if !src.is_empty() {
                let mut wrong = src.clone();
                let mid = wrong.len() / 2;
                wrong[mid] ^= 1;
                if let Ok(out) = myelin_fw::vcdiff::decode_all(&patch, &wrong) {
                    assert!(
                        out == tgt,
                        "pair {i}: a wrong source gave wrong bytes silently"
                    );
                }
            }
        }
    }
    // xdelta3's default secondary compression (LZMA) is refused, as fwup refuses it.
    let (src, tgt) = &pairs()[1];
    std::fs::write(dir.path().join("s"), src).unwrap();
    std::fs::write(dir.path().join("t"), tgt).unwrap();
    let s = dir.path().join("s");
    let t = dir.path().join("t");
    let p = dir.path().join("p");
    run(
        "xdelta3",
        &[
            "-f",
            "-S",
            "djw",
            "-e",
            "-s",
            s.to_str().unwrap(),
            t.to_str().unwrap(),
            p.to_str().unwrap(),
        ],
    );
    let err = myelin_fw::vcdiff::decode_all(&std::fs::read(&p).unwrap(), src).unwrap_err();
    assert!(err.to_string().contains("secondary compression"), "{err}");
}
