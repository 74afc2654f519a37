//! The built-in client: one SNTP (RFC 4330) query per server, for systems whose busybox has no
//! ntpd applet. The packet logic is pure; [`query`] is the only I/O.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

/// A server's answer, reduced to what the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The server's stratum.
    pub stratum: u32,
    /// Server clock minus ours, in seconds.
    pub offset: f64,
    /// Round-trip delay, in seconds.
    pub delay: f64,
}

/// Why an answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than an NTP header.
    #[error("answer of {0} bytes is too short")]
    Short(usize),
    /// Not a server's answer (mode 4) or broadcast (5).
    #[error("answer has mode {0}, not a server's")]
    Mode(u8),
    /// Not an answer to our request (origin timestamp differs).
    #[error("answer is not for our request")]
    Origin,
    /// Stratum 0 (kiss-o'-death) or the server's alarm (leap indicator 3).
    #[error("server is not synchronized (stratum {stratum}, leap {leap})")]
    Unsynchronized {
        /// Its stratum.
        stratum: u8,
        /// Its leap indicator.
        leap: u8,
    },
}

fn to_ntp(t: f64) -> u64 {
    let n = t + NTP_UNIX_OFFSET;
    let secs = n.floor();
    ((secs as u64) << 32) | (((n - secs) * 4_294_967_296.0) as u64 & 0xffff_ffff)
}

fn from_ntp(v: u64) -> f64 {
    (v >> 32) as f64 + (v & 0xffff_ffff) as f64 / 4_294_967_296.0 - NTP_UNIX_OFFSET
}

/// A client request (version 4, mode 3) sent at `t1`; its transmit timestamp is what the
/// answer's origin must echo.
pub fn request(t1: f64) -> ([u8; 48], u64) {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 3;
    let ts = to_ntp(t1);
    p[40..48].copy_from_slice(&ts.to_be_bytes());
    (p, ts)
}

/// Checks an answer to the request stamped `origin`, received at `t4` (seconds since the epoch).
pub fn parse(answer: &[u8], origin: u64, t4: f64) -> Result<Sample, PacketError> {
    if answer.len() < 48 {
        return Err(PacketError::Short(answer.len()));
    }
    let leap = answer[0] >> 6;
    let mode = answer[0] & 7;
    let stratum = answer[1];
    if mode != 4 && mode != 5 {
        return Err(PacketError::Mode(mode));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&answer[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if word(24) != origin {
        return Err(PacketError::Origin);
    }
    if stratum == 0 || stratum >= 16 || leap == 3 {
        return Err(PacketError::Unsynchronized { stratum, leap });
    }
    let t1 = from_ntp(origin);
    let t2 = from_ntp(word(32));
    let t3 = from_ntp(word(40));
    Ok(Sample {
        stratum: u32::from(stratum),
        offset: ((t2 - t1) + (t3 - t4)) / 2.0,
        delay: ((t4 - t1) - (t3 - t2)).max(0.0),
    })
}

/// `host[:port]` with NTP's port by default.
pub fn with_port(server: &str) -> String {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => {
            server.to_owned()
        }
        _ if server.contains(':') => format!("[{server}]:123"),
        _ => format!("{server}:123"),
    }
}

/// Queries `server` once; `now` reads the clock (the same one the sample is applied to).
pub async fn query(
    server: &str,
    timeout: Duration,
    now: &dyn Fn() -> f64,
) -> io::Result<(SocketAddr, Sample)> {
    let addr = tokio::net::lookup_host(with_port(server))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    let (packet, origin) = request(now());
    sock.send(&packet).await?;
    let mut buf = [0u8; 128];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
        match parse(&buf[..n], origin, now()) {
            Ok(s) => return Ok((addr, s)),
            // A stray or late datagram: keep waiting for ours until the deadline.
            Err(PacketError::Origin) => continue,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(origin: u64, t2: f64, t3: f64, stratum: u8, leap: u8) -> [u8; 48] {
        let mut p = [0u8; 48];
        p[0] = (leap << 6) | (4 << 3) | 4;
        p[1] = stratum;
        p[24..32].copy_from_slice(&origin.to_be_bytes());
        p[32..40].copy_from_slice(&to_ntp(t2).to_be_bytes());
        p[40..48].copy_from_slice(&to_ntp(t3).to_be_bytes());
        p
    }

    #[test]
    fn offset_and_delay_from_the_four_timestamps() {
        // Our clock is 1000 s behind; 0.2 s each way; the server holds it 0.01 s.
        let t1 = 1_800_000_000.0;
        let (req, origin) = request(t1);
        assert_eq!(req[0], 0x23);
        let a = answer(origin, t1 + 1000.2, t1 + 1000.21, 2, 0);
        let s = parse(&a, origin, t1 + 0.41).expect("valid");
        assert_eq!(s.stratum, 2);
        assert!((s.offset - 1000.0).abs() < 1e-6, "{s:?}");
        assert!((s.delay - 0.4).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn bad_answers_are_refused() {
        let (_, origin) = request(1_800_000_000.0);
        let ok = answer(origin, 1.8e9, 1.8e9, 1, 0);
        assert_eq!(parse(&ok[..40], origin, 1.8e9), Err(PacketError::Short(40)));
        assert_eq!(parse(&ok, origin + 1, 1.8e9), Err(PacketError::Origin));
        let mut client = ok;
        client[0] = (4 << 3) | 3;
        assert_eq!(parse(&client, origin, 1.8e9), Err(PacketError::Mode(3)));
        let kod = answer(origin, 1.8e9, 1.8e9, 0, 0);
        assert!(matches!(
            parse(&kod, origin, 1.8e9),
            Err(PacketError::Unsynchronized { stratum: 0, .. })
        ));
        let alarm = answer(origin, 1.8e9, 1.8e9, 3, 3);
        assert!(parse(&alarm, origin, 1.8e9).is_err());
    }

    #[test]
    fn ports_default_to_123() {
        assert_eq!(with_port("pool.ntp.org"), "pool.ntp.org:123");
        assert_eq!(with_port("10.0.2.2:11123"), "10.0.2.2:11123");
        assert_eq!(with_port("fe80::1"), "[fe80::1]:123");
    }

    #[tokio::test]
    async fn a_query_reaches_a_local_server() {
        // A one-shot server on loopback answering 500 s ahead of us.
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port();
        let serve = std::thread::spawn(move || {
            let mut buf = [0u8; 48];
            let (n, peer) = server.recv_from(&mut buf).expect("recv");
            assert_eq!(n, 48);
            let mut origin = [0u8; 8];
            origin.copy_from_slice(&buf[40..48]);
            let t = from_ntp(u64::from_be_bytes(origin)) + 500.0;
            let a = answer(u64::from_be_bytes(origin), t, t, 3, 0);
            server.send_to(&a, peer).expect("send");
        });
        let clock = || 1_800_000_000.0;
        let (_, s) = query(
            &format!("127.0.0.1:{port}"),
            Duration::from_secs(10),
            &clock,
        )
        .await
        .expect("answer");
        serve.join().expect("server");
        assert_eq!(s.stratum, 3);
        assert!((s.offset - 500.0).abs() < 1e-3, "{s:?}");
    }
}
