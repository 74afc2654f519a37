//! NervesHub's shared-secret device authentication ("NH1"), as the server checks it.
//!
//! A device without a certificate opens `/device-socket/websocket` with four headers:
//!
//! ```text
//! x-nh-alg:       NH1-HMAC-<digest>-<iterations>-<key length>   e.g. NH1-HMAC-sha256-1000-32
//! x-nh-key:       the product key (nhp_...) or the device's own key
//! x-nh-time:      signed_at, Unix seconds
//! x-nh-signature: a Plug.Crypto token (below)
//! ```
//!
//! The token is what Elixir's `Plug.Crypto.sign(secret, salt, identifier, opts)` produces:
//!
//! 1. salt = `"NH1:device-socket:shared-secret:connect\n\nx-nh-alg=<alg>\nx-nh-key=<key>\n`
//!    `x-nh-time=<signed_at>\n"`;
//! 2. derived key = PBKDF2-HMAC-`<digest>`(secret, salt, iterations, key length);
//! 3. message = Erlang external term format of the tuple `{identifier :: binary, signed_at_ms,
//!    max_age_s}` (max age 86400, what the device side sends; the server applies its own,
//!    90 s by default);
//! 4. token = `"SFMyNTY." + b64url(message) + "." + b64url(HMAC-SHA256(derived key,
//!    "SFMyNTY." + b64url(message)))`, base64url without padding (`SFMyNTY` is b64url("HS256")).
//!
//! The server recomputes the salt from the headers, verifies the HMAC, rejects a token signed in
//! its future or older than its max age, and takes the identifier from the message: the device's
//! serial number, under which the device is found (or created, with a product key).

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Header names.
pub const ALG: &str = "x-nh-alg";
/// The key header.
pub const KEY: &str = "x-nh-key";
/// The signing-time header.
pub const TIME: &str = "x-nh-time";
/// The token header.
pub const SIGNATURE: &str = "x-nh-signature";

/// The max age the device puts in its token (Plug.Crypto's default).
pub const TOKEN_MAX_AGE: u64 = 86_400;
/// The max age NervesHub allows by default.
pub const SERVER_MAX_AGE: u64 = 90;

/// The PBKDF2 hash of the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// `sha256`, the default.
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
}

impl Digest {
    /// The name in `x-nh-alg`.
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha512 => "sha512",
        }
    }

    /// Parses a name as the server does (case-insensitively).
    pub fn parse(s: &str) -> Option<Digest> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Some(Digest::Sha256),
            "sha384" => Some(Digest::Sha384),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }
}

/// The material of shared-secret auth. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret {
    /// The product key (`nhp_...`) or the device key.
    pub key: String,
    /// The matching secret.
    pub secret: String,
    /// The device identifier (its serial number).
    pub identifier: String,
    /// PBKDF2 hash.
    pub digest: Digest,
    /// PBKDF2 iterations (1000 by default).
    pub iterations: u32,
    /// Derived key length in bytes (32 by default).
    pub key_length: usize,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("identifier", &self.identifier)
            .field("digest", &self.digest)
            .field("iterations", &self.iterations)
            .field("key_length", &self.key_length)
            .finish()
    }
}

impl SharedSecret {
    /// Material with NervesHubLink's defaults (sha256, 1000 iterations, 32 bytes).
    pub fn new(key: &str, secret: &str, identifier: &str) -> SharedSecret {
        SharedSecret {
            key: key.to_owned(),
            secret: secret.to_owned(),
            identifier: identifier.to_owned(),
            digest: Digest::Sha256,
            iterations: 1000,
            key_length: 32,
        }
    }

    /// The `x-nh-alg` value.
    pub fn alg(&self) -> String {
        format!(
            "NH1-HMAC-{}-{}-{}",
            self.digest.name(),
            self.iterations,
            self.key_length
        )
    }

    /// The four headers for a connection signed at `signed_at` (Unix seconds).
    pub fn headers(&self, signed_at: u64) -> Vec<(&'static str, String)> {
        let alg = self.alg();
        let salt = salt(&alg, &self.key, signed_at);
        let key = derive(
            self.digest,
            self.secret.as_bytes(),
            salt.as_bytes(),
            self.iterations,
            self.key_length,
        );
        let message = encode_term(&self.identifier, signed_at * 1000, TOKEN_MAX_AGE);
        vec![
            (ALG, alg),
            (KEY, self.key.clone()),
            (TIME, signed_at.to_string()),
            (SIGNATURE, sign(&key, &message)),
        ]
    }
}

/// The salt the headers imply.
pub fn salt(alg: &str, key: &str, signed_at: u64) -> String {
    format!(
        "NH1:device-socket:shared-secret:connect\n\nx-nh-alg={alg}\nx-nh-key={key}\nx-nh-time={signed_at}\n"
    )
}

fn derive(digest: Digest, secret: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    match digest {
        Digest::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(secret, salt, iterations, &mut out),
        Digest::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(secret, salt, iterations, &mut out),
        Digest::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(secret, salt, iterations, &mut out),
    }
    out
}

const PROTECTED: &str = "SFMyNTY";

fn mac(key: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(plain);
    m.finalize().into_bytes().to_vec()
}

fn sign(key: &[u8], message: &[u8]) -> String {
    let plain = format!("{PROTECTED}.{}", URL_SAFE_NO_PAD.encode(message));
    let signature = URL_SAFE_NO_PAD.encode(mac(key, plain.as_bytes()));
    format!("{plain}.{signature}")
}

/// Erlang's `term_to_binary({identifier, signed_at_ms, max_age})`.
pub fn encode_term(identifier: &str, signed_at_ms: u64, max_age: u64) -> Vec<u8> {
    let mut out = vec![131, 104, 3, 109];
    out.extend_from_slice(&(identifier.len() as u32).to_be_bytes());
    out.extend_from_slice(identifier.as_bytes());
    encode_int(&mut out, signed_at_ms);
    encode_int(&mut out, max_age);
    out
}

fn encode_int(out: &mut Vec<u8>, n: u64) {
    if n <= 255 {
        out.extend_from_slice(&[97, n as u8]);
    } else if n <= i32::MAX as u64 {
        out.push(98);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        // SMALL_BIG_EXT: digit count, sign, little-endian bytes without trailing zeros.
        let bytes = n.to_le_bytes();
        let len = 8 - bytes.iter().rev().take_while(|b| **b == 0).count();
        out.extend_from_slice(&[110, len as u8, 0]);
        out.extend_from_slice(&bytes[..len]);
    }
}

/// Why a server refuses a device's headers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header is not in its format.
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    /// The key is unknown.
    #[error("unknown key")]
    UnknownKey,
    /// The HMAC does not match.
    #[error("bad signature")]
    BadSignature,
    /// Signed in the server's future.
    #[error("signed in the future")]
    Future,
    /// Signed too long ago.
    #[error("signature expired")]
    Expired,
}

/// Checks headers as NervesHub does; `secret_for` maps a key to its secret. Returns the device
/// identifier. The stand-in server of the tests uses it; a device never does.
pub fn verify(
    headers: &HashMap<String, String>,
    secret_for: impl Fn(&str) -> Option<String>,
    now_ms: u64,
    max_age: u64,
) -> Result<String, VerifyError> {
    let get = |name: &'static str| headers.get(name).ok_or(VerifyError::Missing(name));
    let alg = get(ALG)?;
    let rest = alg
        .strip_prefix("NH1-HMAC-")
        .ok_or(VerifyError::Malformed(ALG))?;
    let parts: Vec<&str> = rest.split('-').collect();
    let [digest, iterations, key_length] = parts[..] else {
        return Err(VerifyError::Malformed(ALG));
    };
    let digest = Digest::parse(digest).ok_or(VerifyError::Malformed(ALG))?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| VerifyError::Malformed(ALG))?;
    let key_length: usize = key_length
        .parse()
        .ok()
        .filter(|l| (1..=1024).contains(l))
        .ok_or(VerifyError::Malformed(ALG))?;
    let signed_at: u64 = get(TIME)?
        .parse()
        .map_err(|_| VerifyError::Malformed(TIME))?;
    let key = get(KEY)?;
    let secret = secret_for(key).ok_or(VerifyError::UnknownKey)?;
    let token = get(SIGNATURE)?;
    let salt = salt(alg, key, signed_at);
    let derived = derive(
        digest,
        secret.as_bytes(),
        salt.as_bytes(),
        iterations,
        key_length,
    );
    let mut pieces = token.split('.');
    let (Some(PROTECTED), Some(payload), Some(sig), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(VerifyError::Malformed(SIGNATURE));
    };
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| VerifyError::Malformed(SIGNATURE))?;
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&derived)
        .map_err(|_| VerifyError::Malformed(ALG))?;
    m.update(format!("{PROTECTED}.{payload}").as_bytes());
    m.verify_slice(&sig)
        .map_err(|_| VerifyError::BadSignature)?;
    let message = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| VerifyError::Malformed(SIGNATURE))?;
    let (identifier, signed_ms, _token_max_age) =
        decode_term(&message).ok_or(VerifyError::Malformed(SIGNATURE))?;
    if signed_ms > now_ms {
        return Err(VerifyError::Future);
    }
    if signed_ms + max_age * 1000 < now_ms {
        return Err(VerifyError::Expired);
    }
    Ok(identifier)
}

/// Reads `{binary, integer, integer}` in the external term format.
pub fn decode_term(b: &[u8]) -> Option<(String, u64, u64)> {
    let rest = b.strip_prefix(&[131, 104, 3, 109])?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_owned();
    let mut rest = &rest[4 + len..];
    let a = decode_int(&mut rest)?;
    let b = decode_int(&mut rest)?;
    rest.is_empty().then_some((id, a, b))
}

fn decode_int(b: &mut &[u8]) -> Option<u64> {
    let (&tag, rest) = b.split_first()?;
    let (n, used) = match tag {
        97 => (u64::from(*rest.first()?), 1),
        98 => {
            let v = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            (u64::try_from(v).ok()?, 4)
        }
        110 => {
            let n = usize::from(*rest.first()?);
            if *rest.get(1)? != 0 || n > 8 {
                return None;
            }
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(rest.get(2..2 + n)?);
            (u64::from_le_bytes(v), 2 + n)
        }
        _ => return None,
    };
    *b = &rest[used..];
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(h: Vec<(&'static str, String)>) -> HashMap<String, String> {
        h.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn term_encoding_matches_erlang() {
        // What OTP 25's :erlang.term_to_binary({<<"abc">>, 1_700_000_000_000, 86400}) printed.
        assert_eq!(
            encode_term("abc", 1_700_000_000_000, 86_400),
            vec![
                131, 104, 3, 109, 0, 0, 0, 3, b'a', b'b', b'c', 110, 6, 0, 0, 104, 229, 207, 139,
                1, 98, 0, 1, 81, 128
            ]
        );
        assert_eq!(encode_term("", 5, 300)[8..], [97, 5, 98, 0, 0, 1, 44]);
        assert_eq!(
            decode_term(&encode_term("dev", 1_700_000_000_000, 90)),
            Some(("dev".to_owned(), 1_700_000_000_000, 90))
        );
    }

    #[test]
    fn headers_have_the_nh1_shape() {
        let s = SharedSecret::new("nhp_key", "secret", "serial-1");
        let h = s.headers(1_700_000_000);
        assert_eq!(h[0], (ALG, "NH1-HMAC-sha256-1000-32".to_owned()));
        assert_eq!(h[1], (KEY, "nhp_key".to_owned()));
        assert_eq!(h[2], (TIME, "1700000000".to_owned()));
        assert!(h[3].1.starts_with("SFMyNTY."));
        assert_eq!(h[3].1.split('.').count(), 3);
    }

    #[test]
    fn token_matches_an_independent_computation() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac from the steps in the module doc.
        let s = SharedSecret::new("nhp_key", "secret", "serial-1");
        assert_eq!(
            s.headers(1_700_000_000)[3].1,
            "SFMyNTY.g2gDbQAAAAhzZXJpYWwtMW4GAABo5c-LAWIAAVGA.\
             VeKZKomfSzTZyzfxPGGQrUJRQ39XpSuqC-Knnh3L9Cw"
        );
    }

    #[test]
    fn signature_is_deterministic_and_depends_on_everything() {
        let s = SharedSecret::new("nhp_key", "secret", "serial-1");
        let sig = |s: &SharedSecret, t| s.headers(t)[3].1.clone();
        assert_eq!(sig(&s, 10_000), sig(&s, 10_000));
        assert_ne!(sig(&s, 10_000), sig(&s, 10_001));
        let mut other = s.clone();
        other.secret = "secret2".into();
        assert_ne!(sig(&s, 10_000), sig(&other, 10_000));
    }

    #[test]
    fn verify_accepts_good_and_refuses_bad() {
        let s = SharedSecret::new("nhp_key", "secret", "serial-1");
        let now = 1_700_000_000u64;
        let known = |k: &str| (k == "nhp_key").then(|| "secret".to_owned());
        let h = map(s.headers(now));
        assert_eq!(
            verify(&h, known, now * 1000 + 500, 90),
            Ok("serial-1".into())
        );
        // Wrong secret.
        let mut bad = s.clone();
        bad.secret = "guess".into();
        assert_eq!(
            verify(&map(bad.headers(now)), known, now * 1000, 90),
            Err(VerifyError::BadSignature)
        );
        // Unknown key.
        let mut other = s.clone();
        other.key = "nhp_other".into();
        assert_eq!(
            verify(&map(other.headers(now)), known, now * 1000, 90),
            Err(VerifyError::UnknownKey)
        );
        // Clock skew: device ahead of the server, or too far behind.
        assert_eq!(
            verify(&h, known, (now - 1) * 1000, 90),
            Err(VerifyError::Future)
        );
        assert_eq!(
            verify(&h, known, (now + 91) * 1000, 90),
            Err(VerifyError::Expired)
        );
        // Tampered time header: the salt changes, so the signature no longer matches.
        let mut t = h.clone();
        t.insert(TIME.into(), (now + 1).to_string());
        assert_eq!(
            verify(&t, known, now * 1000, 90),
            Err(VerifyError::BadSignature)
        );
        let mut m = h.clone();
        m.remove(SIGNATURE);
        assert_eq!(
            verify(&m, known, now * 1000, 90),
            Err(VerifyError::Missing(SIGNATURE))
        );
    }

    #[test]
    fn other_digests_verify() {
        let mut s = SharedSecret::new("k", "s", "id");
        s.digest = Digest::Sha512;
        s.iterations = 10;
        s.key_length = 64;
        let h = map(s.headers(100));
        assert_eq!(h[ALG], "NH1-HMAC-sha512-10-64");
        assert_eq!(
            verify(&h, |_| Some("s".into()), 100_000, 90),
            Ok("id".into())
        );
    }

    #[test]
    fn debug_redacts_the_secret() {
        let s = SharedSecret::new("nhp_key", "hunter2-very-secret", "serial-1");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
