//! The wpa_supplicant client and WiFi session against a fake control socket (a WiFi chip
//! cannot exist on the build machine; the client code is what the device runs).
//!
//! The session's own timers are short here (a 400 ms keepalive, a 2 s request timeout) so
//! the tests run quickly, but no assertion depends on how long anything took: each waits for
//! the event it is about, bounded only by a generous hang guard.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{FakeWpa, PATIENCE, SCAN_TWO};
use myelin_net::wpa::{self, Client, Command, Timing, Update, WpaError};
use tokio::sync::{mpsc, oneshot};

fn timing() -> Timing {
    Timing {
        request: Duration::from_secs(2),
        keepalive: Duration::from_millis(400),
        startup: PATIENCE,
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Update>) -> Update {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no update at all")
        .expect("session gone")
}

/// A session on the control socket `ctrl` (replies bound in `dir`): its task, its updates and
/// its command sender.
fn session(
    ctrl: &std::path::Path,
    dir: &std::path::Path,
) -> (
    tokio::task::JoinHandle<Result<(), WpaError>>,
    mpsc::UnboundedReceiver<Update>,
    mpsc::UnboundedSender<Command>,
) {
    let (utx, urx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    let task = tokio::spawn(wpa::session(
        ctrl.to_owned(),
        dir.to_owned(),
        timing(),
        utx,
        crx,
    ));
    (task, urx, ctx)
}

/// The session's outcome, once it ends.
async fn ended<T>(session: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(PATIENCE, session)
        .await
        .expect("the session never ended")
        .unwrap()
}

#[tokio::test]
async fn session_scans_connects_and_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let ctrl = dir.path().join("wlan0");
    // The session starts before the supplicant's socket exists (the race of VintageNet #116).
    let (session, mut urx, ctx) = session(&ctrl, dir.path());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fake = FakeWpa::start(&ctrl);

    assert_eq!(next(&mut urx).await, Update::Current(None));
    assert_eq!(next(&mut urx).await, Update::AccessPoints(vec![]));

    // A scan: the command reaches the supplicant, the results come with the event.
    fake.reply("SCAN_RESULTS", SCAN_TWO);
    let (tx, rx) = oneshot::channel();
    ctx.send(Command::Scan(tx)).unwrap();
    rx.await.unwrap().unwrap();
    assert_eq!(fake.received("SCAN"), 1);
    fake.event("<3>CTRL-EVENT-SCAN-RESULTS ");
    let Update::AccessPoints(aps) = next(&mut urx).await else {
        panic!("expected access points")
    };
    assert_eq!(aps.len(), 2);
    assert_eq!((aps[0].ssid.as_str(), aps[0].channel), ("MyelinHome", 6));
    assert_eq!(
        (aps[1].ssid.as_str(), aps[1].band.as_str()),
        ("Cafe", "5 GHz")
    );

    // A busy supplicant refuses the scan; the caller hears it.
    fake.reply("SCAN", "FAIL-BUSY\n");
    let (tx, rx) = oneshot::channel();
    ctx.send(Command::Scan(tx)).unwrap();
    let refused = rx.await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("FAIL-BUSY"), "{refused}");

    // Association.
    fake.reply(
        "STATUS",
        "bssid=02:00:00:00:00:01\nfreq=2437\nssid=MyelinHome\nid=0\nmode=station\nwpa_state=COMPLETED\n",
    );
    fake.event(
        "<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:00:01 completed [id=0 id_str=]",
    );
    let Update::Current(Some(cur)) = next(&mut urx).await else {
        panic!("expected the current AP")
    };
    assert_eq!(
        (
            cur.ssid.as_str(),
            cur.bssid.as_str(),
            cur.frequency,
            cur.signal_dbm
        ),
        ("MyelinHome", "02:00:00:00:00:01", 2437, -55)
    );
    fake.event("<3>CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"MyelinHome\" auth_failures=1 duration=10 reason=WRONG_KEY");
    let Update::Event(e) = next(&mut urx).await else {
        panic!("expected an event")
    };
    assert!(e.contains("WRONG_KEY"), "{e}");
    fake.event("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:00:01 reason=3");
    assert_eq!(next(&mut urx).await, Update::Current(None));

    // AP mode stations.
    fake.event("<3>AP-STA-CONNECTED 02:00:00:00:01:00");
    assert_eq!(
        next(&mut urx).await,
        Update::Stations(vec!["02:00:00:00:01:00".into()])
    );
    fake.event("<3>AP-STA-DISCONNECTED 02:00:00:00:01:00");
    assert_eq!(next(&mut urx).await, Update::Stations(vec![]));

    // The keepalive runs.
    fake.wait_received("PING", 1).await;

    // Terminating ends the session with an error, so the interface gets restarted.
    fake.event("<3>CTRL-EVENT-TERMINATING");
    let r = ended(session).await;
    assert!(matches!(r, Err(WpaError::Terminating)), "{r:?}");
    // The client removed its reply sockets.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("myelin-net-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_hung_supplicant_fails_the_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let ctrl = dir.path().join("wlan0");
    let fake = FakeWpa::start(&ctrl);
    let (session, _urx, _ctx) = session(&ctrl, dir.path());
    // Once the session is up (it asked for the scan results), the supplicant goes silent: the
    // next keepalive PING goes unanswered, and that ends the session.
    fake.wait_received("SCAN_RESULTS", 1).await;
    fake.mute(true);
    let r = ended(session).await;
    assert!(
        matches!(&r, Err(WpaError::Timeout(c)) if c == "PING"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_crashed_supplicant_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let ctrl = dir.path().join("wlan0");
    let fake = FakeWpa::start(&ctrl);
    let (session, mut urx, _ctx) = session(&ctrl, dir.path());
    next(&mut urx).await;
    fake.crash();
    let r = ended(session).await;
    assert!(
        matches!(&r, Err(WpaError::Io { .. }) | Err(WpaError::Timeout(_))),
        "{r:?}"
    );
}

#[tokio::test]
async fn no_socket_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let (utx, _urx) = mpsc::unbounded_channel();
    let (_ctx, crx) = mpsc::unbounded_channel();
    let mut t = timing();
    t.startup = Duration::from_millis(300);
    let r = wpa::session(dir.path().join("wlan9"), dir.path().to_owned(), t, utx, crx).await;
    assert!(matches!(r, Err(WpaError::NoSocket(_))), "{r:?}");
}

#[tokio::test]
async fn requests_time_out_and_late_replies_are_not_mixed_up() {
    let dir = tempfile::tempdir().unwrap();
    let ctrl = dir.path().join("wlan0");
    let fake = FakeWpa::start(&ctrl);
    let c = Client::open(&ctrl, dir.path(), "t", Duration::from_millis(200)).unwrap();
    c.ping().await.unwrap();
    // A slow supplicant: the STATUS reply comes only after the request timed out.
    fake.reply("STATUS", "wpa_state=LATE\n");
    fake.hold();
    let r = c.request("STATUS").await;
    assert!(
        matches!(&r, Err(WpaError::Timeout(cmd)) if cmd == "STATUS"),
        "{r:?}"
    );
    assert_eq!(
        fake.release(),
        1,
        "the late reply is now in the client's socket"
    );
    // The next request gets its own answer, not the stale one.
    assert_eq!(c.request("PING").await.unwrap(), "PONG\n");
    let kv = c.signal_poll().await.unwrap();
    assert_eq!(kv.get("RSSI").map(String::as_str), Some("-55"));
    let r = c.request("SIGNAL_POLL_X").await.unwrap();
    assert_eq!(r, "UNKNOWN COMMAND\n");
    fake.reply("SIGNAL_POLL", "FAIL\n");
    assert!(matches!(
        c.signal_poll().await,
        Err(WpaError::Rejected { .. })
    ));
    fake.reply("SCAN_RESULTS", SCAN_TWO);
    assert_eq!(c.scan_results().await.unwrap().len(), 2);
    fake.reply(
        "BSS 0",
        "bssid=02:00:00:00:00:01\nfreq=2412\nlevel=-30\nflags=[ESS]\nssid=One\n",
    );
    fake.reply("BSS 1", "");
    let bss = c.bss_list().await.unwrap();
    assert_eq!(bss.len(), 1);
    assert_eq!(bss[0].ssid, "One");
}
