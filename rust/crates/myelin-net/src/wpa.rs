//! wpa_supplicant's control interface: the datagram protocol, its parsers, a client, and the
//! WiFi session the daemon runs against it.
//!
//! # Protocol
//!
//! wpa_supplicant listens on a Unix datagram socket `<ctrl_interface>/<ifname>`. A client binds
//! its own socket (the reply address) and sends one command per datagram (`PING`, `SCAN`,
//! `SCAN_RESULTS`, `BSS <n>`, `STATUS`, `SIGNAL_POLL`, `ATTACH`); the reply is one datagram
//! (`PONG`, `OK`, `FAIL`, `FAIL-BUSY`, or text). After `ATTACH` the socket also receives
//! unsolicited events, `<level>CTRL-EVENT-...`. Replies and events would interleave on one
//! socket, so the client uses two: one for requests (never attached) and one for events.
//! Requests are serialized, each with a timeout; a stale reply to a timed-out request is
//! drained before the next one is sent. `PING` runs as a keepalive; a supplicant that stops
//! answering, sends `CTRL-EVENT-TERMINATING` or whose socket vanishes ends the session with an
//! error, and the interface is restarted.
//!
//! `SCAN_RESULTS` is a header line and one line per BSS: `bssid \t frequency \t signal level \t
//! flags \t ssid`. `BSS`, `STATUS` and `SIGNAL_POLL` reply `key=value` lines. SSIDs in replies
//! use printf escapes (`\xNN`, `\\`, `\"`).

use std::collections::BTreeMap;
#[cfg(feature = "daemon")]
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
#[cfg(feature = "daemon")]
use tokio::net::UnixDatagram;
#[cfg(feature = "daemon")]
use tokio::sync::{mpsc, oneshot};

/// Control-socket failures.
#[derive(Debug, thiserror::Error)]
pub enum WpaError {
    /// Socket trouble (the supplicant is gone, the path is wrong, ...).
    #[error("wpa_supplicant control socket {}", path.display())]
    Io {
        /// Control socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No reply in time.
    #[error("wpa_supplicant did not answer {0:?} in time")]
    Timeout(String),
    /// The command failed (`FAIL...`) or the reply made no sense.
    #[error("wpa_supplicant answered {cmd:?} with {reply:?}")]
    Rejected {
        /// Command.
        cmd: String,
        /// Reply.
        reply: String,
    },
    /// The supplicant announced it is exiting.
    #[error("wpa_supplicant is terminating")]
    Terminating,
    /// The control socket did not appear.
    #[error("wpa_supplicant's control socket {} did not appear", .0.display())]
    NoSocket(PathBuf),
}

/// A BSS as seen in scan results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessPoint {
    /// `aa:bb:cc:dd:ee:ff`.
    pub bssid: String,
    /// Network name (unescaped).
    pub ssid: String,
    /// MHz.
    pub frequency: u32,
    /// Channel number.
    pub channel: u32,
    /// `2.4 GHz`, `5 GHz`, `6 GHz` or `unknown`.
    pub band: String,
    /// Signal level.
    pub signal_dbm: i32,
    /// Signal, 0 to 100.
    pub signal_percent: u8,
    /// Flags without brackets (`WPA2-PSK-CCMP`, `ESS`, ...).
    pub flags: Vec<String>,
}

/// Channel number of a frequency.
pub fn channel(freq: u32) -> u32 {
    match freq {
        2484 => 14,
        2412..=2472 => (freq - 2407) / 5,
        5955..=7115 => (freq - 5950) / 5,
        5000..=5895 => (freq - 5000) / 5,
        _ => 0,
    }
}

/// Band name of a frequency.
pub fn band(freq: u32) -> &'static str {
    match freq {
        2400..=2500 => "2.4 GHz",
        5955..=7125 => "6 GHz",
        4900..=5925 => "5 GHz",
        _ => "unknown",
    }
}

/// Signal in percent: -100 dBm and below is 0, -50 dBm and above is 100.
pub fn signal_percent(dbm: i32) -> u8 {
    (2 * (dbm + 100)).clamp(0, 100) as u8
}

/// Undoes wpa_supplicant's printf escaping of SSIDs.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                        out.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                    out.push(b'\\');
                    i += 1;
                    continue;
                }
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'e' => out.push(0x1b),
                c @ (b'\\' | b'"') => out.push(c),
                _ => {
                    out.push(b'\\');
                    i += 1;
                    continue;
                }
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn access_point(
    bssid: &str,
    freq: &str,
    level: &str,
    flags: &str,
    ssid: &str,
) -> Option<AccessPoint> {
    let frequency: u32 = freq.trim().parse().ok()?;
    let signal_dbm: i32 = level.trim().parse().ok()?;
    let bssid = bssid.trim();
    if bssid.len() != 17 || bssid.split(':').count() != 6 {
        return None;
    }
    Some(AccessPoint {
        bssid: bssid.to_ascii_lowercase(),
        ssid: unescape(ssid),
        frequency,
        channel: channel(frequency),
        band: band(frequency).to_owned(),
        signal_dbm,
        signal_percent: signal_percent(signal_dbm),
        flags: flags
            .split(']')
            .filter_map(|f| f.trim().strip_prefix('['))
            .map(str::to_owned)
            .collect(),
    })
}

/// Parses a `SCAN_RESULTS` reply; malformed lines are skipped. Sorted by signal, strongest
/// first.
pub fn parse_scan_results(reply: &str) -> Vec<AccessPoint> {
    let mut aps: Vec<AccessPoint> = reply
        .lines()
        .filter(|l| !l.starts_with("bssid /"))
        .filter_map(|l| {
            let mut f = l.splitn(5, '\t');
            access_point(
                f.next()?,
                f.next()?,
                f.next()?,
                f.next()?,
                f.next().unwrap_or(""),
            )
        })
        .collect();
    aps.sort_by(|a, b| b.signal_dbm.cmp(&a.signal_dbm).then(a.bssid.cmp(&b.bssid)));
    aps
}

/// Parses `key=value` lines (`STATUS`, `SIGNAL_POLL`, `BSS`).
pub fn parse_kv(reply: &str) -> BTreeMap<String, String> {
    reply
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Parses a `BSS <n>` reply; `None` for an empty reply (past the last BSS) or a bad one.
pub fn parse_bss(reply: &str) -> Option<AccessPoint> {
    let kv = parse_kv(reply);
    access_point(
        kv.get("bssid")?,
        kv.get("freq")?,
        kv.get("level")?,
        kv.get("flags").map(String::as_str).unwrap_or(""),
        kv.get("ssid").map(String::as_str).unwrap_or(""),
    )
}

/// An unsolicited message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Associated and authenticated with `bssid`.
    Connected {
        /// Access point.
        bssid: String,
    },
    /// Lost the association.
    Disconnected {
        /// Access point.
        bssid: String,
        /// IEEE reason code.
        reason: Option<u16>,
    },
    /// New scan results are ready.
    ScanResults,
    /// The supplicant is exiting.
    Terminating,
    /// A network is disabled for a while (wrong key, ...).
    SsidTempDisabled {
        /// Network.
        ssid: String,
        /// `WRONG_KEY`, `CONN_FAILED`, ...
        reason: String,
    },
    /// The AP rejected the association.
    AssocReject {
        /// Access point.
        bssid: String,
        /// IEEE status code.
        status: Option<u16>,
    },
    /// None of the configured networks is in range.
    NetworkNotFound,
    /// AP mode: a station joined.
    StationConnected(String),
    /// AP mode: a station left.
    StationDisconnected(String),
    /// Anything else (published as the interface's last event).
    Other(String),
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(&format!("{key}="))? + key.len() + 1;
    let rest = &text[start..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.find('"').map(|e| &q[..e]);
    }
    Some(rest.split(' ').next().unwrap_or(""))
}

/// Parses one event datagram.
pub fn parse_event(msg: &str) -> Event {
    let msg = msg.trim_end();
    // Strip the "<level>" prefix.
    let body = match msg.strip_prefix('<').and_then(|r| r.split_once('>')) {
        Some((_, b)) => b,
        None => msg,
    };
    let (name, rest) = body.split_once(' ').unwrap_or((body, ""));
    match name {
        "CTRL-EVENT-CONNECTED" => Event::Connected {
            bssid: rest
                .split_whitespace()
                .find(|w| w.len() == 17 && w.matches(':').count() == 5)
                .unwrap_or("")
                .to_ascii_lowercase(),
        },
        "CTRL-EVENT-DISCONNECTED" => Event::Disconnected {
            bssid: field(rest, "bssid").unwrap_or("").to_ascii_lowercase(),
            reason: field(rest, "reason").and_then(|r| r.parse().ok()),
        },
        "CTRL-EVENT-SCAN-RESULTS" => Event::ScanResults,
        "CTRL-EVENT-TERMINATING" => Event::Terminating,
        "CTRL-EVENT-SSID-TEMP-DISABLED" => Event::SsidTempDisabled {
            ssid: unescape(field(rest, "ssid").unwrap_or("")),
            reason: field(rest, "reason").unwrap_or("").to_owned(),
        },
        "CTRL-EVENT-ASSOC-REJECT" => Event::AssocReject {
            bssid: field(rest, "bssid").unwrap_or("").to_ascii_lowercase(),
            status: field(rest, "status_code").and_then(|r| r.parse().ok()),
        },
        "CTRL-EVENT-NETWORK-NOT-FOUND" => Event::NetworkNotFound,
        "AP-STA-CONNECTED" => Event::StationConnected(rest.trim().to_ascii_lowercase()),
        "AP-STA-DISCONNECTED" => Event::StationDisconnected(rest.trim().to_ascii_lowercase()),
        _ => Event::Other(body.to_owned()),
    }
}

/// One control-socket connection (its own bound reply socket).
#[cfg(feature = "daemon")]
pub struct Client {
    sock: UnixDatagram,
    local: PathBuf,
    ctrl: PathBuf,
    timeout: Duration,
    busy: tokio::sync::Mutex<()>,
}

#[cfg(feature = "daemon")]
impl Drop for Client {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
    }
}

#[cfg(feature = "daemon")]
impl Client {
    /// Connects to `ctrl`, binding the reply socket in `local_dir` under `tag`.
    pub fn open(
        ctrl: &Path,
        local_dir: &Path,
        tag: &str,
        timeout: Duration,
    ) -> Result<Client, WpaError> {
        let name = ctrl
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let local = local_dir.join(format!("myelin-net-{name}-{tag}-{}", std::process::id()));
        let io = |source| WpaError::Io {
            path: ctrl.to_owned(),
            source,
        };
        let _ = std::fs::remove_file(&local);
        let sock = UnixDatagram::bind(&local).map_err(io)?;
        if let Err(e) = sock.connect(ctrl) {
            let _ = std::fs::remove_file(&local);
            return Err(io(e));
        }
        Ok(Client {
            sock,
            local,
            ctrl: ctrl.to_owned(),
            timeout,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    fn io(&self, source: std::io::Error) -> WpaError {
        WpaError::Io {
            path: self.ctrl.clone(),
            source,
        }
    }

    /// Sends `cmd` and returns the reply (events that slip in are skipped).
    pub async fn request(&self, cmd: &str) -> Result<String, WpaError> {
        let _one_at_a_time = self.busy.lock().await;
        let mut buf = vec![0u8; 16384];
        // A reply to an earlier, timed-out request must not be taken for this one's. Drained
        // with recv(2) itself: tokio's try_recv only sees datagrams its reactor has already
        // been told about, and a late reply may have arrived just now.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.sock);
        while nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT).is_ok()
        {
        }
        self.sock
            .send(cmd.as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, self.sock.recv(&mut buf)).await {
                Ok(r) => r.map_err(|e| self.io(e))?,
                Err(_) => return Err(WpaError::Timeout(cmd.to_owned())),
            };
            let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
            if reply.starts_with('<') {
                continue;
            }
            return Ok(reply);
        }
    }

    /// A request whose reply must be `OK`.
    pub async fn ok(&self, cmd: &str) -> Result<(), WpaError> {
        let reply = self.request(cmd).await?;
        if reply.trim_end() == "OK" {
            Ok(())
        } else {
            Err(WpaError::Rejected {
                cmd: cmd.to_owned(),
                reply: reply.trim_end().to_owned(),
            })
        }
    }

    /// `PING` → `PONG`.
    pub async fn ping(&self) -> Result<(), WpaError> {
        let reply = self.request("PING").await?;
        if reply.trim_end() == "PONG" {
            Ok(())
        } else {
            Err(WpaError::Rejected {
                cmd: "PING".into(),
                reply,
            })
        }
    }

    /// Current scan results.
    pub async fn scan_results(&self) -> Result<Vec<AccessPoint>, WpaError> {
        Ok(parse_scan_results(&self.request("SCAN_RESULTS").await?))
    }

    /// Every BSS through `BSS <n>` (one datagram each, so large lists fit).
    pub async fn bss_list(&self) -> Result<Vec<AccessPoint>, WpaError> {
        let mut out = Vec::new();
        for i in 0..256 {
            let reply = self.request(&format!("BSS {i}")).await?;
            match parse_bss(&reply) {
                Some(ap) => out.push(ap),
                None => break,
            }
        }
        out.sort_by(|a, b| b.signal_dbm.cmp(&a.signal_dbm).then(a.bssid.cmp(&b.bssid)));
        Ok(out)
    }

    /// `STATUS` as key/value pairs.
    pub async fn status(&self) -> Result<BTreeMap<String, String>, WpaError> {
        Ok(parse_kv(&self.request("STATUS").await?))
    }

    /// `SIGNAL_POLL` as key/value pairs (`RSSI`, `LINKSPEED`, `FREQUENCY`, ...).
    pub async fn signal_poll(&self) -> Result<BTreeMap<String, String>, WpaError> {
        let reply = self.request("SIGNAL_POLL").await?;
        if reply.starts_with("FAIL") {
            return Err(WpaError::Rejected {
                cmd: "SIGNAL_POLL".into(),
                reply,
            });
        }
        Ok(parse_kv(&reply))
    }

    /// Makes this connection the event socket (`ATTACH`).
    pub async fn attach(&self) -> Result<(), WpaError> {
        self.ok("ATTACH").await
    }

    /// Waits for the next event on an attached connection.
    pub async fn next_event(&self) -> Result<Event, WpaError> {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = self.sock.recv(&mut buf).await.map_err(|e| self.io(e))?;
            let msg = String::from_utf8_lossy(&buf[..n]);
            if msg.starts_with('<') {
                return Ok(parse_event(&msg));
            }
        }
    }
}

/// The access point the interface is associated with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrentAp {
    /// Access point.
    pub bssid: String,
    /// Network.
    pub ssid: String,
    /// MHz.
    pub frequency: u32,
    /// Signal level (0 if unknown).
    pub signal_dbm: i32,
}

/// What a session reports to the manager.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Fresh scan results.
    AccessPoints(Vec<AccessPoint>),
    /// Association changed.
    Current(Option<CurrentAp>),
    /// AP mode: the stations associated with us.
    Stations(Vec<String>),
    /// A notable event (`CTRL-EVENT-SSID-TEMP-DISABLED ...`), for diagnosis.
    Event(String),
}

/// Requests to a running session.
#[cfg(feature = "daemon")]
#[derive(Debug)]
pub enum Command {
    /// Start a scan; the reply says whether the supplicant accepted it.
    Scan(oneshot::Sender<Result<(), WpaError>>),
}

/// Session timings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Request timeout.
    pub request: Duration,
    /// PING interval.
    pub keepalive: Duration,
    /// How long to wait for the control socket to appear.
    pub startup: Duration,
}

/// Waits for the control socket (the supplicant creates it some time after starting).
#[cfg(feature = "daemon")]
pub async fn wait_for_socket(ctrl: &Path, limit: Duration) -> Result<(), WpaError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if std::fs::symlink_metadata(ctrl).is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WpaError::NoSocket(ctrl.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(feature = "daemon")]
async fn current(cmd: &Client) -> Result<Option<CurrentAp>, WpaError> {
    let status = cmd.status().await?;
    if status.get("wpa_state").map(String::as_str) != Some("COMPLETED") {
        return Ok(None);
    }
    let signal_dbm = match cmd.signal_poll().await {
        Ok(kv) => kv.get("RSSI").and_then(|v| v.parse().ok()).unwrap_or(0),
        Err(WpaError::Rejected { .. }) => 0,
        Err(e) => return Err(e),
    };
    Ok(Some(CurrentAp {
        bssid: status.get("bssid").cloned().unwrap_or_default(),
        ssid: unescape(status.get("ssid").map(String::as_str).unwrap_or("")),
        frequency: status.get("freq").and_then(|f| f.parse().ok()).unwrap_or(0),
        signal_dbm,
    }))
}

/// Runs a WiFi session until the supplicant goes away or stops answering: reports scan
/// results, the current AP, AP-mode stations and notable events; serves commands.
#[cfg(feature = "daemon")]
pub async fn session(
    ctrl: PathBuf,
    local_dir: PathBuf,
    timing: Timing,
    updates: mpsc::UnboundedSender<Update>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Result<(), WpaError> {
    wait_for_socket(&ctrl, timing.startup).await?;
    let cmd = Client::open(&ctrl, &local_dir, "cmd", timing.request)?;
    let ev = Client::open(&ctrl, &local_dir, "ev", timing.request)?;
    ev.attach().await?;
    let send = |u: Update| {
        let _ = updates.send(u);
    };
    send(Update::Current(current(&cmd).await?));
    send(Update::AccessPoints(cmd.scan_results().await?));
    let mut stations: Vec<String> = Vec::new();
    let mut keepalive = tokio::time::interval(timing.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        tokio::select! {
            event = ev.next_event() => match event? {
                Event::ScanResults => send(Update::AccessPoints(cmd.scan_results().await?)),
                Event::Connected { .. } => send(Update::Current(current(&cmd).await?)),
                Event::Disconnected { .. } => send(Update::Current(None)),
                Event::Terminating => return Err(WpaError::Terminating),
                Event::StationConnected(mac) => {
                    if !stations.contains(&mac) {
                        stations.push(mac);
                    }
                    send(Update::Stations(stations.clone()));
                }
                Event::StationDisconnected(mac) => {
                    stations.retain(|s| *s != mac);
                    send(Update::Stations(stations.clone()));
                }
                e @ (Event::SsidTempDisabled { .. } | Event::AssocReject { .. } | Event::NetworkNotFound) => {
                    send(Update::Event(format!("{e:?}")));
                }
                Event::Other(_) => {}
            },
            c = commands.recv() => match c {
                Some(Command::Scan(reply)) => {
                    // A refusal (`FAIL-BUSY`) goes to the caller; a dead socket ends the session.
                    let r = match cmd.ok("SCAN").await {
                        Err(e @ (WpaError::Io { .. } | WpaError::Timeout(_))) => return Err(e),
                        r => r,
                    };
                    let _ = reply.send(r);
                }
                None => return Ok(()),
            },
            _ = keepalive.tick() => cmd.ping().await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_results() {
        let reply = "bssid / frequency / signal level / flags / ssid\n\
            00:11:22:33:44:55\t2437\t-48\t[WPA2-PSK-CCMP][ESS]\tHome\n\
            66:77:88:99:AA:BB\t5180\t-71\t[ESS]\tCaf\\xc3\\xa9 \\\"x\\\"\n\
            garbage line\n\
            11:11:11:11:11:11\t5955\t-90\t[WPA3-SAE-CCMP][ESS]\t\n";
        let aps = parse_scan_results(reply);
        assert_eq!(aps.len(), 3);
        assert_eq!(
            aps[0],
            AccessPoint {
                bssid: "00:11:22:33:44:55".into(),
                ssid: "Home".into(),
                frequency: 2437,
                channel: 6,
                band: "2.4 GHz".into(),
                signal_dbm: -48,
                signal_percent: 100,
                flags: vec!["WPA2-PSK-CCMP".into(), "ESS".into()],
            }
        );
        assert_eq!(aps[1].ssid, "Café \"x\"");
        assert_eq!(
            (aps[1].channel, aps[1].band.as_str(), aps[1].signal_percent),
            (36, "5 GHz", 58)
        );
        assert_eq!(aps[1].bssid, "66:77:88:99:aa:bb");
        assert_eq!(
            (aps[2].channel, aps[2].band.as_str(), aps[2].ssid.as_str()),
            (1, "6 GHz", "")
        );
    }

    #[test]
    fn bss() {
        let reply = "id=3\nbssid=00:11:22:33:44:55\nfreq=2412\nbeacon_int=100\nlevel=-60\nflags=[WPA2-PSK-CCMP]\nssid=Net\n";
        let ap = parse_bss(reply).unwrap();
        assert_eq!(
            (ap.ssid.as_str(), ap.channel, ap.signal_dbm),
            ("Net", 1, -60)
        );
        assert_eq!(parse_bss(""), None);
    }

    #[test]
    fn events() {
        assert_eq!(
            parse_event(
                "<3>CTRL-EVENT-CONNECTED - Connection to 00:11:22:33:44:AA completed [id=0 id_str=]"
            ),
            Event::Connected {
                bssid: "00:11:22:33:44:aa".into()
            }
        );
        assert_eq!(
            parse_event(
                "<3>CTRL-EVENT-DISCONNECTED bssid=00:11:22:33:44:55 reason=3 locally_generated=1"
            ),
            Event::Disconnected {
                bssid: "00:11:22:33:44:55".into(),
                reason: Some(3)
            }
        );
        assert_eq!(
            parse_event("<3>CTRL-EVENT-SCAN-RESULTS "),
            Event::ScanResults
        );
        assert_eq!(parse_event("<3>CTRL-EVENT-TERMINATING"), Event::Terminating);
        assert_eq!(
            parse_event(
                "<3>CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"my net\" auth_failures=1 duration=10 reason=WRONG_KEY"
            ),
            Event::SsidTempDisabled {
                ssid: "my net".into(),
                reason: "WRONG_KEY".into()
            }
        );
        assert_eq!(
            parse_event("<3>CTRL-EVENT-ASSOC-REJECT bssid=00:11:22:33:44:55 status_code=17"),
            Event::AssocReject {
                bssid: "00:11:22:33:44:55".into(),
                status: Some(17)
            }
        );
        assert_eq!(
            parse_event("<3>AP-STA-CONNECTED 02:00:00:00:01:00"),
            Event::StationConnected("02:00:00:00:01:00".into())
        );
        assert_eq!(
            parse_event("<2>CTRL-EVENT-BSS-ADDED 0 00:11:22:33:44:55"),
            Event::Other("CTRL-EVENT-BSS-ADDED 0 00:11:22:33:44:55".into())
        );
    }

    #[test]
    fn escapes_and_channels() {
        assert_eq!(unescape("a\\\\b\\x41\\x4"), "a\\bA\\x4");
        assert_eq!(unescape("trailing\\"), "trailing\\");
        assert_eq!(channel(2484), 14);
        assert_eq!(channel(5745), 149);
        assert_eq!(signal_percent(-120), 0);
        assert_eq!(signal_percent(-75), 50);
    }
}
