//! Simulated devices: the real client with a fixed environment, on one thread of clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use myelin_hub::backoff::{OsRandom, Policy, Random};
use myelin_hub::client::{Client, Device, DeviceError, Installer, Settings, SystemClock};
use myelin_hub::config::{Auth, Config};
use tokio::sync::{mpsc, oneshot};

use crate::measure::{thread_cpu, thread_heap};

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
pub(crate) fn env(serial: &str) -> HashMap<String, String> {
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

pub(crate) fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One device's identity on disk (certificate, key mode 0600), as a device keeps it.
pub(crate) struct Identity {
    /// The certificate's CN, also the serial number.
    pub(crate) name: String,
    /// Its configuration.
    pub(crate) config: Config,
}

impl Identity {
    pub(crate) fn new(
        dir: &Path,
        url: &str,
        ca: &Path,
        name: &str,
        cert: &str,
        key: &str,
    ) -> Identity {
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
                update_command: vec![],
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
    pub(crate) fn settings(&self, heartbeat: Duration, backoff: Policy) -> Settings {
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
    /// The heap this thread holds, bytes.
    Heap(oneshot::Sender<i64>),
}

/// The thread the clients run on: one current-thread runtime, as in the daemon.
pub(crate) struct Clients {
    orders: mpsc::UnboundedSender<Order>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    pub(crate) fn spawn() -> Clients {
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
                            Order::Heap(reply) => {
                                let _ = reply.send(thread_heap());
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

    pub(crate) fn start(&self, devices: Vec<Sim>) -> Instant {
        self.ask(|r| Order::Start(devices, r))
    }

    pub(crate) fn stop_all(&self) {
        self.ask(Order::StopAll);
    }

    pub(crate) fn cpu(&self) -> Duration {
        self.ask(Order::Cpu)
    }

    pub(crate) fn heap(&self) -> i64 {
        self.ask(Order::Heap)
    }

    pub(crate) fn tls(&self, configs: Vec<Arc<rustls::ClientConfig>>, addr: SocketAddr) -> usize {
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
pub(crate) struct Sim {
    /// Its connection settings.
    pub(crate) settings: Settings,
    /// Its serial number.
    pub(crate) serial: String,
    /// Where to note each backoff delay the client draws.
    pub(crate) delays: Option<Delays>,
}

/// When each backoff delay was drawn (the client sleeps right after).
pub(crate) type Delays = Arc<std::sync::Mutex<Vec<Instant>>>;

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
