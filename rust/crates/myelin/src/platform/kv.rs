//! The key/value store (org.myelin.KV1): the U-Boot environment the bootloader and fwup share.

use std::collections::HashMap;

use myelin_api::kv::{BUS_NAME, Kv1Proxy};

use super::{Error, Platform};

impl Platform {
    fn kv(&self) -> Result<Kv1Proxy<'static>, Error> {
        self.call(BUS_NAME, Kv1Proxy::new(&self.conn))
    }

    /// The value of `name`, or `None` if it is not set.
    pub fn kv_get(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.kv_all()?.remove(name))
    }

    /// Every variable.
    pub fn kv_all(&self) -> Result<HashMap<String, String>, Error> {
        let kv = self.kv()?;
        self.call(BUS_NAME, kv.get_all())
    }

    /// Sets every pair of `vars` in one write: all of them or none.
    pub fn kv_put(&self, vars: &[(&str, &str)]) -> Result<(), Error> {
        let kv = self.kv()?;
        self.call(BUS_NAME, kv.set(vars.iter().copied().collect()))
    }

    /// Removes the variables in one write.
    pub fn kv_unset(&self, names: &[&str]) -> Result<(), Error> {
        let kv = self.kv()?;
        self.call(BUS_NAME, kv.unset(names))
    }
}
