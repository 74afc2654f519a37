//! Helpers shared by myelin-kv's integration tests: environment files, configs, and the real
//! tools (Debian's fw_printenv/fw_setenv/mkenvimage, and myelin-kv itself).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use myelin_ubootenv::{Layout, Vars, format};

/// The myelin-kv binary under test.
pub fn myelin_kv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myelin-kv"))
}

/// Makes sure libubootenv's lock directory exists, as it does on a booted Debian system
/// (a minimal container may lack /run/lock, which /var/lock points to).
pub fn ensure_lock_dir() {
    let dir = Path::new(myelin_ubootenv::DEFAULT_LOCK_PATH)
        .parent()
        .unwrap();
    let target = match std::fs::read_link(dir) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => dir.parent().unwrap().join(t),
        Err(_) => dir.to_owned(),
    };
    std::fs::create_dir_all(&target)
        .unwrap_or_else(|e| panic!("cannot create the lock directory {}: {e}", target.display()));
}

/// A Debian tool the tests compare against; a clear failure if it is missing.
pub fn debian(tool: &str) -> Command {
    ensure_lock_dir();
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install libubootenv-tool and u-boot-tools (scripts/test installs \
         scripts/deps/apt.txt)"
    );
    Command::new(tool)
}

/// Runs a command and returns its output, whatever the exit status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Parses `name=value` lines as fw_printenv prints them.
pub fn parse_listing(listing: &str) -> Vars {
    listing
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Builds vars from pairs.
pub fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An environment image file plus a fw_env.config describing it, in a temp dir.
pub struct EnvFile {
    pub dir: tempfile::TempDir,
    pub image: PathBuf,
    pub config: PathBuf,
    pub lock: PathBuf,
    pub size: usize,
    pub layout: Layout,
    /// Offsets of the copies in the image.
    pub offsets: Vec<usize>,
}

impl EnvFile {
    /// An image with copies of `size` bytes at 0x4000 (and 0x4000 + size) holding `initial`,
    /// written as mkenvimage would (flags 1 in both copies when redundant).
    pub fn new(layout: Layout, size: usize, initial: &Vars) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("env.img");
        let offsets = match layout {
            Layout::Single => vec![0x4000],
            Layout::Redundant => vec![0x4000, 0x4000 + size],
        };
        let mut bytes = vec![0u8; 0x4000 + 2 * size + 0x4000];
        let block = format::encode(initial, size, layout, 1).unwrap();
        for &o in &offsets {
            bytes[o..o + size].copy_from_slice(&block);
        }
        std::fs::write(&image, bytes).unwrap();
        let config = dir.path().join("fw_env.config");
        let lines: String = offsets
            .iter()
            .map(|o| format!("{} {o:#x} {size:#x}\n", image.display()))
            .collect();
        std::fs::write(&config, format!("# test environment\n{lines}")).unwrap();
        let lock = dir.path().join("fw_printenv.lock");
        EnvFile {
            dir,
            image,
            config,
            lock,
            size,
            layout,
            offsets,
        }
    }

    /// `myelin-kv <sub> -c config --lock lock ...`.
    pub fn kv(&self, sub: &str) -> Command {
        let mut c = myelin_kv();
        c.arg(sub)
            .arg("-c")
            .arg(&self.config)
            .arg("--lock")
            .arg(&self.lock);
        c
    }

    /// Debian's `fw_printenv -c config` / `fw_setenv -c config`.
    pub fn debian(&self, tool: &str) -> Command {
        let mut c = debian(tool);
        c.arg("-c").arg(&self.config);
        c
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.image).unwrap()
    }

    pub fn set_bytes(&self, bytes: &[u8]) {
        std::fs::write(&self.image, bytes).unwrap();
    }

    /// Each copy's (valid, flags) as read by the library's decoder.
    pub fn copies(&self) -> Vec<Result<(Option<u8>, Vars), format::DecodeError>> {
        let bytes = self.bytes();
        self.offsets
            .iter()
            .map(|&o| {
                format::decode(&bytes[o..o + self.size], self.layout).map(|d| (d.flags, d.vars))
            })
            .collect()
    }

    /// Breaks copy `index` by overwriting part of its data (idempotent, unlike a bit flip).
    pub fn corrupt(&self, index: usize) {
        let mut bytes = self.bytes();
        let at = self.offsets[index] + 8;
        bytes[at..at + 8].copy_from_slice(b"\xA5garbage");
        self.set_bytes(&bytes);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Whether this process is root (some tests need a loop device or another uid).
pub fn require_root(what: &str) {
    let uid = nix::unistd::geteuid();
    assert!(
        uid.is_root(),
        "{what} needs root (loop devices, other uids); run the tests as root, as scripts/test does in CI"
    );
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
