//! Technologies: pure functions from an interface configuration to a [`Plan`], the plain
//! description of what bringing the interface up takes (files to write, the link state,
//! addresses, a gateway, daemons to run, how to judge connectivity). The interface manager
//! carries a plan out and undoes it; nothing here touches the system, so every technology is
//! golden-tested through [`Plan::render`].

pub mod direct;
pub mod ethernet;
pub mod wifi;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::config::{DaemonSettings, DhcpdConfig, InterfaceConfig, Ipv4Net, Kind};

/// Name the udhcpc hook is reached under: a symlink to the hook program in the run directory
/// (the binary recognizes the name).
pub const HOOK_NAME: &str = "myelin-net-dhcp-hook";
/// Environment variable that tells the hook where the daemon listens.
pub const HOOK_SOCKET_ENV: &str = "MYELIN_NET_HOOK_SOCKET";

/// What a plan needs to know about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Generated files, pid and lease files.
    pub run_dir: PathBuf,
    /// The device's host name.
    pub hostname: String,
    /// argv prefix of udhcpc.
    pub udhcpc: Vec<String>,
    /// argv prefix of udhcpd.
    pub udhcpd: Vec<String>,
    /// argv prefix of wpa_supplicant (empty: someone else runs it).
    pub wpa_supplicant: Vec<String>,
    /// wpa_supplicant's control socket directory.
    pub wpa_ctrl_dir: PathBuf,
}

impl Context {
    /// The context the daemon settings describe.
    pub fn new(settings: &DaemonSettings, hostname: &str) -> Self {
        Context {
            run_dir: settings.run_dir.clone(),
            hostname: hostname.to_owned(),
            udhcpc: settings.udhcpc.clone(),
            udhcpd: settings.udhcpd.clone(),
            wpa_supplicant: settings.wpa_supplicant.clone(),
            wpa_ctrl_dir: settings.wpa_ctrl_dir(),
        }
    }

    /// The udhcpc hook (a symlink the daemon creates).
    pub fn hook_path(&self) -> PathBuf {
        self.run_dir.join(HOOK_NAME)
    }

    /// The socket the hook reports to.
    pub fn hook_socket(&self) -> PathBuf {
        self.run_dir.join("hook.sock")
    }

    fn file(&self, name: String) -> PathBuf {
        self.run_dir.join(name)
    }
}

/// A file the plan writes before anything else, and removes on teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Where.
    pub path: PathBuf,
    /// What.
    pub contents: String,
}

/// When a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// While the interface is configured.
    Always,
    /// Only while the link is up (a DHCP client: no point without a carrier).
    LowerUp,
}

/// A supervised program; its exit takes the interface to `retrying`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    /// Short name for logs.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// When it runs.
    pub when: When,
}

/// How the interface's connection is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Link up is `lan`; the internet check promotes it to `internet`.
    Internet,
    /// Link up is `lan`, and that is as good as it gets (no gateway, AP, gadget link).
    Lan,
}

/// The plain description of an interface's setup (VintageNet's RawConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Interface.
    pub ifname: String,
    /// Technology.
    pub kind: Kind,
    /// Set the link administratively up (false: down).
    pub link_up: bool,
    /// Static addresses.
    pub addresses: Vec<Ipv4Net>,
    /// Static default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Static name servers.
    pub name_servers: Vec<Ipv4Addr>,
    /// Static search domains.
    pub search: Vec<String>,
    /// Files to write first.
    pub files: Vec<FileSpec>,
    /// Programs to run.
    pub daemons: Vec<DaemonSpec>,
    /// wpa_supplicant control socket to talk to.
    pub wpa_ctrl: Option<PathBuf>,
    /// Connectivity judgement.
    pub check: CheckMode,
}

impl Plan {
    fn new(ifname: &str, kind: Kind) -> Plan {
        Plan {
            ifname: ifname.to_owned(),
            kind,
            link_up: true,
            addresses: Vec::new(),
            gateway: None,
            name_servers: Vec::new(),
            search: Vec::new(),
            files: Vec::new(),
            daemons: Vec::new(),
            wpa_ctrl: None,
            check: CheckMode::Lan,
        }
    }

    /// A stable, human-readable rendering, one fact per line (golden tests compare it).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "interface {} ({})", self.ifname, self.kind.as_str());
        let _ = writeln!(s, "link {}", if self.link_up { "up" } else { "down" });
        for a in &self.addresses {
            let _ = writeln!(s, "address {a}");
        }
        if let Some(g) = self.gateway {
            let _ = writeln!(s, "gateway {g}");
        }
        for n in &self.name_servers {
            let _ = writeln!(s, "nameserver {n}");
        }
        if !self.search.is_empty() {
            let _ = writeln!(s, "search {}", self.search.join(" "));
        }
        for f in &self.files {
            let _ = writeln!(s, "file {}", f.path.display());
        }
        for d in &self.daemons {
            let when = match d.when {
                When::Always => "always",
                When::LowerUp => "while lower_up",
            };
            let _ = writeln!(s, "run {} ({when}): {}", d.name, d.argv.join(" "));
            for (k, v) in &d.env {
                let _ = writeln!(s, "  env {k}={v}");
            }
        }
        if let Some(c) = &self.wpa_ctrl {
            let _ = writeln!(s, "wpa_supplicant control {}", c.display());
        }
        let _ = writeln!(
            s,
            "check {}",
            match self.check {
                CheckMode::Internet => "internet",
                CheckMode::Lan => "lan",
            }
        );
        s
    }

    /// Whether a DHCP client runs (the interface's address comes from the hook).
    pub fn uses_dhcp(&self) -> bool {
        self.daemons.iter().any(|d| d.name == "udhcpc")
    }
}

/// The plan for `config` (already normalized) on `ifname`.
pub fn plan(ifname: &str, config: &InterfaceConfig, ctx: &Context) -> Plan {
    match config.kind {
        Kind::Ethernet => ethernet::plan(ifname, config, ctx),
        Kind::Wifi => wifi::plan(ifname, config, ctx),
        Kind::Direct => direct::plan(ifname, config, ctx),
    }
}

/// Adds addressing for `ipv4` (shared by Ethernet and WiFi).
fn add_ipv4(plan: &mut Plan, config: &InterfaceConfig, ctx: &Context) {
    let ipv4 = config.ipv4();
    match ipv4.method {
        crate::config::Method::Dhcp => {
            plan.daemons
                .push(udhcpc(&plan.ifname, ipv4.hostname.as_deref(), ctx));
            plan.check = CheckMode::Internet;
        }
        crate::config::Method::Static => {
            plan.addresses.extend(ipv4.address);
            plan.gateway = ipv4.gateway;
            plan.name_servers = ipv4.name_servers.clone();
            plan.search = ipv4.search.clone();
            plan.check = if ipv4.gateway.is_some() {
                CheckMode::Internet
            } else {
                CheckMode::Lan
            };
            if let (Some(d), Some(addr)) = (&config.dhcpd, ipv4.address) {
                add_udhcpd(plan, addr, d, true, ctx);
            }
        }
        crate::config::Method::Disabled => {}
    }
}

fn udhcpc(ifname: &str, hostname: Option<&str>, ctx: &Context) -> DaemonSpec {
    let mut argv = ctx.udhcpc.clone();
    argv.extend(
        [
            "-f",
            "-i",
            ifname,
            "-s",
            &ctx.hook_path().display().to_string(),
            "-p",
            &ctx.file(format!("udhcpc.{ifname}.pid"))
                .display()
                .to_string(),
            "-x",
            &format!("hostname:{}", hostname.unwrap_or(&ctx.hostname)),
        ]
        .map(str::to_owned),
    );
    DaemonSpec {
        name: "udhcpc".into(),
        argv,
        env: vec![(
            HOOK_SOCKET_ENV.into(),
            ctx.hook_socket().display().to_string(),
        )],
        when: When::LowerUp,
    }
}

/// A busybox udhcpd serving `d` on `addr`'s subnet; `router`: offer the interface as gateway.
fn add_udhcpd(plan: &mut Plan, addr: Ipv4Net, d: &DhcpdConfig, router: bool, ctx: &Context) {
    let ifname = plan.ifname.clone();
    let conf = ctx.file(format!("udhcpd.{ifname}.conf"));
    let leases = u32::from(d.end) - u32::from(d.start) + 1;
    let mut text = String::new();
    let _ = writeln!(text, "# Generated by myelin-net for {ifname}");
    let _ = writeln!(text, "interface {ifname}");
    let _ = writeln!(text, "start {}", d.start);
    let _ = writeln!(text, "end {}", d.end);
    let _ = writeln!(text, "max_leases {leases}");
    let _ = writeln!(
        text,
        "pidfile {}",
        ctx.file(format!("udhcpd.{ifname}.pid")).display()
    );
    let _ = writeln!(
        text,
        "lease_file {}",
        ctx.file(format!("udhcpd.{ifname}.leases")).display()
    );
    let _ = writeln!(text, "option subnet {}", addr.netmask());
    if router {
        let _ = writeln!(text, "option router {}", addr.addr);
    }
    let _ = writeln!(text, "option lease {}", d.lease_time.unwrap_or(86400));
    plan.files.push(FileSpec {
        path: conf.clone(),
        contents: text,
    });
    let mut argv = ctx.udhcpd.clone();
    argv.extend(["-f".to_owned(), conf.display().to_string()]);
    plan.daemons.push(DaemonSpec {
        name: "udhcpd".into(),
        argv,
        env: Vec::new(),
        when: When::Always,
    });
}

#[cfg(test)]
pub(crate) fn test_context() -> Context {
    Context {
        run_dir: "/run/myelin-net".into(),
        hostname: "myelin-1234".into(),
        udhcpc: vec!["udhcpc".into()],
        udhcpd: vec!["udhcpd".into()],
        wpa_supplicant: vec!["wpa_supplicant".into()],
        wpa_ctrl_dir: "/run/myelin-net/wpa_supplicant".into(),
    }
}
