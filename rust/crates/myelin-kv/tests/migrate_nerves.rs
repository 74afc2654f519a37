//! `myelin-kv migrate-nerves` on an image whose environment Debian's tools wrote in Nerves'
//! single-copy layout (as on an x86_64 Nerves disk: 8 KiB at 1 MiB), then read back through
//! Myelin's redundant configuration (two 128 KiB copies at 1 MiB and 1 MiB + 128 KiB) by Debian's
//! fw_printenv.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn nerves_single_copy_environment_is_converted_once_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = d.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(0x14_0000)
        .unwrap();
    let nerves_cfg = d.join("nerves-env.config");
    std::fs::write(
        &nerves_cfg,
        format!("{} 0x100000 0x2000\n", image.display()),
    )
    .unwrap();
    let myelin_cfg = d.join("fw_env.config");
    std::fs::write(
        &myelin_cfg,
        format!(
            "{0} 0x100000 0x20000\n{0} 0x120000 0x20000\n",
            image.display()
        ),
    )
    .unwrap();
    let text = d.join("env.txt");
    std::fs::write(
        &text,
        "nerves_fw_active=a\nnerves_serial_number=MYL0001\nwifi_ssid=home\napp_key=keep-me\n",
    )
    .unwrap();
    let single = d.join("single.img");
    ok(debian("mkenvimage")
        .args(["-s", "0x2000", "-o"])
        .arg(&single)
        .arg(&text));
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[0x10_0000..0x10_2000].copy_from_slice(&std::fs::read(&single).unwrap());
    std::fs::write(&image, bytes).unwrap();
    // An empty value, set by Nerves' side of the tools.
    ok(debian("fw_setenv")
        .arg("-c")
        .arg(&nerves_cfg)
        .args(["empty_key", ""]));
    let nerves_listing = ok(debian("fw_printenv").arg("-c").arg(&nerves_cfg));

    let lock = d.join("fw_printenv.lock");
    let migrate = || {
        ok(myelin_kv()
            .arg("migrate-nerves")
            .arg("-c")
            .arg(&myelin_cfg)
            .arg("--lock")
            .arg(&lock)
            .arg("--nerves-config")
            .arg(&nerves_cfg))
    };
    let first = migrate();
    assert!(
        first.contains("converted the Nerves environment"),
        "{first}"
    );
    assert_eq!(
        parse_listing(&ok(debian("fw_printenv").arg("-c").arg(&myelin_cfg))),
        parse_listing(&nerves_listing)
    );
    // Nerves can still read its copy (a trial that reverts finds every key).
    assert_eq!(
        ok(debian("fw_printenv").arg("-c").arg(&nerves_cfg)),
        nerves_listing
    );
    let second = migrate();
    assert!(second.contains("already converted"), "{second}");

    // Myelin's first own write replaces the Nerves copy; from then on there is nothing to do.
    ok(myelin_kv()
        .arg("setenv")
        .arg("-c")
        .arg(&myelin_cfg)
        .arg("--lock")
        .arg(&lock)
        .args(["b.nerves_fw_validated", "1"]));
    let third = migrate();
    assert!(third.contains("nothing to convert"), "{third}");
    let after = parse_listing(&ok(debian("fw_printenv").arg("-c").arg(&myelin_cfg)));
    assert_eq!(after.get("app_key").map(String::as_str), Some("keep-me"));
    assert_eq!(after.get("empty_key").map(String::as_str), Some(""));
    assert_eq!(
        after.get("b.nerves_fw_validated").map(String::as_str),
        Some("1")
    );
}

#[test]
fn a_two_copy_nerves_config_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("two.config");
    std::fs::write(&cfg, "/dev/null 0x0 0x2000\n/dev/null 0x2000 0x2000\n").unwrap();
    let out = run(myelin_kv()
        .arg("migrate-nerves")
        .arg("-c")
        .arg(&cfg)
        .arg("--lock")
        .arg(d.join("lock"))
        .arg("--nerves-config")
        .arg(&cfg));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("two.config") && err.contains("one copy"),
        "{err}"
    );
}
