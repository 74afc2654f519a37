//! Restart latency: from asking a service to crash to its replacement's READY=1, over many
//! crashes, with myelin-init (release build) as PID 1 in namespaces; and the same round trip
//! without init (this program forks, execs and waits for READY=1 itself) as the baseline.
//! Also PID 1's resident memory after the run.
//!
//!   cargo bench -p myelin-init --bench restart -- [--crashes N] [--no-cgroups]
//!
//! By default services run in a cgroup each (fork, join the cgroup, exec); `--no-cgroups` shows
//! the process-group tracking's start (posix_spawn) for comparison.
//!
//! The test service (this executable, see tests/pid1/support.rs) sends READY=1, reports
//! `ready <t>` on a datagram socket, then exits 1 when a datagram arrives on its crash socket.
//! Latency = time the crash request was sent → time the next `ready` report was received.
//! PID 1 logs as usual (ring, console) except to the kernel log, which stays the host's.

#![allow(clippy::unwrap_used)]

#[path = "../tests/pid1/support.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Setup, mono_us};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        *v.last().unwrap(),
    )
}

fn wait_ready(report: &UnixDatagram) -> u64 {
    let mut buf = [0u8; 64];
    let n = report.recv(&mut buf).expect("no READY report within 10 s");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("ready "), "{text}");
    mono_us()
}

fn crash(sock: &Path) -> u64 {
    let s = UnixDatagram::unbound().unwrap();
    let t = mono_us();
    s.send_to(b"x", sock).unwrap();
    t
}

/// Without init: this process is the supervisor, with nothing else to do.
fn baseline(dir: &Path, crashes: usize) -> Vec<u64> {
    let notify_path = dir.join("base-notify");
    let report_path = dir.join("base-report");
    let crash_path = dir.join("base-crash");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let report = UnixDatagram::bind(&report_path).unwrap();
    report
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .env_clear()
            .env("MYELIN_TEST_HELPER", "bench")
            .env("NOTIFY_SOCKET", &notify_path)
            .env("REPORT", &report_path)
            .env("CRASH_SOCK", &crash_path)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let mut buf = [0u8; 64];
    let _ = notify.recv(&mut buf);
    wait_ready(&report);
    let mut out = Vec::with_capacity(crashes);
    for _ in 0..crashes {
        let t0 = crash(&crash_path);
        child.wait().unwrap();
        child = spawn();
        let _ = notify.recv(&mut buf);
        let t1 = wait_ready(&report);
        out.push(t1 - t0);
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

fn with_init(
    crashes: usize,
    init: Option<&Path>,
    cgroups: bool,
) -> (Vec<u64>, Option<(u64, u64, u64)>) {
    let mut s = Setup::new("bench-restart");
    if !cgroups {
        s.init = "cgroups = false\n".into();
    }
    if let Some(i) = init {
        s.init_bin = i.to_path_buf();
    }
    let report_path = s.dir.join("report");
    let crash_path = s.dir.join("crash");
    // No kernel log: the host's must not be written, and a scratch file would measure the
    // host's disk rather than PID 1 (on a device /dev/kmsg is memory).
    s.kmsg_off = true;
    s.body = format!(
        "[root]\nintensity = 1000000\nperiod = \"1s\"\n\
         [[service]]\nname = \"crashy\"\nargv = [\"{}\"]\nnotify = true\n\
         restart_delay = \"0s\"\nrestart_delay_max = \"0s\"\n\
         env = {{ MYELIN_TEST_HELPER = \"bench\", REPORT = \"{}\", CRASH_SOCK = \"{}\" }}\n",
        std::env::current_exe().unwrap().display(),
        report_path.display(),
        crash_path.display()
    );
    let report = UnixDatagram::bind(&report_path).unwrap();
    report
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let ns = s.start();
    wait_ready(&report);
    let mut out = Vec::with_capacity(crashes);
    for _ in 0..crashes {
        let t0 = crash(&crash_path);
        let t1 = wait_ready(&report);
        out.push(t1 - t0);
    }
    let n = ns.node("crashy");
    assert_eq!(n.restarts as usize, crashes, "every crash was a restart");
    (out, ns.init_memory())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_memory(what: &str, after: &str, m: Option<(u64, u64, u64)>, target: bool) {
    match m {
        Some((rss, anon, file)) => println!(
            "  {what:<24} VmRSS {:5.2} MiB = private {:4.2} + mapped files {:4.2}  {after}{}",
            mib(rss),
            mib(anon),
            mib(file),
            if !target {
                String::new()
            } else if rss < 2048 {
                "   target < 2 MiB: met".into()
            } else {
                "   target < 2 MiB: MISSED".into()
            }
        ),
        None => println!("  {what:<24} not measured"),
    }
}

/// The floor of any dynamically linked program on this libc: /bin/sleep's memory.
fn sleep_memory() -> Option<(u64, u64, u64)> {
    let mut c = Command::new("sleep").arg("5").spawn().ok()?;
    std::thread::sleep(Duration::from_millis(200));
    let m = support::memory_kib(c.id() as i32);
    let _ = c.kill();
    let _ = c.wait();
    m
}

fn main() {
    support::run_helper_if_asked();
    let mut crashes = 1000;
    let mut static_init: Option<std::path::PathBuf> = None;
    let mut cgroups = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--crashes" => {
                crashes = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--crashes N")
            }
            "--static-init" => static_init = args.next().map(Into::into),
            "--no-cgroups" => cgroups = false,
            _ => {}
        }
    }
    if let Err(why) = support::namespaces_available() {
        eprintln!("restart bench: namespaces are not available here: {why}");
        std::process::exit(1);
    }
    let dir = support::scratch("bench-baseline");
    let base = baseline(&dir, crashes);
    let (init, mem) = with_init(crashes, None, cgroups);
    let _ = std::fs::remove_dir_all(&dir);
    let (b50, b99, bmax) = summary(base);
    let (i50, i99, imax) = summary(init);
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "restart latency, crash -> replacement READY=1, {crashes} crashes ({}):",
        if cgroups {
            "a cgroup per service"
        } else {
            "no cgroups"
        }
    );
    println!(
        "  myelin-init  p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms   target p99 < 10 ms: {}",
        ms(i50),
        ms(i99),
        ms(imax),
        if i99 < 10_000 { "met" } else { "MISSED" }
    );
    println!(
        "  baseline     p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms   (bare fork+exec+READY=1, no init)",
        ms(b50),
        ms(b99),
        ms(bmax)
    );
    println!(
        "  ratio        p50 {:.2}x  p99 {:.2}x   (init's own share at p50: {:.2} ms)",
        i50 as f64 / b50.max(1) as f64,
        i99 as f64 / b99.max(1) as f64,
        ms(i50.saturating_sub(b50))
    );
    println!("PID 1 memory:");
    print_memory(
        "dynamic (as Buildroot)",
        &format!("after {crashes} restarts"),
        mem,
        true,
    );
    if let Some(p) = static_init {
        let n = (crashes / 10).max(10);
        let (_, smem) = with_init(n, Some(&p), cgroups);
        print_memory(
            "static glibc (x86_64)",
            &format!("after {n} restarts"),
            smem,
            true,
        );
    }
    print_memory(
        "baseline /bin/sleep",
        "(the dynamic libc floor)",
        sleep_memory(),
        false,
    );
}
