//! Helpers shared by myelin-net's integration tests: network namespaces with veth pairs, a
//! private dbus-daemon, busybox udhcpd, the daemon itself inside a namespace, and a fake
//! wpa_supplicant control socket (the one part that cannot exist on a build machine).
//!
//! Nothing here depends on or changes the host's state: a namespace is held by a process of
//! its own (no `ip netns` mount on /run/netns), and waits are for events, bounded only by
//! [`PATIENCE`] so that a hang fails instead of stalling.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram as StdDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use myelin_testbus::daemon::PATIENCE;

/// Fails clearly unless root (namespaces, veth pairs and addresses need it).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "myelin-net's integration tests create network namespaces and veth pairs and must run \
         as root (scripts/test runs them as root in CI)"
    );
    for tool in ["ip", "nsenter", "busybox", "dbus-daemon"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: install iproute2, util-linux, busybox-static and dbus \
             (scripts/deps/apt.txt)"
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

/// A network namespace, held by a `sleep` process that was moved into it before it started.
/// Dropping it kills every process inside, and the kernel deletes the namespace with
/// everything in it. Nothing is mounted: `ip netns add` would leave a shared mount on
/// /run/netns behind, which later tests (PID 1's among them) would find.
pub struct Netns {
    holder: Child,
}

impl Netns {
    /// A new namespace with its loopback up. `_tag` names it in panics only.
    pub fn new(_tag: &str) -> Netns {
        let mut cmd = Command::new("sleep");
        cmd.arg("infinity");
        // SAFETY: between fork and exec only async-signal-safe system calls run: unshare(2)
        // and prctl(2) (the holder dies with the test's thread, even if the test crashes).
        unsafe {
            cmd.pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // spawn() returns after the exec, so the namespace exists from here on.
        let holder = cmd.spawn().expect("cannot start a namespace holder");
        let ns = Netns { holder };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace file, for nsenter and setns.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// The holder's pid, which `ip link ... netns` takes.
    pub fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// `ip args...` inside the namespace, must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let net = format!("--net={}", self.path().display());
        let mut v = vec!["nsenter", &net, "ip"];
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
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(program);
        c
    }

    /// Runs `f` on a thread inside the namespace (the test process itself stays put; threads
    /// the closure starts inherit the namespace).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
    }

    /// Binds a TCP listener inside the namespace.
    pub fn listen(&self, addr: &str) -> std::net::TcpListener {
        let addr = addr.to_owned();
        self.run(move || std::net::TcpListener::bind(&addr).unwrap())
            .join()
            .unwrap()
    }

    /// The processes inside the namespace, the holder included.
    fn pids(&self) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(ours) = std::fs::metadata(self.path()) else {
            return Vec::new();
        };
        let me = std::process::id() as i32;
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino())
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The usual start of a test: root is checked, and there is a directory for the daemon's files
/// and a device namespace with stand-in netdevs `names` (see [`Netns::netdev`]).
pub fn device(names: &[&str]) -> (tempfile::TempDir, Netns) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new("dev");
    for n in names {
        ns.netdev(n);
    }
    (dir, ns)
}

/// A veth pair: `a_name` in `a`, `b_name` in `b`, administratively up on B's side only.
pub fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) {
    sh(&[
        "ip",
        "link",
        "add",
        a_name,
        "netns",
        &a.pid(),
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        &b.pid(),
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
/// The daemon under test (ready at READY=1, its log kept).
pub use myelin_testbus::daemon::Daemon;

/// Starts `myelin-net daemon --config <config>` in `ns` on `bus` at log level `debug` (so the
/// tests run the debug records too, and can read what the daemon did); returns once it is
/// ready.
pub fn start_daemon(ns: &Netns, bus: &Bus, config: &Path) -> Daemon {
    start_daemon_at(ns, bus, config, "debug")
}

/// [`start_daemon`] at another log level (`MYELIN_LOG`).
pub fn start_daemon_at(ns: &Netns, bus: &Bus, config: &Path, level: &str) -> Daemon {
    let mut cmd = ns.cmd(env!("CARGO_BIN_EXE_myelin-net"));
    cmd.args(["daemon", "--config"])
        .arg(config)
        .args(["--address", bus.address()])
        .env("MYELIN_LOG", level)
        .stdout(Stdio::null());
    Daemon::start(cmd)
}

/// Polls `f` until it returns `Some` (the event it looks for happened), or panics with `what`
/// after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `f` on a thread whose (only) credentials are uid/gid 65534 (nobody).
pub fn spawn_as_nobody<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        // Raw syscalls change only this thread's credentials (glibc's wrappers would change
        // every thread of the test process).
        // SAFETY: plain syscalls with integer arguments.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
        f()
    })
}

/// Runs `f` as nobody (see [`spawn_as_nobody`]) and returns its result.
pub fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_as_nobody(f).join().unwrap()
}

/// Runs `f` on a current-thread tokio runtime of its own (for threads of another uid).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The daemon's ObjectManager (its interface objects).
pub async fn object_manager(conn: &zbus::Connection) -> zbus::fdo::ObjectManagerProxy<'static> {
    zbus::fdo::ObjectManagerProxy::builder(conn)
        .destination("org.myelin.Network1")
        .path("/org/myelin/Network1")
        .build()
        .await
        .unwrap()
}

/// Asks for a DHCP lease on `ifname` in `ns` with busybox udhcpc, as a laptop on a gadget link
/// or a station of an access point would: the (address, netmask) it was offered, if any.
/// udhcpc stops at the first lease; it tries for up to 30 s.
pub fn dhcp_lease(ns: &Netns, ifname: &str, dir: &Path) -> Option<(String, String)> {
    let script = dir.join("print-lease");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE $ip $subnet\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ns
        .cmd("busybox")
        .args([
            "udhcpc", "-f", "-q", "-n", "-t", "30", "-T", "1", "-i", ifname, "-s",
        ])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lease = stdout.lines().find_map(|l| {
        let mut words = l.strip_prefix("LEASE ")?.split_whitespace();
        Some((words.next()?.to_owned(), words.next()?.to_owned()))
    });
    if lease.is_none() {
        eprintln!(
            "udhcpc on {ifname} got no lease:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    lease
}

/// Connectivity checks that decide quickly, for tests that watch the verdict change.
pub const FAST_CHECKS: &str = r#"min_interval = "100ms"
max_interval = "400ms"
timeout = "300ms"
"#;

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
wpa_request_timeout = "5s"
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
/// attached clients. It can stop answering, hold its replies back, or vanish. It serves from a
/// thread of its own, so a test thread that blocks (running `ip`, waiting for a daemon) never
/// keeps it from answering in time.
#[derive(Clone)]
pub struct FakeWpa {
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    sock: Arc<StdDatagram>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct FakeState {
    pub replies: std::collections::HashMap<String, String>,
    pub received: Vec<String>,
    pub attached: Vec<PathBuf>,
    pub mute: bool,
    /// While set, replies are kept in `held` instead of sent.
    pub hold: bool,
    pub held: Vec<(String, PathBuf)>,
}

impl FakeWpa {
    /// Binds at `path` and serves until the last clone is dropped or it crashes.
    pub fn start(path: &Path) -> FakeWpa {
        let _ = std::fs::remove_file(path);
        let sock = Arc::new(StdDatagram::bind(path).unwrap());
        // Short reads, so the thread notices when it is no longer wanted.
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
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
        let stop = Arc::new(AtomicBool::new(false));
        let (weak, server, stopped) = (Arc::downgrade(&state), sock.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stopped.load(Ordering::SeqCst) {
                let Some(state) = weak.upgrade() else { return };
                let Ok((n, from)) = server.recv_from(&mut buf) else {
                    continue;
                };
                let cmd = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some(from) = from.as_pathname().map(Path::to_owned) else {
                    continue;
                };
                let reply = {
                    let mut s = state.lock().unwrap();
                    s.received.push(cmd.clone());
                    if s.mute {
                        continue;
                    }
                    if cmd == "ATTACH" {
                        s.attached.push(from.clone());
                    }
                    let r = s.replies.get(&cmd).cloned();
                    let r = r.unwrap_or_else(|| "UNKNOWN COMMAND\n".into());
                    if s.hold {
                        s.held.push((r, from));
                        continue;
                    }
                    r
                };
                let _ = server.send_to(reply.as_bytes(), &from);
            }
        });
        FakeWpa {
            path: path.to_owned(),
            state,
            sock,
            stop,
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

    /// Waits until `cmd` has arrived at least `n` times.
    pub async fn wait_received(&self, cmd: &str, n: usize) {
        wait_for(&format!("{n} {cmd} requests"), || async {
            (self.received(cmd) >= n).then_some(())
        })
        .await
    }

    /// Keeps the replies to the following requests until [`FakeWpa::release`].
    pub fn hold(&self) {
        self.state.lock().unwrap().hold = true;
    }

    /// Sends the replies kept since [`FakeWpa::hold`] (they are in their clients' sockets when
    /// this returns) and answers at once again; returns how many there were.
    pub fn release(&self) -> usize {
        let held = {
            let mut s = self.state.lock().unwrap();
            s.hold = false;
            std::mem::take(&mut s.held)
        };
        for (reply, to) in &held {
            self.sock.send_to(reply.as_bytes(), to).unwrap();
        }
        held.len()
    }

    pub fn mute(&self, on: bool) {
        self.state.lock().unwrap().mute = on;
    }

    /// Sends an event (`<3>CTRL-EVENT-...`) to every attached client.
    pub fn event(&self, text: &str) {
        let targets = self.state.lock().unwrap().attached.clone();
        for t in targets {
            let _ = self.sock.send_to(text.as_bytes(), &t);
        }
    }

    /// The supplicant crashes: its socket path disappears and it answers nothing more.
    pub fn crash(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Two access points, as SCAN_RESULTS prints them.
pub const SCAN_TWO: &str = "bssid / frequency / signal level / flags / ssid\n\
    02:00:00:00:00:01\t2437\t-40\t[WPA2-PSK-CCMP][ESS]\tMyelinHome\n\
    02:00:00:00:00:02\t5180\t-72\t[ESS]\tCafe\n";
