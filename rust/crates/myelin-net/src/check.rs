//! Connectivity: the pure check logic (when to check, what a result means) and the probe that
//! runs a check (TCP connects bound to the interface).
//!
//! States per interface: `disconnected` (link down or gone), `lan` (link up, internet not
//! proven), `internet`. Only link down enters `disconnected` and only link up leaves it.
//! After link up the first check comes after `min_interval`. A success means `internet` and
//! the next check after `max_interval`. A failure while `internet` is a strike: below
//! `max_fails` strikes the next check comes sooner (`max_interval / (strikes + 1)`, at least
//! `min_interval`), at `max_fails` the interface drops to `lan`. Failures while `lan` back off
//! exponentially from `min_interval` to `max_interval`. One lost packet therefore never flips
//! the verdict, and a dead uplink is noticed within about a minute.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::config::{ConnectivitySettings, Ipv4Net};

/// An interface's (or the device's) connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// No link.
    Disconnected,
    /// Link up; the internet is not (or no longer) reachable through it.
    Lan,
    /// A check target answered through this interface.
    Internet,
}

impl Connection {
    /// The name used on D-Bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Disconnected => "disconnected",
            Connection::Lan => "lan",
            Connection::Internet => "internet",
        }
    }
}

/// The check state machine of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLogic {
    min: Duration,
    max: Duration,
    max_fails: u32,
    /// Current verdict.
    pub connection: Connection,
    strikes: u32,
    /// When to check next; `None`: no checks (link down).
    pub interval: Option<Duration>,
}

impl CheckLogic {
    /// A disconnected interface with VintageNet-compatible defaults unless configured.
    pub fn new(min: Duration, max: Duration, max_fails: u32) -> Self {
        CheckLogic {
            min,
            max: max.max(min),
            max_fails: max_fails.max(1),
            connection: Connection::Disconnected,
            strikes: 0,
            interval: None,
        }
    }

    /// From the `[connectivity]` settings.
    pub fn from_settings(s: &ConnectivitySettings) -> Self {
        CheckLogic::new(s.min_interval.0, s.max_interval.0, s.max_fails)
    }

    /// The link came up.
    pub fn ifup(&mut self) {
        if self.connection == Connection::Disconnected {
            self.connection = Connection::Lan;
            self.strikes = 0;
            self.interval = Some(self.min);
        }
    }

    /// The link went down.
    pub fn ifdown(&mut self) {
        self.connection = Connection::Disconnected;
        self.strikes = 0;
        self.interval = None;
    }

    /// Something changed that may have fixed connectivity (a new lease, new targets): check
    /// soon again instead of waiting out the backoff. No effect while `internet`.
    pub fn kick(&mut self) {
        if self.connection == Connection::Lan {
            self.interval = Some(self.min);
        }
    }

    /// The check targets changed: a verdict reached with the old ones proves nothing about the
    /// new ones, so `internet` drops to `lan` until a new check succeeds (soon).
    pub fn retarget(&mut self) {
        if self.connection == Connection::Internet {
            self.connection = Connection::Lan;
        }
        self.strikes = 0;
        if self.connection == Connection::Lan {
            self.interval = Some(self.min);
        }
    }

    /// A check succeeded.
    pub fn success(&mut self) {
        if self.connection == Connection::Disconnected {
            return;
        }
        self.connection = Connection::Internet;
        self.strikes = 0;
        self.interval = Some(self.max);
    }

    /// A check failed.
    pub fn failure(&mut self) {
        match self.connection {
            Connection::Disconnected => {}
            Connection::Internet => {
                self.strikes += 1;
                if self.strikes >= self.max_fails {
                    self.connection = Connection::Lan;
                    self.strikes = 0;
                    self.interval = Some(self.min);
                } else {
                    self.interval = Some((self.max / (self.strikes + 1)).max(self.min));
                }
            }
            Connection::Lan => {
                let next = self.interval.unwrap_or(self.min).saturating_mul(2);
                self.interval = Some(next.clamp(self.min, self.max));
            }
        }
    }
}

/// Picks this check's targets: resolved addresses, duplicates removed, the ones inside the
/// interface's own subnets dropped (a gateway answering for itself proves nothing about the
/// internet), at most `count`, starting at `rotation` so successive checks spread the load.
pub fn pick_targets(
    resolved: &[SocketAddr],
    own: &[Ipv4Net],
    check_local: bool,
    count: usize,
    rotation: usize,
) -> Vec<SocketAddr> {
    let mut list: Vec<SocketAddr> = Vec::new();
    for a in resolved {
        let local = match a.ip() {
            IpAddr::V4(ip) => own.iter().any(|n| n.contains(ip)),
            IpAddr::V6(_) => true,
        };
        if (check_local || !local) && !list.contains(a) {
            list.push(*a);
        }
    }
    if list.is_empty() {
        return list;
    }
    let start = rotation % list.len();
    list.rotate_left(start);
    list.truncate(count);
    list
}

/// Resolves check targets (names that do not resolve are dropped).
#[cfg(feature = "daemon")]
pub async fn resolve(hosts: &[crate::config::HostPort]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for h in hosts {
        if let Ok(ip) = h.host.parse::<std::net::Ipv4Addr>() {
            out.push(SocketAddr::from((ip, h.port)));
            continue;
        }
        if let Ok(addrs) = tokio::net::lookup_host((h.host.as_str(), h.port)).await {
            out.extend(addrs.filter(SocketAddr::is_ipv4));
        }
    }
    out
}

/// Tries the targets in order through `ifname` (`SO_BINDTODEVICE`); true at the first that
/// accepts or actively refuses (a refusal still crossed the internet and back).
#[cfg(feature = "daemon")]
pub async fn probe(ifname: &str, targets: &[SocketAddr], timeout: Duration) -> bool {
    for t in targets {
        match connect_via(ifname, *t, timeout).await {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Err(_) => {}
        }
    }
    false
}

#[cfg(feature = "daemon")]
async fn connect_via(ifname: &str, target: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn logic() -> CheckLogic {
        CheckLogic::new(500 * MS, 30_000 * MS, 3)
    }

    #[test]
    fn up_down() {
        let mut l = logic();
        assert_eq!(l.connection, Connection::Disconnected);
        assert_eq!(l.interval, None);
        l.success();
        assert_eq!(
            l.connection,
            Connection::Disconnected,
            "only ifup leaves disconnected"
        );
        l.ifup();
        assert_eq!(
            (l.connection, l.interval),
            (Connection::Lan, Some(500 * MS))
        );
        l.success();
        assert_eq!(
            (l.connection, l.interval),
            (Connection::Internet, Some(30_000 * MS))
        );
        l.ifup();
        assert_eq!(
            l.connection,
            Connection::Internet,
            "a repeated ifup changes nothing"
        );
        l.ifdown();
        assert_eq!((l.connection, l.interval), (Connection::Disconnected, None));
        l.failure();
        assert_eq!((l.connection, l.interval), (Connection::Disconnected, None));
    }

    #[test]
    fn three_strikes_before_demotion() {
        let mut l = logic();
        l.ifup();
        l.success();
        l.failure();
        assert_eq!(
            (l.connection, l.interval),
            (Connection::Internet, Some(15_000 * MS))
        );
        l.failure();
        assert_eq!(
            (l.connection, l.interval),
            (Connection::Internet, Some(10_000 * MS))
        );
        l.success();
        assert_eq!(
            l.interval,
            Some(30_000 * MS),
            "a success clears the strikes"
        );
        l.failure();
        l.failure();
        l.failure();
        assert_eq!(
            (l.connection, l.interval),
            (Connection::Lan, Some(500 * MS))
        );
    }

    #[test]
    fn lan_backs_off_exponentially() {
        let mut l = logic();
        l.ifup();
        let mut seen = Vec::new();
        for _ in 0..8 {
            l.failure();
            seen.push(l.interval.unwrap().as_millis());
        }
        assert_eq!(seen, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(l.connection, Connection::Lan);
        l.kick();
        assert_eq!(l.interval, Some(500 * MS), "a kick restarts the backoff");
        l.success();
        l.kick();
        assert_eq!(
            l.interval,
            Some(30_000 * MS),
            "a kick does not hurry a healthy link"
        );
    }

    #[test]
    fn strike_interval_never_below_min() {
        let mut l = CheckLogic::new(500 * MS, 800 * MS, 5);
        l.ifup();
        l.success();
        for _ in 0..4 {
            l.failure();
            assert!(l.interval.unwrap() >= 500 * MS);
        }
        assert_eq!(l.connection, Connection::Internet);
        l.failure();
        assert_eq!(l.connection, Connection::Lan);
    }

    #[test]
    fn targets_skip_own_subnet_and_dupes() {
        let own = ["10.0.2.15/24".parse().unwrap()];
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let resolved = [
            sa("10.0.2.2:80"),
            sa("1.1.1.1:53"),
            sa("1.1.1.1:53"),
            sa("8.8.8.8:53"),
            sa("9.9.9.9:53"),
            sa("[::1]:53"),
        ];
        assert_eq!(
            pick_targets(&resolved, &own, false, 3, 0),
            [sa("1.1.1.1:53"), sa("8.8.8.8:53"), sa("9.9.9.9:53")]
        );
        assert_eq!(
            pick_targets(&resolved, &own, false, 2, 1),
            [sa("8.8.8.8:53"), sa("9.9.9.9:53")]
        );
        assert_eq!(
            pick_targets(&resolved, &own, true, 1, 0),
            [sa("10.0.2.2:80")]
        );
        assert!(pick_targets(&[sa("10.0.2.2:80")], &own, false, 3, 0).is_empty());
    }
}
