//! myelin-hub's cost, each figure beside a baseline measured in the same run (absolute figures
//! on a shared machine are noise; the ratios are the result).
//!
//!   cargo bench -p myelin-hub --bench hub -- --daemon PATH --baseline PATH
//!       [--devices N] [--reconnects N] [--heartbeat SECONDS] [--parts memory,reconnect,load]
//!
//! 1. **Idle memory.** The release daemon (`--daemon`) on a private D-Bus, with stand-ins for
//!    myelin-kv (the environment) and myelin-update (`Trial` false), joined over mTLS to the
//!    NervesHub stand-in at `localhost` (a name, so the lookup a device makes is made: glibc's
//!    resolver and tokio's blocking thread) and heartbeating. Sampled once only its main thread
//!    is left (tokio ends an idle blocking thread after 10 s). Baseline: `--baseline`, a Rust
//!    program that parks its thread, built with the workspace's release profile: the floor of
//!    any Rust daemon on this libc (loader, glibc, std), so the difference is the hub's own.
//! 2. **Reconnect.** One client (the library, in this process, backoff 10 ms doubling to
//!    100 ms, up to 50 % jitter) joined to the stand-in; the stand-in stops (its runtime shut
//!    down: every socket dropped, as in a crash), stays down 200-400 ms (random) and listens
//!    again on the same port. From the listen to the device's `phx_join`, split at the TCP
//!    accept: before it the device waits out its backoff, after it come TLS, the upgrade and the
//!    join. Baseline: a fresh client (a new TLS configuration, as a starting daemon has), accept
//!    to join, against a stand-in just started the same way.
//! 3. **Load.** N clients on one thread of this process (one tokio current-thread runtime, as
//!    the daemon runs), each with its own certificate and serial number, against one stand-in
//!    on another thread; every thread's CPU time is its own (CLOCK_THREAD_CPUTIME_ID). All
//!    start at once: joins per second and the client thread's CPU per join, against its CPU per
//!    bare TLS handshake with the same kind of configuration (the baseline: what any mTLS
//!    client pays). Then one heartbeat interval of steady state: every device must heartbeat
//!    without a reconnect; the client thread's CPU per heartbeat and per 100 idle devices.
//!
//! The stand-in is the tests' (`tests/support`), included as a module. One file per part
//! (`memory`, `reconnect`, `load`), with the simulated devices (`sim`), the stand-in's thread
//! (`server`) and the measuring (`measure`) beside them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

mod load;
mod measure;
mod memory;
mod reconnect;
mod server;
mod sim;

use std::path::PathBuf;
use std::time::Duration;

use support::Pki;

fn main() {
    let mut daemon: Option<PathBuf> = None;
    let mut baseline: Option<PathBuf> = None;
    let mut devices = 1000;
    let mut reconnects = 30;
    let mut heartbeat = 30;
    let mut parts = "memory,reconnect,load".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--daemon" => daemon = Some(value().into()),
            "--baseline" => baseline = Some(value().into()),
            "--devices" => devices = value().parse().expect("--devices N"),
            "--reconnects" => reconnects = value().parse().expect("--reconnects N"),
            "--heartbeat" => heartbeat = value().parse().expect("--heartbeat SECONDS"),
            "--parts" => parts = value(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    let pki = Pki::generate();
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<&str> = parts.split(',').collect();
    if parts.contains(&"memory") {
        match (daemon, baseline) {
            (Some(d), Some(b)) => memory::bench(&d, &b, &pki, dir.path()),
            _ => eprintln!("hub: no --daemon and --baseline: idle memory not measured"),
        }
    }
    let clients = sim::Clients::spawn();
    if parts.contains(&"reconnect") {
        reconnect::bench(&pki, dir.path(), &clients, reconnects);
    }
    if parts.contains(&"load") {
        load::bench(
            &pki,
            dir.path(),
            &clients,
            devices,
            Duration::from_secs(heartbeat),
        );
    }
}
