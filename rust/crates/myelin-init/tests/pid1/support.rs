//! Shared by the PID-1 tests and the restart-latency benchmark: the real `myelin-init` run as
//! PID 1 in user+PID+mount+UTS+cgroup(+net) namespaces, and a configurable test service (this
//! very executable, re-run with `MYELIN_TEST_HELPER` set).
//!
//! Nothing of the host's state leaks in: the namespace's PID 1 is first this executable as a
//! wrapper, which mounts a fresh tmpfs on /run (so what the host or another test left there,
//! `ip netns` mounts or a /run/reboot-param, is out of sight) and cgroup2 on /sys/fs/cgroup (the
//! test's own cgroup, made by [`Setup::start`]), starts with signals ignored and blocked the way
//! a careless launcher would, then execs myelin-init, which stays PID 1.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use myelin_init::control::{Body, Client, NodeStatus, Op, StatusReport};

/// Monotonic microseconds (the same clock in every namespace).
pub fn mono_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

// ----- the test service -----------------------------------------------------------------------

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn event(what: &str) {
    if let Some(path) = env("EVENTS") {
        let name = env("NAME").unwrap_or_default();
        let line = format!("{name} {what} {} {}\n", mono_us(), std::process::id());
        if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn notify(msg: &str) {
    if let Some(sock) = env("NOTIFY_SOCKET") {
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(msg.as_bytes(), sock);
        }
    }
}

/// Runs the helper named by `MYELIN_TEST_HELPER`, if any (never returns then).
pub fn run_helper_if_asked() {
    let Some(mode) = env("MYELIN_TEST_HELPER") else {
        return;
    };
    match mode.as_str() {
        "pid1" => pid1_wrapper(),
        "svc" => svc(),
        "zombies" => zombies(),
        "bench" => bench_svc(),
        other => {
            eprintln!("unknown helper {other}");
            std::process::exit(2);
        }
    }
}

/// A service whose behaviour the environment describes:
/// `READY_AFTER_MS` (send READY=1 after that long), `PING_MS` (WATCHDOG=1 period),
/// `IGNORE_TERM`, `LISTEN_PATH` (a Unix socket to listen on after `LISTEN_AFTER_MS`), `CTL` (a directory polled for `<NAME>.crash`, `.exit0`, `.hang` files),
/// `EVENTS` (file receiving `name event t_us pid` lines), `PRINT` (a line printed at start).
fn svc() -> ! {
    // SIGTERM is handled by a thread so the event is recorded before exiting.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGTERM);
    let _ = set.thread_block();
    let ignore = env("IGNORE_TERM").is_some();
    std::thread::spawn(move || {
        loop {
            if set.wait().is_ok() {
                event("term");
                if !ignore {
                    std::process::exit(0);
                }
            }
        }
    });
    event("start");
    if let Some(p) = env("PRINT") {
        println!("{p}");
        eprintln!("{p} (stderr)");
    }
    let _listener = env("LISTEN_PATH").map(|p| {
        let ms = env("LISTEN_AFTER_MS")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        event("listen");
        std::os::unix::net::UnixListener::bind(p).ok()
    });
    if let Some(ms) = env("READY_AFTER_MS").and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
        event("ready");
        notify("READY=1");
    }
    let ping = env("PING_MS").and_then(|v| v.parse::<u64>().ok());
    let ctl = env("CTL").map(PathBuf::from);
    let name = env("NAME").unwrap_or_default();
    let mut hung = false;
    let mut pings = 0;
    let mut last_ping = Instant::now();
    loop {
        if let (Some(p), false) = (ping, hung) {
            if last_ping.elapsed() >= Duration::from_millis(p) {
                notify("WATCHDOG=1");
                last_ping = Instant::now();
                // The first pings, as events (tests wait for a span of them).
                if pings < 100 {
                    pings += 1;
                    event("ping");
                }
            }
        }
        if let Some(dir) = &ctl {
            for cmd in ["crash", "exit0", "hang", "stop"] {
                let f = dir.join(format!("{name}.{cmd}"));
                if fs::remove_file(&f).is_ok() {
                    event(cmd);
                    match cmd {
                        "crash" => std::process::exit(1),
                        "exit0" => std::process::exit(0),
                        // SAFETY: raise(2).
                        "stop" => unsafe {
                            libc::raise(libc::SIGSTOP);
                        },
                        _ => hung = true,
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The namespace's first process: a private /run, the test's cgroup on /sys/fs/cgroup, a messy
/// signal state, then exec of the arguments (myelin-init and its options), which stays PID 1.
fn pid1_wrapper() -> ! {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mount = |src: &str, target: &str, fstype: &str, data: &str| -> bool {
        let c = |s: &str| CString::new(s).expect("no NUL");
        let (s, t, f, d) = (c(src), c(target), c(fstype), c(data));
        // SAFETY: mount(2) with valid C strings.
        unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                f.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                d.as_ptr().cast(),
            ) == 0
        }
    };
    if !mount("tmpfs", "/run", "tmpfs", "mode=0755") {
        eprintln!(
            "pid1 wrapper: cannot mount a tmpfs on /run: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(3);
    }
    if env("LOCK_DIR_1777").is_some() {
        // As a host (or an unprivileged user with write access to /run) could have left it.
        let _ = fs::create_dir("/run/lock");
        let _ = fs::set_permissions(
            "/run/lock",
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        );
    }
    if Path::new("/sys/fs/cgroup").is_dir() {
        // Fails without cgroup2; myelin-init then says it uses process groups.
        mount("cgroup2", "/sys/fs/cgroup", "cgroup2", "");
    }
    // A launcher that ignored and blocked signals (nohup, a shell's background job).
    // SAFETY: signal dispositions and the mask of this single-threaded process, before exec.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGTSTP,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .map(|a| CString::new(a.as_bytes()).expect("no NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: removing variables before exec; nothing else runs.
    unsafe {
        std::env::remove_var("MYELIN_TEST_HELPER");
        std::env::remove_var("LOCK_DIR_1777");
    }
    // SAFETY: execv with a NULL-terminated argv of valid C strings.
    unsafe { libc::execv(args[0].as_ptr(), argv.as_ptr()) };
    eprintln!(
        "pid1 wrapper: exec {:?}: {}",
        args[0],
        std::io::Error::last_os_error()
    );
    std::process::exit(3)
}

/// A cgroup of the host's cgroup2 hierarchy for one test's namespace (its root there).
pub struct TestCgroup {
    dir: PathBuf,
    procs: fs::File,
}

impl TestCgroup {
    /// Makes `<the test's own cgroup>/myelin-pid1-<name>`; `None` without cgroup2.
    pub fn create(name: &str) -> Option<TestCgroup> {
        let mounts = myelin_init::mountinfo::parse_mountinfo(
            &fs::read_to_string("/proc/self/mountinfo").ok()?,
        );
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let base = myelin_init::tracking::own_cgroup_dir(&mounts, &own)?;
        let dir = base.join(format!("myelin-pid1-{name}-{}", std::process::id()));
        remove_cgroup_tree(&dir);
        fs::create_dir(&dir).ok()?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .ok()?;
        Some(TestCgroup { dir, procs })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.dir);
    }
}

/// Removes a cgroup directory and the ones below it (once their processes are gone).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..500 {
        match fs::remove_dir(dir) {
            // EBUSY while a dying process still counts as a member.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// Forks `COUNT` children that exit at once, never waits for them, and exits: every one of
/// them is left for PID 1 to reap.
fn zombies() -> ! {
    let n: usize = env("COUNT").and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut made = 0;
    for _ in 0..n {
        // SAFETY: the child only calls _exit.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            p if p > 0 => made += 1,
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    event(&format!("forked{made}"));
    std::process::exit(0)
}

/// The benchmark service: READY=1, report `ready <t_us>` to `REPORT`, then wait for a datagram
/// on `CRASH_SOCK` and exit 1.
fn bench_svc() -> ! {
    let sock_path = env("CRASH_SOCK").unwrap_or_default();
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|_| std::process::exit(3));
    notify("READY=1");
    if let (Some(report), Ok(s)) = (env("REPORT"), UnixDatagram::unbound()) {
        let _ = s.send_to(format!("ready {}", mono_us()).as_bytes(), report);
    }
    let mut buf = [0u8; 16];
    let _ = sock.recv(&mut buf);
    std::process::exit(1)
}

// ----- PID 1 in namespaces ----------------------------------------------------------------------

/// What reboot(2) the namespace's init chose, from the outer process's wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// RESTART or RESTART2: SIGHUP.
    Reboot,
    /// HALT or POWER_OFF: SIGINT.
    HaltOrPoweroff,
    /// Anything else.
    Other(Option<i32>, Option<i32>),
}

/// Classifies a wait status (`unshare` re-raises the signal that killed the init, a shell
/// would show 129 or 130).
pub fn outcome(st: ExitStatus) -> Outcome {
    match (st.signal(), st.code()) {
        (Some(libc::SIGHUP), _) | (_, Some(129)) => Outcome::Reboot,
        (Some(libc::SIGINT), _) | (_, Some(130)) => Outcome::HaltOrPoweroff,
        (s, c) => Outcome::Other(s, c),
    }
}

/// Where the namespaces' scratch directories live: cargo's target tmp directory, unless that
/// is under /tmp or /run. Boot duties mount fresh tmpfs there inside the namespace, which would
/// hide the directory from PID 1 (its configuration, kmsg file and control socket) and so make
/// the tests depend on where the checkout is (a clone in `mktemp -d` failed four of them).
fn scratch_base() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if target.starts_with("/tmp") || target.starts_with("/run") {
        // SAFETY: getuid(2) cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(format!("/var/tmp/myelin-pid1-{uid}"))
    } else {
        target.join("pid1")
    }
}

/// A scratch directory for one test, outside /tmp and /run (which a test init may mount over).
pub fn scratch(name: &str) -> PathBuf {
    let base = scratch_base();
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("ctl")).expect("scratch dir");
    dir
}

/// A running namespace whose PID 1 is myelin-init.
pub struct Ns {
    /// Scratch directory.
    pub dir: PathBuf,
    child: Option<Child>,
    status: Option<ExitStatus>,
    /// Whether the host gave the namespace a cgroup of its own.
    pub cgroup: bool,
    _cgroup: Option<TestCgroup>,
}

/// Builds a namespace test's configuration.
pub struct Setup {
    /// Scratch directory.
    pub dir: PathBuf,
    /// Extra `[init]` lines.
    pub init: String,
    /// The `[boot]` section (default: disabled).
    pub boot: String,
    /// Extra `[log]` lines.
    pub log: String,
    /// Everything else (`[root]`, `[watchdog]`, supervisors, services).
    pub body: String,
    /// Extra unshare flags.
    pub unshare: Vec<String>,
    /// The init binary (default: this build's myelin-init).
    pub init_bin: PathBuf,
    /// PID 1's stdout and stderr (default: the `console` file).
    pub console: Option<fs::File>,
    /// Pass this path as the configuration instead of the one written.
    pub config_file: Option<PathBuf>,
    /// No kernel log at all (not even the scratch file).
    pub kmsg_off: bool,
    /// Drop-in files written next to the configuration (`init.d/<name>`).
    pub drop_ins: Vec<(String, String)>,
    /// Leave a world-writable /run/lock for myelin-init to find.
    pub lock_dir_1777: bool,
}

impl Setup {
    /// A setup for the test `name`.
    pub fn new(name: &str) -> Setup {
        Setup {
            dir: scratch(name),
            init: String::new(),
            boot: "[boot]\nenabled = false\n".into(),
            log: String::new(),
            body: String::new(),
            unshare: Vec::new(),
            // Another build's binary may stand in, to show a test failing on an older init.
            init_bin: std::env::var_os("MYELIN_TEST_INIT_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_myelin-init"))),
            console: None,
            config_file: None,
            kmsg_off: false,
            drop_ins: Vec::new(),
            lock_dir_1777: false,
        }
    }

    /// A test-service table: `[[service]]` with the helper's environment.
    pub fn svc(&self, name: &str, env: &[(&str, &str)], extra: &str) -> String {
        let mut e = format!(
            "MYELIN_TEST_HELPER = \"svc\", NAME = \"{name}\", EVENTS = \"{}\", CTL = \"{}\"",
            self.dir.join("events").display(),
            self.dir.join("ctl").display()
        );
        for (k, v) in env {
            e.push_str(&format!(", {k} = \"{v}\""));
        }
        format!(
            "[[service]]\nname = \"{name}\"\nargv = [\"{}\"]\nenv = {{ {e} }}\n{extra}\n",
            std::env::current_exe().expect("test exe").display()
        )
    }

    /// The configuration text.
    pub fn config(&self) -> String {
        format!(
            "[init]\nrun_dir = \"{}\"\nfatal_delay = \"0s\"\nunmount = false\nkill_wait = \"500ms\"\n{}\n{}\n[log]\nkmsg = \"{}\"\npmsg = \"\"\n{}\n{}",
            self.dir.join("run").display(),
            self.init,
            self.boot,
            self.dir.join("kmsg").display(),
            self.log,
            self.body
        )
    }

    /// Writes the configuration and starts the namespace.
    pub fn start(self) -> Ns {
        let cfg = self.dir.join("init.toml");
        fs::write(&cfg, self.config()).expect("write config");
        if !self.drop_ins.is_empty() {
            fs::create_dir_all(self.dir.join("init.d")).expect("init.d");
            for (name, text) in &self.drop_ins {
                fs::write(self.dir.join("init.d").join(name), text).expect("drop-in");
            }
        }
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cgroup = TestCgroup::create(&name);
        let cfg = self.config_file.clone().unwrap_or(cfg);
        fs::write(self.dir.join("kmsg"), "").expect("kmsg");
        let out = match self.console {
            Some(f) => f,
            None => fs::File::create(self.dir.join("console")).expect("console"),
        };
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--uts",
            "--cgroup",
        ])
        .args(&self.unshare)
        .arg(std::env::current_exe().expect("test exe"))
        .arg(&self.init_bin)
        .arg("--config")
        .arg(&cfg)
        // Even when the configuration is unreadable: never the host's kernel log.
        .arg("--kmsg")
        .arg(if self.kmsg_off {
            PathBuf::new()
        } else {
            self.dir.join("kmsg")
        })
        .env("MYELIN_TEST_HELPER", "pid1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
        if self.lock_dir_1777 {
            cmd.env("LOCK_DIR_1777", "1");
        }
        if let Some(cg) = &cgroup {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = cg.procs.as_raw_fd();
            // SAFETY: write(2) between fork and exec: unshare, and so the namespace, starts in
            // the test's cgroup, which becomes the root of its cgroup namespace.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("unshare");
        Ns {
            dir: self.dir,
            child: Some(child),
            status: None,
            cgroup: cgroup.is_some(),
            _cgroup: cgroup,
        }
    }
}

impl Ns {
    /// The init's pid as seen from here.
    pub fn init_pid(&self) -> Option<i32> {
        let unshare = self.child.as_ref()?.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(tasks) = fs::read_dir(format!("/proc/{unshare}/task")) {
                for t in tasks.flatten() {
                    if let Ok(c) = fs::read_to_string(t.path().join("children")) {
                        if let Some(p) = c.split_whitespace().next().and_then(|p| p.parse().ok()) {
                            return Some(p);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Sends a signal to the init from outside.
    pub fn signal(&self, sig: i32) {
        let pid = self.init_pid().expect("init pid");
        // SAFETY: kill(2).
        unsafe { libc::kill(pid, sig) };
    }

    /// A control connection (waits for the socket).
    pub fn client(&self) -> Client {
        let path = self.dir.join("run/init.sock");
        // Only a hang detector: PID 1 binds the socket after its boot duties, which a loaded
        // machine can stretch to many seconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut c) = Client::connect(&path) {
                c.set_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no control socket at {}\n{}",
                path.display(),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `myelinctl status`.
    pub fn status(&self) -> StatusReport {
        match self.client().call(Op::Status) {
            Ok(Body::Status(s)) => *s,
            other => panic!("status: {other:?}"),
        }
    }

    /// Finds a node of the status tree.
    pub fn node(&self, name: &str) -> NodeStatus {
        fn find(n: &NodeStatus, name: &str) -> Option<NodeStatus> {
            if n.name == name {
                return Some(n.clone());
            }
            n.children.iter().find_map(|c| find(c, name))
        }
        find(&self.status().tree, name).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Waits until `f` holds.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nconsole:\n{}\nkmsg:\n{}",
                self.console(),
                self.kmsg()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the last line a service logged starts with `prefix`; that line.
    pub fn last_line(&self, service: &str, prefix: &str) -> String {
        let mut c = self.client();
        let mut line = String::new();
        self.wait_for(
            &format!("{service}'s {prefix} line"),
            Duration::from_secs(10),
            || {
                c.send(Op::Log {
                    service: Some(service.into()),
                    lines: Some(1),
                    level: None,
                    follow: false,
                })
                .expect("log request");
                while let Ok(Some(Body::Log(e))) = c.receive() {
                    line = e.text;
                }
                line.starts_with(prefix)
            },
        );
        line
    }

    /// Waits until a service runs with a pid.
    pub fn running(&self, name: &str) -> u32 {
        let mut pid = 0;
        self.wait_for(&format!("{name} running"), Duration::from_secs(10), || {
            let n = self.node(name);
            pid = n.pid.unwrap_or(0);
            n.state == "running"
        });
        pid
    }

    /// Waits until a test service runs and has recorded its start (its signal handling is
    /// in place from then on).
    pub fn up(&self, name: &str) -> u32 {
        let pid = self.running(name);
        self.wait_for(&format!("{name} started"), Duration::from_secs(10), || {
            self.events()
                .iter()
                .any(|e| e.0 == name && e.1 == "start" && e.3 == pid)
        });
        pid
    }

    /// Creates a control file for the test service (`crash`, `exit0`, `hang`).
    pub fn tell(&self, name: &str, cmd: &str) {
        fs::write(self.dir.join("ctl").join(format!("{name}.{cmd}")), "").expect("ctl");
    }

    /// The events the test services recorded: (name, event, t_us, pid).
    pub fn events(&self) -> Vec<(String, String, u64, u32)> {
        fs::read_to_string(self.dir.join("events"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((
                    f[0].to_string(),
                    f[1].to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// Events of one kind, in order, as "name".
    pub fn names_of(&self, what: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.1 == what)
            .map(|e| e.0)
            .collect()
    }

    /// What init wrote to its (file) kmsg.
    pub fn kmsg(&self) -> String {
        fs::read_to_string(self.dir.join("kmsg")).unwrap_or_default()
    }

    /// What init wrote to its console.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console")).unwrap_or_default()
    }

    /// Waits for the namespace to end.
    pub fn wait(&mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.status {
                return outcome(st);
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.status = Some(st);
                continue;
            }
            if Instant::now() > deadline {
                panic!(
                    "init still running after {timeout:?}\nconsole:\n{}\nkmsg:\n{}",
                    self.console(),
                    self.kmsg()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the namespace still runs.
    pub fn alive(&mut self) -> bool {
        self.status.is_none()
            && self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The init's VmRSS in KiB.
    pub fn init_rss_kib(&self) -> Option<u64> {
        self.init_memory().map(|m| m.0)
    }

    /// The init's VmRSS, RssAnon and RssFile in KiB.
    pub fn init_memory(&self) -> Option<(u64, u64, u64)> {
        memory_kib(self.init_pid()?)
    }

    /// The pid, as seen from here, of the init's child that has `ns_pid` inside.
    pub fn host_pid(&self, ns_pid: u32) -> Option<i32> {
        let init = self.init_pid()?;
        for e in fs::read_dir("/proc").ok()?.flatten() {
            let Ok(st) = fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let field = |k: &str| {
                st.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            let ppid: Option<i32> = field("PPid:").and_then(|v| v.parse().ok());
            let nspid: Option<u32> = field("NSpid:")
                .and_then(|v| v.split_whitespace().last().and_then(|x| x.parse().ok()));
            if ppid == Some(init) && nspid == Some(ns_pid) {
                return e.file_name().to_str()?.parse().ok();
            }
        }
        None
    }

    /// Whether a process with pid `ns_pid` inside this namespace exists (and is not a zombie).
    pub fn alive_inside(&self, ns_pid: u32) -> bool {
        let Some(init) = self.init_pid() else {
            return false;
        };
        let status = |pid: i32| fs::read_to_string(format!("/proc/{pid}/status")).ok();
        let field = |st: &str, k: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let Some(st) = status(pid) else { continue };
            let inner =
                field(&st, "NSpid:").and_then(|v| v.split_whitespace().last()?.parse::<u32>().ok());
            if inner != Some(ns_pid) || field(&st, "State:").is_some_and(|s| s.starts_with('Z')) {
                continue;
            }
            // One of ours only if init is an ancestor.
            let mut cur = pid;
            for _ in 0..64 {
                let Some(ppid) = status(cur).and_then(|s| field(&s, "PPid:")?.parse::<i32>().ok())
                else {
                    break;
                };
                if ppid == init {
                    return true;
                }
                if ppid <= 1 {
                    break;
                }
                cur = ppid;
            }
        }
        false
    }

    /// Processes whose parent is the init and that are zombies.
    pub fn zombies(&self) -> usize {
        let Some(init) = self.init_pid() else {
            return 0;
        };
        let mut n = 0;
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(s) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
                continue;
            };
            let mut f = rest.split(' ');
            let state = f.next();
            let ppid: Option<i32> = f.next().and_then(|p| p.parse().ok());
            if state == Some("Z") && ppid == Some(init) {
                n += 1;
            }
        }
        n
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if self.alive() {
            if let Some(pid) = self.init_pid() {
                // SAFETY: kill(2); killing a namespace's init ends the namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// VmRSS, RssAnon and RssFile of a process, in KiB.
pub fn memory_kib(pid: i32) -> Option<(u64, u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |k: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(k))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((get("VmRSS:")?, get("RssAnon:")?, get("RssFile:")?))
}

/// Whether this machine can run the namespace tests; if not, what `unshare` said.
pub fn namespaces_available() -> Result<(), String> {
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--uts",
            "--cgroup",
            "--net",
            "true",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether the test named `name` is opted out with `MYELIN_TEST_OPT_OUT` (a comma-separated
/// list of test names; CI never sets it). A test that cannot run otherwise fails.
pub fn opted_out(name: &str) -> bool {
    std::env::var("MYELIN_TEST_OPT_OUT").is_ok_and(|v| v.split(',').any(|n| n.trim() == name))
}

/// Reads a file, for assertions.
pub fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}
