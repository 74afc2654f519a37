//! The MQTT connection: rumqttc's sync client, its event loop on a thread of its own that
//! reconnects with backoff and reports what matters to the app over a channel.

use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use myelin::log::{info, warn};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// What the connection thread tells the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The broker accepted the connection.
    Connected,
    /// The broker acknowledged a QoS 1 publish.
    Acked,
    /// The connection failed or dropped; the thread retries on its own.
    Disconnected(String),
}

/// First wait before a reconnect; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts the client and its connection thread; notes go to `notes` (the app's wake-up
/// channel, `wrap` turns them into its message type).
pub fn start<T: Send + 'static>(
    client_id: &str,
    host: &str,
    port: u16,
    notes: Sender<T>,
    wrap: fn(Note) -> T,
) -> std::io::Result<Client> {
    let mut options = MqttOptions::new(client_id, host, port);
    // A new session every time: the app, not the client, keeps what is not acknowledged.
    options.set_clean_session(true);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut connection) = Client::new(options, 16);
    let endpoint = format!("{host}:{port}");
    thread::Builder::new().name("mqtt".into()).spawn(move || {
        let mut backoff = BACKOFF_MIN;
        let mut was_connected = true;
        for event in connection.iter() {
            let note = match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!("connected to the MQTT broker at {endpoint}");
                    backoff = BACKOFF_MIN;
                    was_connected = true;
                    Note::Connected
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => Note::Acked,
                Ok(_) => continue,
                Err(e) => {
                    // Logged once per outage, not once per attempt.
                    if was_connected {
                        warn!("MQTT broker at {endpoint}: {e}; buffering, retrying");
                        was_connected = false;
                    }
                    let note = Note::Disconnected(e.to_string());
                    if notes.send(wrap(note)).is_err() {
                        return;
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if notes.send(wrap(note)).is_err() {
                return;
            }
        }
    })?;
    Ok(client)
}

/// Hands one payload to the client without blocking (the client's queue holds 16, and the app
/// has at most one publish in flight).
pub fn publish(client: &Client, topic: &str, payload: String) -> Result<(), String> {
    client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
        .map_err(|e| e.to_string())
}
