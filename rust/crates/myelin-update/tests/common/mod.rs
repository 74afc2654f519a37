//! Helpers shared by myelin-update's integration tests: real `.fw` archives built with the
//! myelin-fw library from `tests/fixtures/ab.conf`, a disk image holding them, a private
//! dbus-daemon with the policy the rootfs ships, the real `myelin-update daemon`, a stand-in
//! for PID 1's control socket (a test cannot reboot the machine) and a small HTTP server.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myelin_fw::apply::{ApplyOptions, apply};
use myelin_fw::config::Vars as FwVars;
use myelin_fw::create::{CreateOptions, create_file};
use myelin_fw::sign::PrivateKey;
use myelin_fw::system::Fixed;
use myelin_fw::target::FileTarget;
use myelin_init::control::{self, Body, Op, ReadinessReport};
use myelin_testbus::{TestBus, shipped_policy};
use myelin_ubootenv::{Env, EnvConfig, Recovery, Vars};
use myelin_update::client::{self, Update1Proxy};

pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Block offsets of tests/fixtures/ab.conf.
pub const ROOTFS_A: u64 = 2048;
pub const ROOTFS_B: u64 = 4096;
pub const ROOTFS_BYTES: usize = 1024 * 1024;
pub const DATA_OFFSET: u64 = 6144;
pub const DISK_BLOCKS: u64 = 7168;

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ab.conf")
}

/// Deterministic, incompressible bytes (so the archive is as large as the data).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A firmware archive and the root filesystem it carries.
#[derive(Clone)]
pub struct Firmware {
    pub path: PathBuf,
    pub rootfs: Vec<u8>,
    pub version: String,
}

/// Builds a `.fw` from ab.conf; `key` signs it.
pub fn build_fw(
    dir: &Path,
    name: &str,
    version: &str,
    platform: &str,
    seed: u64,
    key: Option<&PrivateKey>,
) -> Firmware {
    let rootfs = noise(seed, 768 * 1024);
    let rootfs_path = dir.join(format!("{name}.rootfs"));
    std::fs::write(&rootfs_path, &rootfs).unwrap();
    let path = dir.join(format!("{name}.fw"));
    let opts = CreateOptions {
        config: fixture(),
        vars: FwVars::from_pairs([
            ("ROOTFS", rootfs_path.display().to_string()),
            ("VERSION", version.to_owned()),
            ("PLATFORM", platform.to_owned()),
            ("SOURCE_DATE_EPOCH", "1700000000".to_owned()),
        ]),
        signing_key: key.map(|k| PrivateKey::from_fwup(k.to_fwup().as_bytes()).unwrap()),
        level: 1,
        ops_only: false,
    };
    create_file(&opts, &path).unwrap();
    Firmware {
        path,
        rootfs,
        version: version.to_owned(),
    }
}

/// The ops archive (resource-less tasks) of ab.conf.
pub fn build_ops(dir: &Path) -> PathBuf {
    let path = dir.join("ops.fw");
    let opts = CreateOptions {
        config: fixture(),
        vars: FwVars::from_pairs([
            ("ROOTFS", "/nonexistent"),
            ("VERSION", "ops"),
            ("PLATFORM", "testboard"),
        ]),
        signing_key: None,
        level: 6,
        ops_only: true,
    };
    create_file(&opts, &path).unwrap();
    path
}

/// A fresh key pair and its public key file in `keys_dir`.
pub fn new_key(keys_dir: &Path, name: &str) -> PrivateKey {
    let key = PrivateKey::generate().unwrap();
    std::fs::create_dir_all(keys_dir).unwrap();
    std::fs::write(keys_dir.join(format!("{name}.pub")), key.public().to_fwup()).unwrap();
    key
}

/// major:minor of the file system holding `/`, as sysfs names it.
pub fn root_dev() -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

/// A device: disk image with slot A installed, its environment, ops.fw, keys, state and a
/// sysfs fixture that says which slot `/` is on.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub env_config: PathBuf,
    pub ops: PathBuf,
    pub keys: PathBuf,
    pub state: PathBuf,
    pub sysfs: PathBuf,
    pub reboot_param: PathBuf,
    pub boot_id: PathBuf,
    pub v1: Firmware,
    boots: u32,
}

impl Device {
    /// A disk written by `complete` of a v1 archive, running slot A.
    pub fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let v1 = build_fw(dir.path(), "v1", "1.0.0", "testboard", 1, None);
        let disk = dir.path().join("disk.img");
        let f = std::fs::File::create(&disk).unwrap();
        f.set_len(DISK_BLOCKS * 512).unwrap();
        drop(f);
        let mut target = FileTarget::open(&disk).unwrap();
        let system = Fixed::default();
        let opts = ApplyOptions {
            task: "complete",
            public_keys: &[],
            vars: FwVars::default(),
            system: &system,
            enable_trim: false,
            progress_range: (0, 100),
        };
        apply(
            std::fs::File::open(&v1.path).unwrap(),
            &mut target,
            &opts,
            None,
        )
        .unwrap();
        let env_config = dir.path().join("fw_env.config");
        std::fs::write(
            &env_config,
            format!("{d} 0x2000 0x2000\n{d} 0x4000 0x2000\n", d = disk.display()),
        )
        .unwrap();
        let ops = build_ops(dir.path());
        let d = Device {
            keys: dir.path().join("fw-keys"),
            state: dir.path().join("data/myelin/update"),
            sysfs: dir.path().join("sys"),
            reboot_param: dir.path().join("reboot-param"),
            boot_id: dir.path().join("boot_id"),
            dir,
            disk,
            env_config,
            ops,
            v1,
            boots: 0,
        };
        d.run_from(ROOTFS_A);
        d.set_boot_id("boot-0");
        // A development image: an empty keys directory and the marker (tests with keys add
        // them with new_key).
        std::fs::create_dir_all(&d.keys).unwrap();
        std::fs::write(d.path("development"), "tests\n").unwrap();
        d
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes `/` look like the partition at `offset` (what require-path-at-offset reads).
    pub fn run_from(&self, offset: u64) {
        let dir = self.sysfs.join("dev/block").join(root_dev());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("start"), format!("{offset}\n")).unwrap();
    }

    pub fn set_boot_id(&self, id: &str) {
        std::fs::write(&self.boot_id, format!("{id}\n")).unwrap();
    }

    /// A reboot as the bootloader would do it: the next boot id, running `slot_offset`.
    pub fn reboot_into(&mut self, slot_offset: u64) {
        self.boots += 1;
        self.set_boot_id(&format!("boot-{}", self.boots));
        self.run_from(slot_offset);
    }

    pub fn env(&self) -> Vars {
        myelin_ubootenv::read_vars(&EnvConfig::from_file(&self.env_config).unwrap()).unwrap()
    }

    /// Changes the environment as a bootloader would (e.g. U-Boot's revert).
    pub fn set_env(&self, pairs: &[(&str, &str)]) {
        let env = Env::new(EnvConfig::from_file(&self.env_config).unwrap());
        env.modify::<myelin_ubootenv::EnvError, _>(Recovery::Refuse, |vars| {
            for (k, v) in pairs {
                vars.insert(k.to_string(), v.to_string());
            }
            Ok(())
        })
        .unwrap();
    }

    pub fn disk_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.disk).unwrap()
    }

    /// The first `len` bytes of the slot at block `offset`.
    pub fn slot(&self, offset: u64, len: usize) -> Vec<u8> {
        let bytes = self.disk_bytes();
        let start = (offset * 512) as usize;
        bytes[start..start + len].to_vec()
    }

    /// The daemon's configuration file.
    pub fn config(&self, init_socket: &Path, extra: &str) -> PathBuf {
        let path = self.path("update.toml");
        std::fs::write(
            &path,
            format!(
                r#"device = "{disk}"
ops_fw = "{ops}"
keys_dir = "{keys}"
development_marker = "{development}"
env_config = "{env}"
state_dir = "{state}"
init_socket = "{init}"
reboot_param = "{reboot}"
sysfs = "{sysfs}"
ready_poll = "100ms"
{stable}
{extra}
[http]
connect_timeout = "5s"
read_timeout = "3s"
max_redirects = 2
"#,
                disk = self.disk.display(),
                ops = self.ops.display(),
                keys = self.keys.display(),
                development = self.path("development").display(),
                env = self.env_config.display(),
                state = self.state.display(),
                init = init_socket.display(),
                reboot = self.reboot_param.display(),
                sysfs = self.sysfs.display(),
                // The fake init's services are stable at once unless a test says otherwise.
                stable = if extra.contains("stable_period") {
                    ""
                } else {
                    "stable_period = \"0s\""
                },
            ),
        )
        .unwrap();
        path
    }
}

/// A dbus-daemon of our own, system-bus rules, with the repository's Update1 policy included.
pub struct Bus(TestBus);

impl std::ops::Deref for Bus {
    type Target = TestBus;
    fn deref(&self) -> &TestBus {
        &self.0
    }
}

impl Bus {
    pub fn start() -> Bus {
        Bus(TestBus::system(&shipped_policy("org.myelin.Update1.conf")))
    }

    pub async fn proxy(&self) -> Update1Proxy<'static> {
        client::connect(Some(self.address())).await.unwrap()
    }
}

/// Stands in for PID 1's control socket: answers `readiness` with a switchable flag and records
/// `reboot` (clean, with its argument) and `reboot_now` requests (the real PID 1 would reboot
/// the machine).
pub struct FakeInit {
    pub path: PathBuf,
    pub ready: Arc<AtomicBool>,
    pub reboots: Arc<Mutex<Vec<Option<String>>>>,
    pub immediate_reboots: Arc<Mutex<u32>>,
    pub readiness_asked: Arc<Mutex<u32>>,
    stop: Arc<AtomicBool>,
}

impl FakeInit {
    pub fn start(dir: &Path) -> FakeInit {
        let path = dir.join("init.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let reboots = Arc::new(Mutex::new(Vec::new()));
        let immediate_reboots = Arc::new(Mutex::new(0));
        let readiness_asked = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, rb, now, asked, st) = (
            ready.clone(),
            reboots.clone(),
            immediate_reboots.clone(),
            readiness_asked.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let body = match control::decode_request(line.as_bytes()) {
                        Ok(req) => match req.op {
                            Op::Readiness => {
                                *asked.lock().unwrap() += 1;
                                let ok = r.load(Ordering::SeqCst);
                                Body::Readiness(ReadinessReport {
                                    all_ready: ok,
                                    critical_ready: ok,
                                    critical_ready_for_ms: ok.then_some(0),
                                    restarts_total: 0,
                                    services: vec![],
                                })
                            }
                            Op::Reboot { arg } => {
                                rb.lock().unwrap().push(arg);
                                Body::Ok {
                                    message: "rebooting".into(),
                                }
                            }
                            Op::RebootNow => {
                                *now.lock().unwrap() += 1;
                                Body::Ok {
                                    message: "rebooting now".into(),
                                }
                            }
                            other => Body::Error {
                                message: format!("not expected in this test: {other:?}"),
                            },
                        },
                        Err(e) => Body::Error {
                            message: e.to_string(),
                        },
                    };
                    out.write_all(&control::encode(&control::response(body)))
                        .unwrap();
                    line.clear();
                }
            }
        });
        FakeInit {
            path,
            ready,
            reboots,
            immediate_reboots,
            readiness_asked,
            stop,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn reboot_count(&self) -> usize {
        self.reboots.lock().unwrap().len()
    }

    pub fn immediate_reboot_count(&self) -> u32 {
        *self.immediate_reboots.lock().unwrap()
    }
}

impl Drop for FakeInit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The myelin-update binary under test.
pub fn myelin_update() -> Command {
    Command::new(env!("CARGO_BIN_EXE_myelin-update"))
}

/// A running `myelin-update daemon`, ready (it sent READY=1 on its NOTIFY_SOCKET).
pub struct Daemon(myelin_testbus::Daemon);

impl Daemon {
    pub fn start(bus: &Bus, device: &Device, config: &Path) -> Daemon {
        Daemon::spawn(bus, &device.boot_id, config)
    }

    /// Starts the daemon with a boot id file.
    pub fn spawn(bus: &Bus, boot_id: &Path, config: &Path) -> Daemon {
        let mut cmd = myelin_update();
        cmd.arg("daemon")
            .arg("-c")
            .arg(config)
            .arg("--boot-id-file")
            .arg(boot_id)
            .arg("--address")
            .arg(bus.address());
        Daemon(myelin_testbus::Daemon::start(cmd))
    }

    /// SIGTERM, and the daemon must exit cleanly.
    pub fn stop(self) {
        self.0.stop();
    }

    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// The usual test set-up: a private bus, a device image, a fake PID 1, an update.toml with
/// `extra` lines, and the daemon started on them. Bind every field (`init: _init`): a dropped
/// `FakeInit` stops answering the daemon.
pub struct Rig {
    pub bus: Bus,
    pub device: Device,
    pub init: FakeInit,
    pub config: PathBuf,
    pub daemon: Daemon,
}

impl Rig {
    pub fn start(extra: &str) -> Rig {
        let bus = Bus::start();
        let device = Device::new();
        let init = FakeInit::start(device.dir.path());
        let config = device.config(&init.path, extra);
        let daemon = Daemon::start(&bus, &device, &config);
        Rig {
            bus,
            device,
            init,
            config,
            daemon,
        }
    }
}

/// Polls `check` until it returns true or the timeout passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the test HTTP server answers.
#[derive(Clone)]
pub enum Reply {
    /// The whole body, with Content-Length.
    Full(Vec<u8>),
    /// Content-Length of the whole body, but the connection closes after `cut` bytes.
    Drop(Vec<u8>, usize),
    /// The whole body, slowly: `chunk` bytes every `pause`.
    Slow(Vec<u8>, usize, Duration),
    /// A redirect to another path.
    Redirect(String),
    /// 404.
    NotFound,
}

/// A tiny HTTP/1.1 server on 127.0.0.1, one thread per connection.
pub struct HttpServer {
    pub base: String,
    routes: Arc<Mutex<Vec<(String, Reply)>>>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<Vec<(String, Reply)>>> = Arc::new(Mutex::new(Vec::new()));
        let r = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let routes = r.clone();
                std::thread::spawn(move || serve(stream, &routes));
            }
        });
        HttpServer { base, routes }
    }

    pub fn route(&self, path: &str, reply: Reply) -> String {
        self.routes.lock().unwrap().push((path.to_owned(), reply));
        format!("{}{path}", self.base)
    }
}

fn serve(mut stream: TcpStream, routes: &Mutex<Vec<(String, Reply)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let reply = routes
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone())
        .unwrap_or(Reply::NotFound);
    let head = |status: &str, len: usize| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )
    };
    let _ = match reply {
        Reply::Full(body) => stream
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|_| stream.write_all(&body)),
        Reply::Drop(body, cut) => stream
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|_| stream.write_all(&body[..cut])),
        Reply::Slow(body, chunk, pause) => (|| {
            stream.write_all(head("200 OK", body.len()).as_bytes())?;
            for part in body.chunks(chunk) {
                stream.write_all(part)?;
                std::thread::sleep(pause);
            }
            Ok(())
        })(),
        Reply::Redirect(to) => stream.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
        Reply::NotFound => stream.write_all(head("404 Not Found", 0).as_bytes()),
    };
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// The D-Bus error name and message of a failed call.
pub fn method_error(err: &zbus::Error) -> (String, String) {
    match err {
        zbus::Error::MethodError(name, msg, _) => {
            (name.to_string(), msg.clone().unwrap_or_default())
        }
        other => panic!("expected a D-Bus error reply, got {other:?}"),
    }
}

/// An HTTPS server on 127.0.0.1 serving one body at every path, with a certificate for
/// 127.0.0.1 issued by a test CA.
pub struct HttpsServer {
    pub url: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

impl HttpsServer {
    pub fn start(body: Vec<u8>) -> HttpsServer {
        HttpsServer::serve(None, body)
    }

    /// A server that answers every request with a redirect to `location`.
    pub fn redirecting(location: &str) -> HttpsServer {
        HttpsServer::serve(Some(location.to_owned()), Vec::new())
    }

    fn serve(location: Option<String>, body: Vec<u8>) -> HttpsServer {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "myelin-update test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![leaf.der().clone(), ca_cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/x.fw", listener.local_addr().unwrap());
        let body = Arc::new(body);
        let location = Arc::new(location);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, body, location) = (config.clone(), body.clone(), location.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    // Read the request head (a client that rejects the certificate sends none).
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = match location.as_ref() {
                        Some(to) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        None => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        ),
                    };
                    let _ = tls.write_all(head.as_bytes());
                    let _ = tls.write_all(&body);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        HttpsServer {
            url,
            ca_pem: ca_cert.pem(),
        }
    }
}
