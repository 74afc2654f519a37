//! Bad archives: truncated, corrupted in each region, unsigned or wrongly signed, for another
//! platform. Each gives a clear error, and the running slot (MBR, environment, slot A, the
//! boot FAT's structure) is never touched; failures found before the task starts write nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_fw::archive::ZipWriter;
use myelin_fw::{CreateOptions, Error, MemTarget, Vars};

const MIB: usize = 1 << 20;

fn complete_v1() -> MemTarget {
    let mut t = MemTarget::zeroed(11 * MIB);
    apply_golden(&read_golden("v1.fw"), &mut t, "complete", &[golden_pub()]).unwrap();
    t.log.clear();
    t
}

/// The regions that make slot A bootable.
fn active_regions() -> Vec<std::ops::Range<usize>> {
    vec![
        0..512,
        0x2000..0x6000,
        10240 * 512..14336 * 512,
        2048 * 512..(2048 + 99) * 512,
    ]
}

fn assert_active_untouched(before: &[u8], after: &MemTarget, case: &str) {
    for r in active_regions() {
        assert!(
            before[r.clone()] == after.data[r.clone()],
            "{case}: bytes {r:?} of the running slot changed"
        );
    }
}

/// Applies `fw` as an upgrade to a complete-v1 image and returns the error.
fn upgrade_fails(fw: &[u8], case: &str) -> (Error, MemTarget, Vec<u8>) {
    let mut t = complete_v1();
    let before = t.data.clone();
    let err = match apply_golden(fw, &mut t, "upgrade", &[golden_pub()]) {
        Ok(a) => panic!("{case}: accepted ({a:?})"),
        Err(e) => e,
    };
    assert_active_untouched(&before, &t, case);
    (err, t, before)
}

/// Byte offset of the data of entry `name` in fwup's v2.fw.
fn entry_data_offset(fw: &[u8], name: &str) -> usize {
    let needle = [b"PK\x03\x04".as_slice()].concat();
    let mut i = 0;
    while let Some(p) = fw[i..].windows(4).position(|w| w == needle.as_slice()) {
        let at = i + p;
        let n = u16::from_le_bytes([fw[at + 26], fw[at + 27]]) as usize;
        let e = u16::from_le_bytes([fw[at + 28], fw[at + 29]]) as usize;
        if &fw[at + 30..at + 30 + n] == name.as_bytes() {
            return at + 30 + n + e;
        }
        i = at + 4;
    }
    panic!("{name} not found");
}

#[test]
fn truncated_archives_are_refused() {
    let fw = read_golden("v2.fw");
    let rootfs = entry_data_offset(&fw, "data/rootfs.img");
    let cuts = [
        0,
        10,
        100,
        160,
        400,
        1000,
        entry_data_offset(&fw, "data/zImage") + 30_000,
        rootfs + 1000,
        rootfs + 300_000,
        fw.len() - 500,
    ];
    for cut in cuts {
        let (err, t, _) = upgrade_fails(&fw[..cut], &format!("cut at {cut}"));
        let msg = err.to_string();
        assert!(
            msg.contains("truncated") || msg.contains("not found in archive"),
            "cut at {cut}: unexpected error {msg}"
        );
        if cut < entry_data_offset(&fw, "data/zImage") {
            assert!(t.log.is_empty(), "cut at {cut}: wrote {:?}", t.log);
        }
    }
}

#[test]
fn corrupting_any_region_is_detected() {
    let fw = read_golden("v2.fw");
    let meta_data = entry_data_offset(&fw, "meta.conf");
    let zimage = entry_data_offset(&fw, "data/zImage");
    let rootfs = entry_data_offset(&fw, "data/rootfs.img");
    let cases: Vec<(&str, usize, Option<&str>)> = vec![
        (
            "first local header signature",
            0,
            Some("expected a ZIP local header"),
        ),
        ("signature bytes", 80, Some("CRC")),
        (
            "meta.conf local header",
            147,
            Some("expected a ZIP local header"),
        ),
        ("meta.conf name", 147 + 30, Some("Expecting meta.conf")),
        ("meta.conf data", meta_data + 100, None),
        (
            "zImage compression method",
            zimage - 61 + 8,
            Some("unsupported compression method"),
        ),
        (
            "zImage name",
            zimage - 61 + 30 + 5,
            Some("not found in archive"),
        ),
        ("zImage data", zimage + 20_000, Some("CRC")),
        ("rootfs data", rootfs + 200_000, Some("CRC")),
        (
            "rootfs data descriptor",
            fw.len() - 401 - 22 - 12,
            Some("CRC"),
        ),
    ];
    for (case, at, expect) in cases {
        let mut bad = fw.clone();
        bad[at] ^= 0x55;
        let (err, t, _) = upgrade_fails(&bad, case);
        let msg = err.to_string();
        if let Some(e) = expect {
            assert!(msg.contains(e), "{case}: '{msg}' lacks '{e}'");
        }
        if at < zimage - 100 {
            assert!(
                t.log.is_empty(),
                "{case}: wrote before failing: {:?}",
                t.log
            );
        }
    }
}

#[test]
fn tampered_resources_fail_their_hash_even_with_a_valid_crc() {
    // An unsigned archive whose resource was replaced (ZIP CRC recomputed by the writer): the
    // BLAKE2b-256 in meta.conf catches it.
    let meta = read_golden("v2.meta.conf");
    let mut z = ZipWriter::new(Vec::new(), 6);
    z.add_deflated("meta.conf", &meta, Some(1_767_225_600))
        .unwrap();
    z.add_deflated("data/zImage", &read_golden("zImage"), None)
        .unwrap();
    z.add_deflated("data/config.txt", &read_golden("config.txt"), None)
        .unwrap();
    let mut rootfs = read_golden("rootfs-v2.bin");
    rootfs[1000] ^= 1;
    z.add_deflated("data/rootfs.img", &rootfs, None).unwrap();
    let fw = z.finish().unwrap();
    let mut t = complete_v1();
    let before = t.data.clone();
    let err = apply_golden(&fw, &mut t, "upgrade", &[]).unwrap_err();
    assert!(
        matches!(&err, Error::Resource { resource, message } if resource == "rootfs.img" && message.contains("blake2b")),
        "{err}"
    );
    assert_active_untouched(&before, &t, "tampered rootfs");
    // The same archive is refused outright when a key is required.
    let mut t = complete_v1();
    assert!(matches!(
        apply_golden(&fw, &mut t, "upgrade", &[golden_pub()]),
        Err(Error::Unsigned)
    ));
    assert!(t.log.is_empty());
}

#[test]
fn unsigned_and_wrongly_signed_upgrades_write_nothing() {
    let mut t = complete_v1();
    let err = apply_golden(
        &read_golden("v1-unsigned.fw"),
        &mut t,
        "upgrade",
        &[golden_pub()],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unsigned));
    assert!(t.log.is_empty());
    let other = myelin_fw::PrivateKey::generate().unwrap();
    let mut resigned = Vec::new();
    myelin_fw::create::sign_archive(
        read_golden("v2.fw").as_slice(),
        &mut resigned,
        &other,
        9,
        &Vars::default(),
    )
    .unwrap();
    let err = apply_golden(&resigned, &mut t, "upgrade", &[golden_pub()]).unwrap_err();
    assert!(matches!(err, Error::BadSignature));
    assert!(t.log.is_empty());
}

#[test]
fn archive_structure_errors() {
    let meta = read_golden("v2.meta.conf");
    let build = |entries: &[(&str, &[u8])]| {
        let mut z = ZipWriter::new(Vec::new(), 6);
        for (n, d) in entries {
            z.add_deflated(n, d, None).unwrap();
        }
        z.finish().unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", build(&[]), "no entries"),
        (
            "no meta.conf first",
            build(&[("data/zImage", b"x"), ("meta.conf", &meta)]),
            "Expecting meta.conf",
        ),
        (
            "tiny meta.conf",
            build(&[("meta.conf", b"a=1")]),
            "Unexpected meta.conf size",
        ),
        (
            "huge meta.conf",
            build(&[("meta.conf", &vec![b'#'; 60_000])]),
            "larger than",
        ),
        (
            "garbage",
            b"this is not a zip file at all".to_vec(),
            "expected a ZIP local header",
        ),
        (
            "missing resource",
            build(&[
                ("meta.conf", &meta),
                ("data/zImage", &read_golden("zImage")),
            ]),
            "not found in archive",
        ),
    ];
    for (case, fw, expect) in cases {
        let mut t = complete_v1();
        let before = t.data.clone();
        let err = match apply_golden(&fw, &mut t, "upgrade", &[]) {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains(expect),
            "{case}: '{err}' lacks '{expect}'"
        );
        assert_active_untouched(&before, &t, case);
    }
}

/// A small layout in the style of Nerves' upgrade tasks: A/B by `nerves_fw_active`, a platform
/// check, and a last task that explains why nothing matched.
const PLATFORM_CONF: &str = r#"
meta-platform = "${PLATFORM}"
meta-architecture = "x86_64"
file-resource rootfs.img { contents = "${PLATFORM} rootfs" }
uboot-environment env { block-offset = 16 block-offset-redund = 32 block-count = 16 }
task upgrade.a {
    require-uboot-variable(env, "nerves_fw_active", "b")
    require-uboot-variable(env, "b.nerves_fw_platform", "${PLATFORM}")
    on-resource rootfs.img { raw_write(10240) }
    on-finish { uboot_setenv(env, "nerves_fw_active", "a") }
}
task upgrade.b {
    require-uboot-variable(env, "nerves_fw_active", "a")
    require-uboot-variable(env, "a.nerves_fw_platform", "${PLATFORM}")
    on-resource rootfs.img { raw_write(14336) }
    on-finish { uboot_setenv(env, "nerves_fw_active", "b") }
}
task upgrade.wrongplatform {
    on-init { error("Expecting platform=${PLATFORM}") }
}
"#;

#[test]
fn wrong_platform_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fwup.conf");
    std::fs::write(&conf, PLATFORM_CONF).unwrap();
    let mk = |platform: &str| {
        let mut out = Vec::new();
        myelin_fw::create(
            &CreateOptions {
                config: conf.clone(),
                vars: Vars::from_pairs([("PLATFORM", platform)]),
                signing_key: Some(golden_priv()),
                level: 9,
                ops_only: false,
            },
            &mut out,
        )
        .unwrap();
        out
    };
    // A device running slot A of platform "golden".
    let mut t = complete_v1();
    {
        use myelin_fw::uboot;
        let mut o = myelin_fw::output::Output::new(&mut t);
        let loc = uboot::Location {
            offset: 0x2000,
            size: 0x2000,
            redund: Some(0x4000),
        };
        let disk = uboot::read_copies(&mut o, &loc).unwrap();
        let mut copies = disk.clone();
        uboot::change(&loc, &mut copies, |v| {
            v.insert("a.nerves_fw_platform".into(), "golden".into());
        })
        .unwrap();
        o.defer("env", uboot::safe_writes(&loc, &disk, &copies));
        o.commit_deferred().unwrap();
    }
    t.log.clear();
    let before = t.data.clone();
    let err = apply_golden(&mk("rpi4"), &mut t, "upgrade", &[golden_pub()]).unwrap_err();
    assert!(
        matches!(&err, Error::Task(m) if m == "Expecting platform=rpi4"),
        "{err}"
    );
    assert!(t.log.is_empty(), "wrote {:?}", t.log);
    assert_eq!(t.data, before);
    // The right platform goes to slot B.
    let applied = apply_golden(&mk("golden"), &mut t, "upgrade", &[golden_pub()]).unwrap();
    assert_eq!(applied.task, "upgrade.b");
    assert_eq!(&t.data[14336 * 512..14336 * 512 + 13], b"golden rootfs");
    // No task at all.
    let err = apply_golden(&mk("golden"), &mut t, "nosuchtask", &[]).unwrap_err();
    assert!(matches!(err, Error::NoTask(_)));
}

#[test]
fn names_with_quotes_and_backslashes_survive_create_verify_and_apply() {
    // Found by the fuzzer: fwup prints section titles unescaped, so these names gave a
    // meta.conf that verify and apply could not read.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fwup.conf");
    std::fs::write(
        &conf,
        r#"file-resource "a\"b\\c" { contents = "quoted" }
task "t\"x\\" { on-resource "a\"b\\c" { raw_write(1) } }
"#,
    )
    .unwrap();
    let fw = create_with(&conf, Vars::default(), None).unwrap();
    myelin_fw::verify(fw.as_slice(), &[], &Vars::default()).unwrap();
    let mut t = MemTarget::zeroed(4096);
    let applied = apply_golden(&fw, &mut t, "t\"x", &[]).unwrap();
    assert_eq!(applied.task, "t\"x\\");
    assert_eq!(&t.data[512..518], b"quoted");
}
