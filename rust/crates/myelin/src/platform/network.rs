//! The network (org.myelin.Network1): each interface's connection state and addresses, and
//! waiting for them to change.

use std::time::Duration;

use futures_util::StreamExt;
use myelin_api::net::{BUS_NAME, Interface1Proxy, Network1Proxy, client};

use super::{Error, Platform};

/// One network interface as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`, `wlan0`).
    pub name: String,
    /// `disconnected`, `lan` (a link and an address) or `internet` (the check hosts answer).
    pub connection: String,
    /// Its addresses with prefix length (`10.0.2.15/24`).
    pub addresses: Vec<String>,
}

impl Platform {
    /// The best connection of the device: `disconnected`, `lan` or `internet`.
    pub fn connection(&self) -> Result<String, Error> {
        let net = self.call(BUS_NAME, Network1Proxy::new(&self.conn))?;
        self.call(BUS_NAME, net.connection())
    }

    /// The interfaces myelin-net manages.
    pub fn interfaces(&self) -> Result<Vec<Interface>, Error> {
        let net = self.call(BUS_NAME, Network1Proxy::new(&self.conn))?;
        let names = self.call(BUS_NAME, net.interfaces())?;
        names.iter().map(|n| self.interface(n)).collect()
    }

    fn interface_proxy(&self, name: &str) -> Result<Interface1Proxy<'static>, Error> {
        self.call(BUS_NAME, client::interface(&self.conn, name))
    }

    /// One interface's state.
    pub fn interface(&self, name: &str) -> Result<Interface, Error> {
        let proxy = self.interface_proxy(name)?;
        Ok(Interface {
            name: name.to_string(),
            connection: self.call(BUS_NAME, proxy.connection())?,
            addresses: self.call(BUS_NAME, proxy.addresses())?,
        })
    }

    /// Waits up to `timeout` for the interface's connection state or addresses to differ from
    /// what they are now, and returns the new state; `None` if nothing changed in time.
    pub fn wait_for_change(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<Interface>, Error> {
        let proxy = self.interface_proxy(name)?;
        let changed = self.within(BUS_NAME, timeout, async {
            // Subscribe before reading, so that no change falls between the two.
            let mut connection = proxy.receive_connection_changed().await;
            let mut addresses = proxy.receive_addresses_changed().await;
            let read = || async {
                Ok::<_, zbus::Error>(Interface {
                    name: name.to_string(),
                    connection: proxy.connection().await?,
                    addresses: proxy.addresses().await?,
                })
            };
            let before = read().await?;
            loop {
                tokio::select! {
                    _ = connection.next() => {}
                    _ = addresses.next() => {}
                }
                let now = read().await?;
                if now != before {
                    return Ok(now);
                }
            }
        });
        match changed {
            Ok(Ok(now)) => Ok(Some(now)),
            Ok(Err(e)) => Err(Error::call(BUS_NAME, &e)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
