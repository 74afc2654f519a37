//! The running firmware (org.myelin.Update1): version, slot, trial state, and validation.

use myelin_api::update::{self, BUS_NAME, Update1Proxy};

use super::{Error, Platform};

/// What the application needs to know about the firmware it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// The running firmware's version (`meta-version`).
    pub version: String,
    /// The slot it runs from (`a`, `b`).
    pub slot: String,
    /// Whether it is on trial: not validated yet, so the next reset goes back to the other slot.
    pub trial: bool,
    /// The updater's state (`idle`, `installing`, ...).
    pub state: String,
}

impl Platform {
    fn update(&self) -> Result<Update1Proxy<'static>, Error> {
        self.call(
            BUS_NAME,
            Update1Proxy::builder(&self.conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build(),
        )
    }

    /// The running firmware.
    pub fn firmware(&self) -> Result<Firmware, Error> {
        let proxy = self.update()?;
        let status = self
            .within(BUS_NAME, super::CALL_TIMEOUT, update::status(&proxy))?
            .map_err(|e| Error::Call {
                service: BUS_NAME,
                message: e.to_string(),
            })?;
        Ok(Firmware {
            version: status.version,
            slot: status.running_slot,
            trial: status.trial,
            state: status.state,
        })
    }

    /// Commits the running firmware: later boots stay on it. Call it once the application
    /// has proved itself (a first good reading, a first publish). Harmless when already valid.
    pub fn validate(&self) -> Result<(), Error> {
        let proxy = self.update()?;
        self.call(BUS_NAME, proxy.validate()).map(|messages| {
            for m in messages {
                log::info!("{m}");
            }
        })
    }
}
