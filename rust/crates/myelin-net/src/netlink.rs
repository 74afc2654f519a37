//! The kernel side of networking, through rtnetlink: watching links and addresses, and
//! applying links, addresses, routes and rules.
//!
//! [`NetOps`] is the small trait the manager drives (its real implementation, [`Rtnl`], is what
//! runs on the device and in the namespace tests); [`monitor`] turns the kernel's link and
//! address notifications into [`NetEvent`]s, after a dump of the current state.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use netlink_packet_route::rule::{RuleAction, RuleAttribute};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::{LinkUnspec, MulticastGroup, RouteMessageBuilder};
use tokio::sync::mpsc;

use crate::config::Ipv4Net;
use crate::route::Entry;

/// A kernel or socket error, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct NetError {
    /// What was attempted.
    pub op: String,
    /// Why it failed: the kernel's errno where it gave one.
    #[source]
    pub source: std::io::Error,
}

impl NetError {
    fn new(op: impl Into<String>, e: rtnetlink::Error) -> Self {
        let source = match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => std::io::Error::other(other),
        };
        NetError {
            op: op.into(),
            source,
        }
    }

    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The object already exists (adding twice).
    pub fn exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object does not exist (deleting twice).
    pub fn missing(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)
        )
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// Carrier (cable in, WiFi associated).
    pub lower_up: bool,
    /// Hardware address, `aa:bb:...`.
    pub mac: Option<String>,
    /// A loopback device (never managed).
    pub loopback: bool,
}

/// Something changed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A link appeared or changed.
    Link(LinkState),
    /// A link disappeared.
    LinkGone {
        /// Index.
        index: u32,
        /// Name.
        name: String,
    },
    /// An IPv4 address appeared (`added`) or disappeared.
    Address {
        /// Link index.
        index: u32,
        /// Address.
        net: Ipv4Net,
        /// Added or removed.
        added: bool,
    },
}

/// The changes the manager makes to the kernel.
pub trait NetOps: Send + Sync {
    /// Sets a link administratively up or down.
    fn set_link(&self, index: u32, up: bool) -> BoxFuture<'_, Result<(), NetError>>;
    /// Adds an IPv4 address without the kernel's prefix route (the route calculator adds it).
    fn add_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>>;
    /// Removes an IPv4 address.
    fn del_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>>;
    /// Adds (`add`) or removes a route or rule.
    fn apply(&self, entry: Entry, add: bool) -> BoxFuture<'_, Result<(), NetError>>;
    /// Removes rules and per-interface routes a previous instance may have left behind.
    fn cleanup(&self) -> BoxFuture<'_, Result<(), NetError>>;
}

/// [`NetOps`] on a real rtnetlink socket.
#[derive(Clone)]
pub struct Rtnl {
    handle: rtnetlink::Handle,
}

impl Rtnl {
    /// Opens a socket; must run inside a tokio runtime.
    pub fn new() -> std::io::Result<Rtnl> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Rtnl { handle })
    }
}

fn route_message(e: &Entry) -> Option<netlink_packet_route::route::RouteMessage> {
    let Entry::Route {
        table,
        dst,
        gateway,
        ifindex,
        src,
        metric,
    } = e
    else {
        return None;
    };
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(*table)
        .destination_prefix(dst.addr, dst.prefix)
        .output_interface(*ifindex)
        .priority(*metric)
        .protocol(RouteProtocol::Static);
    if let Some(g) = gateway {
        b = b.gateway(*g);
    } else {
        b = b.scope(RouteScope::Link);
    }
    if let Some(s) = src {
        b = b.pref_source(*s);
    }
    Some(b.build())
}

impl NetOps for Rtnl {
    fn set_link(&self, index: u32, up: bool) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            let b = LinkUnspec::new_with_index(index);
            let msg = if up { b.up() } else { b.down() }.build();
            self.handle.link().set(msg).execute().await.map_err(|e| {
                NetError::new(
                    format!("set link #{index} {}", if up { "up" } else { "down" }),
                    e,
                )
            })
        })
    }

    fn add_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            let mut req = self
                .handle
                .address()
                .add(index, IpAddr::V4(net.addr), net.prefix)
                .replace();
            let msg = req.message_mut();
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
            if net.prefix < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(net.broadcast()));
            }
            req.execute()
                .await
                .map_err(|e| NetError::new(format!("add address {net} to #{index}"), e))
        })
    }

    fn del_address(&self, index: u32, net: Ipv4Net) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            let mut msg = AddressMessage::default();
            msg.header.family = AddressFamily::Inet;
            msg.header.prefix_len = net.prefix;
            msg.header.index = index;
            msg.attributes
                .push(AddressAttribute::Local(IpAddr::V4(net.addr)));
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V4(net.addr)));
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| NetError::new(format!("delete address {net} from #{index}"), e))
        })
    }

    fn apply(&self, entry: Entry, add: bool) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            let op = format!("{} {entry}", if add { "add" } else { "delete" });
            match &entry {
                Entry::Route { .. } => {
                    let Some(msg) = route_message(&entry) else {
                        return Ok(());
                    };
                    if add {
                        self.handle.route().add(msg).execute().await
                    } else {
                        self.handle.route().del(msg).execute().await
                    }
                }
                Entry::Rule {
                    from,
                    table,
                    priority,
                } => {
                    let mut req = self
                        .handle
                        .rule()
                        .add()
                        .v4()
                        .source_prefix(*from, 32)
                        .table_id(*table)
                        .priority(*priority)
                        .action(RuleAction::ToTable);
                    if add {
                        req.execute().await
                    } else {
                        let msg = req.message_mut().clone();
                        self.handle.rule().del(msg).execute().await
                    }
                }
            }
            .map_err(|e| NetError::new(op, e))
        })
    }

    fn cleanup(&self) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            let rules: Vec<_> = self
                .handle
                .rule()
                .get(rtnetlink::IpVersion::V4)
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetError::new("list rules", e))?;
            for r in rules {
                let ours = r
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == crate::route::RULE_PRIORITY));
                if ours {
                    let _ = self.handle.rule().del(r).execute().await;
                }
            }
            let routes: Vec<_> = self
                .handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetError::new("list routes", e))?;
            let ours = crate::route::TABLE_BASE..crate::route::TABLE_BASE + 64;
            for r in routes {
                use netlink_packet_route::route::RouteAttribute;
                let table = r
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(r.header.table));
                let metric = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                });
                // Main-table routes in the calculator's metric range, made by an earlier run.
                let old_main = table == crate::route::MAIN_TABLE
                    && r.header.protocol == RouteProtocol::Static
                    && metric.is_some_and(|m| crate::route::METRIC_RANGE.contains(&m));
                if ours.contains(&table) || old_main {
                    let _ = self.handle.route().del(r).execute().await;
                }
            }
            Ok(())
        })
    }
}

fn link_state(m: &LinkMessage) -> LinkState {
    let mut name = String::new();
    let mut mac = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(a) if !a.is_empty() => {
                mac = Some(
                    a.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            _ => {}
        }
    }
    LinkState {
        index: m.header.index,
        name,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        mac,
        loopback: m.header.flags.contains(LinkFlags::Loopback),
    }
}

fn address_event(m: &AddressMessage, added: bool) -> Option<NetEvent> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
    })?;
    Some(NetEvent::Address {
        index: m.header.index,
        net: Ipv4Net::new(addr, m.header.prefix_len)?,
        added,
    })
}

/// Subscribes to link and IPv4 address changes, then reports the current state (a dump),
/// signals `dumped`, and reports every later change on `tx`. Runs until `tx` is closed or the
/// socket fails.
pub async fn monitor(
    tx: mpsc::UnboundedSender<NetEvent>,
    dumped: tokio::sync::oneshot::Sender<()>,
) -> Result<(), NetError> {
    let (conn, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr])
            .map_err(|source| NetError {
                op: "open rtnetlink".into(),
                source,
            })?;
    tokio::spawn(conn);
    let mut links = handle.link().get().execute();
    while let Some(m) = links
        .try_next()
        .await
        .map_err(|e| NetError::new("list links", e))?
    {
        let _ = tx.send(NetEvent::Link(link_state(&m)));
    }
    let mut addrs = handle.address().get().execute();
    while let Some(m) = addrs
        .try_next()
        .await
        .map_err(|e| NetError::new("list addresses", e))?
    {
        if let Some(ev) = address_event(&m, true) {
            let _ = tx.send(ev);
        }
    }
    let _ = dumped.send(());
    while let Some((msg, _)) = messages.next().await {
        let ev = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                Some(NetEvent::Link(link_state(&m)))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                let s = link_state(&m);
                Some(NetEvent::LinkGone {
                    index: s.index,
                    name: s.name,
                })
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                address_event(&m, true)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                address_event(&m, false)
            }
            _ => None,
        };
        if let Some(ev) = ev
            && tx.send(ev).is_err()
        {
            return Ok(());
        }
    }
    Err(NetError {
        op: "rtnetlink monitor".into(),
        source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the socket closed"),
    })
}
