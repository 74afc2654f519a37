//! The mount table as `/proc/self/mountinfo` gives it (proc(5)).

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount source (device or pseudo name).
    pub source: String,
    /// Mount point.
    pub target: String,
    /// The directory of the filesystem that is mounted there (`/` for a whole filesystem; for a
    /// cgroup2 mount, the cgroup it shows).
    pub root: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mounted read-only.
    pub readonly: bool,
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` (mount order: parents first).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let lf: Vec<&str> = left.split(' ').collect();
            let rf: Vec<&str> = right.split(' ').collect();
            if lf.len() < 6 || rf.len() < 2 {
                return None;
            }
            Some(MountEntry {
                source: unescape_mount(rf[1]),
                target: unescape_mount(lf[4]),
                root: unescape_mount(lf[3]),
                fstype: rf[0].to_string(),
                readonly: lf[5].split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n\
                    30 1 179:4 / /my\\040data ro,relatime - ext4 /dev/mmcblk0p4 ro,errors=remount-ro\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0],
            MountEntry {
                source: "proc".into(),
                target: "/proc".into(),
                root: "/".into(),
                fstype: "proc".into(),
                readonly: false
            }
        );
        assert_eq!(m[1].target, "/my data");
        assert!(m[1].readonly);
        assert_eq!(m[1].source, "/dev/mmcblk0p4");
    }
}
