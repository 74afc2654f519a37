//! The app against a real Mosquitto on the host's loopback: readings arrive, a bad value is
//! never published, and a broker stopped and started again loses no buffered reading.
//!
//! The sensor is a stand-in behind the app's `Sensor` trait (the host has no TMP102); the QEMU
//! scenario `sensor-node` runs the real one on i2c-stub. Needs Debian's `mosquitto` and
//! `mosquitto-clients` (scripts/deps/apt.txt): without them the test fails, it does not skip.

// Test helpers: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sensor_node::config::Config;
use sensor_node::sensor::Sensor;

const TOPIC: &str = "test/sensor-node";

/// A sensor whose value the test sets.
struct StandIn(Arc<Mutex<f32>>);

impl Sensor for StandIn {
    fn read_celsius(&mut self) -> Result<f32, String> {
        Ok(*self.0.lock().unwrap())
    }
    fn describe(&self) -> String {
        "stand-in sensor".into()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto with persistence: the durable subscriber's queue survives a restart.
struct Broker {
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn new(dir: &Path, port: u16) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\n",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        Broker {
            port,
            conf,
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package mosquitto) must be installed");
        self.child = Some(child);
        wait("the broker listening", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: it saves its persistent state.
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            c.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// mosquitto_sub with a durable session, one payload a line into a file.
struct Subscriber {
    port: u16,
    path: PathBuf,
    child: Option<Child>,
}

impl Subscriber {
    fn ensure_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait().unwrap().is_none() {
                return;
            }
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
        let child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-q",
                "1",
                "-c",
                "-i",
                "host-test-sub",
                "-t",
            ])
            .arg(TOPIC)
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian package mosquitto-clients) must be installed");
        self.child = Some(child);
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let Ok(f) = std::fs::File::open(&self.path) else {
            return vec![];
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }

    fn seqs(&self) -> Vec<u64> {
        self.messages()
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readings_reach_mosquitto_and_survive_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(dir.path(), free_port());
    broker.start();
    let mut sub = Subscriber {
        port: broker.port,
        path: dir.path().join("messages.jsonl"),
        child: None,
    };
    sub.ensure_running();
    wait("the subscription", Duration::from_secs(20), || {
        let ok = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-q",
                "1",
                "-t",
                TOPIC,
                "-m",
                "{\"probe\":1}",
            ])
            .arg("-p")
            .arg(broker.port.to_string())
            .status()
            .expect("mosquitto_pub must be installed")
            .success();
        ok && !sub.messages().is_empty()
    });

    let value = Arc::new(Mutex::new(21.5f32));
    let config = Config {
        broker: "127.0.0.1".into(),
        port: broker.port,
        topic: TOPIC.into(),
        client_id: "host-test-app".into(),
        interval: Duration::from_millis(100),
        http: "127.0.0.1:0".into(),
        led: "no-such-led-line".into(),
        ..Config::default()
    };
    let sensor = StandIn(Arc::clone(&value));
    std::thread::spawn(move || sensor_node::app::run(config, Box::new(sensor)));

    wait("readings on the broker", Duration::from_secs(30), || {
        sub.seqs().len() >= 3
    });
    assert!(
        sub.messages()
            .iter()
            .any(|m| m["celsius"].as_f64() == Some(21.5))
    );

    // A value no TMP102 measures is never published; readings go on after it.
    *value.lock().unwrap() = 130.0;
    std::thread::sleep(Duration::from_millis(500));
    *value.lock().unwrap() = 22.0;
    let n = sub.seqs().len();
    wait(
        "readings after the bad value",
        Duration::from_secs(30),
        || sub.seqs().len() > n + 2,
    );

    // The broker goes away for a while (readings pile up in the app), then comes back.
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.start();
    sub.ensure_running();
    let top_before = *sub.seqs().iter().max().unwrap();
    // Readings taken during the outage (~20 at 100 ms) must all arrive.
    wait("the buffered readings", Duration::from_secs(60), || {
        sub.seqs().iter().max().copied().unwrap_or(0) > top_before + 20
    });
    let seqs = sub.seqs();
    let top = *seqs.iter().max().unwrap();
    let missing: Vec<u64> = (1..=top).filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "lost readings: {missing:?}");
    let bad: Vec<_> = sub
        .messages()
        .into_iter()
        .filter(|m| m["celsius"].as_f64().is_some_and(|c| c > 125.0))
        .collect();
    assert!(bad.is_empty(), "rejected values were published: {bad:?}");
}
