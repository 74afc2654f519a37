//! Helpers shared by the integration tests: the golden corpus, external tools, images.
#![allow(dead_code, clippy::unwrap_used)]

pub mod boards;

use myelin_fw::{ApplyOptions, Error, Fixed, MemTarget, PrivateKey, PublicKey, Vars};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file of the golden corpus (made by fwup 1.16.0; see tests/golden/README.md).
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Reads a golden file.
pub fn read_golden(name: &str) -> Vec<u8> {
    std::fs::read(golden(name)).unwrap()
}

/// Decompresses a golden `.xz` image with xz(1).
pub fn golden_image(name: &str) -> Vec<u8> {
    run("xz", &["-dc", golden(name).to_str().unwrap()])
}

/// Runs a tool, panicking with its stderr if it fails; returns stdout.
pub fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} could not run ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a tool and returns (success, stdout, stderr).
pub fn try_run(tool: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} could not run ({e}); scripts/test installs it"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The golden public key.
pub fn golden_pub() -> PublicKey {
    PublicKey::from_fwup(&read_golden("golden-key.pub")).unwrap()
}

/// The golden private key.
pub fn golden_priv() -> PrivateKey {
    PrivateKey::from_fwup(&read_golden("golden-key.priv")).unwrap()
}

/// `myelin-fw create` of `conf` with `vars`, deflate level 9, into memory.
pub fn create_with(
    conf: &Path,
    vars: Vars,
    key: Option<myelin_fw::PrivateKey>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    myelin_fw::create(
        &myelin_fw::CreateOptions {
            config: conf.to_path_buf(),
            vars,
            signing_key: key,
            level: 9,
            ops_only: false,
        },
        &mut out,
    )?;
    Ok(out)
}

/// Applies `fw` to `target` with the golden key and default options.
pub fn apply_golden(
    fw: &[u8],
    target: &mut MemTarget,
    task: &str,
    keys: &[PublicKey],
) -> Result<myelin_fw::Applied, Error> {
    let sys = Fixed::default();
    let opts = ApplyOptions {
        task,
        public_keys: keys,
        vars: Vars::default(),
        system: &sys,
        enable_trim: false,
        progress_range: (0, 100),
    };
    myelin_fw::apply(fw, target, &opts, None)
}

/// A temporary directory, in memory when possible (/dev/shm): applies fsync the target, which
/// costs seconds on a slow disk and proves nothing more here.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Writes `fw_env.config` lines for the environment copies of an image file.
pub fn fw_env_config(dir: &Path, image: &Path, copies: &[(u64, u64)]) -> PathBuf {
    let cfg = dir.join("fw_env.config");
    let text: String = copies
        .iter()
        .map(|(off, size)| format!("{} {off:#x} {size:#x}\n", image.display()))
        .collect();
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `fw_printenv -c cfg` output as sorted lines.
pub fn fw_printenv(cfg: &Path) -> Vec<String> {
    let out = run("fw_printenv", &["-c", cfg.to_str().unwrap()]);
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The value of `name` as fw_printenv reads it.
pub fn fw_printenv_value(cfg: &Path, name: &str) -> Option<String> {
    fw_printenv(cfg)
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// `mdir -i image@@offset ::path` (the FAT listing as mtools sees it).
pub fn mdir(image: &Path, offset_bytes: u64, path: &str) -> String {
    let spec = format!("{}@@{offset_bytes}", image.display());
    let out = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &spec, &format!("::{path}")])
        .output()
        .expect("mdir (mtools) could not run; scripts/test installs it");
    assert!(
        out.status.success(),
        "mdir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's contents as mtools reads it from a FAT partition.
pub fn mtype(image: &Path, offset_bytes: u64, path: &str) -> Vec<u8> {
    let spec = format!("{}@@{offset_bytes}", image.display());
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-n", "-i", &spec, &format!("::{path}"), "-"])
        .output()
        .expect("mcopy (mtools) could not run");
    assert!(
        out.status.success(),
        "mcopy ::{path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Copies `len` bytes at `offset` of `image` into a new file.
pub fn extract(image: &Path, offset: u64, len: u64, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).unwrap();
    std::fs::write(to, buf).unwrap();
}

/// Runs `fsck.vfat -n` on the FAT partition at `offset` (copied out first); panics on errors.
/// One note is not an error: a label set with `fat_setlabel` is in the root directory only,
/// as FatFs (and so fwup) leaves it, and fsck.fat offers to copy it to the boot sector.
pub fn fsck_vfat(dir: &Path, image: &Path, offset: u64, len: u64) {
    let part = dir.join("part.vfat");
    extract(image, offset, len, &part);
    let (ok, out, err) = try_run("fsck.vfat", &["-n", part.to_str().unwrap()]);
    let label_only = out.lines().all(|l| {
        l.starts_with("fsck.fat ")
            || l.starts_with("There is no label in boot sector, but there is volume label")
            || l.contains("Auto-copying volume label from root directory to boot sector")
            || l.is_empty()
            || l.starts_with("Leaving filesystem unchanged")
            || l.contains(" files, ")
    });
    assert!(ok || label_only, "fsck.vfat found problems:\n{out}\n{err}");
    std::fs::remove_file(part).unwrap();
}

/// `sfdisk -d` of an image, with the image's name replaced by `IMG`.
pub fn sfdisk(image: &Path) -> String {
    let out = run("sfdisk", &["-d", image.to_str().unwrap()]);
    String::from_utf8(out)
        .unwrap()
        .replace(image.to_str().unwrap(), "IMG")
}
