//! mDNS: `<hostname>.local` and the configured services (`_ssh._tcp` by default), answered only
//! on the interfaces that are configured with `mdns` on and have a link, each answer carrying
//! that interface's own addresses. The responder is the `mdns-sd` crate's daemon thread.
//!
//! The host name is published through the services' SRV/A records, so at least one service
//! should be configured (the default has one).

use std::collections::BTreeSet;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use crate::config::{Ipv4Net, MdnsSettings};

/// The running responder.
pub struct Responder {
    daemon: ServiceDaemon,
    enabled: BTreeSet<String>,
}

impl Responder {
    /// Starts the responder with every service registered and no interface enabled yet.
    pub fn new(hostname: &str, settings: &MdnsSettings) -> Result<Responder, mdns_sd::Error> {
        let daemon = ServiceDaemon::new()?;
        daemon.disable_interface(IfKind::All)?;
        let host = format!("{hostname}.local.");
        for s in &settings.services {
            let ty = format!("{}.local.", s.service_type.trim_end_matches('.'));
            let props: Vec<(&str, &str)> = s
                .txt
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let info =
                ServiceInfo::new(&ty, hostname, &host, "", s.port, &props[..])?.enable_addr_auto();
            daemon.register(info)?;
        }
        Ok(Responder {
            daemon,
            enabled: BTreeSet::new(),
        })
    }

    /// Answers on exactly these interfaces from now on.
    pub fn update(&mut self, on: &[(String, Vec<Ipv4Net>)]) {
        let want: BTreeSet<String> = on
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for gone in self.enabled.difference(&want) {
            if let Err(e) = self.daemon.disable_interface(IfKind::Name(gone.clone())) {
                log::warn!("mDNS: {gone}: {e}");
            }
        }
        for new in want.difference(&self.enabled) {
            if let Err(e) = self.daemon.enable_interface(IfKind::Name(new.clone())) {
                log::warn!("mDNS: {new}: {e}");
            }
        }
        self.enabled = want;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}
