//! The daemon on a private system bus (the shipped policy), with ntpd's hook path end to end.
//!
//! busybox ntpd has no Debian package with the applet, so a shell script stands in for it: it
//! takes ntpd's command line and runs the `-S` hook exactly as ntpd does (the event as the only
//! argument, `stratum`/`offset`/`poll_interval`/`freq_drift_ppm` in the environment), then
//! stays up like ntpd. What is real: the daemon, its hook binary and socket, the D-Bus service,
//! SetServers restarting ntpd with the new `-p` list, and the time file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use myelin_api::time::Time1Proxy;
use myelin_testbus::daemon::{Daemon, PATIENCE};
use myelin_testbus::{TestBus, shipped_policy};

/// The stand-in ntpd: records its argv, reports `stratum` (synchronized) for the server
/// 127.0.0.1:1123 and `unsync` for any other, then waits to be killed.
const FAKE_NTPD: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$ARGS_FILE"
hook=
server=
while [ $# -gt 0 ]; do
    case "$1" in
        -S) hook=$2; shift ;;
        -p) server=$2; shift ;;
    esac
    shift
done
if [ "$server" = 127.0.0.1:1123 ]; then
    stratum=3 offset=0.002 poll_interval=64 freq_drift_ppm=1 "$hook" stratum
else
    stratum=16 offset=0 "$hook" unsync
fi
exec sleep 1000
"#;

async fn wait_synchronized(time: &Time1Proxy<'_>, want: bool) {
    let mut changes = time.receive_synchronized_changed().await;
    let wait = async {
        if time.synchronized().await.expect("Synchronized") == want {
            return;
        }
        while let Some(c) = changes.next().await {
            if c.get().await.expect("value") == want {
                return;
            }
        }
        panic!("the property stream ended");
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("Synchronized never became {want}"));
}

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .expect("the time file exists")
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[test]
fn ntpd_reports_through_the_hook_reach_the_bus() {
    let bus = TestBus::system(&shipped_policy("org.myelin.Time1.conf"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ntpd = dir.path().join("ntpd");
    std::fs::write(&ntpd, FAKE_NTPD).expect("write ntpd");
    std::fs::set_permissions(&ntpd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let args_file = dir.path().join("ntpd.args");
    let time_file = dir.path().join("data/time");
    let config = dir.path().join("time.toml");
    std::fs::write(
        &config,
        format!(
            "servers = [\"127.0.0.1:1123\"]\nclient = \"ntpd\"\nntpd = [\"{}\"]\n\
             time_file = \"{}\"\nrtc = \"\"\nrun_dir = \"{}\"\nsntp_retry = \"1s\"\n",
            ntpd.display(),
            time_file.display(),
            dir.path().join("run").display()
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_myelin-time"));
    cmd.args(["daemon", "--config"])
        .arg(&config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("ARGS_FILE", &args_file);
    let daemon = Daemon::start(cmd);

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let conn = bus.connect().await;
            let time = Time1Proxy::new(&conn).await.expect("proxy");
            wait_synchronized(&time, true).await;
            let status = myelin_api::time::status(&conn).await.expect("status");
            assert_eq!(status.client, "ntpd");
            assert_eq!(status.stratum, 3);
            assert_eq!(status.servers, ["127.0.0.1:1123"]);
            assert!((status.offset - 0.002).abs() < 1e-9, "{status:?}");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs() as i64;
            assert!((now - status.last_sync).abs() < 60, "{status:?}");
            // The sync saved the time file: the next boot's floor is now.
            assert!((mtime(&time_file) - now).abs() < 60);
            let args = std::fs::read_to_string(&args_file).expect("ntpd ran");
            assert!(
                args.starts_with("-n -S ") && args.trim_end().ends_with(" -p 127.0.0.1:1123"),
                "{args}"
            );

            // A bad server is refused, naming it; a good list restarts ntpd with it.
            let e = time
                .set_servers(&["ok".into(), "-x".into()])
                .await
                .expect_err("refused");
            assert!(e.to_string().contains("servers[1]"), "{e}");
            time.set_servers(&["127.0.0.2:1123".into()])
                .await
                .expect("SetServers");
            wait_synchronized(&time, false).await;
            // GetStatus, not the proxy's cache: the other properties' signals may still be
            // on their way.
            let status = myelin_api::time::status(&conn).await.expect("status");
            assert_eq!(status.servers, ["127.0.0.2:1123"]);
            assert_eq!(status.stratum, 16);
            let args = std::fs::read_to_string(&args_file).expect("ntpd ran twice");
            assert_eq!(args.lines().count(), 2, "{args}");
            assert!(args.trim_end().ends_with("-p 127.0.0.2:1123"), "{args}");
        });
    let log = daemon.stop();
    assert!(log.contains("ntpd: stratum"), "{log}");
}
