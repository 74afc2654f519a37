//! An install: the machine accepts it, a blocking thread streams the source through the
//! applier, and the async side turns its reports into progress signals and the machine's
//! `Finished` event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{BusError, Update};
use crate::fw::{FwEvent, UpgradePolicy};
use crate::machine;
use crate::source::{self, Cancel, Source, Tracked};

/// What the install thread tells the async side.
enum Report {
    /// Percent done, bytes read, total bytes (0: unknown).
    Progress(u8, u64, u64),
    /// Anything else the applier said.
    Fw(FwEvent),
}

impl Update {
    /// Starts an install from an already parsed source.
    pub(super) async fn start_install(
        &self,
        source: Source,
        allow_downgrade: bool,
    ) -> Result<(), BusError> {
        let description = source.describe();
        {
            let inner = self.shared.lock();
            if inner.op_running {
                return Err(BusError::Busy(
                    "another firmware operation is running".into(),
                ));
            }
        }
        let start = self
            .machine_event(machine::Event::Install {
                source: description.clone(),
            })
            .await?;
        if !start {
            return Err(BusError::Failed(
                "internal error: the install machine accepted the install but did not start it"
                    .into(),
            ));
        }
        log::info!("installing {description}");
        let cancel = Cancel::new();
        self.shared.lock().cancel = Some(cancel.clone());
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        let running = self.shared.lock().snapshot.running;
        let shared = self.shared.clone();
        let worker = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            let opened = source::open(source, &shared.config.http).map_err(|e| e.to_string())?;
            let total = opened.length.unwrap_or(0);
            let read = Arc::new(AtomicU64::new(0));
            let mut reader = Tracked::new(opened.reader, read.clone(), cancel);
            let vars = shared.backends.env.read().ok();
            let device = shared.device(vars.as_ref());
            let policy = UpgradePolicy {
                running_version: running.and_then(|slot| {
                    vars.as_ref()?
                        .get(&format!("{}.nerves_fw_version", slot.name()))
                        .cloned()
                }),
                allow_downgrade,
            };
            let mut last = None;
            let mut events = |e: FwEvent| {
                let report = match e {
                    FwEvent::Progress(p) if last == Some(p) => return,
                    FwEvent::Progress(p) => {
                        last = Some(p);
                        Report::Progress(p, read.load(Ordering::Relaxed), total)
                    }
                    other => Report::Fw(other),
                };
                let _ = tx.send(report);
            };
            shared
                .backends
                .fw
                .upgrade(&device, &mut reader, &policy, &mut events)
                .map_err(|e| e.to_string())?;
            Ok(read.load(Ordering::Relaxed))
        });
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                match report {
                    Report::Progress(p, read, total) => {
                        let _ = this.machine_event(machine::Event::Progress(p)).await;
                        if let Some(emitter) = this.shared.emitter.get() {
                            let _ =
                                Update::install_progress(emitter, u32::from(p), read, total).await;
                        }
                    }
                    Report::Fw(FwEvent::Message(m)) => log::info!("{m}"),
                    Report::Fw(FwEvent::Warning(m)) => log::warn!("{m}"),
                    Report::Fw(FwEvent::Progress(_)) => {}
                }
            }
            let result = worker
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")));
            let result = match result {
                Ok(bytes) => {
                    log::info!("install succeeded ({bytes} bytes read)");
                    Ok(())
                }
                Err(e) => {
                    log::warn!("install failed: {e}");
                    Err(e)
                }
            };
            this.shared.lock().cancel = None;
            let _ = this.machine_event(machine::Event::Finished(result)).await;
            this.reload().await;
        });
        Ok(())
    }
}
