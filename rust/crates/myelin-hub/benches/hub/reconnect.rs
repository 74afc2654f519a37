//! 2. Reconnect time after the server returns, split into the backoff wait and connect + join.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use myelin_hub::backoff::{OsRandom, Policy, Random};
use tokio::runtime::Runtime;

use crate::measure::stats;
use crate::server::{Server, next, waiter};
use crate::sim::{Clients, Delays, Identity, Sim};
use crate::support::{Event, Options, Pki, StandIn};

/// Waits for the device channel's join; returns its connection and when it was accepted and
/// joined.
fn accept_to_join(rt: &Runtime, hub: &mut StandIn) -> (usize, Instant, Instant) {
    let mut accepted = HashMap::new();
    loop {
        match next(rt, hub) {
            (Event::Accepted { conn }, at) => {
                accepted.insert(conn, at);
            }
            (Event::Frame { conn, frame }, at)
                if frame.topic == "device" && frame.event == "phx_join" =>
            {
                return (conn, accepted[&conn], at);
            }
            (Event::TlsFailed(why) | Event::Refused(why), _) => panic!("refused: {why}"),
            _ => {}
        }
    }
}

/// Waits until connection `conn`'s socket ended.
fn wait_closed(rt: &Runtime, hub: &mut StandIn, conn: usize) {
    rt.block_on(
        hub.wait_for(|e| matches!(e, Event::Closed { conn: c } if *c == conn).then_some(())),
    );
}

/// Restarts the stand-in `rounds` times under one client and prints the reconnect times.
pub(crate) fn bench(pki: &Pki, dir: &Path, clients: &Clients, rounds: usize) {
    eprintln!("hub: reconnect after the server returns ({rounds} restarts)");
    let policy = Policy {
        min: Duration::from_millis(10),
        max: Duration::from_millis(100),
        jitter: 0.5,
    };
    let options = Options {
        report_accepts: true,
        ..Options::default()
    };
    let rt = waiter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::start(pki, options.clone(), listener);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let identity = Identity::new(
        dir,
        &server.hub.url(""),
        &ca,
        "device-1",
        &pki.device_cert_pem,
        &pki.device_key_pem,
    );

    // Baselines: fresh clients, one at a time, each against a stand-in just started as it is
    // after a restart (a new runtime on a new thread), so only the client's side differs. In
    // alternate rounds the client has a new TLS configuration (a starting daemon), or one that
    // remembers a session of the previous stand-in, which a reconnecting client also offers
    // and the restarted server refuses.
    let mut fresh = Vec::with_capacity(rounds);
    let mut stale = Vec::with_capacity(rounds);
    let remembering = identity.settings(Duration::from_secs(30), policy);
    for round in 0..2 * rounds {
        server.stop();
        server = Server::start_at(pki, options.clone(), || {
            std::net::TcpListener::bind(addr).expect("the port is free again")
        })
        .0;
        // Quiet first, as the device under test is while it waits out its backoff.
        std::thread::sleep(Duration::from_millis(50));
        let settings = if round % 2 == 0 {
            identity.settings(Duration::from_secs(30), policy)
        } else {
            remembering.clone()
        };
        clients.start(vec![Sim {
            settings,
            serial: "serial-1".into(),
            delays: None,
        }]);
        let (conn, accepted, joined) = accept_to_join(&rt, &mut server.hub);
        if round % 2 == 0 {
            fresh.push(joined - accepted);
        } else {
            stale.push(joined - accepted);
        }
        clients.stop_all();
        wait_closed(&rt, &mut server.hub, conn);
    }

    // The device under test stays up while the server goes away and comes back.
    let delays = Delays::default();
    clients.start(vec![Sim {
        settings: identity.settings(Duration::from_secs(30), policy),
        serial: "serial-1".into(),
        delays: Some(delays.clone()),
    }]);
    accept_to_join(&rt, &mut server.hub);
    let mut random = OsRandom;
    let (mut total, mut waited, mut joining) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused = Vec::new();
    for _ in 0..rounds {
        // The join's reply reaches the device first (a joined device resets its backoff).
        std::thread::sleep(Duration::from_millis(50));
        let stopped = Instant::now();
        server.stop();
        std::thread::sleep(Duration::from_millis(200 + (random.unit() * 200.0) as u64));
        let listening;
        (server, listening) = Server::start_at(pki, options.clone(), || {
            std::net::TcpListener::bind(addr).expect("the port is free again")
        });
        let (_, accepted, joined) = accept_to_join(&rt, &mut server.hub);
        // One delay after the socket closed, one after each refused attempt.
        let drawn = delays
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t > stopped && **t < accepted)
            .count();
        refused.push(drawn.saturating_sub(1));
        total.push(joined - listening);
        waited.push(accepted.saturating_duration_since(listening));
        joining.push(joined - accepted);
    }
    clients.stop_all();
    server.stop();

    let (t50, t90, tmean) = stats(total);
    let (w50, w90, wmean) = stats(waited);
    let (j50, j90, jmean) = stats(joining);
    let (f50, f90, fmean) = stats(fresh);
    let stale = stats(stale);
    println!(
        "reconnect after the server returns ({rounds} restarts on the same port, down 200-400 ms; \
         backoff {} ms doubling to {} ms, +0-{:.0} %):",
        policy.min.as_millis(),
        policy.max.as_millis(),
        policy.jitter * 100.0
    );
    println!("  ms                                      median     p90    mean");
    let row = |label: &str, (a, b, c): (f64, f64, f64)| {
        println!("  {label:<38} {a:7.2} {b:7.2} {c:7.2}");
    };
    row("listen -> rejoin (total)", (t50, t90, tmean));
    row("  backoff wait: listen -> TCP accept", (w50, w90, wmean));
    row("  connect + join: accept -> phx_join", (j50, j90, jmean));
    row("baseline: fresh client, accept -> join", (f50, f90, fmean));
    row("  same, offering a stale TLS session", stale);
    refused.sort_unstable();
    println!(
        "  attempts refused while the server was down: median {}, max {} (the backoff held)",
        refused[refused.len() / 2],
        refused[refused.len() - 1]
    );
    println!(
        "  ratio connect + join / fresh: median {:.2}x, mean {:.2}x (/ stale session: {:.2}x, \
         {:.2}x); backoff's share of the total: {:.0} % (mean)",
        j50 / f50.max(1e-9),
        jmean / fmean.max(1e-9),
        j50 / stale.0.max(1e-9),
        jmean / stale.2.max(1e-9),
        100.0 * wmean / tmean.max(1e-9)
    );
    // A server that returns at a random moment lands in a random delay, longer delays being
    // likelier to be hit: the expected rest of a uniform [a, b] delay is (a²+ab+b²) / 3(a+b).
    let d = Policy::default();
    let (a, b) = (d.max.as_secs_f64(), d.bound().as_secs_f64());
    println!(
        "  with the daemon's policy ({} s doubling to {} s, +0-{:.0} %), after a long outage the \
         wait alone averages {:.0} s",
        d.min.as_secs(),
        d.max.as_secs(),
        d.jitter * 100.0,
        (a * a + a * b + b * b) / (3.0 * (a + b))
    );
}
