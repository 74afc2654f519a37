//! The udhcpc side: the hook udhcpc runs on every lease event, and the lease a hook report
//! describes.
//!
//! udhcpc runs its script (`-s`) with the event as its only argument (`deconfig`, `bound`,
//! `renew`, `leasefail`, `nak`) and the lease in the environment (`interface`, `ip`, `subnet`,
//! `mask`, `router`, `dns`, `domain`, `search`, `broadcast`, `lease`, `serverid`, ...). The
//! script is myelin-net itself, reached through a symlink named
//! [`crate::tech::HOOK_NAME`]: it reports to the socket named in `MYELIN_NET_HOOK_SOCKET` as
//! [`myelin_api::hook`] describes ([`HOOK`]). The daemon ignores reports from a udhcpc it no
//! longer runs (`MYELIN_NET_HOOK_TOKEN` carries the run's token).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use myelin_api::hook::Hook;
pub use myelin_api::hook::Report;

use crate::config::Ipv4Net;
use crate::tech::{HOOK_NAME, HOOK_SOCKET_ENV};

/// Environment variable naming the udhcpc run a report belongs to.
pub const HOOK_TOKEN_ENV: &str = "MYELIN_NET_HOOK_TOKEN";

/// udhcpc variables worth forwarding.
const VARS: &[&str] = &[
    "interface",
    "ip",
    "siaddr",
    "sname",
    "boot_file",
    "subnet",
    "mask",
    "timezone",
    "router",
    "timesvr",
    "namesvr",
    "dns",
    "logsvr",
    "cookiesvr",
    "lprsvr",
    "hostname",
    "bootsize",
    "domain",
    "swapsvr",
    "rootpath",
    "ipttl",
    "mtu",
    "broadcast",
    "ntpsrv",
    "wins",
    "lease",
    "dhcptype",
    "serverid",
    "message",
    "tftp",
    "bootfile",
    "search",
    "staticroutes",
    "opt42",
    HOOK_TOKEN_ENV,
];

/// The udhcpc hook: udhcpc's script, reporting to the daemon.
pub const HOOK: Hook = Hook {
    name: HOOK_NAME,
    socket_env: HOOK_SOCKET_ENV,
    vars: VARS,
};

/// The token of the udhcpc run a report comes from.
pub fn token(report: &Report) -> Option<u64> {
    report.var(HOOK_TOKEN_ENV).and_then(|t| t.parse().ok())
}

/// Why a `bound`/`renew` report describes no usable lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No `ip` variable.
    #[error("no ip")]
    NoAddress,
    /// `ip` is not an IPv4 address.
    #[error("bad ip {0:?}")]
    Address(String),
    /// `subnet` is not a contiguous netmask.
    #[error("bad subnet {0:?}")]
    Subnet(String),
    /// `mask` is not a prefix length.
    #[error("bad mask {0:?}")]
    Mask(String),
}

/// A lease, as the daemon applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Address and prefix.
    pub address: Ipv4Net,
    /// Routers in order of preference.
    pub routers: Vec<Ipv4Addr>,
    /// Name servers in the order given.
    pub dns: Vec<Ipv4Addr>,
    /// Search domains (`search`, else `domain`).
    pub search: Vec<String>,
    /// Lease time in seconds.
    pub lease_secs: Option<u32>,
}

fn addrs(v: Option<&String>) -> Vec<Ipv4Addr> {
    v.map(|s| {
        s.split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

impl Lease {
    /// The lease a `bound`/`renew` report describes.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Lease, LeaseError> {
        let ip = vars.get("ip").ok_or(LeaseError::NoAddress)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| LeaseError::Address(ip.clone()))?;
        let address = if let Some(mask) = vars.get("subnet") {
            mask.parse()
                .ok()
                .and_then(|m| Ipv4Net::from_netmask(ip, m))
                .ok_or_else(|| LeaseError::Subnet(mask.clone()))?
        } else if let Some(p) = vars.get("mask") {
            p.parse()
                .ok()
                .and_then(|p| Ipv4Net::new(ip, p))
                .ok_or_else(|| LeaseError::Mask(p.clone()))?
        } else {
            // RFC 2131 lets a server omit the mask; assume the classful default like udhcpc.
            Ipv4Net::new(ip, 24).ok_or_else(|| LeaseError::Mask("24".into()))?
        };
        let search = match vars.get("search").or(vars.get("domain")) {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        Ok(Lease {
            address,
            routers: addrs(vars.get("router")),
            dns: addrs(vars.get("dns")),
            search,
            lease_secs: vars.get("lease").and_then(|l| l.parse().ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lease_from_udhcpc_env() {
        let l = Lease::from_vars(&vars(&[
            ("interface", "eth0"),
            ("ip", "10.0.2.15"),
            ("subnet", "255.255.255.0"),
            ("router", "10.0.2.2 10.0.2.1"),
            ("dns", "10.0.2.3 1.1.1.1 junk"),
            ("domain", "example.com"),
            ("lease", "86400"),
        ]))
        .unwrap();
        assert_eq!(l.address.to_string(), "10.0.2.15/24");
        assert_eq!(
            l.routers,
            [Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 1)]
        );
        assert_eq!(
            l.dns,
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(l.search, ["example.com"]);
        assert_eq!(l.lease_secs, Some(86400));

        let l = Lease::from_vars(&vars(&[
            ("ip", "192.168.7.9"),
            ("mask", "16"),
            ("search", "a b"),
        ]))
        .unwrap();
        assert_eq!(l.address.to_string(), "192.168.7.9/16");
        assert_eq!(l.search, ["a", "b"]);
        assert!(l.routers.is_empty());

        assert_eq!(
            Lease::from_vars(&vars(&[("ip", "nope")])),
            Err(LeaseError::Address("nope".into()))
        );
        assert_eq!(
            Lease::from_vars(&vars(&[("subnet", "255.0.0.0")])),
            Err(LeaseError::NoAddress)
        );
        assert_eq!(
            Lease::from_vars(&vars(&[("ip", "1.2.3.4"), ("subnet", "255.0.255.0")])),
            Err(LeaseError::Subnet("255.0.255.0".into()))
        );
        assert_eq!(
            Lease::from_vars(&vars(&[("ip", "1.2.3.4"), ("mask", "33")])),
            Err(LeaseError::Mask("33".into()))
        );
    }

    #[test]
    fn token_names_the_udhcpc_run() {
        let report = |t: &str| Report {
            event: "bound".into(),
            vars: vars(&[("interface", "eth0"), (HOOK_TOKEN_ENV, t)]),
        };
        assert_eq!(token(&report("7")), Some(7));
        assert_eq!(token(&report("seven")), None);
    }
}
