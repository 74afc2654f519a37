//! Making VCDIFF deltas that fwup applies (see the [module above](super) for the format).
//!
//! What fwup's xdelta3 decodes, and nothing else: no application header, no secondary
//! compression (fwup builds xdelta3 without it), `VCD_SOURCE` windows with xdelta3's Adler-32
//! of every target window, instructions from the default code table. The `.fw` archive
//! deflates the delta afterwards, which compresses its ADD data much as a secondary compressor
//! would.
//!
//! Matching: the source is indexed at every `block` bytes (a hash of `block` bytes); the target
//! is scanned with a rolling hash, and a hit is checked, then extended forwards and backwards
//! (back into bytes not yet encoded). Any common run of at least `2 × block` bytes is found
//! wherever it lies in the source, so data that moved (a file that grew in a file system
//! image) is copied, not added. Runs of one byte become RUN instructions. Each target window
//! (at most [`EncodeOptions::window`] bytes) names only the source segment its copies use.

use super::{NEAR, SAME, adler32};

/// How to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Target bytes per window (xdelta3's default, 8 MiB; at most [`super::MAX_WINDOW`]).
    pub window: usize,
    /// Bytes per indexed source block, the shortest match found for sure is twice this.
    pub block: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            window: 8 << 20,
            block: 16,
        }
    }
}

const PRIME: u64 = 0x0100_0000_01b3;
/// After a match, bytes skipped while looking for the same alignment to match again.
const RESUME_SKIP: usize = 16;
/// Shortest match taken at the same alignment.
const RESUME_MIN: usize = 6;

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(PRIME).wrapping_add(u64::from(b) + 1)
    })
}

struct SourceIndex {
    table: Vec<u32>,
    mask: u64,
}

impl SourceIndex {
    fn new(source: &[u8], block: usize) -> Self {
        let blocks = source.len() / block;
        let slots = (blocks * 2).next_power_of_two().max(1024);
        let mut table = vec![0u32; slots];
        let mask = slots as u64 - 1;
        // Later blocks overwrite earlier ones: the last occurrence is kept, so runs of one
        // repeated block point at their end and extend backwards.
        for b in 0..blocks {
            let pos = b * block;
            let h = hash(&source[pos..pos + block]);
            table[(h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16 & mask) as usize] =
                u32::try_from(pos + 1).unwrap_or(0);
        }
        SourceIndex { table, mask }
    }

    fn lookup(&self, h: u64) -> Option<usize> {
        let v = self.table[(h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16 & self.mask) as usize];
        (v != 0).then(|| v as usize - 1)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// One window's three sections and the address cache.
struct Window {
    data: Vec<u8>,
    inst: Vec<u8>,
    addr: Vec<u8>,
    near: [u64; NEAR],
    next: usize,
    same: Vec<u64>,
}

impl Window {
    fn new() -> Self {
        Window {
            data: Vec::new(),
            inst: Vec::new(),
            addr: Vec::new(),
            near: [0; NEAR],
            next: 0,
            same: vec![0; SAME * 256],
        }
    }

    fn add(&mut self, bytes: &[u8]) {
        // Long runs of one byte are RUN instructions; the rest is ADDed.
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let run = bytes[i..].iter().take_while(|&&x| x == b).count();
            if run >= 16 {
                self.add_literal(&bytes[start..i]);
                self.inst.push(0);
                put_varint(&mut self.inst, run as u64);
                self.data.push(b);
                i += run;
                start = i;
            } else {
                i += run;
            }
        }
        self.add_literal(&bytes[start..]);
    }

    fn add_literal(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        if n <= 17 {
            self.inst.push(n as u8 + 1);
        } else {
            self.inst.push(1);
            put_varint(&mut self.inst, n as u64);
        }
        self.data.extend_from_slice(bytes);
    }

    fn copy(&mut self, addr: u64, size: u64, here: u64) {
        // The cheapest address mode.
        let mut best = (0u8, varint_len(addr), None::<u64>);
        let mut consider = |mode: u8, cost: usize, value: Option<u64>| {
            if cost < best.1 {
                best = (mode, cost, value);
            }
        };
        consider(1, varint_len(here - addr), Some(here - addr));
        for (i, &n) in self.near.iter().enumerate() {
            if addr >= n {
                consider(2 + i as u8, varint_len(addr - n), Some(addr - n));
            }
        }
        let slot = (addr % (SAME as u64 * 256)) as usize;
        if self.same[slot] == addr {
            consider(2 + NEAR as u8 + (slot / 256) as u8, 1, None);
        }
        let (mode, _, value) = best;
        match (mode, value) {
            (0, _) => put_varint(&mut self.addr, addr),
            (_, Some(v)) => put_varint(&mut self.addr, v),
            (_, None) => self.addr.push((slot % 256) as u8),
        }
        let base = 19 + 16 * mode;
        if (4..=18).contains(&size) {
            self.inst.push(base + (size as u8 - 3));
        } else {
            self.inst.push(base);
            put_varint(&mut self.inst, size);
        }
        self.near[self.next] = addr;
        self.next = (self.next + 1) % NEAR;
        self.same[slot] = addr;
    }
}

/// A delta that rebuilds `target` from `source`.
pub fn encode(source: &[u8], target: &[u8], opts: &EncodeOptions) -> Vec<u8> {
    let block = opts.block.max(4);
    let window = opts.window.clamp(1 << 14, super::MAX_WINDOW as usize);
    let index = SourceIndex::new(source, block);
    let mut out = vec![0xD6, 0xC3, 0xC4, 0x00, 0x00];
    // PRIME^(block-1), to roll the hash.
    let top = (1..block).fold(1u64, |p, _| p.wrapping_mul(PRIME));
    for ws in (0..target.len()).step_by(window) {
        let we = (ws + window).min(target.len());
        let tgt = &target[ws..we];
        // First pass: the matches, as (target offset, source offset, length).
        let mut copies: Vec<(usize, usize, usize)> = Vec::new();
        let mut i = 0usize;
        let mut pending = 0usize;
        let mut h = if tgt.len() >= block {
            hash(&tgt[..block])
        } else {
            0
        };
        while i + block <= tgt.len() {
            if let Some(p) = index
                .lookup(h)
                .filter(|&p| source[p..p + block] == tgt[i..i + block])
            {
                let mut len = block;
                while i + len < tgt.len()
                    && p + len < source.len()
                    && source[p + len] == tgt[i + len]
                {
                    len += 1;
                }
                let mut back = 0;
                while i - back > pending && p > back && source[p - back - 1] == tgt[i - back - 1] {
                    back += 1;
                }
                copies.push((i - back, p - back, len + back));
                i += len;
                pending = i;
                // Like bsdiff: after a few changed bytes (a moved address in code), the same
                // alignment often matches again; resume the copy there.
                let mut q = p + len;
                'resume: while i < tgt.len() {
                    for skip in 1..=RESUME_SKIP {
                        let (t, s) = (i + skip, q + skip);
                        if t + RESUME_MIN > tgt.len() || s + RESUME_MIN > source.len() {
                            break 'resume;
                        }
                        if tgt[t..t + RESUME_MIN] == source[s..s + RESUME_MIN] {
                            let mut l = RESUME_MIN;
                            while t + l < tgt.len()
                                && s + l < source.len()
                                && source[s + l] == tgt[t + l]
                            {
                                l += 1;
                            }
                            copies.push((t, s, l));
                            i = t + l;
                            q = s + l;
                            pending = i;
                            continue 'resume;
                        }
                    }
                    break;
                }
                if i + block <= tgt.len() {
                    h = hash(&tgt[i..i + block]);
                }
                continue;
            }
            if i + block < tgt.len() {
                h = h
                    .wrapping_sub((u64::from(tgt[i]) + 1).wrapping_mul(top))
                    .wrapping_mul(PRIME)
                    .wrapping_add(u64::from(tgt[i + block]) + 1);
            }
            i += 1;
        }
        // The source segment this window uses.
        let (seg_pos, seg_end) = copies.iter().fold((usize::MAX, 0), |(lo, hi), &(_, p, l)| {
            (lo.min(p), hi.max(p + l))
        });
        let seg = if copies.is_empty() {
            None
        } else {
            Some((seg_pos, seg_end - seg_pos))
        };
        let seg_len = seg.map_or(0, |s| s.1) as u64;
        let mut w = Window::new();
        let mut at = 0usize;
        for &(t, p, l) in &copies {
            w.add(&tgt[at..t]);
            w.copy((p - seg_pos) as u64, l as u64, seg_len + t as u64);
            at = t + l;
        }
        w.add(&tgt[at..]);
        // The window.
        let mut enc = Vec::with_capacity(w.data.len() + w.inst.len() + w.addr.len() + 32);
        put_varint(&mut enc, tgt.len() as u64);
        enc.push(0);
        put_varint(&mut enc, w.data.len() as u64);
        put_varint(&mut enc, w.inst.len() as u64);
        put_varint(&mut enc, w.addr.len() as u64);
        enc.extend_from_slice(&adler32(tgt).to_be_bytes());
        enc.extend_from_slice(&w.data);
        enc.extend_from_slice(&w.inst);
        enc.extend_from_slice(&w.addr);
        match seg {
            Some((pos, len)) => {
                out.push(0x01 | 0x04);
                put_varint(&mut out, len as u64);
                put_varint(&mut out, pos as u64);
            }
            None => out.push(0x04),
        }
        put_varint(&mut out, enc.len() as u64);
        out.extend_from_slice(&enc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::decode_all;
    use super::*;

    fn rnd(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_and_finds_moved_data() {
        let src = rnd(300_000, 1);
        let mut tgt = src[..50_000].to_vec();
        tgt.extend_from_slice(&rnd(1000, 2));
        tgt.extend_from_slice(&src[60_000..]);
        tgt.extend_from_slice(&[7u8; 5000]);
        tgt.extend_from_slice(&src[1000..9000]);
        for opts in [
            EncodeOptions::default(),
            EncodeOptions {
                window: 1 << 14,
                block: 8,
            },
        ] {
            let d = encode(&src, &tgt, &opts);
            assert_eq!(decode_all(&d, &src).unwrap(), tgt);
            assert!(d.len() < 3000, "{} bytes", d.len());
        }
        // Nothing in common, and nothing at all.
        let other = rnd(10_000, 3);
        assert_eq!(
            decode_all(&encode(&src, &other, &EncodeOptions::default()), &src).unwrap(),
            other
        );
        assert_eq!(
            decode_all(&encode(&[], &other, &EncodeOptions::default()), &[]).unwrap(),
            other
        );
        assert_eq!(
            decode_all(&encode(&src, &[], &EncodeOptions::default()), &src).unwrap(),
            b""
        );
    }
}
