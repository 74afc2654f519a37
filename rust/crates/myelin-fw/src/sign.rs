//! Signing keys, signatures and the firmware UUID, as fwup defines them.
//!
//! * Signature: Ed25519 (RFC 8032) over the exact bytes of meta.conf, stored as the 64-byte
//!   archive entry `meta.conf.ed25519`. Resources are covered by their BLAKE2b-256 digests in
//!   meta.conf, so one signature authenticates the whole archive.
//! * Key files (`fwup -g`): `fwup-key.pub` is the base64 of the 32-byte public key (44
//!   characters), `fwup-key.priv` the base64 of 64 bytes, the 32-byte seed then the public
//!   key (88 characters). Readers also accept unpadded base64 and the raw bytes, and ignore
//!   surrounding whitespace.
//! * Firmware UUID: `h = BLAKE2b-256(20 53 df fb d5 1e 43 10 b9 3b 95 6d a8 9f 9f 34 ||
//!   meta.conf)`, then `h[6] = (h[6] & 0x0f) | 0x50`, and the first 16 bytes printed as
//!   `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (the variant bits are left as they are). It depends
//!   only on meta.conf, so re-signing or recompressing an archive keeps it.

use crate::hash::Blake2b256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// fwup's namespace for firmware UUIDs.
const UUID_NAMESPACE: [u8; 16] = [
    0x20, 0x53, 0xdf, 0xfb, 0xd5, 0x1e, 0x43, 0x10, 0xb9, 0x3b, 0x95, 0x6d, 0xa8, 0x9f, 0x9f, 0x34,
];

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is neither base64 of the right length nor raw bytes.
    #[error("not a {kind} key: expected base64 of {len} bytes")]
    Format {
        /// "public" or "private".
        kind: &'static str,
        /// Expected decoded length.
        len: usize,
    },
    /// The public half of a private key does not match its seed.
    #[error("private key is inconsistent: its public half does not match its seed")]
    Mismatch,
    /// The bytes are not a valid curve point.
    #[error("public key is not a valid Ed25519 point")]
    Invalid,
}

fn decode(text: &[u8], len: usize, kind: &'static str) -> Result<Vec<u8>, KeyError> {
    if text.len() == len {
        // Raw key bytes, as fwup also accepts; base64 of `len` bytes is never `len` long.
        return Ok(text.to_vec());
    }
    let trimmed = std::str::from_utf8(text)
        .map_err(|_| KeyError::Format { kind, len })?
        .trim();
    let bytes = STANDARD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| KeyError::Format { kind, len })?;
    if bytes.len() != len {
        return Err(KeyError::Format { kind, len });
    }
    Ok(bytes)
}

/// A public key that verifies archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a key in fwup's format (base64 of 32 bytes).
    pub fn from_fwup(text: &[u8]) -> Result<Self, KeyError> {
        let bytes = decode(text, 32, "public")?;
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&bytes);
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| KeyError::Invalid)
    }

    /// The key in fwup's format, without a trailing newline.
    pub fn to_fwup(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        self.0
            .verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

/// A private key that signs archives.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public().to_fwup())
    }
}

impl PrivateKey {
    /// Reads a key in fwup's format (base64 of seed || public key).
    pub fn from_fwup(text: &[u8]) -> Result<Self, KeyError> {
        let bytes = decode(text, 64, "private")?;
        let mut arr = [0u8; 64];
        arr.copy_from_slice(&bytes);
        SigningKey::from_keypair_bytes(&arr)
            .map(PrivateKey)
            .map_err(|_| KeyError::Mismatch)
    }

    /// A new random key pair.
    pub fn generate() -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(PrivateKey(SigningKey::from_bytes(&seed)))
    }

    /// The key in fwup's format, without a trailing newline.
    pub fn to_fwup(&self) -> String {
        STANDARD.encode(self.0.to_keypair_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature of `message` (deterministic: same key and message, same bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
}

/// The firmware UUID of a meta.conf, as fwup computes and prints it.
pub fn firmware_uuid(meta_conf: &[u8]) -> String {
    let mut d = uuid_bytes(meta_conf);
    d[6] = (d[6] & 0x0f) | 0x50;
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The words of fwup's firmware nicknames (a selection of the BIP-39 English list, five per
/// row with lengths 3 to 7): an interoperability constant, like the UUID namespace above, so
/// that `meta-nickname` and `$FWUP_META_NICKNAME` are the ones fwup prints.
const NICKNAME_WORDS: [&str; 256] = [
    "act", "able", "about", "absent", "abandon", "add", "away", "aisle", "advice", "address",
    "aim", "best", "anger", "annual", "analyst", "all", "bone", "armor", "assume", "apology",
    "arm", "cake", "beach", "barrel", "average", "ask", "chat", "bless", "bitter", "bargain",
    "bar", "club", "brick", "bronze", "blanket", "bid", "corn", "cabin", "camera", "capital",
    "boy", "dash", "chalk", "casual", "certain", "can", "dice", "civil", "cherry", "coconut",
    "cat", "drip", "cloud", "column", "conduct", "cup", "east", "craft", "credit", "crucial",
    "day", "fall", "curve", "debris", "cushion", "dry", "fine", "dream", "depend", "despair",
    "egg", "foil", "earth", "dinner", "dilemma", "era", "gain", "entry", "dragon", "dynamic",
    "fan", "glad", "exist", "energy", "emotion", "few", "grit", "field", "estate", "essence",
    "fix", "head", "focus", "expire", "exhibit", "fog", "hood", "gauge", "finger", "fatigue",
    "fox", "idea", "glove", "fossil", "forward", "gap", "jump", "grunt", "garlic", "genuine",
    "hat", "kiwi", "hello", "guitar", "gravity", "hip", "lazy", "inner", "horror", "illness",
    "ice", "link", "labor", "indoor", "initial", "job", "loop", "light", "invest", "jealous",
    "key", "math", "maple", "laptop", "lecture", "kid", "mind", "mimic", "lonely", "lottery",
    "lab", "name", "nasty", "margin", "mention", "mad", "nose", "offer", "middle", "monitor",
    "mix", "open", "owner", "motion", "network", "net", "pass", "piano", "nephew", "observe",
    "nut", "plug", "power", "online", "ostrich", "oak", "pulp", "purse", "palace", "peasant",
    "oil", "ramp", "ready", "phrase", "popular", "one", "ring", "round", "praise", "present",
    "pen", "safe", "scrap", "reason", "program", "pig", "seed", "shock", "relief", "pudding",
    "raw", "sign", "skill", "resist", "raccoon", "rug", "slot", "snack", "ripple", "release",
    "run", "soon", "spawn", "salute", "satisfy", "say", "step", "spray", "select", "session",
    "shy", "tape", "still", "silver", "slender", "spy", "text", "super", "sphere", "stomach",
    "tag", "tiny", "table", "street", "supreme", "tip", "trip", "tired", "symbol", "thunder",
    "toe", "undo", "trade", "ticket", "trigger", "toy", "visa", "truth", "travel", "uncover",
    "two", "wasp", "vague", "unfold", "utility", "van", "wild", "vivid", "valley", "vibrant",
    "web", "yard", "zebra", "voyage", "weather", "zoo",
];

fn uuid_bytes(meta_conf: &[u8]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    h.update(&UUID_NAMESPACE);
    h.update(meta_conf);
    h.finalize()
}

/// The firmware nickname of a meta.conf (`meta-nickname`): two words chosen by the first two
/// bytes of the firmware UUID, as fwup computes it.
pub fn firmware_nickname(meta_conf: &[u8]) -> String {
    let d = uuid_bytes(meta_conf);
    format!(
        "{}-{}",
        NICKNAME_WORDS[usize::from(d[0])],
        NICKNAME_WORDS[usize::from(d[1])]
    )
}

/// Lower-case hex of a BLAKE2b-256 digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_signature() {
        let k = PrivateKey::generate().unwrap();
        let text = k.to_fwup();
        assert_eq!(text.len(), 88);
        let k2 = PrivateKey::from_fwup(format!("{text}\n").as_bytes()).unwrap();
        let p = k2.public();
        assert_eq!(p.to_fwup().len(), 44);
        let sig = k2.sign(b"hello");
        assert_eq!(sig, k.sign(b"hello"));
        assert!(p.verify(b"hello", &sig));
        assert!(!p.verify(b"hellO", &sig));
        let other = PrivateKey::generate().unwrap().public();
        assert!(!other.verify(b"hello", &sig));
    }

    #[test]
    fn bad_keys() {
        assert!(matches!(
            PublicKey::from_fwup(b"not base64!"),
            Err(KeyError::Format { kind: "public", .. })
        ));
        let k = PrivateKey::generate().unwrap();
        // A public key file given where a private key is expected.
        assert!(PrivateKey::from_fwup(k.public().to_fwup().as_bytes()).is_err());
        // Seed and public half that do not belong together.
        let mut bytes = STANDARD.decode(k.to_fwup()).unwrap();
        bytes[40] ^= 1;
        assert_eq!(
            PrivateKey::from_fwup(STANDARD.encode(bytes).as_bytes()).unwrap_err(),
            KeyError::Mismatch
        );
    }
}
