//! SSH keys authorized to log in, kept on /data: `myelinctl ssh keys | add-key`.
//!
//! dropbear reads `/root/.ssh/authorized_keys`, which leads to `/data/myelin/ssh/authorized_keys`
//! (the root filesystem is read-only). That file holds the keys built into the firmware (the
//! dropbear start wrapper adds them at each start) and those added here; it survives updates.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Subcommand;

/// Where dropbear's authorized keys live on a device.
pub const AUTHORIZED_KEYS: &str = "/data/myelin/ssh/authorized_keys";

/// Key types dropbear accepts for public-key logins.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `myelinctl ssh ...`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the authorized keys (type, comment, end of the key).
    Keys {
        /// The authorized_keys file.
        #[arg(long, hide = true, default_value = AUTHORIZED_KEYS)]
        file: PathBuf,
    },
    /// Authorize public keys to log in as root, kept on /data.
    AddKey {
        /// Keys as in a .pub file ("ssh-ed25519 AAAA... comment", one argument each), or `-`
        /// to read key lines from stdin (`ssh device myelinctl ssh add-key - < id_ed25519.pub`).
        #[arg(required = true, value_name = "KEY|-")]
        keys: Vec<String>,
        /// The authorized_keys file.
        #[arg(long, hide = true, default_value = AUTHORIZED_KEYS)]
        file: PathBuf,
    },
}

/// A checked public key line: type, base64 blob and optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key type, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The key in base64, as in the .pub file.
    pub blob: String,
    /// The comment after the key, if any.
    pub comment: String,
}

impl PublicKey {
    /// Parses one line of a .pub or authorized_keys file (without options before the type).
    pub fn parse(line: &str) -> anyhow::Result<PublicKey> {
        let mut fields = line.split_whitespace();
        let kind = fields.next().context("empty key")?;
        if kind.starts_with("-----BEGIN") {
            bail!("this is a private key; give the .pub file's line");
        }
        if !KEY_TYPES.contains(&kind) {
            bail!(
                "unknown key type '{kind}' (expected one of {})",
                KEY_TYPES.join(", ")
            );
        }
        let blob = fields
            .next()
            .with_context(|| format!("the {kind} key has no base64 part"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .with_context(|| format!("the {kind} key is not valid base64"))?;
        // The blob starts with its own type as an SSH string (u32 length, bytes).
        let inner = raw
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| raw.get(4..4 + n));
        if inner != Some(kind.as_bytes()) {
            bail!("the base64 part is not a {kind} key (its header names another type)");
        }
        Ok(PublicKey {
            kind: kind.to_string(),
            blob: blob.to_string(),
            comment: fields.collect::<Vec<_>>().join(" "),
        })
    }

    /// The authorized_keys line.
    pub fn line(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.kind, self.blob)
        } else {
            format!("{} {} {}", self.kind, self.blob, self.comment)
        }
    }

    /// Type, comment and the end of the key, which tells keys of one type apart.
    pub fn describe(&self) -> String {
        let tail = &self.blob[self.blob.len().saturating_sub(12)..];
        let comment = if self.comment.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.comment)
        };
        format!("{} ...{tail}{comment}", self.kind)
    }
}

/// The keys already in an authorized_keys file (unparsable lines are skipped: dropbear skips
/// them too, and they are not ours to judge here).
fn read_keys(file: &Path) -> anyhow::Result<Vec<PublicKey>> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| PublicKey::parse(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// Adds keys to the file, each at most once; returns the ones that were new. The file is
/// replaced atomically (a power cut leaves the old or the new list) with dropbear's modes.
pub fn add_keys(file: &Path, keys: &[PublicKey]) -> anyhow::Result<Vec<PublicKey>> {
    let dir = file.parent().context("the key file has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // dropbear refuses keys in a directory others can write.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    let mut text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut have = read_keys(file)?;
    let mut added = Vec::new();
    for key in keys {
        if have
            .iter()
            .any(|k| k.kind == key.kind && k.blob == key.blob)
        {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&key.line());
        text.push('\n');
        have.push(key.clone());
        added.push(key.clone());
    }
    if added.is_empty() {
        return Ok(added);
    }
    let tmp = dir.join(".authorized_keys.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(added)
}

/// The keys named on the command line, stdin's lines for `-`; every one checked first.
fn collect_keys(args: &[String], stdin: &mut dyn Read) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for arg in args {
        if arg == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read keys from stdin")?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(PublicKey::parse(line).with_context(|| format!("stdin line {}", n + 1))?);
            }
        } else {
            keys.push(PublicKey::parse(arg).with_context(|| format!("key '{arg}'"))?);
        }
    }
    if keys.is_empty() {
        bail!("no key given");
    }
    Ok(keys)
}

/// Runs an `ssh` command.
pub fn run(command: &Command, out: &mut dyn Write) -> anyhow::Result<i32> {
    match command {
        Command::Keys { file } => {
            for key in read_keys(file)? {
                writeln!(out, "{}", key.describe())?;
            }
        }
        Command::AddKey { keys, file } => {
            let keys = collect_keys(keys, &mut std::io::stdin().lock())?;
            let added = add_keys(file, &keys)?;
            for key in &keys {
                let verb = if added.contains(key) {
                    "added"
                } else {
                    "already authorized"
                };
                writeln!(out, "{verb}: {}", key.describe())?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key (ssh-keygen), and an RSA header with an ed25519 type label.
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx1xzGs3qDxGxSyVYUUA47oCul8tYlMBSGdD+ei4kOi me@host";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnJKCf8FS1k9Qb/CJhMmY1hyiH0Sz8dAsA7wh+2qo+X";

    #[test]
    fn parses_and_refuses_with_the_reason() {
        let k = PublicKey::parse(ED).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment, "me@host");
        assert_eq!(k.line(), ED);
        assert!(
            k.describe().ends_with("ei4kOi (me@host)"),
            "{}",
            k.describe()
        );
        let err = |s: &str| format!("{:#}", PublicKey::parse(s).unwrap_err());
        assert!(err("ssh-foo AAAA").contains("unknown key type 'ssh-foo'"));
        assert!(err("ssh-ed25519").contains("no base64 part"));
        assert!(err("ssh-ed25519 AA%A").contains("not valid base64"));
        assert!(
            err("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEx1xzGs3qDxGxSyVYUUA47oCul8tYlMBSGdD+ei4kOi")
                .contains("not a ssh-rsa key")
        );
        assert!(err("-----BEGIN OPENSSH PRIVATE KEY-----").contains("private key"));
    }

    #[test]
    fn adds_each_key_once_with_dropbear_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ssh/authorized_keys");
        let a = PublicKey::parse(ED).unwrap();
        let b = PublicKey::parse(ED2).unwrap();
        let added = add_keys(&file, std::slice::from_ref(&a)).unwrap();
        assert_eq!(added, std::slice::from_ref(&a));
        // The same key with another comment is the same key.
        let a2 = PublicKey::parse(&format!("{} {} other", a.kind, a.blob)).unwrap();
        let added = add_keys(&file, &[a2, b.clone()]).unwrap();
        assert_eq!(added, std::slice::from_ref(&b));
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{ED}\n{ED2}\n"));
        assert_eq!(read_keys(&file).unwrap(), [a, b]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
    }

    #[test]
    fn stdin_keys_are_all_checked_before_anything_is_written() {
        let input = format!("{ED}\n\n# comment\nssh-ed25519 broken!\n");
        let err = collect_keys(&["-".into()], &mut input.as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("stdin line 4"), "{err:#}");
        let keys =
            collect_keys(&["-".into(), ED2.into()], &mut format!("{ED}\n").as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(collect_keys(&["-".into()], &mut "".as_bytes()).is_err());
    }
}
