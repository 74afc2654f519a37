//! Kernel uevents: the netlink message format and the `uevent` files of sysfs.
//!
//! # The netlink message (`NETLINK_KOBJECT_UEVENT`, multicast group 1)
//!
//! One datagram per event, a sequence of NUL-terminated strings:
//!
//! ```text
//! ACTION@DEVPATH\0ACTION=add\0DEVPATH=/devices/...\0SUBSYSTEM=virtio\0MODALIAS=...\0SEQNUM=123\0
//! ```
//!
//! The header names the action and the device path (relative to `/sys`); every other string is
//! `KEY=VALUE`. The kernel always sends `ACTION`, `DEVPATH`, `SUBSYSTEM` and `SEQNUM` and, for
//! a device that has them, `DEVNAME` (relative to `/dev`), `DEVTYPE`, `DRIVER`, `MODALIAS`,
//! `MAJOR`/`MINOR` and the subsystem's own keys (`PRODUCT`, `INTERFACE`, ...). When the header
//! and the keys disagree on the action or the path, the message is rejected: a consumer must
//! never have to choose between them. Messages udev re-broadcasts (group 2) start with
//! `libudev\0` and a binary header; this parser refuses them by name, since this daemon listens
//! to the kernel only.
//!
//! # The `uevent` file of a sysfs device
//!
//! `KEY=VALUE` lines without `ACTION`, `DEVPATH` and `SUBSYSTEM` (the path is where the file is,
//! the subsystem is the `subsystem` link next to it). [`Uevent::from_sysfs`] builds the `add`
//! event the kernel sent when the device appeared, which is what coldplug replays.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The device appeared.
    Add,
    /// The device went away.
    Remove,
    /// Something about it changed (media, a link's state, a synthetic trigger).
    Change,
    /// It was renamed or re-parented.
    Move,
    /// A CPU or memory block came online.
    Online,
    /// A CPU or memory block went offline.
    Offline,
    /// A driver bound to it.
    Bind,
    /// Its driver let go of it.
    Unbind,
}

impl Action {
    /// The kernel's name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
            Action::Online => "online",
            Action::Offline => "offline",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Action, ParseError> {
        Ok(match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            "move" => Action::Move,
            "online" => Action::Online,
            "offline" => Action::Offline,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            _ => return Err(ParseError::UnknownAction(s.to_string())),
        })
    }
}

/// Why a uevent could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing at all.
    #[error("empty uevent")]
    Empty,
    /// A udev re-broadcast, not a kernel message.
    #[error("a libudev message (group 2), not a kernel uevent")]
    Libudev,
    /// The first string is not `ACTION@DEVPATH`.
    #[error("uevent header {0:?} is not ACTION@DEVPATH")]
    Header(String),
    /// The action is none the kernel sends.
    #[error("unknown uevent action {0:?}")]
    UnknownAction(String),
    /// The device path is empty or not absolute.
    #[error("uevent DEVPATH {0:?} is not an absolute path under /sys")]
    Devpath(String),
    /// The message does not end with a NUL.
    #[error("uevent is truncated at byte {0}: the last string has no NUL")]
    Truncated(usize),
    /// A string is not UTF-8.
    #[error("uevent string at byte {0} is not UTF-8")]
    Utf8(usize),
    /// A string after the header has no `=`.
    #[error("uevent field at byte {offset} ({text:?}) is not KEY=VALUE")]
    Field {
        /// Where the string starts in the message.
        offset: usize,
        /// The string.
        text: String,
    },
    /// A key appears twice.
    #[error("uevent key {0} appears twice")]
    Duplicate(String),
    /// The header and a key disagree.
    #[error("uevent header says {key} {header:?} but the {key} key says {value:?}")]
    Mismatch {
        /// `ACTION` or `DEVPATH`.
        key: &'static str,
        /// What the header says.
        header: String,
        /// What the key says.
        value: String,
    },
}

/// One event of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// What happened.
    pub action: Action,
    /// The device's path under `/sys` (`/devices/pci0000:00/0000:00:02.0/virtio1`).
    pub devpath: String,
    /// Every `KEY=VALUE`, `ACTION` and `DEVPATH` included.
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    /// Parses one netlink datagram of the kernel.
    pub fn parse(msg: &[u8]) -> Result<Uevent, ParseError> {
        if msg.is_empty() {
            return Err(ParseError::Empty);
        }
        if msg.starts_with(b"libudev\0") {
            return Err(ParseError::Libudev);
        }
        let mut strings = Vec::new();
        let mut start = 0;
        while start < msg.len() {
            let end = msg[start..]
                .iter()
                .position(|&b| b == 0)
                .map(|n| start + n)
                .ok_or(ParseError::Truncated(start))?;
            let s = std::str::from_utf8(&msg[start..end]).map_err(|_| ParseError::Utf8(start))?;
            strings.push((start, s));
            start = end + 1;
        }
        let (_, header) = strings[0];
        let (action, devpath) = header
            .split_once('@')
            .ok_or_else(|| ParseError::Header(header.to_string()))?;
        let action: Action = action.parse()?;
        check_devpath(devpath)?;
        let mut vars = BTreeMap::new();
        for &(offset, s) in &strings[1..] {
            // Some kernels pad with an empty string; it carries nothing.
            if s.is_empty() {
                continue;
            }
            let (k, v) = s.split_once('=').ok_or_else(|| ParseError::Field {
                offset,
                text: s.to_string(),
            })?;
            if k.is_empty() {
                return Err(ParseError::Field {
                    offset,
                    text: s.to_string(),
                });
            }
            if vars.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ParseError::Duplicate(k.to_string()));
            }
        }
        for (key, header) in [("ACTION", action.as_str()), ("DEVPATH", devpath)] {
            match vars.get(key) {
                Some(v) if v != header => {
                    return Err(ParseError::Mismatch {
                        key,
                        header: header.to_string(),
                        value: v.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    vars.insert(key.to_string(), header.to_string());
                }
            }
        }
        Ok(Uevent {
            action,
            devpath: devpath.to_string(),
            vars,
        })
    }

    /// The `add` event of a device from its sysfs `uevent` file's text, its path under `/sys`
    /// and its subsystem (the name of its `subsystem` link, if it has one).
    pub fn from_sysfs(
        devpath: &str,
        subsystem: Option<&str>,
        text: &str,
    ) -> Result<Uevent, ParseError> {
        check_devpath(devpath)?;
        let mut vars = BTreeMap::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let s = line.trim_end_matches('\n');
            if !s.is_empty() {
                let (k, v) = s.split_once('=').ok_or_else(|| ParseError::Field {
                    offset,
                    text: s.to_string(),
                })?;
                if k.is_empty() {
                    return Err(ParseError::Field {
                        offset,
                        text: s.to_string(),
                    });
                }
                if vars.insert(k.to_string(), v.to_string()).is_some() {
                    return Err(ParseError::Duplicate(k.to_string()));
                }
            }
            offset += line.len();
        }
        vars.insert("ACTION".into(), Action::Add.as_str().into());
        vars.insert("DEVPATH".into(), devpath.into());
        if let Some(s) = subsystem {
            vars.insert("SUBSYSTEM".into(), s.into());
        }
        Ok(Uevent {
            action: Action::Add,
            devpath: devpath.to_string(),
            vars,
        })
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// `SUBSYSTEM` (`usb`, `tty`, `virtio`, ...), empty if the kernel sent none.
    pub fn subsystem(&self) -> &str {
        self.get("SUBSYSTEM").unwrap_or("")
    }

    /// `DEVNAME`, the node under `/dev` (`ttyUSB0`, `bus/usb/001/002`), empty if none.
    pub fn devname(&self) -> &str {
        self.get("DEVNAME").unwrap_or("")
    }

    /// `MODALIAS`, what modprobe resolves to a driver, empty if none.
    pub fn modalias(&self) -> &str {
        self.get("MODALIAS").unwrap_or("")
    }

    /// `SEQNUM`, the kernel's event counter, if present and a number.
    pub fn seqnum(&self) -> Option<u64> {
        self.get("SEQNUM").and_then(|s| s.parse().ok())
    }
}

fn check_devpath(devpath: &str) -> Result<(), ParseError> {
    if devpath.len() < 2 || !devpath.starts_with('/') || devpath.split('/').any(|c| c == "..") {
        return Err(ParseError::Devpath(devpath.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real message, as `udevadm monitor --kernel --property` showed it for QEMU's
    /// virtio-serial-pci hot-added on q35.
    const VIRTIO_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio2\0\
ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio2\0SUBSYSTEM=virtio\0\
MODALIAS=virtio:d00000003v00001AF4\0SEQNUM=1234\0";

    #[test]
    fn parses_a_kernel_message() {
        let e = Uevent::parse(VIRTIO_ADD).expect("valid");
        assert_eq!(e.action, Action::Add);
        assert_eq!(
            e.devpath,
            "/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio2"
        );
        assert_eq!(e.subsystem(), "virtio");
        assert_eq!(e.modalias(), "virtio:d00000003v00001AF4");
        assert_eq!(e.devname(), "");
        assert_eq!(e.seqnum(), Some(1234));
        assert_eq!(e.vars.len(), 5);
    }

    #[test]
    fn parses_a_usb_serial_tty() {
        let msg = b"add@/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0\0\
ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0\0\
SUBSYSTEM=tty\0MAJOR=188\0MINOR=0\0DEVNAME=ttyUSB0\0SEQNUM=2001\0";
        let e = Uevent::parse(msg).expect("valid");
        assert_eq!(e.subsystem(), "tty");
        assert_eq!(e.devname(), "ttyUSB0");
        assert_eq!(e.get("MAJOR"), Some("188"));
        assert_eq!(e.modalias(), "");
    }

    #[test]
    fn the_header_fills_missing_keys() {
        let e = Uevent::parse(b"remove@/devices/virtual/net/lo\0SUBSYSTEM=net\0").expect("valid");
        assert_eq!(e.action, Action::Remove);
        assert_eq!(e.get("ACTION"), Some("remove"));
        assert_eq!(e.get("DEVPATH"), Some("/devices/virtual/net/lo"));
    }

    #[test]
    fn malformed_messages_are_refused_by_name() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"libudev\0\xfe\xed", ParseError::Libudev),
            (
                b"add/devices/x\0",
                ParseError::Header("add/devices/x".into()),
            ),
            (
                b"plug@/devices/x\0",
                ParseError::UnknownAction("plug".into()),
            ),
            (b"add@devices/x\0", ParseError::Devpath("devices/x".into())),
            (b"add@/\0", ParseError::Devpath("/".into())),
            (
                b"add@/devices/../etc\0",
                ParseError::Devpath("/devices/../etc".into()),
            ),
            (b"add@/devices/x\0SUBSYSTEM=usb", ParseError::Truncated(15)),
            (b"add@/devices/x\0A=\xff\0", ParseError::Utf8(15)),
            (
                b"add@/devices/x\0SUBSYSTEM=usb\0garbage\0",
                ParseError::Field {
                    offset: 29,
                    text: "garbage".into(),
                },
            ),
            (
                b"add@/devices/x\0=v\0",
                ParseError::Field {
                    offset: 15,
                    text: "=v".into(),
                },
            ),
            (
                b"add@/devices/x\0A=1\0A=2\0",
                ParseError::Duplicate("A".into()),
            ),
            (
                b"add@/devices/x\0ACTION=remove\0",
                ParseError::Mismatch {
                    key: "ACTION",
                    header: "add".into(),
                    value: "remove".into(),
                },
            ),
            (
                b"add@/devices/x\0DEVPATH=/devices/y\0",
                ParseError::Mismatch {
                    key: "DEVPATH",
                    header: "/devices/x".into(),
                    value: "/devices/y".into(),
                },
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(
                Uevent::parse(msg).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = Uevent::parse(b"add@/devices/x\0SUBSYSTEM=usb\0garbage\0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "uevent field at byte 29 (\"garbage\") is not KEY=VALUE"
        );
    }

    #[test]
    fn every_action_round_trips() {
        for a in [
            Action::Add,
            Action::Remove,
            Action::Change,
            Action::Move,
            Action::Online,
            Action::Offline,
            Action::Bind,
            Action::Unbind,
        ] {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
    }

    #[test]
    fn a_sysfs_file_becomes_an_add_event() {
        let text = "MAJOR=4\nMINOR=65\nDEVNAME=ttyS1\n";
        let e = Uevent::from_sysfs("/devices/platform/serial8250/tty/ttyS1", Some("tty"), text)
            .expect("valid");
        assert_eq!(e.action, Action::Add);
        assert_eq!(e.subsystem(), "tty");
        assert_eq!(e.devname(), "ttyS1");
        assert_eq!(e.get("ACTION"), Some("add"));
        assert_eq!(
            e.get("DEVPATH"),
            Some("/devices/platform/serial8250/tty/ttyS1")
        );
    }

    #[test]
    fn a_bad_sysfs_line_is_named_with_its_offset() {
        let err = Uevent::from_sysfs("/devices/x", None, "A=1\nnonsense\n").unwrap_err();
        assert_eq!(
            err,
            ParseError::Field {
                offset: 4,
                text: "nonsense".into()
            }
        );
    }
}
