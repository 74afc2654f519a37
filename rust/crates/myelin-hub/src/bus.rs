//! The device side on a Myelin system: the environment from `org.myelin.KV1`, validation,
//! installs and reboots through `org.myelin.Update1`, identify by a configured command.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use myelin_api::kv::Kv1Proxy;
use myelin_api::update::{self as update_api, InstallSource, Update1Proxy};
use tokio::sync::mpsc;

use crate::client::{Device, DeviceError, Installer};
use crate::message::UpdateInfo;
use crate::policy::{self, Decision};

fn kv_error(e: &zbus::Error) -> DeviceError {
    DeviceError::Service {
        service: myelin_api::kv::BUS_NAME,
        reason: update_api::describe(e),
    }
}

fn update_error(e: &zbus::Error) -> DeviceError {
    DeviceError::Service {
        service: update_api::BUS_NAME,
        reason: update_api::describe(e),
    }
}

/// How often a device on trial re-reads whether it was validated when it cannot follow
/// myelin-update's `PropertiesChanged` signals (the subscription failed or the stream ended).
const VALIDATION_POLL: Duration = Duration::from_secs(10);

/// What one `PropertiesChanged` of `org.myelin.Update1` says about `Trial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialChange {
    /// `Trial` now has this value.
    Value(bool),
    /// `Trial` changed but its value was not sent: read it.
    Invalidated,
    /// The signal is about other properties (or another interface).
    Unrelated,
}

/// Interprets a `PropertiesChanged` signal's arguments.
pub fn trial_change(
    interface: &str,
    changed: &HashMap<&str, zbus::Variant<'_>>,
    invalidated: &[&str],
) -> TrialChange {
    if interface != update_api::INTERFACE {
        return TrialChange::Unrelated;
    }
    match changed.get("Trial") {
        Some(zbus::Variant::Bool(b)) => TrialChange::Value(*b),
        Some(_) => TrialChange::Invalidated,
        None if invalidated.contains(&"Trial") => TrialChange::Invalidated,
        None => TrialChange::Unrelated,
    }
}

/// [`Device`] through myelin-kv and myelin-update.
pub struct BusDevice {
    kv: Kv1Proxy<'static>,
    update: Update1Proxy<'static>,
    identify_command: Vec<String>,
    update_command: Vec<String>,
}

impl BusDevice {
    /// Connects both proxies on the system bus (or `address`); the commands are hub.toml's
    /// `identify_command` and `update_command` (empty: none).
    pub async fn connect(
        address: Option<&str>,
        identify_command: Vec<String>,
        update_command: Vec<String>,
    ) -> Result<BusDevice, DeviceError> {
        let update = update_api::connect(address)
            .await
            .map_err(|e| DeviceError::Service {
                service: update_api::BUS_NAME,
                reason: e.to_string(),
            })?;
        let conn = update.inner().connection().clone();
        let kv = Kv1Proxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| kv_error(&e))?;
        Ok(BusDevice {
            kv,
            update,
            identify_command,
            update_command,
        })
    }

    /// The updater proxy, for the [`BusInstaller`].
    pub fn update_proxy(&self) -> Update1Proxy<'static> {
        self.update.clone()
    }
}

impl Device for BusDevice {
    async fn env(&self) -> Result<HashMap<String, String>, DeviceError> {
        self.kv.get_all().await.map_err(|e| kv_error(&e))
    }

    async fn validated(&self) -> bool {
        match self.update.trial().await {
            Ok(trial) => !trial,
            Err(e) => {
                // Unknown counts as not validated: installing over the fallback is the harm.
                log::warn!(
                    "cannot read the firmware's validation: {}",
                    update_api::describe(&e)
                );
                false
            }
        }
    }

    async fn wait_validated(&self) {
        // Subscribe before the one read, so a validation between the two is not missed.
        let inner = self.update.inner();
        let signals = async {
            let props = zbus::fdo::PropertiesProxy::builder(inner.connection())
                .destination(inner.destination().to_owned())
                .path(inner.path().to_owned())
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            props.receive_properties_changed().await
        };
        let mut signals = match signals.await {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(
                    "cannot follow the updater's property changes ({}); polling",
                    update_api::describe(&e)
                );
                None
            }
        };
        if self.validated().await {
            return;
        }
        while let Some(stream) = &mut signals {
            let Some(signal) = stream.next().await else {
                log::warn!("the updater's property changes stopped; polling");
                break;
            };
            let change = match signal.args() {
                Ok(a) => trial_change(
                    a.interface_name().as_str(),
                    a.changed_properties(),
                    a.invalidated_properties(),
                ),
                Err(e) => {
                    log::debug!("PropertiesChanged: {e}");
                    TrialChange::Invalidated
                }
            };
            match change {
                TrialChange::Value(false) => return,
                TrialChange::Value(true) | TrialChange::Unrelated => {}
                TrialChange::Invalidated => {
                    if self.validated().await {
                        return;
                    }
                }
            }
        }
        while !self.validated().await {
            tokio::time::sleep(VALIDATION_POLL).await;
        }
    }

    async fn reboot(&self) -> Result<(), DeviceError> {
        self.update.reboot().await.map_err(|e| update_error(&e))
    }

    async fn identify(&self) {
        let Some((program, args)) = self.identify_command.split_first() else {
            log::info!("identify: no identify_command configured");
            return;
        };
        // Not waited for: a blink may last; tokio reaps the child.
        if let Err(e) = tokio::process::Command::new(program).args(args).spawn() {
            log::warn!("identify: cannot run {program}: {e}");
        }
    }

    async fn update_decision(&self, offer: &UpdateInfo) -> Decision {
        let Some((program, args)) = self.update_command.split_first() else {
            return Decision::Apply;
        };
        let meta = &offer.firmware_meta;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env(
                "MYELIN_UPDATE_VERSION",
                meta.version.as_deref().unwrap_or(""),
            )
            .env("MYELIN_UPDATE_UUID", meta.uuid.as_deref().unwrap_or(""))
            .env(
                "MYELIN_UPDATE_PLATFORM",
                meta.platform.as_deref().unwrap_or(""),
            )
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let answer = match tokio::time::timeout(policy::ASK_TIMEOUT, command.output()).await {
            Err(_) => Err(format!("no answer within {:?}", policy::ASK_TIMEOUT)),
            Ok(Err(e)) => Err(format!("cannot run it: {e}")),
            Ok(Ok(out)) if !out.status.success() => Err(format!("it failed ({})", out.status)),
            Ok(Ok(out)) => policy::parse_answer(&String::from_utf8_lossy(&out.stdout))
                .map_err(|e| e.to_string()),
        };
        answer.unwrap_or_else(|why| {
            log::warn!("update_command {program}: {why}; installing the update anyway");
            Decision::Apply
        })
    }
}

/// [`Installer`] through `org.myelin.Update1`: myelin-update streams the URL, checks the
/// signature against the device's keys and the platform, and writes the inactive slot.
pub struct BusInstaller {
    update: Update1Proxy<'static>,
}

impl BusInstaller {
    /// Installs through this proxy.
    pub fn new(update: Update1Proxy<'static>) -> BusInstaller {
        BusInstaller { update }
    }
}

impl Installer for BusInstaller {
    async fn install(
        &self,
        url: &str,
        progress: mpsc::UnboundedSender<u32>,
    ) -> Result<(), DeviceError> {
        update_api::install(&self.update, InstallSource::Location(url.to_owned()), |p| {
            let _ = progress.send(p);
        })
        .await
        .map_err(|e| match e {
            update_api::ClientError::Failed(why) => DeviceError::Install(why),
            other => DeviceError::Service {
                service: update_api::BUS_NAME,
                reason: other.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_changes() {
        let changed = HashMap::from([("Trial", zbus::Variant::Bool(false))]);
        assert_eq!(
            trial_change(update_api::INTERFACE, &changed, &[]),
            TrialChange::Value(false)
        );
        assert_eq!(
            trial_change("org.myelin.KV1", &changed, &[]),
            TrialChange::Unrelated
        );
        let other = HashMap::from([("Progress", zbus::Variant::U32(5))]);
        assert_eq!(
            trial_change(update_api::INTERFACE, &other, &[]),
            TrialChange::Unrelated
        );
        assert_eq!(
            trial_change(update_api::INTERFACE, &HashMap::new(), &["Trial"]),
            TrialChange::Invalidated
        );
    }
}
