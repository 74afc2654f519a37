//! The NervesHub stand-in on a thread of its own, and how the benchmark waits for its events.

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::measure::thread_cpu;
use crate::support::{Event, Options, Pki, StandIn};

/// A stand-in on a one-worker runtime: its CPU is that worker's, and stopping it (shutting the
/// runtime down) drops the listener and every connection, as a crashed server does.
pub(crate) struct Server {
    /// The stand-in's runtime.
    pub(crate) rt: Runtime,
    /// The stand-in.
    pub(crate) hub: StandIn,
}

impl Server {
    pub(crate) fn start(pki: &Pki, options: Options, listener: std::net::TcpListener) -> Server {
        Server::start_at(pki, options, || listener).0
    }

    /// Starts a stand-in on the socket `bind` returns, and says when that socket listened:
    /// after the runtime started, so little but the stand-in's TLS setup comes between.
    pub(crate) fn start_at(
        pki: &Pki,
        options: Options,
        bind: impl FnOnce() -> std::net::TcpListener,
    ) -> (Server, Instant) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stand-in")
            .enable_all()
            .build()
            .unwrap();
        let listener = bind();
        let listening = Instant::now();
        let hub = rt.block_on(StandIn::start_with_listener(pki, options, listener));
        (Server { rt, hub }, listening)
    }

    /// CPU time of the stand-in's worker thread.
    pub(crate) fn cpu(&self) -> Duration {
        self.rt
            .block_on(self.rt.spawn(async { thread_cpu() }))
            .unwrap()
    }

    pub(crate) fn stop(self) {
        self.rt.shutdown_timeout(Duration::from_secs(10));
    }
}

/// Where the bench itself waits for the stand-in's events.
pub(crate) fn waiter() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next event and when the stand-in saw it.
pub(crate) fn next(rt: &Runtime, hub: &mut StandIn) -> (Event, Instant) {
    let (at, e) = rt.block_on(hub.next_at());
    (e, at)
}
