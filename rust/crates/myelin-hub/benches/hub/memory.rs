//! 1. Idle memory: the release daemon joined and heartbeating, against a parked Rust program.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use myelin_testbus::TestBus;
use tokio::runtime::Runtime;

use crate::measure::{Memory, file_rss, memory, mib};
use crate::server::{Server, waiter};
use crate::sim::{env, write_secret};
use crate::support::{Event, Options, Pki, StandIn};

/// The target for the idle daemon.
const RSS_TARGET_KIB: u64 = 4 * 1024;

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
        if let Ok(Some((_, e))) = got {
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

/// Measures the daemon and the baseline and prints both.
pub(crate) fn bench(daemon: &Path, baseline: &Path, pki: &Pki, dir: &Path) {
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
