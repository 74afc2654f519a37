//! The app's main loop: read, check, show, buffer, publish, blink, and tell the supervisor.
//!
//! One thread owns every decision; the MQTT connection and the web server run on threads of
//! their own and talk to it through a channel and a shared snapshot. The loop wakes for the
//! next reading, the watchdog, or a note from the MQTT thread, whichever comes first. The
//! watchdog is petted here, where a hang would stop it, never from a helper thread.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use myelin::hw::gpio::{Output, OutputOptions};
use myelin::log::{error, info, warn};
use myelin::notify::Watchdog;
use myelin::platform::Platform;

use crate::config::Config;
use crate::mqtt::{self, Note};
use crate::outbox::Outbox;
use crate::page::Snapshot;
use crate::reading::{self, Reading};
use crate::sensor::Sensor;
use crate::web;

/// How often the firmware and network shown on the page are asked for again.
const PLATFORM_REFRESH: Duration = Duration::from_secs(10);

/// Runs the app until a fatal error: the supervisor restarts it then.
pub fn run(config: Config, mut sensor: Box<dyn Sensor>) -> anyhow::Result<()> {
    info!(
        "reading {} every {:?}; broker {}:{}, topic {}",
        sensor.describe(),
        config.interval,
        config.broker,
        config.port,
        config.topic
    );
    let state = Arc::new(Mutex::new(Snapshot {
        broker: format!("{}:{}", config.broker, config.port),
        ..Snapshot::default()
    }));
    web::start(&config.http, Arc::clone(&state))
        .with_context(|| format!("cannot serve the page on {}", config.http))?;
    let (tx, rx) = mpsc::channel();
    let client = mqtt::start(
        &config.client_id,
        &config.broker,
        config.port,
        tx,
        std::convert::identity,
    )
    .context("cannot start the MQTT thread")?;

    let started = Instant::now();
    let mut watchdog = Watchdog::from_env();
    let mut platform = Platform::connect()
        .map_err(|e| warn!("no platform services (firmware, network): {e}"))
        .ok();
    let mut led = Led::new(config.led.clone());
    let mut outbox = Outbox::new(config.buffer);
    let mut history: Vec<Reading> = Vec::with_capacity(config.history);
    let mut seq = 0u64;
    let mut rejected = 0u64;
    let mut connected = false;
    let mut ready = false;
    let mut validated = false;
    let mut next_reading = Instant::now();
    let mut next_refresh = Instant::now();

    loop {
        let now = Instant::now();
        if now >= next_reading {
            // Late (a slow bus, a stopped process): the next one is an interval from now,
            // not a burst to catch up.
            next_reading = (next_reading + config.interval).max(now);
            let mut sensor_error = None;
            match sensor.read_celsius() {
                Ok(raw) => match reading::check(raw, config.min_celsius, config.max_celsius) {
                    Ok(celsius) => {
                        seq += 1;
                        let r = Reading {
                            seq,
                            celsius,
                            time_ms: unix_ms(),
                        };
                        if history.len() == config.history {
                            history.remove(0);
                        }
                        history.push(r.clone());
                        if let Some(old) = outbox.push(r) {
                            warn!(
                                "buffer full ({} readings): dropped reading {}",
                                config.buffer, old.seq
                            );
                        }
                        led.toggle();
                        // The line `myelinctl status` shows for the service.
                        let text = format!("{celsius:.2} °C, {} buffered", outbox.len());
                        if let Err(e) = myelin::status(&text) {
                            warn!("{e}");
                        }
                        if !ready {
                            info!("first reading: {celsius:.2} °C; ready");
                            if let Err(e) = myelin::ready() {
                                warn!("{e}");
                            }
                            ready = true;
                        }
                    }
                    Err(e) => {
                        rejected += 1;
                        error!("rejected, not published: {e}");
                        sensor_error = Some(e.to_string());
                        led.set(false);
                    }
                },
                Err(e) => {
                    warn!("sensor: {e}");
                    sensor_error = Some(e);
                    led.set(false);
                }
            }
            let mut s = lock(&state);
            s.current = history.last().cloned();
            s.history = history.clone();
            s.rejected = rejected;
            s.sensor_error = sensor_error;
            s.uptime_s = started.elapsed().as_secs();
        }

        if now >= next_refresh {
            next_refresh = now + PLATFORM_REFRESH;
            if platform.is_none() {
                platform = Platform::connect().ok();
            }
            if let Some(p) = &platform {
                refresh_platform(p, &state);
            }
        }

        if let Some(w) = watchdog.as_mut() {
            w.pet_if_due().context("cannot pet the watchdog")?;
        }

        if connected {
            if let Some(r) = outbox.next_to_send() {
                if let Err(e) = mqtt::publish(&client, &config.topic, r.to_json()) {
                    warn!("publish: {e}");
                    outbox.connection_lost();
                }
            }
        }
        {
            let mut s = lock(&state);
            s.broker_connected = connected;
            s.buffered = outbox.len();
            s.published = outbox.acked_count();
            s.dropped = outbox.dropped();
        }

        let mut wait = next_reading.saturating_duration_since(Instant::now());
        if let Some(w) = &watchdog {
            wait = wait.min(w.due_in());
        }
        match rx.recv_timeout(wait) {
            Ok(Note::Connected) => connected = true,
            Ok(Note::Acked) => {
                outbox.acked();
                if !validated {
                    validated = validate(platform.as_ref());
                }
            }
            Ok(Note::Disconnected(_)) => {
                connected = false;
                outbox.connection_lost();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the MQTT thread ended"),
        }
    }
}

/// Commits the running firmware now that the app has done its job end to end (read, published,
/// acknowledged). True once done, or when there is nothing to do it with (no platform).
fn validate(platform: Option<&Platform>) -> bool {
    let Some(p) = platform else {
        return true;
    };
    match p.validate() {
        Ok(()) => {
            info!("first reading published: firmware validated");
            true
        }
        Err(e) => {
            warn!("cannot validate the firmware (retrying at the next publish): {e}");
            false
        }
    }
}

fn refresh_platform(p: &Platform, state: &Mutex<Snapshot>) {
    let firmware = p.firmware().ok().map(|f| (f.version, f.slot, f.trial));
    let network = p.connection().ok();
    let interfaces = p
        .interfaces()
        .map(|list| {
            list.into_iter()
                .map(|i| (i.name, i.connection, i.addresses))
                .collect()
        })
        .unwrap_or_default();
    let mut s = lock(state);
    if firmware.is_some() {
        s.firmware = firmware;
    }
    s.network = network;
    s.interfaces = interfaces;
}

fn lock(state: &Mutex<Snapshot>) -> std::sync::MutexGuard<'_, Snapshot> {
    // The snapshot is plain data: a panic elsewhere leaves nothing half-done worth refusing.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status LED: opened when first needed and again after a failure, so that a line that
/// appears later (a GPIO expander probed late) is picked up; never fatal, a product without
/// its LED still measures.
struct Led {
    id: String,
    line: Option<Output>,
    complained: bool,
}

impl Led {
    fn new(id: String) -> Led {
        Led {
            id,
            line: None,
            complained: false,
        }
    }

    fn output(&mut self) -> Option<&mut Output> {
        if self.line.is_none() {
            let options = OutputOptions::new().consumer("sensor-node");
            match Output::with_options(self.id.as_str(), false, &options) {
                Ok(o) => {
                    info!("status LED on {}", o.line());
                    self.line = Some(o);
                    self.complained = false;
                }
                Err(e) => {
                    if !self.complained {
                        warn!("status LED: {e}; retrying at each reading");
                        self.complained = true;
                    }
                }
            }
        }
        self.line.as_mut()
    }

    fn toggle(&mut self) {
        if let Some(o) = self.output() {
            if let Err(e) = o.toggle() {
                warn!("status LED: {e}");
                self.line = None;
            }
        }
    }

    fn set(&mut self, high: bool) {
        if let Some(o) = self.output() {
            if let Err(e) = o.set(high) {
                warn!("status LED: {e}");
                self.line = None;
            }
        }
    }
}
