//! VCDIFF (RFC 3284) as xdelta3 writes it: the format of fwup's delta resources.
//!
//! A delta is a header followed by windows; each window rebuilds one piece of the target from a
//! segment of the source, its own data, and the target bytes it has already rebuilt.
//!
//! ```text
//! header   D6 C3 C4 00            magic "VCD" with the top bits set, version 0
//!          Hdr_Indicator          0x01 VCD_DECOMPRESS: a secondary compressor id byte follows
//!                                 0x02 VCD_CODETABLE: an application code table follows
//!                                 0x04 VCD_APPHEADER (xdelta3): varint length + bytes
//! window   Win_Indicator          0x01 VCD_SOURCE: copies may use a segment of the source
//!                                 0x02 VCD_TARGET: ... of earlier target data (not by xdelta3)
//!                                 0x04 VCD_ADLER32 (xdelta3): window checksum present
//!          [segment length, segment position]   varints, with VCD_SOURCE/VCD_TARGET
//!          delta encoding length  varint: bytes of the window from here on
//!          target window length   varint
//!          Delta_Indicator        0x01/0x02/0x04: data/instructions/addresses compressed
//!          data, inst, addr lengths  varints
//!          [Adler-32]             4 bytes big-endian, with VCD_ADLER32: of the target window
//!          data section           bytes for ADD and RUN
//!          instructions section   code table indexes, each optionally followed by a varint
//!                                 size (for table entries of size 0)
//!          addresses section      COPY addresses, encoded by the address cache
//! ```
//!
//! Integers are big-endian base-128 varints (high bit: more bytes follow). Instructions come
//! from the default code table of RFC 3284 section 5.6 (256 entries of one or two of NOOP, ADD,
//! RUN, COPY with a size and a COPY mode). A COPY address below the source segment's length
//! reads the source segment; above it, the target window built so far (overlapping copies
//! repeat bytes, as in LZ77). Addresses are encoded with the RFC's cache of 4 "near" and
//! 3 × 256 "same" slots: mode 0 is the address itself, mode 1 is `here - value`, modes 2..=5
//! add the value to a near slot, modes 6..=8 take a byte indexing the same slots; every
//! decoded address is then stored in the next near slot (round robin) and in same slot
//! `address % 768`.
//!
//! What fwup's applier accepts is what this decoder accepts: fwup builds xdelta3 without
//! secondary compressors (`SECONDARY_DJW`, `FGK`, `LZMA` all 0), so a delta that uses one, an
//! application code table, or `VCD_TARGET` windows (which xdelta3 never writes) is refused with
//! a clear error. Every window's Adler-32 is checked before its bytes are handed out, so a delta
//! applied to the wrong source is detected window by window and nothing of a bad window is
//! written. Memory is bounded: a window's target (at most [`MAX_WINDOW`] bytes, xdelta3's hard
//! limit) and its sections; the source is read on demand.

use std::io::{self, Read};

pub mod encode;
pub use encode::{EncodeOptions, encode};

/// Largest target window accepted (xdelta3's `XD3_HARDMAXWINSIZE`).
pub const MAX_WINDOW: u64 = 1 << 24;
/// Largest delta encoding of one window accepted (its sections plus headers).
pub const MAX_ENCODING: u64 = 4 * MAX_WINDOW + (1 << 20);
const MAX_APPHEADER: u64 = 1 << 16;

const VCD_DECOMPRESS: u8 = 0x01;
const VCD_CODETABLE: u8 = 0x02;
const VCD_APPHEADER: u8 = 0x04;
const VCD_SOURCE: u8 = 0x01;
const VCD_TARGET: u8 = 0x02;
const VCD_ADLER32: u8 = 0x04;
const NEAR: usize = 4;
const SAME: usize = 3;

/// Why a delta cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VcdiffError {
    /// Not a VCDIFF stream.
    #[error("not a VCDIFF delta (bad magic bytes)")]
    Magic,
    /// A feature fwup's xdelta3 lacks.
    #[error("{0} is not supported (fwup's xdelta3 has no support for it either)")]
    Unsupported(&'static str),
    /// Structurally invalid data.
    #[error("invalid VCDIFF data in window {window}: {message}")]
    Invalid {
        /// Window index (0-based).
        window: u64,
        /// What is wrong.
        message: String,
    },
    /// The rebuilt window does not have the checksum the delta recorded: the source is not the
    /// one the delta was made from.
    #[error(
        "xdelta3 error: target window checksum mismatch (window {window}): the delta's source is not what the device holds"
    )]
    Checksum {
        /// Window index (0-based).
        window: u64,
    },
    /// The delta ended in the middle of something.
    #[error("the delta is truncated")]
    Truncated,
    /// Reading the delta or the source failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Random access to the source a delta was made against.
pub trait Source {
    /// The source's length in bytes.
    fn len(&self) -> u64;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset` (within `0..len()`).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A source held in memory (tests, fuzzing, the encoder's checks).
impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&s| {
                s.checked_add(buf.len())
                    .is_some_and(|e| e <= <[u8]>::len(self))
            })
            .ok_or_else(|| io::Error::other("read past the end of the source"))?;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Noop,
    Add,
    Run,
    Copy(u8),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Inst {
    pub(crate) kind: Kind,
    pub(crate) size: u8,
}

/// The default code table of RFC 3284 section 5.6, as pairs of instructions.
pub(crate) fn code_table() -> [(Inst, Inst); 256] {
    let noop = Inst {
        kind: Kind::Noop,
        size: 0,
    };
    let mut t = [(noop, noop); 256];
    t[0].0 = Inst {
        kind: Kind::Run,
        size: 0,
    };
    let mut i = 1;
    for size in 0..=17u8 {
        t[i].0 = Inst {
            kind: Kind::Add,
            size,
        };
        i += 1;
    }
    for mode in 0..9u8 {
        for size in std::iter::once(0u8).chain(4..=18) {
            t[i].0 = Inst {
                kind: Kind::Copy(mode),
                size,
            };
            i += 1;
        }
    }
    for mode in 0..9u8 {
        let copy_sizes: &[u8] = if mode < 6 { &[4, 5, 6] } else { &[4] };
        for add in 1..=4u8 {
            for &copy in copy_sizes {
                t[i] = (
                    Inst {
                        kind: Kind::Add,
                        size: add,
                    },
                    Inst {
                        kind: Kind::Copy(mode),
                        size: copy,
                    },
                );
                i += 1;
            }
        }
    }
    for mode in 0..9u8 {
        t[i] = (
            Inst {
                kind: Kind::Copy(mode),
                size: 4,
            },
            Inst {
                kind: Kind::Add,
                size: 1,
            },
        );
        i += 1;
    }
    debug_assert_eq!(i, 256);
    t
}

/// Reads a varint from a reader (header fields).
fn read_varint(r: &mut impl Read) -> Result<u64, VcdiffError> {
    let mut v: u64 = 0;
    for _ in 0..10 {
        let b = read_byte(r)?.ok_or(VcdiffError::Truncated)?;
        v = v
            .checked_mul(128)
            .and_then(|x| x.checked_add(u64::from(b & 0x7f)))
            .ok_or(VcdiffError::Invalid {
                window: 0,
                message: "integer too large".into(),
            })?;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(VcdiffError::Invalid {
        window: 0,
        message: "integer too long".into(),
    })
}

fn read_byte(r: &mut impl Read) -> Result<Option<u8>, VcdiffError> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), VcdiffError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            VcdiffError::Truncated
        } else {
            VcdiffError::Io(e)
        }
    })
}

/// A cursor over one section of a window.
struct Section<'a> {
    bytes: &'a [u8],
    pos: usize,
    name: &'static str,
    window: u64,
}

impl Section<'_> {
    fn err(&self, what: &str) -> VcdiffError {
        VcdiffError::Invalid {
            window: self.window,
            message: format!("{} section: {what}", self.name),
        }
    }

    fn byte(&mut self) -> Result<u8, VcdiffError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.err("ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, VcdiffError> {
        let mut v: u64 = 0;
        for _ in 0..10 {
            let b = self.byte()?;
            v = v
                .checked_mul(128)
                .and_then(|x| x.checked_add(u64::from(b & 0x7f)))
                .ok_or_else(|| self.err("integer too large"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("integer too long"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], VcdiffError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err("ends early"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// The address cache of RFC 3284 section 5.1.
struct AddressCache {
    near: [u64; NEAR],
    next: usize,
    same: Vec<u64>,
}

impl AddressCache {
    fn new() -> Self {
        AddressCache {
            near: [0; NEAR],
            next: 0,
            same: vec![0; SAME * 256],
        }
    }

    fn decode(&mut self, here: u64, mode: u8, addr: &mut Section<'_>) -> Result<u64, VcdiffError> {
        let mode = usize::from(mode);
        let a = match mode {
            0 => addr.varint()?,
            1 => here
                .checked_sub(addr.varint()?)
                .ok_or_else(|| addr.err("HERE address before the window"))?,
            m if m < 2 + NEAR => self.near[m - 2]
                .checked_add(addr.varint()?)
                .ok_or_else(|| addr.err("address too large"))?,
            m => {
                let b = usize::from(addr.byte()?);
                self.same[(m - 2 - NEAR) * 256 + b]
            }
        };
        self.near[self.next] = a;
        self.next = (self.next + 1) % NEAR;
        let slots = self.same.len() as u64;
        self.same[(a % slots) as usize] = a;
        Ok(a)
    }
}

/// Streaming decoder: reads the delta front to back and produces the target window by window.
pub struct Decoder {
    table: [(Inst, Inst); 256],
    header: bool,
    window: u64,
    produced: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// Small buffered source reads (COPY instructions read a few bytes at a time).
struct SourceCache<'s> {
    src: &'s mut dyn Source,
    block: Vec<u8>,
    start: u64,
}

const SOURCE_BLOCK: u64 = 1 << 20;

impl SourceCache<'_> {
    fn copy(&mut self, mut offset: u64, mut out: &mut [u8]) -> io::Result<()> {
        while !out.is_empty() {
            if self.block.is_empty()
                || offset < self.start
                || offset >= self.start + self.block.len() as u64
            {
                let start = offset / SOURCE_BLOCK * SOURCE_BLOCK;
                let len = (self.src.len() - start).min(SOURCE_BLOCK) as usize;
                self.block.resize(len, 0);
                self.src.read_at(start, &mut self.block)?;
                self.start = start;
            }
            let at = (offset - self.start) as usize;
            let n = (self.block.len() - at).min(out.len());
            out[..n].copy_from_slice(&self.block[at..at + n]);
            out = &mut out[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

impl Decoder {
    /// A decoder at the start of a delta.
    pub fn new() -> Self {
        Decoder {
            table: code_table(),
            header: false,
            window: 0,
            produced: 0,
        }
    }

    /// Bytes of target produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    fn header(&mut self, patch: &mut impl Read) -> Result<(), VcdiffError> {
        let mut magic = [0u8; 4];
        read_exact(patch, &mut magic).map_err(|e| match e {
            VcdiffError::Truncated => VcdiffError::Magic,
            e => e,
        })?;
        if magic != [0xD6, 0xC3, 0xC4, 0x00] {
            return Err(VcdiffError::Magic);
        }
        let ind = read_byte(patch)?.ok_or(VcdiffError::Truncated)?;
        if ind & VCD_DECOMPRESS != 0 {
            return Err(VcdiffError::Unsupported(
                "secondary compression (xdelta3 -S djw/fgk/lzma)",
            ));
        }
        if ind & VCD_CODETABLE != 0 {
            return Err(VcdiffError::Unsupported(
                "an application-defined code table",
            ));
        }
        if ind & !(VCD_DECOMPRESS | VCD_CODETABLE | VCD_APPHEADER) != 0 {
            return Err(VcdiffError::Invalid {
                window: 0,
                message: format!("unknown header indicator bits {ind:#04x}"),
            });
        }
        if ind & VCD_APPHEADER != 0 {
            let n = read_varint(patch)?;
            if n > MAX_APPHEADER {
                return Err(VcdiffError::Invalid {
                    window: 0,
                    message: format!("application header of {n} bytes"),
                });
            }
            let mut skip = vec![0u8; n as usize];
            read_exact(patch, &mut skip)?;
        }
        self.header = true;
        Ok(())
    }

    /// Decodes the next window into `out` (replacing its contents); `Ok(false)` at the end of
    /// the delta. The window's checksum, when present, is verified before returning.
    pub fn next_window(
        &mut self,
        patch: &mut impl Read,
        source: &mut dyn Source,
        out: &mut Vec<u8>,
    ) -> Result<bool, VcdiffError> {
        if !self.header {
            self.header(patch)?;
        }
        out.clear();
        let Some(win_ind) = read_byte(patch)? else {
            return Ok(false);
        };
        let w = self.window;
        let invalid = |message: String| VcdiffError::Invalid { window: w, message };
        if win_ind & VCD_TARGET != 0 {
            return Err(VcdiffError::Unsupported(
                "a VCD_TARGET window (copies from earlier target windows)",
            ));
        }
        if win_ind & !(VCD_SOURCE | VCD_TARGET | VCD_ADLER32) != 0 {
            return Err(invalid(format!("unknown window indicator {win_ind:#04x}")));
        }
        let (seg_len, seg_pos) = if win_ind & VCD_SOURCE != 0 {
            (read_varint(patch)?, read_varint(patch)?)
        } else {
            (0, 0)
        };
        if seg_pos
            .checked_add(seg_len)
            .is_none_or(|e| e > source.len())
        {
            return Err(invalid(format!(
                "source segment {seg_pos}+{seg_len} lies outside the {}-byte source",
                source.len()
            )));
        }
        let enc_len = read_varint(patch)?;
        if enc_len > MAX_ENCODING {
            return Err(invalid(format!("delta encoding of {enc_len} bytes")));
        }
        let mut enc = vec![0u8; enc_len as usize];
        read_exact(patch, &mut enc)?;
        let mut hdr = Section {
            bytes: &enc,
            pos: 0,
            name: "window header",
            window: w,
        };
        let target_len = hdr.varint()?;
        if target_len > MAX_WINDOW {
            return Err(invalid(format!(
                "target window of {target_len} bytes (at most {MAX_WINDOW})"
            )));
        }
        let delta_ind = hdr.byte()?;
        if delta_ind != 0 {
            return Err(VcdiffError::Unsupported(
                "secondary compression of a window's sections (xdelta3 -S djw/fgk/lzma)",
            ));
        }
        let data_len = hdr.varint()?;
        let inst_len = hdr.varint()?;
        let addr_len = hdr.varint()?;
        let checksum = if win_ind & VCD_ADLER32 != 0 {
            let c = hdr.take(4)?;
            Some(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        } else {
            None
        };
        let rest = &enc[hdr.pos..];
        if data_len
            .checked_add(inst_len)
            .and_then(|x| x.checked_add(addr_len))
            != Some(rest.len() as u64)
        {
            return Err(invalid(
                "section lengths do not add up to the delta encoding length".into(),
            ));
        }
        let (data, rest) = rest.split_at(data_len as usize);
        let (inst, addr) = rest.split_at(inst_len as usize);
        let mut data = Section {
            bytes: data,
            pos: 0,
            name: "data",
            window: w,
        };
        let mut inst = Section {
            bytes: inst,
            pos: 0,
            name: "instructions",
            window: w,
        };
        let mut addr = Section {
            bytes: addr,
            pos: 0,
            name: "addresses",
            window: w,
        };
        out.reserve(target_len as usize);
        let mut cache = AddressCache::new();
        let mut src = SourceCache {
            src: source,
            block: Vec::new(),
            start: 0,
        };
        while inst.pos < inst.bytes.len() {
            let (a, b) = self.table[usize::from(inst.byte()?)];
            for i in [a, b] {
                if i.kind == Kind::Noop {
                    continue;
                }
                let size = if i.size == 0 {
                    inst.varint()?
                } else {
                    u64::from(i.size)
                };
                let end = (out.len() as u64)
                    .checked_add(size)
                    .filter(|&e| e <= target_len)
                    .ok_or_else(|| invalid("instructions overflow the target window".into()))?;
                let size = size as usize;
                match i.kind {
                    Kind::Add => out.extend_from_slice(data.take(size)?),
                    Kind::Run => {
                        let b = data.byte()?;
                        out.resize(end as usize, b);
                    }
                    Kind::Copy(mode) => {
                        let here = seg_len + out.len() as u64;
                        let a = cache.decode(here, mode, &mut addr)?;
                        if a >= here {
                            return Err(invalid(format!("COPY address {a} is not behind {here}")));
                        }
                        if a < seg_len {
                            let from_src = (seg_len - a).min(size as u64) as usize;
                            let at = out.len();
                            out.resize(at + from_src, 0);
                            src.copy(seg_pos + a, &mut out[at..])?;
                            // The rest of the copy continues into the target window.
                            for t in 0..size - from_src {
                                let byte = out[t];
                                out.push(byte);
                            }
                        } else {
                            let mut t = (a - seg_len) as usize;
                            if t + size <= out.len() {
                                out.extend_from_within(t..t + size);
                            } else {
                                for _ in 0..size {
                                    let byte = out[t];
                                    out.push(byte);
                                    t += 1;
                                }
                            }
                        }
                    }
                    Kind::Noop => {}
                }
            }
        }
        if out.len() as u64 != target_len {
            return Err(invalid(format!(
                "instructions rebuild {} bytes of a {target_len}-byte window",
                out.len()
            )));
        }
        if data.pos != data.bytes.len() || addr.pos != addr.bytes.len() {
            return Err(invalid("sections hold unused bytes".into()));
        }
        if let Some(want) = checksum {
            if adler32(out) != want {
                return Err(VcdiffError::Checksum { window: w });
            }
        }
        self.window += 1;
        self.produced += target_len;
        Ok(true)
    }
}

/// Adler-32 (RFC 1950), the checksum xdelta3 records per window.
pub fn adler32(data: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(data);
    a.checksum()
}

/// Decodes a whole delta held in memory against `source` (tests and tools).
pub fn decode_all(delta: &[u8], mut source: &[u8]) -> Result<Vec<u8>, VcdiffError> {
    let mut d = Decoder::new();
    let mut patch = delta;
    let mut target = Vec::new();
    let mut window = Vec::new();
    while d.next_window(&mut patch, &mut source, &mut window)? {
        target.extend_from_slice(&window);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table_matches_the_rfc() {
        let t = code_table();
        // Spot checks against RFC 3284 section 5.6.
        assert_eq!(t[0].0.kind, Kind::Run);
        assert_eq!((t[1].0.kind, t[1].0.size), (Kind::Add, 0));
        assert_eq!((t[18].0.kind, t[18].0.size), (Kind::Add, 17));
        assert_eq!((t[19].0.kind, t[19].0.size), (Kind::Copy(0), 0));
        assert_eq!((t[20].0.kind, t[20].0.size), (Kind::Copy(0), 4));
        assert_eq!((t[34].0.kind, t[34].0.size), (Kind::Copy(0), 18));
        assert_eq!((t[35].0.kind, t[35].0.size), (Kind::Copy(1), 0));
        assert_eq!((t[162].0.kind, t[162].0.size), (Kind::Copy(8), 18));
        assert_eq!(
            (t[163].0.size, t[163].1.kind, t[163].1.size),
            (1, Kind::Copy(0), 4)
        );
        assert_eq!((t[164].0.size, t[164].1.size), (1, 5));
        assert_eq!((t[174].0.size, t[174].1.size), (4, 6));
        assert_eq!((t[235].0.size, t[235].1.kind), (1, Kind::Copy(6)));
        assert_eq!((t[246].0.size, t[246].1.kind), (4, Kind::Copy(8)));
        assert_eq!((t[247].0.kind, t[247].1.kind), (Kind::Copy(0), Kind::Add));
        assert_eq!(t[255].0.kind, Kind::Copy(8));
    }

    #[test]
    fn golden_patches_from_fwups_corpus() {
        // `xdelta3 -A -S -f -s rootfs-v2.bin rootfs-v2.bin`: one window copying the whole
        // 512 KiB source, with its Adler-32.
        let patch: &[u8] = &[
            0xd6, 0xc3, 0xc4, 0x00, 0x00, 0x05, 0xa0, 0x80, 0x00, 0x00, 0x10, 0xa0, 0x80, 0x00,
            0x00, 0x00, 0x04, 0x01, 0x65, 0xdb, 0x68, 0xc9, 0x13, 0xa0, 0x80, 0x00, 0x00,
        ];
        let src: Vec<u8> = (0..1u32 << 19).map(|i| (i * 31 % 251) as u8).collect();
        // The right source rebuilds itself only if its checksum is the recorded one: here it
        // is not (this source is made up), so the window is refused.
        assert!(matches!(
            decode_all(patch, &src),
            Err(VcdiffError::Checksum { window: 0 })
        ));
        let mut fixed = patch.to_vec();
        fixed[18..22].copy_from_slice(&adler32(&src).to_be_bytes());
        assert_eq!(decode_all(&fixed, &src).unwrap(), src);
        // Too short a source: the segment is outside it.
        assert!(matches!(
            decode_all(&fixed, &src[..1000]),
            Err(VcdiffError::Invalid { .. })
        ));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            decode_all(b"PK\x03\x04", b""),
            Err(VcdiffError::Magic)
        ));
        assert!(matches!(
            decode_all(&[0xd6, 0xc3, 0xc4, 0, 1, 1], b""),
            Err(VcdiffError::Unsupported(_))
        ));
        assert!(matches!(
            decode_all(&[0xd6, 0xc3, 0xc4, 0, 0, 2, 0, 0], b""),
            Err(VcdiffError::Unsupported(_))
        ));
        assert!(matches!(
            decode_all(&[0xd6, 0xc3, 0xc4, 0, 0, 0, 5], b""),
            Err(VcdiffError::Truncated)
        ));
        // An empty delta (header only) rebuilds nothing.
        assert_eq!(decode_all(&[0xd6, 0xc3, 0xc4, 0, 0], b"").unwrap(), b"");
    }
}
