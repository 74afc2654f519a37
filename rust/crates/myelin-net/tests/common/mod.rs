//! Helpers shared by myelin-net's integration tests: network namespaces with veth pairs, a
//! private dbus-daemon, busybox udhcpd, the daemon itself under `ip netns exec`, and a fake
//! wpa_supplicant control socket (the one part that cannot exist on a build machine).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails clearly unless root (namespaces, veth pairs and addresses need it).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "myelin-net's integration tests create network namespaces and veth pairs and must run \
         as root (scripts/test runs them as root in CI)"
    );
    for tool in ["ip", "busybox", "dbus-daemon"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: install iproute2, busybox-static and dbus (scripts/deps/apt.txt)"
        );
    }
}

/// Runs a command that must succeed; returns stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted (with everything in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("mnet-{}-{tag}{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args...`, must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A stand-in netdev `name` (a veth whose peer `<name>p`, in the same namespace, is up;
    /// the kernel here may lack the dummy driver).
    pub fn netdev(&self, name: &str) {
        let peer = format!("{name}p");
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        self.ip(&["link", "set", &peer, "up"]);
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Binds a TCP listener inside the namespace (from a thread that enters it, so the test
    /// process itself stays put).
    pub fn listen(&self, addr: &str) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind(&addr).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair: `a_name` in `a`, `b_name` in `b`, both administratively up on B's side only.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) {
    sh(&[
        "ip", "link", "add", a_name, "netns", &a.name, "type", "veth", "peer", "name", b_name,
        "netns", &b.name,
    ]);
    b.ip(&["link", "set", b_name, "up"]);
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox udhcpd serving `iface` in `ns`, with `options` lines added to its config.
pub fn udhcpd(
    ns: &Netns,
    dir: &Path,
    iface: &str,
    start: &str,
    end: &str,
    options: &[&str],
) -> Proc {
    let conf = dir.join(format!("udhcpd-{iface}.conf"));
    let mut text = format!(
        "interface {iface}\nstart {start}\nend {end}\npidfile {}\nlease_file {}\n",
        dir.join(format!("udhcpd-{iface}.pid")).display(),
        dir.join(format!("udhcpd-{iface}.leases")).display()
    );
    for o in options {
        text.push_str(o);
        text.push('\n');
    }
    std::fs::write(&conf, text).unwrap();
    let child = ns
        .cmd("busybox")
        .args(["udhcpd", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A private dbus-daemon on a socket in a temp dir.
pub use myelin_testbus::TestBus as Bus;

/// The daemon under test, run in a namespace, with readiness through NOTIFY_SOCKET.
pub struct Daemon {
    pub proc: Proc,
    pub log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `myelin-net daemon --config <config>` in `ns` on `bus`; waits for READY=1.
    pub fn start(ns: &Netns, bus: &Bus, config: &Path) -> Daemon {
        let notify_dir = tempfile::tempdir().unwrap();
        let notify = notify_dir.path().join("notify");
        let sock = StdDatagram::bind(&notify).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut child = ns
            .cmd(env!("CARGO_BIN_EXE_myelin-net"))
            .args(["daemon", "--config"])
            .arg(config)
            .args(["--address", bus.address()])
            .env("NOTIFY_SOCKET", &notify)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MYELIN_NET_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut buf = [0u8; 512];
        let mut d = Daemon {
            proc: Proc(child),
            log,
        };
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                        break;
                    }
                }
                Err(e) => panic!("no READY=1 from myelin-net ({e}); log:\n{}", d.log()),
            }
            if let Ok(Some(status)) = d.proc.0.try_wait() {
                panic!("myelin-net exited ({status}); log:\n{}", d.log());
            }
        }
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and waits for the exit.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.proc.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("myelin-net did not stop on SIGTERM");
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon's test configuration: everything under `dir`, fast checks, Debian's busybox.
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("net.toml");
    let text = format!(
        r#"[daemon]
run_dir = "{run}"
persist_dir = "{data}"
resolv_conf = "{resolv}"
hostname = "testdev"
retry_interval = "500ms"
udhcpc = ["busybox", "udhcpc"]
udhcpd = ["busybox", "udhcpd"]
wpa_supplicant = []
wpa_request_timeout = "2s"
wpa_keepalive = "1s"

{mdns}
{extra}
"#,
        mdns = if extra.contains("[mdns]") {
            ""
        } else {
            "[mdns]\nenabled = false\n"
        },
        run = dir.join("run").display(),
        data = dir.join("data").display(),
        resolv = dir.join("resolv.conf").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A fake wpa_supplicant: answers commands from a table, records them, and pushes events to
/// attached clients. It can stop answering or vanish.
#[derive(Clone)]
pub struct FakeWpa {
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    sock: Arc<tokio::net::UnixDatagram>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
pub struct FakeState {
    pub replies: std::collections::HashMap<String, String>,
    pub received: Vec<String>,
    pub attached: Vec<PathBuf>,
    pub mute: bool,
    pub delay: Option<Duration>,
}

impl FakeWpa {
    /// Binds at `path` and serves until dropped (the task ends with the last clone).
    pub fn start(path: &Path) -> FakeWpa {
        let _ = std::fs::remove_file(path);
        let sock = Arc::new(tokio::net::UnixDatagram::bind(path).unwrap());
        let mut replies = std::collections::HashMap::new();
        for (k, v) in [
            ("PING", "PONG\n"),
            ("ATTACH", "OK\n"),
            ("DETACH", "OK\n"),
            ("SCAN", "OK\n"),
            ("STATUS", "wpa_state=SCANNING\n"),
            ("SIGNAL_POLL", "RSSI=-55\nLINKSPEED=65\nFREQUENCY=2437\n"),
            (
                "SCAN_RESULTS",
                "bssid / frequency / signal level / flags / ssid\n",
            ),
        ] {
            replies.insert(k.to_owned(), v.to_owned());
        }
        let state = Arc::new(Mutex::new(FakeState {
            replies,
            ..Default::default()
        }));
        let weak = Arc::downgrade(&state);
        let server = sock.clone();
        let task = tokio::spawn(async move {
            let (sock, state) = (server, weak);
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Some(state) = state.upgrade() else { return };
                let cmd = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some(from) = from.as_pathname().map(Path::to_owned) else {
                    continue;
                };
                let (reply, delay) = {
                    let mut s = state.lock().unwrap();
                    s.received.push(cmd.clone());
                    if s.mute {
                        continue;
                    }
                    if cmd == "ATTACH" {
                        s.attached.push(from.clone());
                    }
                    let r = s.replies.get(&cmd).cloned();
                    (r.unwrap_or_else(|| "UNKNOWN COMMAND\n".into()), s.delay)
                };
                match delay {
                    None => {
                        let _ = sock.send_to(reply.as_bytes(), &from).await;
                    }
                    Some(d) => {
                        let sock = sock.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(d).await;
                            let _ = sock.send_to(reply.as_bytes(), &from).await;
                        });
                    }
                }
            }
        });
        FakeWpa {
            path: path.to_owned(),
            state,
            sock,
            task: Arc::new(task),
        }
    }

    pub fn reply(&self, cmd: &str, text: &str) {
        self.state
            .lock()
            .unwrap()
            .replies
            .insert(cmd.to_owned(), text.to_owned());
    }

    pub fn received(&self, cmd: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|c| *c == cmd)
            .count()
    }

    pub fn delay(&self, d: Option<Duration>) {
        self.state.lock().unwrap().delay = d;
    }

    pub fn mute(&self, on: bool) {
        self.state.lock().unwrap().mute = on;
    }

    /// Sends an event (`<3>CTRL-EVENT-...`) to every attached client.
    pub async fn event(&self, text: &str) {
        let targets = self.state.lock().unwrap().attached.clone();
        for t in targets {
            let _ = self.sock.send_to(text.as_bytes(), &t).await;
        }
    }

    /// The supplicant crashes: its socket closes and its path disappears.
    pub fn crash(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Two access points, as SCAN_RESULTS prints them.
pub const SCAN_TWO: &str = "bssid / frequency / signal level / flags / ssid\n\
    02:00:00:00:00:01\t2437\t-40\t[WPA2-PSK-CCMP][ESS]\tMyelinHome\n\
    02:00:00:00:00:02\t5180\t-72\t[ESS]\tCafe\n";
