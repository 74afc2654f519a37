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
//!    to join, against the same stand-in.
//! 3. **Load.** N clients on one thread of this process (one tokio current-thread runtime, as
//!    the daemon runs), each with its own certificate and serial number, against one stand-in
//!    on another thread; every thread's CPU time is its own (CLOCK_THREAD_CPUTIME_ID). All
//!    start at once: joins per second and the client thread's CPU per join, against its CPU per
//!    bare TLS handshake with the same kind of configuration (the baseline: what any mTLS
//!    client pays). Then one heartbeat interval of steady state: every device must heartbeat
//!    without a reconnect; the client thread's CPU per heartbeat and per 100 idle devices.
//!
//! The stand-in is the tests' (`tests/support`), included as a module.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use myelin_hub::backoff::{OsRandom, Policy, Random};
use myelin_hub::client::{Client, Device, DeviceError, Installer, Settings, SystemClock};
use myelin_hub::config::{Auth, Config};
use myelin_testbus::TestBus;
use support::{Event, Options, Pki, StandIn};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const KIB_PER_MIB: f64 = 1024.0;
/// The target for the idle daemon.
const RSS_TARGET_KIB: u64 = 4 * 1024;

// ---------------------------------------------------------------------------------------------
// Measuring

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID")
        .into()
}

/// Memory of a process, from /proc/<pid>/status (KiB).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
    hwm: u64,
    threads: u64,
}

fn memory(pid: &str) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let n = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => m.rss = n,
            "RssAnon" => m.anon = n,
            "RssFile" => m.file = n,
            "VmHWM" => m.hwm = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    m
}

/// Resident KiB of each mapped file of a process (/proc/<pid>/smaps), largest first.
fn file_rss(pid: &str) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_file: HashMap<String, u64> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if let Some(file) = &current {
                let kib: u64 = kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                *by_file.entry(file.clone()).or_default() += kib;
            }
        } else {
            // A mapping's header: address-range perms offset dev inode [path].
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_header = fields
                .first()
                .and_then(|a| a.split_once('-'))
                .is_some_and(|(x, y)| {
                    u64::from_str_radix(x, 16).is_ok() && u64::from_str_radix(y, 16).is_ok()
                });
            if is_header {
                current = fields
                    .get(5)
                    .filter(|p| p.starts_with('/'))
                    .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned());
            }
        }
    }
    let mut v: Vec<_> = by_file.into_iter().filter(|(_, k)| *k > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn mib(kib: u64) -> f64 {
    kib as f64 / KIB_PER_MIB
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 90th percentile and mean, in ms.
fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    let at = |p: f64| ms(v[((v.len() as f64 - 1.0) * p).round() as usize]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (at(0.5), at(0.9), mean)
}

// ---------------------------------------------------------------------------------------------
// The stand-in on its own thread

/// A stand-in on a one-worker runtime: its CPU is that worker's, and stopping it (shutting the
/// runtime down) drops the listener and every connection, as a crashed server does.
struct Server {
    rt: Runtime,
    hub: StandIn,
}

impl Server {
    fn start(pki: &Pki, options: Options, listener: std::net::TcpListener) -> Server {
        Server::start_at(pki, options, || listener).0
    }

    /// Starts a stand-in on the socket `bind` returns, and says when that socket listened:
    /// after the runtime started, so little but the stand-in's TLS setup comes between.
    fn start_at(
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
    fn cpu(&self) -> Duration {
        self.rt
            .block_on(self.rt.spawn(async { thread_cpu() }))
            .unwrap()
    }

    fn stop(self) {
        self.rt.shutdown_timeout(Duration::from_secs(10));
    }
}

/// Where the bench itself waits for the stand-in's events.
fn waiter() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next event and when this thread received it.
fn next(rt: &Runtime, hub: &mut StandIn) -> (Event, Instant) {
    let e = rt.block_on(hub.next());
    (e, Instant::now())
}

// ---------------------------------------------------------------------------------------------
// Simulated devices

/// A device whose environment is fixed and whose firmware is validated.
struct SimDevice {
    env: HashMap<String, String>,
}

impl Device for SimDevice {
    async fn env(&self) -> Result<HashMap<String, String>, DeviceError> {
        Ok(self.env.clone())
    }
    async fn validated(&self) -> bool {
        true
    }
    async fn wait_validated(&self) {}
    async fn reboot(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    async fn identify(&self) {}
}

/// Nobody offers an update here.
struct NoInstaller;

impl Installer for NoInstaller {
    async fn install(
        &self,
        _url: &str,
        _progress: mpsc::UnboundedSender<u32>,
    ) -> Result<(), DeviceError> {
        Err(DeviceError::Install(
            "the benchmark installs nothing".into(),
        ))
    }
}

/// A device's firmware metadata and serial number, as myelin-kv would serve them.
fn env(serial: &str) -> HashMap<String, String> {
    [
        ("nerves_fw_active", "a"),
        ("a.nerves_fw_uuid", "6a1c8a4e-0000-4000-8000-000000000001"),
        ("a.nerves_fw_version", "1.0.0"),
        ("a.nerves_fw_platform", "x86_64"),
        ("a.nerves_fw_architecture", "x86_64"),
        ("a.nerves_fw_product", "myelin-demo"),
        ("a.nerves_fw_validated", "1"),
        ("nerves_serial_number", serial),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One device's identity on disk (certificate, key mode 0600), as a device keeps it.
struct Identity {
    name: String,
    config: Config,
}

impl Identity {
    fn new(dir: &Path, url: &str, ca: &Path, name: &str, cert: &str, key: &str) -> Identity {
        let certificate = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        write_secret(&certificate, cert);
        write_secret(&key_path, key);
        Identity {
            name: name.to_owned(),
            config: Config {
                url: url.to_owned(),
                server_ca: ca.to_owned(),
                heartbeat: Duration::from_secs(30),
                identify_command: vec![],
                reboot_after_update: true,
                console: Default::default(),
                health: Default::default(),
                auth: Auth::Certificate {
                    certificate,
                    key: key_path,
                },
            },
        }
    }

    /// Settings through the configuration path the daemon takes (files read, TLS built).
    fn settings(&self, heartbeat: Duration, backoff: Policy) -> Settings {
        Settings {
            url: self.config.socket_url(),
            tls: myelin_hub::tls::client_config(&self.config).unwrap(),
            shared_secret: None,
            heartbeat,
            backoff,
            reboot_after_update: true,
            status_path: None,
            console: None,
            health: None,
        }
    }
}

/// What the client thread is asked to do.
enum Order {
    /// Start a client per settings (each with its serial number); answers when they started.
    Start(Vec<Sim>, oneshot::Sender<Instant>),
    /// Stop every client.
    StopAll(oneshot::Sender<()>),
    /// One TLS handshake per configuration, all at once, then close; answers how many failed.
    Tls(
        Vec<Arc<rustls::ClientConfig>>,
        SocketAddr,
        oneshot::Sender<usize>,
    ),
    /// This thread's CPU time.
    Cpu(oneshot::Sender<Duration>),
}

/// The thread the clients run on: one current-thread runtime, as in the daemon.
struct Clients {
    orders: mpsc::UnboundedSender<Order>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn spawn() -> Clients {
        let (orders, mut rx) = mpsc::unbounded_channel::<Order>();
        let thread = std::thread::Builder::new()
            .name("clients".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let mut running = Vec::new();
                    while let Some(order) = rx.recv().await {
                        match order {
                            Order::Start(devices, reply) => {
                                let at = Instant::now();
                                for sim in devices {
                                    running.push(tokio::task::spawn_local(run_client(sim)));
                                }
                                let _ = reply.send(at);
                            }
                            Order::StopAll(reply) => {
                                for task in running.drain(..) {
                                    task.abort();
                                    let _ = task.await;
                                }
                                let _ = reply.send(());
                            }
                            Order::Tls(configs, addr, reply) => {
                                let tasks: Vec<_> = configs
                                    .into_iter()
                                    .map(|c| tokio::task::spawn_local(tls_handshake(c, addr)))
                                    .collect();
                                let mut failed = 0;
                                for t in tasks {
                                    if !matches!(t.await, Ok(true)) {
                                        failed += 1;
                                    }
                                }
                                let _ = reply.send(failed);
                            }
                            Order::Cpu(reply) => {
                                let _ = reply.send(thread_cpu());
                            }
                        }
                    }
                });
            })
            .unwrap();
        Clients {
            orders,
            thread: Some(thread),
        }
    }

    fn ask<T>(&self, order: impl FnOnce(oneshot::Sender<T>) -> Order) -> T {
        let (tx, rx) = oneshot::channel();
        self.orders.send(order(tx)).unwrap();
        rx.blocking_recv().expect("the client thread stopped")
    }

    fn start(&self, devices: Vec<Sim>) -> Instant {
        self.ask(|r| Order::Start(devices, r))
    }

    fn stop_all(&self) {
        self.ask(Order::StopAll);
    }

    fn cpu(&self) -> Duration {
        self.ask(Order::Cpu)
    }

    fn tls(&self, configs: Vec<Arc<rustls::ClientConfig>>, addr: SocketAddr) -> usize {
        self.ask(|r| Order::Tls(configs, addr, r))
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // Closing the order channel ends the thread's loop.
        let (closed, _) = mpsc::unbounded_channel();
        self.orders = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One simulated device.
struct Sim {
    settings: Settings,
    serial: String,
    /// Where to note each backoff delay the client draws.
    delays: Option<Delays>,
}

/// When each backoff delay was drawn (the client sleeps right after).
type Delays = Arc<std::sync::Mutex<Vec<Instant>>>;

/// The OS's jitter, noting when the client asks for it.
struct Noting(Delays);

impl Random for Noting {
    fn unit(&mut self) -> f64 {
        self.0.lock().unwrap().push(Instant::now());
        OsRandom.unit()
    }
}

async fn run_client(sim: Sim) {
    let random: Box<dyn Random> = match sim.delays {
        Some(d) => Box::new(Noting(d)),
        None => Box::new(OsRandom),
    };
    let client = Client::new(
        sim.settings,
        SimDevice {
            env: env(&sim.serial),
        },
        NoInstaller,
        random,
        Box::new(SystemClock),
    );
    client.run(std::future::pending()).await;
}

/// TCP connect and a full TLS handshake (client certificate included), then close.
async fn tls_handshake(config: Arc<rustls::ClientConfig>, addr: SocketAddr) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let name = rustls::pki_types::ServerName::from(addr.ip());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .is_ok()
}

// ---------------------------------------------------------------------------------------------
// 1. Idle memory of the daemon

/// `org.myelin.KV1` as the hub reads it: the whole environment.
struct FakeKv {
    env: HashMap<String, String>,
}

#[zbus::interface(name = "org.myelin.KV1")]
impl FakeKv {
    /// Every variable.
    async fn get_all(&self) -> HashMap<String, String> {
        self.env.clone()
    }
}

/// `org.myelin.Update1` as the hub reads it at idle: the running firmware is validated.
struct FakeUpdate;

#[zbus::interface(name = "org.myelin.Update1")]
impl FakeUpdate {
    /// Not on trial.
    #[zbus(property)]
    async fn trial(&self) -> bool {
        false
    }
}

/// Kills the child when dropped (a failed run leaves no daemon behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the next event, failing with the daemon's log if the daemon died.
fn daemon_event(rt: &Runtime, hub: &mut StandIn, daemon: &mut Reaped, log: &Path) -> Event {
    loop {
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), hub.events.recv()).await
        });
        if let Ok(Some(e)) = got {
            return e;
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!(
                "myelin-hub exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// (just joined, idle) memory of the daemon.
fn daemon_memory(
    daemon_bin: &Path,
    pki: &Pki,
    dir: &Path,
) -> (Memory, Memory, usize, Vec<(String, u64)>) {
    let bus = TestBus::open();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut server = Server::start(pki, Options::default(), listener);
    let address = bus.address().to_owned();
    let services = server.rt.block_on(async {
        zbus::connection::Builder::address(address.as_str())
            .name(myelin_api::kv::BUS_NAME)
            .name(myelin_api::update::BUS_NAME)
            .serve_at(
                myelin_api::kv::OBJECT_PATH,
                FakeKv {
                    env: env("serial-daemon"),
                },
            )
            .serve_at(myelin_api::update::OBJECT_PATH, FakeUpdate)
            .build()
            .await
            .unwrap()
    });
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let cert = dir.join("device.pem");
    let key = dir.join("device-key.pem");
    write_secret(&cert, &pki.device_cert_pem);
    write_secret(&key, &pki.device_key_pem);
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "url = \"wss://localhost:{}\"\nserver_ca = \"{}\"\nheartbeat = \"1s\"\n\n\
             [auth]\nkind = \"certificate\"\ncertificate = \"{}\"\nkey = \"{}\"\n",
            server.hub.addr.port(),
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let log = dir.join("myelin-hub.log");
    let mut daemon = Reaped(
        Command::new(daemon_bin)
            .arg("daemon")
            .arg("-c")
            .arg(&config)
            .arg("--address")
            .arg(bus.address())
            .arg("--status-file")
            .arg(dir.join("hub.json"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start myelin-hub"),
    );
    let pid = daemon.0.id().to_string();
    let rt = waiter();
    loop {
        match daemon_event(&rt, &mut server.hub, &mut daemon, &log) {
            Event::Frame { frame, .. } if frame.topic == "device" && frame.event == "phx_join" => {
                break;
            }
            Event::TlsFailed(why) | Event::Refused(why) => panic!("the daemon was refused: {why}"),
            _ => {}
        }
    }
    let joined = memory(&pid);
    // Idle: heartbeating (every second here), with only the main thread left.
    let mut heartbeats = 0;
    while heartbeats < 3 || memory(&pid).threads > 1 {
        match daemon_event(&rt, &mut server.hub, &mut daemon, &log) {
            Event::Frame { frame, .. } if frame.event == "heartbeat" => {
                heartbeats += 1;
                assert!(
                    heartbeats < 60,
                    "myelin-hub kept a second thread for a minute"
                );
            }
            Event::Connected { .. } => panic!("myelin-hub reconnected while idle"),
            _ => {}
        }
    }
    let idle = memory(&pid);
    let files = file_rss(&pid);
    drop(daemon);
    // The connection's tasks live on the stand-in's runtime: closed there, before it stops.
    server.rt.block_on(async move { drop(services) });
    server.stop();
    (joined, idle, heartbeats, files)
}

/// Memory of the trivial program once it runs.
fn baseline_memory(bin: &Path) -> (Memory, Vec<(String, u64)>) {
    let mut child = Reaped(
        Command::new(bin)
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the baseline"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the baseline program said {line:?}");
    let pid = child.0.id().to_string();
    (memory(&pid), file_rss(&pid))
}

fn print_memory(label: &str, m: Memory, note: &str) {
    println!(
        "  {label:<28} VmRSS {:5.2} MiB = private {:4.2} + mapped files {:4.2}{note}",
        mib(m.rss),
        mib(m.anon),
        mib(m.file)
    );
}

fn bench_memory(daemon: &Path, baseline: &Path, pki: &Pki, dir: &Path) {
    eprintln!("hub: idle memory of the release daemon");
    let (joined, idle, heartbeats, files) = daemon_memory(daemon, pki, dir);
    let (base, base_files) = baseline_memory(baseline);
    println!("idle memory (release profile; joined over mTLS, {heartbeats} heartbeats, 1 thread):");
    print_memory(
        "myelin-hub, idle",
        idle,
        &format!(
            "   target <= 4 MiB: {}",
            if idle.rss <= RSS_TARGET_KIB {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
    print_memory(
        "myelin-hub, just joined",
        joined,
        &format!(
            "   ({} threads; peak VmHWM {:.2} MiB)",
            joined.threads,
            mib(idle.hwm)
        ),
    );
    print_memory(
        "baseline: parked Rust main",
        base,
        "   (std's floor, same profile)",
    );
    let list = |files: &[(String, u64)]| {
        files
            .iter()
            .map(|(f, k)| format!("{f} {:.2}", mib(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  mapped files, MiB: myelin-hub: {}", list(&files));
    println!("                     baseline:   {}", list(&base_files));
    println!(
        "  ratio {:.2}x; the hub's own: {:.2} MiB ({:.2} private + {:.2} mapped files)",
        idle.rss as f64 / base.rss.max(1) as f64,
        mib(idle.rss.saturating_sub(base.rss)),
        mib(idle.anon.saturating_sub(base.anon)),
        mib(idle.file.saturating_sub(base.file))
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Reconnect time

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

fn bench_reconnect(pki: &Pki, dir: &Path, clients: &Clients, rounds: usize) {
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

    // Baseline: fresh clients, one at a time, against a stand-in that is up.
    let mut fresh = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let settings = identity.settings(Duration::from_secs(30), policy);
        clients.start(vec![Sim {
            settings,
            serial: "serial-1".into(),
            delays: None,
        }]);
        let (conn, accepted, joined) = accept_to_join(&rt, &mut server.hub);
        fresh.push(joined - accepted);
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
    refused.sort_unstable();
    println!(
        "  attempts refused while the server was down: median {}, max {} (the backoff held)",
        refused[refused.len() / 2],
        refused[refused.len() - 1]
    );
    println!(
        "  ratio connect + join / fresh: median {:.2}x, mean {:.2}x; backoff's share of the \
         total: {:.0} % (mean)",
        j50 / f50.max(1e-9),
        jmean / fmean.max(1e-9),
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

// ---------------------------------------------------------------------------------------------
// 3. Many devices in one process

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

fn bench_load(pki: &Pki, dir: &Path, clients: &Clients, devices: usize, heartbeat: Duration) {
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

    // Steady state: one heartbeat interval.
    let (c0, s0) = (clients.cpu(), server.cpu());
    let window_end = tokio::time::Instant::now() + heartbeat;
    let (mut heartbeats, mut reconnects, mut drops) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        loop {
            tokio::select! {
                e = server.hub.events.recv() => match e.expect("the stand-in stopped") {
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
        "  join, all at once        {:7.0} joins/s  ({:.2} s wall; {} refused on the way)",
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
        "    at that rate one core's idle devices: {:.0} (heartbeat {window:.0} s)",
        100.0 / pct_per_100.max(1e-12) * 100.0
    );
    println!(
        "  process memory per device {:.1} KiB (clients and stand-in together: VmRSS {:.1} -> \
         {:.1} MiB)",
        (self_joined.rss.saturating_sub(self_before.rss)) as f64 / n,
        mib(self_before.rss),
        mib(self_joined.rss)
    );
}

// ---------------------------------------------------------------------------------------------

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
            (Some(d), Some(b)) => bench_memory(&d, &b, &pki, dir.path()),
            _ => eprintln!("hub: no --daemon and --baseline: idle memory not measured"),
        }
    }
    let clients = Clients::spawn();
    if parts.contains(&"reconnect") {
        bench_reconnect(&pki, dir.path(), &clients, reconnects);
    }
    if parts.contains(&"load") {
        bench_load(
            &pki,
            dir.path(),
            &clients,
            devices,
            Duration::from_secs(heartbeat),
        );
    }
}
