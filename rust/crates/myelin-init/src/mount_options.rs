//! mount(8)-style option strings (`ro,nodev,mode=755`): the flag names mount(2) takes as bits,
//! and the rest, which is the filesystem's own data.

use std::fmt;

/// mount(2) flags, named the way mount(8) names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountFlags(pub libc::c_ulong);

const FLAG_NAMES: &[(&str, libc::c_ulong)] = &[
    ("ro", libc::MS_RDONLY),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("sync", libc::MS_SYNCHRONOUS),
    ("remount", libc::MS_REMOUNT),
    ("mand", libc::MS_MANDLOCK),
    ("dirsync", libc::MS_DIRSYNC),
    ("noatime", libc::MS_NOATIME),
    ("nodiratime", libc::MS_NODIRATIME),
    ("silent", libc::MS_SILENT),
    ("relatime", libc::MS_RELATIME),
    ("strictatime", libc::MS_STRICTATIME),
    ("lazytime", libc::MS_LAZYTIME),
];

impl MountFlags {
    /// No flag.
    pub const NONE: MountFlags = MountFlags(0);
    /// `nosuid,nodev,noexec`, the usual flags of pseudo filesystems.
    pub const PSEUDO: MountFlags = MountFlags(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    /// Read-only.
    pub const RDONLY: MountFlags = MountFlags(libc::MS_RDONLY);
    /// Remount.
    pub const REMOUNT: MountFlags = MountFlags(libc::MS_REMOUNT);

    /// Union of two flag sets.
    pub fn with(self, other: MountFlags) -> MountFlags {
        MountFlags(self.0 | other.0)
    }
}

impl fmt::Display for MountFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Why an option string cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountOptionError {
    /// `remount` makes no sense in a configured mount.
    #[error("`remount` is not allowed here")]
    Remount,
    /// A negated flag mount(2) has no bit for (`nonodev`).
    #[error("mount option `{0}` is not supported")]
    Unsupported(String),
    /// `ro` and `rw` together.
    #[error("mount options `ro` and `rw` conflict")]
    Conflict,
}

/// Splits mount(8)-style options into flags and filesystem data (`mode=755,size=10%`).
pub fn parse_mount_options(opts: &str) -> Result<(MountFlags, String), MountOptionError> {
    let mut flags: libc::c_ulong = 0;
    let mut data: Vec<&str> = Vec::new();
    let (mut ro, mut rw) = (false, false);
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "defaults" => {}
            "rw" => rw = true,
            "ro" => {
                ro = true;
                flags |= libc::MS_RDONLY;
            }
            "remount" => return Err(MountOptionError::Remount),
            _ => match FLAG_NAMES.iter().find(|(n, _)| *n == o) {
                Some((_, b)) => flags |= b,
                None if o.starts_with("no")
                    && !o.contains('=')
                    && FLAG_NAMES.iter().any(|(n, _)| *n == &o[2..]) =>
                {
                    return Err(MountOptionError::Unsupported(o.to_string()));
                }
                None => data.push(o),
            },
        }
    }
    if ro && rw {
        return Err(MountOptionError::Conflict);
    }
    Ok((MountFlags(flags), data.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options() {
        let (f, d) = parse_mount_options("nodev,noexec,nosuid,mode=755,size=10%").unwrap();
        assert_eq!(f, MountFlags::PSEUDO);
        assert_eq!(d, "mode=755,size=10%");
        assert_eq!(f.to_string(), "nosuid,nodev,noexec");
        let (f, d) = parse_mount_options("rw,defaults").unwrap();
        assert_eq!((f, d.as_str()), (MountFlags::NONE, ""));
        assert_eq!(parse_mount_options("ro").unwrap().0, MountFlags::RDONLY);
        assert_eq!(
            parse_mount_options("ro,rw"),
            Err(MountOptionError::Conflict)
        );
        assert_eq!(
            parse_mount_options("remount"),
            Err(MountOptionError::Remount)
        );
        assert_eq!(
            parse_mount_options("nonodev").unwrap_err().to_string(),
            "mount option `nonodev` is not supported"
        );
        // Filesystem data passes through untouched.
        assert_eq!(
            parse_mount_options("errors=remount-ro").unwrap().1,
            "errors=remount-ro"
        );
    }
}
