//! A NervesHub stand-in for the tests (the real server, Elixir, cannot be built here), written
//! from the protocol as nerves_hub_web implements it:
//!
//! - TLS with a test CA generated at test time; the client certificate is requested but
//!   optional, as NervesHub's device endpoint does (shared-secret devices present none);
//! - `/socket/websocket` needs a verified device certificate (the identity is its CN);
//!   `/device-socket/websocket` needs `x-nh-*` headers that verify against a known key with
//!   the server's max age of 90 s ([`myelin_hub::auth::verify`], the server side of NH1), and
//!   a refusal is HTTP 401 with the server's `Date`;
//! - Phoenix v2 frames: `phx_join` on any topic and `heartbeat` on `phoenix` are answered with
//!   `phx_reply` ok (the `extensions` join's response lists every extension the device offered,
//!   as a server attaching all of them does); other events are recorded, not answered (the
//!   channels' `handle_in` returns `noreply`); the test pushes events (on any joined topic),
//!   closes a topic (`phx_close`, as a channel process that stops) or sends raw text to the
//!   latest socket.
//!
//! Everything the server sees is sent to the test as an [`Event`], so tests wait for events;
//! each is stamped with when the stand-in saw it ([`StandIn::next_at`]), for the benchmark.
//!
//! `benches/hub.rs` and `examples/standin.rs` (the system test's server) include this module as
//! it is (a `#[path]` module), so the benchmark and the QEMU scenario drive the same stand-in the
//! tests do. The benchmark issues a certificate per simulated device
//! ([`Pki::device`]), restarts the stand-in on the same port ([`StandIn::start_with_listener`])
//! and times reconnects from [`Options::report_accepts`].

// tungstenite's handshake callback fixes the (large) error type.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use myelin_hub::frame::Frame;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// The certificates of a test.
pub struct Pki {
    /// The CA that signs the server and the good device (PEM).
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    /// The device certificate the server trusts (PEM), CN `device-1`.
    pub device_cert_pem: String,
    /// Its key (PEM).
    pub device_key_pem: String,
    /// A device certificate from a CA the server does not know, CN `rogue`.
    pub rogue_cert_pem: String,
    /// Its key.
    pub rogue_key_pem: String,
    /// The CA's signer, for more device certificates.
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, rcgen::Certificate) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (Issuer::new(params, key), cert)
}

fn leaf(
    names: Vec<String>,
    cn: &str,
    issuer: &Issuer<'static, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.signed_by(&key, issuer).unwrap(), key)
}

impl Pki {
    /// Fresh keys and certificates.
    pub fn generate() -> Pki {
        let (issuer, ca_cert) = ca("NervesHub stand-in CA");
        // `localhost` too: the benchmark's daemon looks the server up by name, as a device does;
        // 10.0.2.2 is the host as a QEMU guest on the user network reaches it (examples/standin).
        let names = vec!["127.0.0.1".into(), "localhost".into(), "10.0.2.2".into()];
        let (server, server_key) = leaf(names, "hub", &issuer);
        let (device, device_key) = leaf(vec![], "device-1", &issuer);
        let (rogue_issuer, _) = ca("somebody else");
        let (rogue, rogue_key) = leaf(vec![], "rogue", &rogue_issuer);
        Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_chain: vec![server.der().clone(), ca_cert.der().clone()],
            server_key: server_key.serialize_der(),
            device_cert_pem: device.pem(),
            device_key_pem: device_key.serialize_pem(),
            rogue_cert_pem: rogue.pem(),
            rogue_key_pem: rogue_key.serialize_pem(),
            issuer,
        }
    }

    /// Another device certificate the server trusts, with this CN: (certificate, key), PEM.
    pub fn device(&self, cn: &str) -> (String, String) {
        let (cert, key) = leaf(vec![], cn, &self.issuer);
        (cert.pem(), key.serialize_pem())
    }
}

/// What the stand-in saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A TCP connection was accepted (only with [`Options::report_accepts`]).
    Accepted {
        /// Connection number (1, 2, ...).
        conn: usize,
    },
    /// A TLS handshake failed (a bad client certificate).
    TlsFailed(String),
    /// The upgrade was refused (HTTP 401/404) and why.
    Refused(String),
    /// A device socket opened; `identity` is the certificate CN or the shared-secret identifier.
    Connected {
        /// Connection number (1, 2, ...).
        conn: usize,
        /// Who.
        identity: String,
    },
    /// A frame from the device.
    Frame {
        /// Connection number.
        conn: usize,
        /// The frame.
        frame: Frame,
    },
    /// A text message that is not a frame (the device must never send one).
    Garbage(String),
    /// The socket ended.
    Closed {
        /// Connection number.
        conn: usize,
    },
}

/// What the test asks the stand-in to send on the latest socket.
#[derive(Debug)]
pub enum Command {
    /// `[join_ref, null, "device", event, payload]`.
    Push(String, Value),
    /// `[join_ref, null, topic, event, payload]`.
    PushTo(String, String, Value),
    /// `[join_ref, join_ref, topic, "phx_close", {}]`: the server ends that channel.
    CloseTopic(String),
    /// Any text.
    Raw(String),
}

/// Server behaviour.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Shared-secret keys and their secrets.
    pub secrets: HashMap<String, String>,
    /// The server's clock minus the real one, in seconds.
    pub clock_offset: i64,
    /// Report every accepted TCP connection as [`Event::Accepted`] (off in the tests, which
    /// expect their first event to be about TLS or the upgrade).
    pub report_accepts: bool,
}

/// The sending side of [`StandIn::events`]: stamps each event as it is sent, so a reader
/// that runs late does not move it.
#[derive(Clone)]
struct Events(mpsc::UnboundedSender<(Instant, Event)>);

impl Events {
    /// Sends `event`, stamped now; `Err` once the test stopped listening.
    fn send(&self, event: Event) -> Result<(), ()> {
        self.0.send((Instant::now(), event)).map_err(drop)
    }
}

/// A running stand-in.
pub struct StandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw, and when.
    pub events: mpsc::UnboundedReceiver<(Instant, Event)>,
    latest: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>>,
}

fn server_now(offset: i64) -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (real.as_millis() as i64 + offset * 1000) as u64
}

/// RFC 9110 IMF-fixdate.
fn http_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = myelin_hub::health::civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The CN of a DER certificate: the last commonName attribute is the subject's (the issuer
/// comes first in the TBSCertificate). Enough for certificates rcgen made.
fn common_name(der: &[u8]) -> Option<String> {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(oid.len()).rposition(|w| w == oid)? + oid.len();
    let len = usize::from(*der.get(at + 1)?);
    String::from_utf8(der.get(at + 2..at + 2 + len)?.to_vec()).ok()
}

impl StandIn {
    /// Starts a stand-in on a free loopback port.
    pub async fn start(pki: &Pki, options: Options) -> StandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        StandIn::start_with_listener(pki, options, listener).await
    }

    /// Starts a stand-in on a socket that already listens (a port chosen by the caller: a
    /// restart on the same port).
    pub async fn start_with_listener(
        pki: &Pki,
        options: Options,
        listener: std::net::TcpListener,
    ) -> StandIn {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                pki.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let events_tx = Events(events_tx);
        let latest: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>> = Arc::default();
        let latest_server = latest.clone();
        tokio::spawn(async move {
            let mut conn = 0;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                conn += 1;
                if options.report_accepts {
                    let _ = events_tx.send(Event::Accepted { conn });
                }
                let (acceptor, events, options, latest) = (
                    acceptor.clone(),
                    events_tx.clone(),
                    options.clone(),
                    latest_server.clone(),
                );
                tokio::spawn(serve(conn, tcp, acceptor, events, options, latest));
            }
        });
        StandIn {
            addr,
            events,
            latest,
        }
    }

    /// The URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("wss://{}{path}", self.addr)
    }

    /// Sends to the latest socket.
    pub fn send(&self, command: Command) {
        let latest = self.latest.lock().unwrap();
        latest
            .as_ref()
            .expect("no socket yet")
            .send(command)
            .unwrap();
    }

    /// The next event, failing the test if none comes in a minute (a hang, not a timing
    /// assertion: every wait here is for something that must happen).
    pub async fn next(&mut self) -> Event {
        self.next_at().await.1
    }

    /// The next event and when the stand-in saw it (as [`StandIn::next`]).
    pub async fn next_at(&mut self) -> (Instant, Event) {
        tokio::time::timeout(Duration::from_secs(60), self.events.recv())
            .await
            .expect("the stand-in saw nothing for 60 s")
            .expect("the stand-in stopped")
    }

    /// Waits for an event `pick` accepts, skipping others (heartbeats, say).
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        loop {
            let e = self.next().await;
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    }

    /// Waits for a device frame on `topic` with this event.
    pub async fn frame_on(&mut self, topic: &str, event: &str) -> Frame {
        self.wait_for(|e| match e {
            Event::Frame { frame, .. } if frame.topic == topic && frame.event == event => {
                Some(frame.clone())
            }
            _ => None,
        })
        .await
    }

    /// Collects the console's `up` text until it contains `needle`; returns all of it.
    pub async fn console_until(&mut self, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            let f = self.frame_on("console", "up").await;
            text.push_str(f.payload["data"].as_str().unwrap_or_default());
        }
        text
    }

    /// Waits for a device frame with this event.
    pub async fn frame(&mut self, event: &str) -> (usize, Frame) {
        self.wait_for(|e| match e {
            Event::Frame { conn, frame } if frame.event == event => Some((*conn, frame.clone())),
            _ => None,
        })
        .await
    }
}

async fn serve(
    conn: usize,
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    events: Events,
    options: Options,
    latest: Arc<Mutex<Option<mpsc::UnboundedSender<Command>>>>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            let _ = events.send(Event::TlsFailed(e.to_string()));
            return;
        }
    };
    let cert_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| common_name(c));
    let mut identity = None;
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = |code: StatusCode, why: String| {
            let _ = events.send(Event::Refused(why.clone()));
            let mut r = ErrorResponse::new(Some(why));
            *r.status_mut() = code;
            let date = http_date(server_now(options.clock_offset) / 1000);
            r.headers_mut().insert("date", date.parse().unwrap());
            Err(r)
        };
        match req.uri().path() {
            "/socket/websocket" => match &cert_cn {
                Some(cn) => {
                    identity = Some(cn.clone());
                    Ok(resp)
                }
                None => refuse(StatusCode::UNAUTHORIZED, "no device certificate".into()),
            },
            "/device-socket/websocket" => {
                let headers: HashMap<String, String> = req
                    .headers()
                    .iter()
                    .filter(|(k, _)| k.as_str().starts_with("x-nh-"))
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                match myelin_hub::auth::verify(
                    &headers,
                    |k| options.secrets.get(k).cloned(),
                    server_now(options.clock_offset),
                    myelin_hub::auth::SERVER_MAX_AGE,
                ) {
                    Ok(id) => {
                        identity = Some(id);
                        Ok(resp)
                    }
                    Err(e) => refuse(StatusCode::UNAUTHORIZED, format!("shared secret: {e}")),
                }
            }
            other => refuse(StatusCode::NOT_FOUND, format!("no route {other}")),
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tls, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    *latest.lock().unwrap() = Some(tx);
    let _ = events.send(Event::Connected {
        conn,
        identity: identity.unwrap_or_default(),
    });
    let mut joins: HashMap<String, Option<String>> = HashMap::new();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let frame = match Frame::decode(&text) {
                    Ok(f) => f,
                    Err(_) => {
                        let _ = events.send(Event::Garbage(text));
                        continue;
                    }
                };
                let reply = match (frame.topic.as_str(), frame.event.as_str()) {
                    (topic, "phx_join") => {
                        joins.insert(topic.to_owned(), frame.join_ref.clone());
                        if topic == "extensions" {
                            let offered: Vec<&String> = frame
                                .payload
                                .as_object()
                                .map(|o| o.keys().collect())
                                .unwrap_or_default();
                            Some(json!(offered))
                        } else {
                            Some(json!({}))
                        }
                    }
                    ("phoenix", "heartbeat") => Some(json!({})),
                    _ => None,
                };
                if let Some(response) = reply {
                    let r = Frame::new(
                        frame.join_ref.clone(),
                        frame.msg_ref.clone(),
                        &frame.topic,
                        "phx_reply",
                        json!({"status": "ok", "response": response}),
                    );
                    let _ = ws.send(Message::text(r.encode())).await;
                }
                let _ = events.send(Event::Frame { conn, frame });
            }
            Some(command) = rx.recv() => {
                let text = match command {
                    Command::Push(event, payload) => {
                        let join_ref = joins.get("device").cloned().flatten();
                        Frame::new(join_ref, None, "device", &event, payload).encode()
                    }
                    Command::PushTo(topic, event, payload) => {
                        let join_ref = joins.get(&topic).cloned().flatten();
                        Frame::new(join_ref, None, &topic, &event, payload).encode()
                    }
                    Command::CloseTopic(topic) => {
                        let join_ref = joins.remove(&topic).flatten();
                        Frame::new(join_ref.clone(), join_ref, &topic, "phx_close", json!({}))
                            .encode()
                    }
                    Command::Raw(text) => text,
                };
                if ws.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = events.send(Event::Closed { conn });
}

#[test]
fn http_date_formats_as_rfc_9110() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(
        myelin_hub::client::parse_http_date(&http_date(1_796_655_435)),
        Some(1_796_655_435)
    );
}
