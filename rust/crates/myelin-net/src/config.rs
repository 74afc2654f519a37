//! The configuration: `/etc/myelin/net.toml` (defaults), and per-interface configs given at run
//! time (D-Bus `Configure`, JSON) and persisted under `/data/myelin/net/`.
//!
//! # The file
//!
//! TOML. Unknown keys and wrongly typed values are errors that name the key
//! (`interface.eth0.ipv4.address: ...`). Durations are strings with a unit (`"500ms"`, `"5s"`,
//! `"2m"`). Every section and key is optional; the values shown are the defaults.
//!
//! ```toml
//! [daemon]
//! run_dir = "/run/myelin-net"          # hook socket, generated files, pid and lease files (tmpfs;
//!                                      # myelin-net's own: made 0700, files 0600)
//! persist_dir = "/data/myelin/net"     # runtime configs that survive a reboot
//! resolv_conf = "/etc/resolv.conf"     # owned by myelin-net (symlinks are followed)
//! hostname = "..."                     # default: the kernel's host name (DHCP, mDNS, /30 links)
//! retry_interval = "30s"               # after a failed bring-up or a crashed daemon
//! name_servers = []                    # always first in resolv.conf, e.g. ["1.1.1.1"]
//! hook_program = "..."                 # the udhcpc hook: default this binary
//! udhcpc = ["udhcpc"]                  # argv prefixes of the programs myelin-net runs
//! udhcpd = ["udhcpd"]                  # (Debian: ["busybox", "udhcpd"])
//! wpa_supplicant = ["wpa_supplicant"]  # [] = use a supplicant someone else runs
//! wpa_ctrl_dir = "/run/myelin-net/wpa_supplicant"  # its control sockets (default: run_dir/...)
//! wpa_request_timeout = "4s"           # control-socket request timeout
//! wpa_keepalive = "60s"                # PING interval; a missing PONG restarts WiFi
//!
//! [connectivity]
//! hosts = ["1.1.1.1:53", "8.8.8.8:53", "9.9.9.9:53", "208.67.222.222:53"]
//! min_interval = "500ms"               # first check after the link comes up
//! max_interval = "30s"                 # between checks while connected
//! max_fails = 3                        # failed checks in a row before internet → lan
//! timeout = "5s"                       # per TCP connect
//! probes = 3                           # targets tried per check
//! check_local = false                  # true: also try targets inside the interface's subnet
//!
//! [mdns]
//! enabled = true                       # <hostname>.local and the services below
//! services = [{ type = "_ssh._tcp", port = 22 }]
//!
//! [interface.eth0]                     # one table per interface, by kernel name
//! type = "ethernet"                    # ethernet | wifi | direct
//! ipv4 = { method = "dhcp" }           # dhcp | static | disabled
//! ```
//!
//! # Interface configurations
//!
//! The same fields, as a TOML table under `[interface.<ifname>]` or as a JSON object for
//! `Configure` (`{"type": "ethernet", "ipv4": {"method": "dhcp"}}`):
//!
//! | field | for | meaning |
//! |---|---|---|
//! | `type` | all | `ethernet`, `wifi` or `direct` (USB gadget and other point-to-point links) |
//! | `ipv4.method` | ethernet, wifi | `dhcp` (default), `static` or `disabled` |
//! | `ipv4.address` | static | `"192.168.1.10/24"` |
//! | `ipv4.gateway` | static | default route; without one the interface is only ever `lan` |
//! | `ipv4.name_servers`, `ipv4.search` | static | resolv.conf entries |
//! | `ipv4.hostname` | dhcp | sent to the DHCP server (default: the host name) |
//! | `wifi.regulatory_domain` | wifi | ISO 3166 country, default `"00"` (world) |
//! | `wifi.networks` | wifi | list, tried by `priority`; empty = only scan |
//! | `wifi.networks[].ssid` | | 1 to 32 bytes |
//! | `wifi.networks[].key_mgmt` | | `none`, `wpa_psk` (default with a key), `wpa_psk_sha256`, `sae` |
//! | `wifi.networks[].passphrase` | | 8 to 63 characters; stored as the derived PSK only |
//! | `wifi.networks[].psk` | | 64 hex digits, instead of a passphrase |
//! | `wifi.networks[].priority`, `scan_ssid`, `frequency` | | as in wpa_supplicant.conf |
//! | `wifi.networks[].mode` | | `infrastructure` (default) or `ap` (needs `ipv4.method = "static"`) |
//! | `dhcpd.start`, `dhcpd.end`, `dhcpd.lease_time` | static wifi/ethernet | serve DHCP (AP mode) |
//! | `direct.hostname` | direct | hashed with the ifname into the /30 (default: the host name) |
//! | `check_hosts` | all | `["host:port", ...]`: this interface's internet check targets |
//! | `mdns` | all | advertise on this interface (default true) |
//!
//! A WiFi passphrase never reaches the disk: it is converted into the 64-digit PSK when the
//! configuration is accepted (for SAE, which needs the password itself, it is kept). Keys
//! ([`Secret`]) are written only to the persisted file and the generated wpa_supplicant.conf,
//! both 0600; clients (D-Bus, `status`, `get-config`) see configurations without them
//! ([`InterfaceConfig::without_secrets`]). Keys belong in the runtime configuration
//! (`configure --psk-file`): `/etc/myelin/net.toml` is readable by every user, and the daemon
//! warns when it finds keys in a file others can read.
//!
//! # Persisted files
//!
//! `<persist_dir>/interfaces/<ifname>.json`: `{"version": 1, "config": {...}}`;
//! `<persist_dir>/connectivity.json`: `{"version": 1, "hosts": [...]}`. Written atomically
//! (temporary file created 0600, fsync, rename, fsync of the directory) in 0700 directories.
//! A persisted file wins over the defaults; one that cannot be read or parsed is logged and
//! ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configuration that was rejected, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field (`interface.eth0.ipv4.address`), or `config` for the whole.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }

    fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() || self.field == "." {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A value that does not parse (an address, a port, a duration, a host name); the message quotes
/// the value, so secrets never go through here (see [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// `a.b.c.d/n` without the `/n`.
    #[error("{0:?} is not an address with a prefix (a.b.c.d/n)")]
    NoPrefix(String),
    /// Not a dotted IPv4 address.
    #[error("{0:?} is not an IPv4 address")]
    Address(String, #[source] std::net::AddrParseError),
    /// A prefix length outside 0 to 32.
    #[error("{0:?} is not a prefix length (0 to 32)")]
    Prefix(String),
    /// `host:port` without the `:port`.
    #[error("{0:?} is not host:port")]
    NoPort(String),
    /// A port outside 1 to 65535.
    #[error("{0:?} is not a TCP port (1 to 65535)")]
    Port(String),
    /// Neither an address nor a DNS name.
    #[error("{0:?} is not an IPv4 address or a host name")]
    Host(String),
    /// A duration without a known unit.
    #[error("{0:?} is not a duration (e.g. \"500ms\", \"5s\", \"2m\")")]
    Duration(String),
    /// Not a host name for DHCP, mDNS or the /30 derivation.
    #[error("{0:?} is not a host name (1-63 letters, digits and '-')")]
    Hostname(String),
}

/// A WiFi key (a passphrase or a PSK). It reaches the persisted configuration and the generated
/// wpa_supplicant.conf (both 0600) and nothing else: `Debug` hides it, the D-Bus service only
/// ever sees [`InterfaceConfig::without_secrets`], and a value of the wrong type is rejected
/// without being quoted (serde's own messages would quote a number given as a passphrase).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The key itself, for the files that must hold it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Accepts a string; every other type is an error that does not quote the value.
        struct Visitor;

        impl Visitor {
            fn refuse<E: serde::de::Error>(what: &str) -> Result<Secret, E> {
                Err(E::custom(format!("must be a string, not {what}")))
            }
        }

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Visitor::refuse("a boolean")
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Visitor::refuse("a number")
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Visitor::refuse("a number")
            }
            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
                Visitor::refuse("a number")
            }
            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
                Visitor::refuse("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Visitor::refuse("a number")
            }
            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
                Visitor::refuse("bytes")
            }
        }
        // `deserialize_any`, not `deserialize_str`: serde_json answers a wrongly typed value
        // given to `deserialize_str` itself, with the value in the message.
        d.deserialize_any(Visitor)
    }
}

/// An IPv4 address with its prefix length, written `a.b.c.d/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    /// The address (host bits may be set: it is an interface address).
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// `addr/prefix`; `None` if the prefix is longer than 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Ipv4Net { addr, prefix })
    }

    /// From an address and a dotted netmask (`255.255.255.0`); `None` if the mask has holes.
    pub fn from_netmask(addr: Ipv4Addr, mask: Ipv4Addr) -> Option<Self> {
        let m = u32::from(mask);
        let prefix = m.leading_ones();
        (m.checked_shl(prefix).unwrap_or(0) == 0).then_some(Ipv4Net {
            addr,
            prefix: prefix as u8,
        })
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The netmask, dotted.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The network (host bits cleared).
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| ValueError::NoPrefix(s.to_owned()))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|e| ValueError::Address(a.to_owned(), e))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| ValueError::Prefix(p.to_owned()))?;
        Ok(Ipv4Net { addr, prefix })
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A connectivity check target, `host:port` (host: an IPv4 address or a DNS name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// Address or name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for HostPort {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| ValueError::NoPort(s.to_owned()))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ValueError::Port(port.to_owned()))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(ValueError::Host(host.to_owned()));
        }
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written with a unit: `"500ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::Duration(s.to_owned());
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        Duration::try_from_secs_f64(secs)
            .map(Span)
            .map_err(|_| bad())
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Paths, programs and timings of the daemon.
    pub daemon: DaemonSettings,
    /// The internet check.
    pub connectivity: ConnectivitySettings,
    /// The mDNS responder.
    pub mdns: MdnsSettings,
    /// Default per-interface configurations.
    pub interface: BTreeMap<String, InterfaceConfig>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Generated files, the hook socket, pid and lease files.
    pub run_dir: PathBuf,
    /// Persisted runtime configurations.
    pub persist_dir: PathBuf,
    /// The resolver configuration myelin-net owns.
    pub resolv_conf: PathBuf,
    /// Host name for DHCP, mDNS and /30 derivation; default: the kernel's.
    pub hostname: Option<String>,
    /// Wait before bringing an interface up again after a failure.
    pub retry_interval: Span,
    /// Name servers listed before any interface's.
    pub name_servers: Vec<Ipv4Addr>,
    /// The udhcpc hook program; default: this executable.
    pub hook_program: Option<PathBuf>,
    /// argv prefix for udhcpc.
    pub udhcpc: Vec<String>,
    /// argv prefix for udhcpd.
    pub udhcpd: Vec<String>,
    /// argv prefix for wpa_supplicant; empty: do not run one, use its control socket only.
    pub wpa_supplicant: Vec<String>,
    /// wpa_supplicant control socket directory; default `<run_dir>/wpa_supplicant`.
    pub wpa_ctrl_dir: Option<PathBuf>,
    /// Control-socket request timeout.
    pub wpa_request_timeout: Span,
    /// Control-socket PING interval.
    pub wpa_keepalive: Span,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            run_dir: "/run/myelin-net".into(),
            persist_dir: "/data/myelin/net".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            hostname: None,
            retry_interval: Span(Duration::from_secs(30)),
            name_servers: Vec::new(),
            hook_program: None,
            udhcpc: vec!["udhcpc".into()],
            udhcpd: vec!["udhcpd".into()],
            wpa_supplicant: vec!["wpa_supplicant".into()],
            wpa_ctrl_dir: None,
            wpa_request_timeout: Span(Duration::from_secs(4)),
            wpa_keepalive: Span(Duration::from_secs(60)),
        }
    }
}

impl DaemonSettings {
    /// Where wpa_supplicant puts its control sockets.
    pub fn wpa_ctrl_dir(&self) -> PathBuf {
        self.wpa_ctrl_dir
            .clone()
            .unwrap_or_else(|| self.run_dir.join("wpa_supplicant"))
    }
}

/// The public DNS servers on TCP 53: reachable from most networks, and a refused connection
/// still proves the path.
pub fn default_check_hosts() -> Vec<HostPort> {
    ["1.1.1.1", "8.8.8.8", "9.9.9.9", "208.67.222.222"]
        .into_iter()
        .map(|h| HostPort {
            host: h.into(),
            port: 53,
        })
        .collect()
}

/// `[connectivity]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectivitySettings {
    /// Check targets, used by interfaces without their own `check_hosts`.
    pub hosts: Vec<HostPort>,
    /// First check after link up, and the floor of every interval.
    pub min_interval: Span,
    /// Interval while connected, and the ceiling of the backoff.
    pub max_interval: Span,
    /// Failed checks in a row before internet is demoted to lan.
    pub max_fails: u32,
    /// Per connect attempt.
    pub timeout: Span,
    /// Targets tried per check.
    pub probes: usize,
    /// Also try targets inside the interface's own subnet.
    pub check_local: bool,
}

impl Default for ConnectivitySettings {
    fn default() -> Self {
        ConnectivitySettings {
            hosts: default_check_hosts(),
            min_interval: Span(Duration::from_millis(500)),
            max_interval: Span(Duration::from_secs(30)),
            max_fails: 3,
            timeout: Span(Duration::from_secs(5)),
            probes: 3,
            check_local: false,
        }
    }
}

/// `[mdns]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MdnsSettings {
    /// Whether the responder runs at all.
    pub enabled: bool,
    /// Services advertised besides the host name.
    pub services: Vec<MdnsService>,
}

impl Default for MdnsSettings {
    fn default() -> Self {
        MdnsSettings {
            enabled: true,
            services: vec![MdnsService {
                service_type: "_ssh._tcp".into(),
                port: 22,
                txt: BTreeMap::new(),
            }],
        }
    }
}

/// One advertised service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdnsService {
    /// `_name._tcp` or `_name._udp`.
    #[serde(rename = "type")]
    pub service_type: String,
    /// Port number.
    pub port: u16,
    /// TXT record entries.
    #[serde(default)]
    pub txt: BTreeMap<String, String>,
}

/// Interface technologies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Wired Ethernet.
    Ethernet,
    /// WiFi through wpa_supplicant.
    Wifi,
    /// A point-to-point link (USB gadget): /30 with a DHCP server for the peer.
    Direct,
}

impl Kind {
    /// The name used in configs and on D-Bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ethernet => "ethernet",
            Kind::Wifi => "wifi",
            Kind::Direct => "direct",
        }
    }
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// udhcpc.
    #[default]
    Dhcp,
    /// A fixed address.
    Static,
    /// No address; the link is still brought up.
    Disabled,
}

/// `ipv4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Config {
    /// dhcp, static or disabled.
    #[serde(default)]
    pub method: Method,
    /// Static address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Net>,
    /// Static default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Static name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<Ipv4Addr>,
    /// Static search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Host name sent by the DHCP client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// `wifi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiConfig {
    /// ISO 3166-1 country code, or `00`.
    #[serde(default = "default_regdom")]
    pub regulatory_domain: String,
    /// Networks to join (or the one to offer, in AP mode).
    #[serde(default)]
    pub networks: Vec<WifiNetwork>,
}

fn default_regdom() -> String {
    "00".into()
}

impl Default for WifiConfig {
    fn default() -> Self {
        WifiConfig {
            regulatory_domain: default_regdom(),
            networks: Vec::new(),
        }
    }
}

/// Key management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMgmt {
    /// Open network.
    None,
    /// WPA/WPA2 personal.
    WpaPsk,
    /// WPA2 personal with SHA-256.
    WpaPskSha256,
    /// WPA3 personal.
    Sae,
}

/// WiFi network mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WifiMode {
    /// Join an access point.
    #[default]
    Infrastructure,
    /// Be the access point.
    Ap,
}

/// One `wifi.networks` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WifiNetwork {
    /// Network name.
    pub ssid: String,
    /// Key management; default `wpa_psk` with a key, `none` without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_mgmt: Option<KeyMgmt>,
    /// Passphrase (replaced by `psk` when the config is accepted, except for SAE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<Secret>,
    /// 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<Secret>,
    /// Higher is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Probe for a hidden SSID.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scan_ssid: bool,
    /// MHz; AP mode default 2412.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<u32>,
    /// infrastructure or ap.
    #[serde(default)]
    pub mode: WifiMode,
}

/// `dhcpd`: a DHCP server on a static interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpdConfig {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
    /// Lease time in seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<u32>,
}

/// `direct`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    /// Hashed with the ifname into the /30; default the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// One interface's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Technology.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Addressing (ethernet, wifi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Config>,
    /// WiFi networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<WifiConfig>,
    /// DHCP server (static ethernet/wifi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcpd: Option<DhcpdConfig>,
    /// Point-to-point link settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectConfig>,
    /// Internet check targets for this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_hosts: Option<Vec<HostPort>>,
    /// Advertise mDNS here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
}

impl InterfaceConfig {
    /// The `ipv4` section, or its default.
    pub fn ipv4(&self) -> Ipv4Config {
        self.ipv4.clone().unwrap_or_default()
    }

    /// Whether mDNS is advertised here.
    pub fn mdns(&self) -> bool {
        self.mdns.unwrap_or(true)
    }

    /// Whether this config only differs from `other` in settings that apply without taking
    /// the interface down (check targets, mDNS).
    pub fn same_link_setup(&self, other: &InterfaceConfig) -> bool {
        let strip = |c: &InterfaceConfig| InterfaceConfig {
            check_hosts: None,
            mdns: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }

    /// This configuration without its WiFi keys: what is shown to clients (D-Bus replies,
    /// properties and signals, `myelin-net status`), whoever asks. `key_mgmt` still says
    /// which networks have one.
    pub fn without_secrets(&self) -> InterfaceConfig {
        let mut c = self.clone();
        for n in c.wifi.iter_mut().flat_map(|w| w.networks.iter_mut()) {
            n.passphrase = None;
            n.psk = None;
        }
        c
    }

    /// Whether any WiFi network of this configuration carries a key.
    pub fn has_secrets(&self) -> bool {
        self.wifi
            .iter()
            .flat_map(|w| w.networks.iter())
            .any(|n| n.passphrase.is_some() || n.psk.is_some())
    }

    /// Whether this is an access point configuration.
    pub fn is_ap(&self) -> bool {
        self.wifi
            .as_ref()
            .is_some_and(|w| w.networks.iter().any(|n| n.mode == WifiMode::Ap))
    }

    /// Checks every field and returns the config as it will run: passphrases replaced by PSKs,
    /// key management made explicit. `ifname` is checked too.
    pub fn normalize(mut self, ifname: &str) -> Result<InterfaceConfig, ConfigError> {
        check_ifname(ifname)?;
        let ipv4 = self.ipv4.clone().unwrap_or_default();
        match self.kind {
            Kind::Direct => {
                if self.ipv4.is_some() {
                    return Err(ConfigError::new(
                        "ipv4",
                        "not allowed for type \"direct\" (its /30 is derived from the host name)",
                    ));
                }
                if self.dhcpd.is_some() {
                    return Err(ConfigError::new(
                        "dhcpd",
                        "not allowed for type \"direct\" (it always serves its peer)",
                    ));
                }
                if let Some(h) = self.direct.as_ref().and_then(|d| d.hostname.as_ref()) {
                    check_hostname(h)
                        .map_err(|e| ConfigError::new("direct.hostname", e.to_string()))?;
                }
            }
            Kind::Ethernet | Kind::Wifi => {
                if self.direct.is_some() {
                    return Err(ConfigError::new(
                        "direct",
                        format!(
                            "only allowed for type \"direct\", not {:?}",
                            self.kind.as_str()
                        ),
                    ));
                }
                validate_ipv4(&ipv4)?;
            }
        }
        if self.kind != Kind::Wifi && self.wifi.is_some() {
            return Err(ConfigError::new(
                "wifi",
                format!(
                    "only allowed for type \"wifi\", not {:?}",
                    self.kind.as_str()
                ),
            ));
        }
        if let Some(d) = &self.dhcpd {
            let Some(addr) = ipv4.address.filter(|_| ipv4.method == Method::Static) else {
                return Err(ConfigError::new(
                    "dhcpd",
                    "needs ipv4.method = \"static\" with an address",
                ));
            };
            for (name, ip) in [("dhcpd.start", d.start), ("dhcpd.end", d.end)] {
                if !addr.contains(ip) {
                    return Err(ConfigError::new(
                        name,
                        format!("{ip} is outside the interface's subnet {}", addr.network()),
                    ));
                }
            }
            if u32::from(d.start) > u32::from(d.end) {
                return Err(ConfigError::new("dhcpd.end", "comes before dhcpd.start"));
            }
        }
        if self.kind == Kind::Wifi {
            let mut wifi = self.wifi.take().unwrap_or_default();
            validate_wifi(&mut wifi, &ipv4)?;
            if self.dhcpd.is_some() && !wifi.networks.iter().any(|n| n.mode == WifiMode::Ap) {
                return Err(ConfigError::new(
                    "dhcpd",
                    "only allowed with an access point network (mode = \"ap\")",
                ));
            }
            self.wifi = Some(wifi);
        }
        if let Some(hosts) = &self.check_hosts
            && hosts.is_empty()
        {
            return Err(ConfigError::new(
                "check_hosts",
                "an empty list could never find the internet; leave it out for the defaults",
            ));
        }
        Ok(self)
    }
}

/// Linux interface names: 1 to 15 bytes, no `/`, `:`, whitespace or NUL.
pub fn check_ifname(ifname: &str) -> Result<(), ConfigError> {
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname != "."
        && ifname != ".."
        && ifname
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "ifname",
            format!("{ifname:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"),
        ))
    }
}

fn check_hostname(h: &str) -> Result<(), ValueError> {
    let ok =
        !h.is_empty() && h.len() <= 63 && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ValueError::Hostname(h.to_owned()))
    }
}

fn validate_ipv4(ipv4: &Ipv4Config) -> Result<(), ConfigError> {
    let only_static = |field: &str, set: bool| {
        if set && ipv4.method != Method::Static {
            Err(ConfigError::new(
                format!("ipv4.{field}"),
                format!(
                    "only allowed with method = \"static\", not {:?}",
                    method_name(ipv4.method)
                ),
            ))
        } else {
            Ok(())
        }
    };
    only_static("address", ipv4.address.is_some())?;
    only_static("gateway", ipv4.gateway.is_some())?;
    only_static("name_servers", !ipv4.name_servers.is_empty())?;
    only_static("search", !ipv4.search.is_empty())?;
    if ipv4.hostname.is_some() && ipv4.method != Method::Dhcp {
        return Err(ConfigError::new(
            "ipv4.hostname",
            "only allowed with method = \"dhcp\"",
        ));
    }
    if let Some(h) = &ipv4.hostname {
        check_hostname(h).map_err(|e| ConfigError::new("ipv4.hostname", e.to_string()))?;
    }
    if ipv4.method == Method::Static {
        let addr = ipv4
            .address
            .ok_or_else(|| ConfigError::new("ipv4.address", "required with method = \"static\""))?;
        if addr.prefix == 0 || addr.prefix > 31 && addr.prefix != 32 {
            return Err(ConfigError::new(
                "ipv4.address",
                format!("prefix /{} leaves no room for the interface", addr.prefix),
            ));
        }
        let a = addr.addr;
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
            return Err(ConfigError::new(
                "ipv4.address",
                format!("{a} cannot be an interface address"),
            ));
        }
        if addr.prefix < 31 && (a == addr.network().addr || a == addr.broadcast()) {
            return Err(ConfigError::new(
                "ipv4.address",
                format!(
                    "{a} is the network or broadcast address of {}",
                    addr.network()
                ),
            ));
        }
        if let Some(gw) = ipv4.gateway
            && (!addr.contains(gw) || gw == a)
        {
            return Err(ConfigError::new(
                "ipv4.gateway",
                format!("{gw} is not another host in {}", addr.network()),
            ));
        }
        for (i, d) in ipv4.search.iter().enumerate() {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::new(
                    format!("ipv4.search[{i}]"),
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
    }
    Ok(())
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Dhcp => "dhcp",
        Method::Static => "static",
        Method::Disabled => "disabled",
    }
}

fn validate_wifi(wifi: &mut WifiConfig, ipv4: &Ipv4Config) -> Result<(), ConfigError> {
    let rd = &wifi.regulatory_domain;
    if !(rd.len() == 2
        && rd
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    {
        return Err(ConfigError::new(
            "wifi.regulatory_domain",
            format!("{rd:?} is not a country code (two capital letters, or \"00\")"),
        ));
    }
    let aps = wifi
        .networks
        .iter()
        .filter(|n| n.mode == WifiMode::Ap)
        .count();
    if aps > 0 && wifi.networks.len() > 1 {
        return Err(ConfigError::new(
            "wifi.networks",
            "an access point network must be the only network",
        ));
    }
    if aps > 0 && ipv4.method != Method::Static {
        return Err(ConfigError::new(
            "ipv4.method",
            "an access point needs method = \"static\"",
        ));
    }
    for (i, n) in wifi.networks.iter_mut().enumerate() {
        let at = |f: &str| format!("wifi.networks[{i}].{f}");
        if n.ssid.is_empty() || n.ssid.len() > 32 {
            return Err(ConfigError::new(
                at("ssid"),
                format!("{} bytes; an SSID has 1 to 32", n.ssid.len()),
            ));
        }
        if n.passphrase.is_some() && n.psk.is_some() {
            return Err(ConfigError::new(
                at("psk"),
                "give either passphrase or psk, not both",
            ));
        }
        if n.passphrase.as_ref().map(Secret::expose).is_some_and(|p| {
            !(8..=63).contains(&p.len()) || !p.bytes().all(|b| (32..127).contains(&b))
        }) {
            return Err(ConfigError::new(
                at("passphrase"),
                "must be 8 to 63 printable ASCII characters",
            ));
        }
        if let Some(p) = n.psk.as_ref().map(Secret::expose)
            && !(p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::new(at("psk"), "must be 64 hex digits"));
        }
        let has_key = n.passphrase.is_some() || n.psk.is_some();
        let km = n.key_mgmt.unwrap_or(if has_key {
            KeyMgmt::WpaPsk
        } else {
            KeyMgmt::None
        });
        match km {
            KeyMgmt::None if has_key => {
                return Err(ConfigError::new(
                    at("key_mgmt"),
                    "\"none\" (open network) takes no passphrase or psk",
                ));
            }
            KeyMgmt::WpaPsk | KeyMgmt::WpaPskSha256 if !has_key => {
                return Err(ConfigError::new(
                    at("passphrase"),
                    "required for a WPA network (or give psk)",
                ));
            }
            KeyMgmt::Sae if n.passphrase.is_none() => {
                return Err(ConfigError::new(
                    at("passphrase"),
                    "required for SAE (WPA3), which cannot use a precomputed psk",
                ));
            }
            _ => {}
        }
        if let Some(f) = n.frequency
            && !(2412..=7125).contains(&f)
        {
            return Err(ConfigError::new(
                at("frequency"),
                format!("{f} MHz is not a WiFi channel frequency"),
            ));
        }
        n.key_mgmt = Some(km);
        if matches!(km, KeyMgmt::WpaPsk | KeyMgmt::WpaPskSha256)
            && let Some(pass) = n.passphrase.take()
        {
            n.psk = Some(Secret(crate::tech::wifi::passphrase_to_psk(
                &n.ssid,
                pass.expose(),
            )));
        }
    }
    Ok(())
}

impl NetConfig {
    /// Parses `/etc/myelin/net.toml` text; every interface is validated and normalized.
    pub fn parse(text: &str) -> Result<NetConfig, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("config", e.to_string().trim().to_owned()))?;
        let mut cfg: NetConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(path, e.into_inner().message().trim().to_owned())
        })?;
        let ifaces = std::mem::take(&mut cfg.interface);
        for (name, ic) in ifaces {
            let ic = ic
                .normalize(&name)
                .map_err(|e| e.within(&format!("interface.{name}")))?;
            cfg.interface.insert(name, ic);
        }
        if cfg.connectivity.max_fails == 0 {
            return Err(ConfigError::new(
                "connectivity.max_fails",
                "must be at least 1",
            ));
        }
        if cfg.connectivity.probes == 0 {
            return Err(ConfigError::new(
                "connectivity.probes",
                "must be at least 1",
            ));
        }
        if cfg.connectivity.min_interval > cfg.connectivity.max_interval {
            return Err(ConfigError::new(
                "connectivity.min_interval",
                "is longer than connectivity.max_interval",
            ));
        }
        for (name, p) in [
            ("daemon.udhcpc", &cfg.daemon.udhcpc),
            ("daemon.udhcpd", &cfg.daemon.udhcpd),
        ] {
            if p.is_empty() {
                return Err(ConfigError::new(name, "needs at least the program"));
            }
        }
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &std::path::Path) -> Result<NetConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config", format!("{}: {e}", path.display())))?;
        NetConfig::parse(&text).map_err(|mut e| {
            e.message = format!("{} (in {})", e.message, path.display());
            e
        })
    }
}

/// Parses an interface configuration given as JSON (D-Bus `Configure`), validated and
/// normalized.
pub fn parse_interface_json(ifname: &str, json: &str) -> Result<InterfaceConfig, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let ic: InterfaceConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path == "?" {
            "config".to_owned()
        } else {
            path
        };
        ConfigError::new(field, strip_position(&inner.to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::new("config", strip_position(&e.to_string())))?;
    ic.normalize(ifname)
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        NetConfig::parse(text).expect_err("must be rejected")
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = NetConfig::parse("").unwrap();
        assert_eq!(c, NetConfig::default());
        assert_eq!(c.connectivity.min_interval.0, Duration::from_millis(500));
        assert_eq!(c.connectivity.max_fails, 3);
        assert_eq!(c.connectivity.hosts[0].to_string(), "1.1.1.1:53");
    }

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../../board/common/rootfs_overlay/etc/myelin/net.toml");
        let c = NetConfig::parse(text).unwrap();
        assert_eq!(c.interface["eth0"].kind, Kind::Ethernet);
        assert_eq!(c.interface["eth0"].ipv4().method, Method::Dhcp);
        assert_eq!(c.interface["usb0"].kind, Kind::Direct);
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(
            "[interface.eth0]\ntype = \"ethernet\"\nipv4 = { method = \"static\", address = \"10.0.0.300/24\" }\n",
        );
        assert_eq!(e.field, "interface.eth0.ipv4.address");
        assert!(e.message.contains("not an IPv4 address"), "{e}");

        let e = err("[interface.eth0]\ntype = \"ethernet\"\nipv4 = { method = \"static\" }\n");
        assert_eq!(e.field, "interface.eth0.ipv4.address");
        assert!(e.message.contains("required"), "{e}");

        let e = err("[interface.eth0]\ntype = \"token-ring\"\n");
        assert_eq!(e.field, "interface.eth0.type");

        let e = err("[interface.eth0]\ntype = \"ethernet\"\nspeed = 100\n");
        assert_eq!(e.field, "interface.eth0.speed");
        assert!(e.message.contains("speed"), "{e}");

        let e = err("[connectivity]\nmin_interval = \"fast\"\n");
        assert_eq!(e.field, "connectivity.min_interval");

        let e = err("[connectivity]\nhosts = [\"1.1.1.1\"]\n");
        assert_eq!(e.field, "connectivity.hosts[0]");

        let e = err("[connectivity]\nmax_fails = 0\n");
        assert_eq!(e.field, "connectivity.max_fails");

        let e = err(
            "[interface.eth0]\ntype = \"ethernet\"\nipv4 = { method = \"static\", address = \"10.0.0.2/24\", gateway = \"10.1.0.1\" }\n",
        );
        assert_eq!(e.field, "interface.eth0.ipv4.gateway");

        let e = err("[interface.usb0]\ntype = \"direct\"\nipv4 = { method = \"dhcp\" }\n");
        assert_eq!(e.field, "interface.usb0.ipv4");

        let e = err("[interface.\"a/b\"]\ntype = \"ethernet\"\n");
        assert_eq!(e.field, "interface.a/b.ifname");
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_interface_json(
            "wlan0",
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"x","passphrase":"short"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "wifi.networks[0].passphrase");

        let e = parse_interface_json("eth0", r#"{"type":"ethernet","ipv4":{"method":"dhcpp"}}"#)
            .unwrap_err();
        assert_eq!(e.field, "ipv4.method");

        let e = parse_interface_json("eth0", r#"{"type":"ethernet","ipv4":{"method":"dhcp"}"#)
            .unwrap_err();
        assert_eq!(e.field, "config");

        let e = parse_interface_json("eth0", r#"{"ipv4":{"method":"dhcp"}}"#).unwrap_err();
        assert_eq!(e.field, "config");
        assert!(e.message.contains("type"), "{e}");

        let e = parse_interface_json("eth0", r#"{"type":"ethernet","check_hosts":["a:0"]}"#)
            .unwrap_err();
        assert_eq!(e.field, "check_hosts[0]");

        let e = parse_interface_json(
            "wlan0",
            r#"{"type":"wifi","ipv4":{"method":"dhcp"},"wifi":{"networks":[{"ssid":"ap","passphrase":"password1","mode":"ap"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "ipv4.method");

        let e = parse_interface_json(
            "eth0",
            r#"{"type":"ethernet","ipv4":{"method":"static","address":"192.168.0.1/24"},"dhcpd":{"start":"192.168.1.10","end":"192.168.1.20"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "dhcpd.start");
    }

    #[test]
    fn passphrase_becomes_psk() {
        let c = parse_interface_json(
            "wlan0",
            r#"{"type":"wifi","wifi":{"networks":[{"ssid":"IEEE","passphrase":"password"}]}}"#,
        )
        .unwrap();
        let n = &c.wifi.as_ref().unwrap().networks[0];
        assert_eq!(n.passphrase, None);
        assert_eq!(n.key_mgmt, Some(KeyMgmt::WpaPsk));
        // IEEE 802.11i-2004 Annex H.4 test vector.
        assert_eq!(
            n.psk.as_ref().map(Secret::expose),
            Some("f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e")
        );
        assert!(
            !format!("{c:?}").contains("f42c6fc5"),
            "Debug shows the key"
        );
        let public = c.without_secrets();
        assert!(!public.has_secrets() && c.has_secrets());
        let json = serde_json::to_string(&public).unwrap();
        assert!(
            !json.contains("\"psk\"") && json.contains("\"wpa_psk\""),
            "{json}"
        );
        // Normalizing again keeps it (the persisted form is a fixed point).
        let again = c.clone().normalize("wlan0").unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn wrongly_typed_keys_are_not_quoted() {
        for (json, field) in [
            (
                r#"{"type":"wifi","wifi":{"networks":[{"ssid":"x","passphrase":73219054}]}}"#,
                "wifi.networks[0].passphrase",
            ),
            (
                r#"{"type":"wifi","wifi":{"networks":[{"ssid":"x","psk":73219054.5}]}}"#,
                "wifi.networks[0].psk",
            ),
        ] {
            let e = parse_interface_json("wlan0", json).unwrap_err();
            assert_eq!(e.field, field);
            assert!(!e.to_string().contains("73219054"), "{e}");
        }
        let e = err(
            "[interface.wlan0]\ntype = \"wifi\"\nwifi = { networks = [{ ssid = \"x\", passphrase = 73219054 }] }\n",
        );
        assert!(!e.to_string().contains("73219054"), "{e}");
    }

    #[test]
    fn netmask_and_subnet_math() {
        let n = Ipv4Net::from_netmask([10, 0, 2, 15].into(), [255, 255, 255, 0].into()).unwrap();
        assert_eq!(n.to_string(), "10.0.2.15/24");
        assert_eq!(n.network().to_string(), "10.0.2.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 2, 255));
        assert!(n.contains([10, 0, 2, 2].into()));
        assert!(!n.contains([10, 0, 3, 2].into()));
        assert!(Ipv4Net::from_netmask([10, 0, 0, 1].into(), [255, 0, 255, 0].into()).is_none());
        assert_eq!(
            Ipv4Net::from_netmask([1, 2, 3, 4].into(), [0, 0, 0, 0].into())
                .unwrap()
                .prefix,
            0
        );
    }

    #[test]
    fn spans() {
        assert_eq!(
            "500ms".parse::<Span>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "1.5s".parse::<Span>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("2m".parse::<Span>().unwrap().0, Duration::from_secs(120));
        assert!("5".parse::<Span>().is_err());
        assert!("s".parse::<Span>().is_err());
    }

    #[test]
    fn link_setup_comparison_ignores_check_hosts() {
        let a = parse_interface_json("eth0", r#"{"type":"ethernet"}"#).unwrap();
        let b = parse_interface_json(
            "eth0",
            r#"{"type":"ethernet","check_hosts":["10.0.2.2:80"],"mdns":false}"#,
        )
        .unwrap();
        assert!(a.same_link_setup(&b));
        let c = parse_interface_json(
            "eth0",
            r#"{"type":"ethernet","ipv4":{"method":"disabled"}}"#,
        )
        .unwrap();
        assert!(!a.same_link_setup(&c));
    }
}
