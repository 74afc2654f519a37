//! The NervesHub stand-in as a program, for tests/system's `fleet` scenario: the same server the
//! crate's tests use (tests/support), driven through standard input and output.
//!
//! `standin DIR PORT` writes the test CA (`DIR/ca.pem`) and a device certificate the server
//! trusts (`DIR/device.pem`, `DIR/device-key.pem`), listens on 127.0.0.1:PORT (a QEMU guest
//! reaches it as 10.0.2.2:PORT, a name the server certificate carries), prints `listening`, then
//! one JSON object per line for everything it sees:
//!
//! ```text
//! {"kind": "connected", "conn": 1, "identity": "device-1"}
//! {"kind": "frame", "conn": 1, "topic": "device", "event": "phx_join", "payload": {...}}
//! {"kind": "closed", "conn": 1}                  (also tls_failed, refused, garbage)
//! ```
//!
//! Each line on standard input is a JSON array `[event, payload]`, pushed on the latest socket's
//! `device` topic as the server pushes `update`, `reboot` or `identify`. End of input stops it.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::{Value, json};
use support::{Command, Event, Options, Pki, StandIn};

fn line(event: &Event) -> Value {
    match event {
        Event::Accepted { conn } => json!({"kind": "accepted", "conn": conn}),
        Event::TlsFailed(why) => json!({"kind": "tls_failed", "why": why}),
        Event::Refused(why) => json!({"kind": "refused", "why": why}),
        Event::Connected { conn, identity } => {
            json!({"kind": "connected", "conn": conn, "identity": identity})
        }
        Event::Frame { conn, frame } => json!({
            "kind": "frame", "conn": conn, "topic": frame.topic, "event": frame.event,
            "payload": frame.payload,
        }),
        Event::Garbage(text) => json!({"kind": "garbage", "text": text}),
        Event::Closed { conn } => json!({"kind": "closed", "conn": conn}),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: standin DIR PORT");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let pki = Pki::generate();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("device.pem"), &pki.device_cert_pem).unwrap();
    std::fs::write(dir.join("device-key.pem"), &pki.device_key_pem).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port.parse().unwrap())).unwrap();
        let mut standin = StandIn::start_with_listener(&pki, Options::default(), listener).await;
        println!("listening");
        let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for input in std::io::stdin().lock().lines() {
                let Ok(input) = input else { break };
                match serde_json::from_str::<(String, Value)>(&input) {
                    Ok(push) => {
                        if tx.send(push).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("standin: not [event, payload]: {e}: {input}"),
                }
            }
        });
        loop {
            tokio::select! {
                event = standin.events.recv() => {
                    let Some((_, event)) = event else { break };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", line(&event)).unwrap();
                    out.flush().unwrap();
                }
                push = commands.recv() => {
                    let Some((event, payload)) = push else { break };
                    standin.send(Command::Push(event, payload));
                }
            }
        }
    });
}
