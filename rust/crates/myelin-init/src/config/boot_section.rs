//! `[boot]`: PID 1's boot duties, with its extra mounts (`[[boot.mount]]`) and the data
//! partition (`[boot.data]`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::values::{de_abs_path, de_hostname, de_mount_options};

/// A resource limit: soft and hard values, `None` = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RLimit {
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

impl<'de> Deserialize<'de> for RLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"unlimited\" or \"soft:hard\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RLimit, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("negative limit"))?;
                Ok(RLimit {
                    soft: Some(v),
                    hard: Some(v),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RLimit, E> {
                Ok(RLimit {
                    soft: Some(v),
                    hard: Some(v),
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RLimit, E> {
                let one = |s: &str| -> Result<Option<u64>, E> {
                    match s {
                        "unlimited" | "infinity" => Ok(None),
                        n => n.parse().map(Some).map_err(|_| {
                            E::custom(format!(
                                "invalid limit \"{n}\": expected a number or \"unlimited\""
                            ))
                        }),
                    }
                };
                match v.split_once(':') {
                    Some((s, h)) => Ok(RLimit {
                        soft: one(s)?,
                        hard: one(h)?,
                    }),
                    None => {
                        let x = one(v)?;
                        Ok(RLimit { soft: x, hard: x })
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Resource names accepted in `[boot] rlimits`.
pub const RLIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn de_rlimits<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, RLimit>, D::Error> {
    let m = BTreeMap::<String, RLimit>::deserialize(d)?;
    for k in m.keys() {
        if !RLIMIT_NAMES.contains(&k.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown resource limit `{k}`, expected one of {}",
                RLIMIT_NAMES.join(", ")
            )));
        }
    }
    Ok(m)
}

/// Where the serial number (the hostname's unique id) may come from, in the configured order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialSource {
    /// U-Boot environment keys (`uboot_serial_keys`).
    UbootEnv,
    /// `/sys/firmware/devicetree/base/serial-number`.
    Devicetree,
    /// `Serial` line of `/proc/cpuinfo`.
    Cpuinfo,
    /// `/sys/class/dmi/id/product_serial`, then `product_uuid`.
    Dmi,
    /// The first non-loopback MAC address.
    Mac,
}

/// A mount performed at boot.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Device or pseudo source (`tmpfs`, `/dev/rootdisk0p1`).
    pub source: String,
    /// Mount point (created if missing).
    #[serde(deserialize_with = "de_abs_path")]
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// mount(8)-style options: flag names and filesystem data, comma separated.
    #[serde(default, deserialize_with = "de_mount_options")]
    pub options: String,
}

/// Filesystem of the data partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFs {
    /// ext4, formatted with `mkfs.ext4`, checked with `e2fsck`.
    #[default]
    Ext4,
    /// f2fs, formatted with `mkfs.f2fs`, checked with `fsck.f2fs`.
    F2fs,
}

impl DataFs {
    /// The filesystem type name for mount(2).
    pub fn as_str(self) -> &'static str {
        match self {
            DataFs::Ext4 => "ext4",
            DataFs::F2fs => "f2fs",
        }
    }
}

/// The writable data partition.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Block device, e.g. `/dev/rootdisk0p4`.
    #[serde(deserialize_with = "de_abs_path")]
    pub device: String,
    /// Mount point.
    #[serde(default = "default_data_mountpoint", deserialize_with = "de_abs_path")]
    pub mountpoint: String,
    /// `ext4` or `f2fs`.
    #[serde(default)]
    pub fstype: DataFs,
    /// mount(8)-style options.
    #[serde(default, deserialize_with = "de_mount_options")]
    pub options: String,
    /// Format the partition when it holds no filesystem at all (a fresh image's first boot, or
    /// after a factory reset wiped its start). A partition holding anything else is never
    /// formatted.
    #[serde(default = "yes")]
    pub format: bool,
    /// Take device, fstype and mountpoint from the U-Boot environment when it has them
    /// (`<active slot>.nerves_fw_application_part0_devpath`, `_fstype`, `_target`, as fwup
    /// configurations write them); the values above are the fallback.
    #[serde(default)]
    pub from_uboot_env: bool,
}

fn default_data_mountpoint() -> String {
    "/data".into()
}
fn yes() -> bool {
    true
}

/// `[boot]`: the boot duties.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// Master switch: `false` skips every duty (containers, tests).
    pub enabled: bool,
    /// /proc, /sys, /dev, /dev/pts, /dev/shm, and cgroup2 on /sys/fs/cgroup.
    pub pseudo_fs: bool,
    /// /tmp and /run.
    pub tmpfs: bool,
    /// `/dev/rootdisk0[pN]` links.
    pub rootdisk_links: bool,
    /// Console device for stdin/out/err (`ttyS0` or `/dev/ttyS0`).
    pub console: Option<String>,
    /// Resource limits inherited by every service.
    #[serde(deserialize_with = "de_rlimits")]
    pub rlimits: BTreeMap<String, RLimit>,
    /// Keep the clock at or after the build time.
    pub clock_floor: bool,
    /// File holding the build time in seconds (written by the image build); also a floor.
    pub build_time_file: Option<PathBuf>,
    /// Bring the loopback interface up.
    pub loopback: bool,
    /// Hostname pattern; absent: /etc/hostname if it exists.
    #[serde(deserialize_with = "de_hostname")]
    pub hostname: Option<String>,
    /// Serial number sources, in order.
    pub serial_sources: Vec<SerialSource>,
    /// U-Boot environment keys holding the serial number.
    pub uboot_serial_keys: Vec<String>,
    /// File whose mtime is a clock floor, touched at shutdown.
    pub time_file: Option<PathBuf>,
    /// RNG seed file.
    pub rng_seed: Option<PathBuf>,
    /// Directory that receives the previous boot's pstore records at every boot.
    pub pstore_archive: Option<PathBuf>,
    /// Extra mounts.
    pub mount: Vec<MountSpec>,
    /// The data partition.
    pub data: Option<DataSpec>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            enabled: true,
            pseudo_fs: true,
            tmpfs: true,
            rootdisk_links: true,
            console: None,
            rlimits: BTreeMap::new(),
            clock_floor: true,
            build_time_file: Some(PathBuf::from("/etc/myelin/build-time")),
            loopback: true,
            hostname: None,
            serial_sources: vec![
                SerialSource::UbootEnv,
                SerialSource::Devicetree,
                SerialSource::Cpuinfo,
                SerialSource::Dmi,
                SerialSource::Mac,
            ],
            uboot_serial_keys: vec!["nerves_serial_number".into(), "serial_number".into()],
            time_file: None,
            rng_seed: None,
            pstore_archive: None,
            mount: Vec::new(),
            data: None,
        }
    }
}
