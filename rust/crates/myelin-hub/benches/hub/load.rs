//! 3. Many devices in one process: joins, then one heartbeat interval of steady state.

use std::path::Path;
use std::time::{Duration, Instant};

use myelin_hub::backoff::Policy;

use crate::measure::{memory, mib, ms};
use crate::server::{Server, next, waiter};
use crate::sim::{Clients, Identity, Sim};
use crate::support::{Event, Options, Pki};

/// Returns once the stand-in's thread has stopped working (under 1 ms of CPU in 100 ms).
fn settle(server: &Server) {
    loop {
        let before = server.cpu();
        std::thread::sleep(Duration::from_millis(100));
        if server.cpu() - before < Duration::from_millis(1) {
            return;
        }
    }
}

/// Runs `devices` clients against one stand-in and prints the load figures.
pub(crate) fn bench(pki: &Pki, dir: &Path, clients: &Clients, devices: usize, heartbeat: Duration) {
    eprintln!("hub: {devices} devices with their own certificates");
    let rt = waiter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::start(pki, Options::default(), listener);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = server.hub.url("");
    let identities: Vec<Identity> = (0..devices)
        .map(|i| {
            let name = format!("device-{i:05}");
            let (cert, key) = pki.device(&name);
            Identity::new(dir, &url, &ca, &name, &cert, &key)
        })
        .collect();
    // Separate TLS configurations for the baseline and the clients: a configuration remembers
    // its sessions, and a resumed handshake would flatter the clients.
    let bare: Vec<_> = identities
        .iter()
        .map(|i| myelin_hub::tls::client_config(&i.config).unwrap())
        .collect();
    let sims: Vec<_> = identities
        .iter()
        .map(|i| Sim {
            settings: i.settings(heartbeat, Policy::default()),
            serial: i.name.clone(),
            delays: None,
        })
        .collect();
    let self_before = memory("self");

    // Baseline: bare mTLS handshakes, all at once.
    let (c0, s0) = (clients.cpu(), server.cpu());
    let t0 = Instant::now();
    let failed = clients.tls(bare, addr);
    let tls_wall = t0.elapsed();
    let tls_cpu = clients.cpu() - c0;
    assert_eq!(failed, 0, "bare TLS handshakes failed");
    // The stand-in may still be finishing handshakes the clients consider done; it says
    // nothing about a socket that closes before the upgrade, so wait for its thread to idle.
    settle(&server);
    let tls_server = server.cpu() - s0;
    while server.hub.events.try_recv().is_ok() {}

    // Every device starts at once.
    let (c0, s0) = (clients.cpu(), server.cpu());
    let heap_before = clients.heap();
    let started = clients.start(sims);
    let (mut joins, mut last_join, mut refused) = (0, started, 0);
    while joins < devices {
        match next(&rt, &mut server.hub) {
            (Event::Frame { frame, .. }, at)
                if frame.topic == "device" && frame.event == "phx_join" =>
            {
                joins += 1;
                last_join = at;
            }
            (Event::TlsFailed(_) | Event::Refused(_), _) => refused += 1,
            _ => {}
        }
    }
    let join_wall = last_join - started;
    // The join replies reach the clients; nothing else happens before the first heartbeat.
    std::thread::sleep(Duration::from_millis(200));
    let (join_cpu, join_server) = (clients.cpu() - c0, server.cpu() - s0);
    let self_joined = memory("self");
    let client_heap = clients.heap() - heap_before;

    // Steady state: one heartbeat interval.
    let (c0, s0) = (clients.cpu(), server.cpu());
    let window_end = tokio::time::Instant::now() + heartbeat;
    let (mut heartbeats, mut reconnects, mut drops) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        loop {
            tokio::select! {
                e = server.hub.events.recv() => match e.expect("the stand-in stopped").1 {
                    Event::Frame { frame, .. } if frame.event == "heartbeat" => heartbeats += 1,
                    Event::Connected { .. } => reconnects += 1,
                    Event::Closed { .. } => drops += 1,
                    _ => {}
                },
                _ = tokio::time::sleep_until(window_end) => break,
            }
        }
    });
    let (idle_cpu, idle_server) = (clients.cpu() - c0, server.cpu() - s0);
    clients.stop_all();
    server.stop();

    let n = devices as f64;
    let per = |d: Duration, count: f64| ms(d) / count;
    println!(
        "{devices} devices in one process (each its own certificate; clients on one thread, \
         the stand-in on another):"
    );
    println!(
        "  join, all at once        {:7.0} joins/s  ({:.2} s wall, both sides on this machine; \
         {} refused on the way)",
        n / join_wall.as_secs_f64(),
        join_wall.as_secs_f64(),
        refused
    );
    println!(
        "    client CPU per join    {:7.3} ms      (stand-in: {:.3} ms)",
        per(join_cpu, n),
        per(join_server, n)
    );
    println!(
        "    baseline: bare mTLS handshake {:.3} ms client CPU (stand-in: {:.3} ms; {:.0}/s)",
        per(tls_cpu, n),
        per(tls_server, n),
        n / tls_wall.as_secs_f64()
    );
    println!(
        "    ratio join / TLS handshake: {:.2}x client CPU",
        per(join_cpu, n) / per(tls_cpu, n).max(1e-9)
    );
    let window = heartbeat.as_secs_f64();
    println!(
        "  steady state, {window:.0} s (one heartbeat interval): {heartbeats} heartbeats \
         answered, {reconnects} reconnects, {drops} sockets closed{}",
        if heartbeats >= devices as u64 && reconnects == 0 && drops == 0 {
            ": all sustained"
        } else {
            ": NOT all sustained"
        }
    );
    let pct_per_100 = idle_cpu.as_secs_f64() / window / n * 100.0 * 100.0;
    println!(
        "    client CPU per 100 idle devices {:.4} % of a core ({:.1} µs per heartbeat; \
         stand-in {:.1} µs)",
        pct_per_100,
        idle_cpu.as_secs_f64() * 1e6 / heartbeats.max(1) as f64,
        idle_server.as_secs_f64() * 1e6 / heartbeats.max(1) as f64
    );
    println!(
        "  memory per device: client heap {:.1} KiB (live bytes on the client thread); process \
         VmRSS {:.1} KiB (clients and stand-in together, {:.1} -> {:.1} MiB)",
        client_heap as f64 / 1024.0 / n,
        (self_joined.rss.saturating_sub(self_before.rss)) as f64 / n,
        mib(self_before.rss),
        mib(self_joined.rss)
    );
}
