//! BLAKE2b-256: the digest fwup records in meta.conf for every resource (`blake2b-256`) and
//! hashes the firmware UUID with.
//!
//! The implementation is blake2b_simd, which picks AVX2 or SSE4.1 at run time: on x86_64 hosts,
//! where release engineers create images, it hashes twice as fast as portable code, and hashing
//! is what bounds `create` and `apply` there (scripts/bench fw). On ARM it runs portable code.

/// An incremental BLAKE2b hash with a 32-byte digest (BLAKE2b-256, unkeyed).
#[derive(Clone)]
pub struct Blake2b256(blake2b_simd::State);

impl Blake2b256 {
    /// An empty hash.
    pub fn new() -> Blake2b256 {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(32);
        Blake2b256(params.to_state())
    }

    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> [u8; 32] {
        let mut h = Blake2b256::new();
        h.update(data);
        h.finalize()
    }

    /// Adds `data` to the hash.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added so far.
    pub fn finalize(&self) -> [u8; 32] {
        let mut digest = [0; 32];
        digest.copy_from_slice(self.0.finalize().as_bytes());
        digest
    }
}

impl Default for Blake2b256 {
    fn default() -> Blake2b256 {
        Blake2b256::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Blake2b256;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_digests() {
        // BLAKE2b-256 of "" and of "abc" (RFC 7693's test input), as b2sum -l 256 prints them.
        assert_eq!(
            hex(&Blake2b256::new().finalize()),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
        let mut h = Blake2b256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            hex(&h.finalize()),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }
}
