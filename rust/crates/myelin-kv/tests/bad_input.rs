//! Bad input: every case gives an error naming the problem, and the environment's bytes do not
//! change. Recovery from a destroyed environment only happens when asked for.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use myelin_ubootenv::{Layout, Vars};

fn initial() -> Vars {
    vars(&[("nerves_fw_active", "a"), ("nerves_serial_number", "MYL1")])
}

/// Runs `cmd`, expects failure with every `needles` in stderr, and no byte changed.
fn refused(env: &EnvFile, cmd: &mut std::process::Command, needles: &[&str]) {
    let before = env.bytes();
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?} did not fail cleanly: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{cmd:?}: {needle:?} not in: {stderr}"
        );
    }
    assert_eq!(env.bytes(), before, "{cmd:?} wrote despite the error");
}

#[test]
fn invalid_names_and_values() {
    let env = EnvFile::new(Layout::Redundant, 0x1000, &initial());
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["a=b", "1"],
            &[
                "variable name \"a=b\" has a forbidden character '='",
                "nothing was written",
            ],
        ),
        (
            &["", "1"],
            &["variable name is empty", "nothing was written"],
        ),
        (
            &["bell\u{7}", "1"],
            &["forbidden character '\\u{7}'", "nothing was written"],
        ),
        (&["tab\tname", "1"], &["forbidden character '\\t'"]),
        (&["#comment", "1"], &["starts with '#'"]),
        // A good change in the same batch is not written either.
        (&["good", "1", "bad name", "2"], &["\"bad name\""]),
    ];
    for (args, needles) in cases {
        refused(&env, env.kv("setenv").args(*args), needles);
    }
    // Too large for the 4 KiB environment.
    let big = "x".repeat(0x1000);
    refused(
        &env,
        env.kv("setenv").args(["big", &big]),
        &[
            "variables need",
            "bytes but the environment holds only 4091",
            "nothing was written",
        ],
    );
    // A script with an error on line 3: the valid lines 1-2 are not applied either.
    std::fs::write(env.path("script"), "a=1\nb=2\nthis line is wrong\n").unwrap();
    refused(
        &env,
        env.kv("setenv").arg("-s").arg(env.path("script")),
        &["script: line 3: expected name=value"],
    );
    refused(&env, &mut env.kv("setenv"), &["no variable name given"]);
}

#[test]
fn a_corrupt_single_copy() {
    let env = EnvFile::new(Layout::Single, 0x2000, &initial());
    env.corrupt(0);
    let msg = ["is corrupt (CRC mismatch", "at 0x4000", "--force-init"];
    refused(&env, &mut env.kv("printenv"), &msg);
    refused(&env, env.kv("setenv").args(["a", "1"]), &msg);
    refused(
        &env,
        env.kv("setenv").args(["a", "1"]),
        &["nothing was written"],
    );
    // Libubootenv agrees that nothing valid is there (it prints its built-in nothing).
    let theirs = run(&mut env.debian("fw_printenv"));
    assert!(String::from_utf8_lossy(&theirs.stdout).trim().is_empty());
}

#[test]
fn one_corrupt_redundant_copy_is_read_around_and_replaced() {
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    env.corrupt(0);
    assert_eq!(parse_listing(&ok(&mut env.kv("printenv"))), initial());
    ok(env.kv("setenv").args(["x", "1"]));
    let copies = env.copies();
    assert!(copies[0].is_ok(), "the corrupt copy is the one overwritten");
    assert_eq!(
        copies[1].as_ref().unwrap().1,
        initial(),
        "the good copy is untouched"
    );
    assert_eq!(ok(env.debian("fw_printenv").args(["-n", "x"])), "1\n");
}

#[test]
fn both_copies_corrupt() {
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    env.corrupt(0);
    env.corrupt(1);
    let msg = [
        "both environment copies are corrupt",
        "copy 1 at",
        "copy 2 at",
        "-f <defaults file>",
    ];
    refused(&env, &mut env.kv("printenv"), &msg);
    refused(&env, env.kv("setenv").args(["a", "1"]), &msg);

    // Printing with defaults shows them and says why.
    std::fs::write(
        env.path("defaults.txt"),
        "# board defaults\nnerves_fw_active=a\nbootdelay=0\n",
    )
    .unwrap();
    let out = run(env.kv("printenv").arg("-f").arg(env.path("defaults.txt")));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("printing the defaults"));
    assert_eq!(
        parse_listing(&String::from_utf8(out.stdout).unwrap()),
        vars(&[("bootdelay", "0"), ("nerves_fw_active", "a")])
    );
    // Recovery from the defaults file, with the change on top; both tools read it.
    ok(env
        .kv("setenv")
        .arg("-f")
        .arg(env.path("defaults.txt"))
        .args(["nerves_serial_number", "MYL2"]));
    let expected = vars(&[
        ("bootdelay", "0"),
        ("nerves_fw_active", "a"),
        ("nerves_serial_number", "MYL2"),
    ]);
    assert_eq!(parse_listing(&ok(&mut env.debian("fw_printenv"))), expected);
    assert_eq!(parse_listing(&ok(&mut env.kv("printenv"))), expected);

    // --force-init starts from nothing.
    env.corrupt(0);
    env.corrupt(1);
    ok(env.kv("setenv").args(["--force-init", "only", "this"]));
    assert_eq!(
        parse_listing(&ok(&mut env.kv("printenv"))),
        vars(&[("only", "this")])
    );
}

#[test]
fn bad_configurations() {
    let env = EnvFile::new(Layout::Redundant, 0x2000, &initial());
    let config = env.path("bad.config");
    let cases = [
        (
            "/nonexistent/mmcblk9 0x100000 0x20000\n",
            "cannot open environment device /nonexistent/mmcblk9",
        ),
        ("# only comments\n", "no environment copy is configured"),
        ("/dev/x 0x100000\n", "bad.config:1: missing size field"),
        (
            "/dev/x 1M 0x2000\n",
            "bad.config:1: offset \"1M\" is not a valid C",
        ),
        ("uboot:\n  size: 0x2000\n", "YAML"),
    ];
    for (text, needle) in cases {
        std::fs::write(&config, text).unwrap();
        for sub in ["printenv", "setenv"] {
            let mut cmd = myelin_kv();
            cmd.arg(sub)
                .arg("-c")
                .arg(&config)
                .arg("--lock")
                .arg(&env.lock);
            if sub == "setenv" {
                cmd.args(["a", "1"]);
            }
            refused(&env, &mut cmd, &[needle]);
        }
    }
    // A copy that runs past the end of its file.
    std::fs::write(
        &config,
        format!("{} 0x10000 0x20000\n", env.image.display()),
    )
    .unwrap();
    refused(
        &env,
        myelin_kv()
            .arg("setenv")
            .arg("-c")
            .arg(&config)
            .arg("--lock")
            .arg(&env.lock)
            .args(["a", "1"]),
        &["needs bytes up to 0x30000"],
    );
    assert!(!exists(std::path::Path::new("/nonexistent/mmcblk9")));
}
