//! The `.fw` container: a ZIP archive written and read strictly front to back.
//!
//! Entry order carries meaning: an optional `meta.conf.ed25519` (stored, 64 bytes) first,
//! `meta.conf` (deflated) next, then the resources (`data/NAME`, or `NAME` for resources whose
//! name starts with `/`) in declaration order. Appliers process entries as they stream past.
//!
//! Writing reproduces what fwup (through libarchive) writes, byte for byte:
//!
//! ```text
//! local header   PK 03 04, version needed 10 (stored) or 20 (deflated), flags 0x0008 (sizes
//!                in a data descriptor), method 0 or 8, DOS time 0 and date (1980-01-01, or
//!                meta.conf's creation time in UTC), CRC 0, compressed size 0 for deflated
//!                entries (the real size for stored ones), uncompressed size, name, extras:
//!                "UT" (0x5455) with flags 1 + mtime for meta.conf, flags 0 otherwise;
//!                "ux" (0x7875) version 1, uid 0 and gid 0 as 4-byte values
//! data           raw deflate (zlib, window 15, memLevel 8, level 9 by default) or stored
//! descriptor     PK 07 08, CRC-32, compressed size, uncompressed size (8-byte sizes with ZIP64)
//! central dir    PK 01 02 per entry: made by 0x030a/0x0314 (Unix), same fields with real CRC
//!                and sizes, external attributes 0x81a40000 (regular file, 0644), same extras
//! end record     PK 05 06 (preceded by ZIP64 records when sizes or counts need them)
//! ```
//!
//! Reading is streaming (the central directory is never needed): the local header gives the
//! name and method; a deflated entry ends where the deflate stream ends, after which the data
//! descriptor (signature optional) is read and checked; entries whose local header carries the
//! sizes (Info-ZIP) are read by size. CRC-32 and sizes are checked at the end of every entry.
//! ZIP64 extra fields and 24-byte descriptors are understood. Data is handed out in chunks that
//! never cross a 16 KiB boundary of the input (and at most 256 KiB long), which is how fwup's
//! libarchive delivers it; progress reports therefore match fwup's packet for packet.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io::{self, Read, Write};

/// Errors of the container layer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The stream ended inside an entry or a header.
    #[error("archive is truncated (unexpected end at byte {offset})")]
    Truncated {
        /// Bytes read when the end was hit.
        offset: u64,
    },
    /// Structurally invalid data, with the byte offset where it was found.
    #[error("corrupt archive at byte {offset}: {message}")]
    Corrupt {
        /// Byte offset in the archive.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The entry's CRC-32 does not match its data.
    #[error("ZIP bad CRC for '{name}': {actual:#010x} should be {expected:#010x}")]
    Crc {
        /// Entry name.
        name: String,
        /// CRC of the data read.
        actual: u32,
        /// CRC recorded in the archive.
        expected: u32,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

const LFH_SIG: u32 = 0x0403_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const DD_SIG: u32 = 0x0807_4b50;

/// Input chunks end at multiples of this many bytes of the archive (as libarchive reads).
pub const BLOCK: u64 = 16384;
/// Largest decompressed chunk handed out at once.
pub const MAX_CHUNK: usize = 256 * 1024;

/// DOS date and time (UTC) of a Unix time; 1980-01-01 00:00 for earlier times.
pub fn dos_datetime(unix: Option<i64>) -> (u16, u16) {
    let t = unix.unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil_from_unix(t);
    if y < 1980 {
        return (0x21, 0);
    }
    let date = (((y - 1980).min(127) as u16) << 9) | ((mo as u16) << 5) | d as u16;
    let time = ((h as u16) << 11) | ((mi as u16) << 5) | (s as u16 / 2);
    (date, time)
}

/// Year, month, day, hour, minute, second (UTC) of a Unix time.
pub fn civil_from_unix(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time, as fwup prints creation dates.
pub fn iso8601(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn unix_from_dos(date: u16, time: u16) -> i64 {
    let y = 1980 + i64::from(date >> 9);
    let m = i64::from((date >> 5) & 0xf).clamp(1, 12);
    let d = i64::from(date & 0x1f).max(1);
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400
        + i64::from(time >> 11) * 3600
        + i64::from((time >> 5) & 0x3f) * 60
        + i64::from(time & 0x1f) * 2
}

struct CentralEntry {
    name: String,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    mtime: Option<u32>,
    date: u16,
    time: u16,
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn extras(mtime: Option<u32>) -> Vec<u8> {
    let mut e = Vec::with_capacity(24);
    match mtime {
        Some(t) => {
            e.extend_from_slice(&[0x55, 0x54, 5, 0, 1]);
            e.extend_from_slice(&t.to_le_bytes());
        }
        None => e.extend_from_slice(&[0x55, 0x54, 1, 0, 0]),
    }
    e.extend_from_slice(&[0x75, 0x78, 11, 0, 1, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    e
}

/// Writes an archive the way fwup does.
pub struct ZipWriter<W: Write> {
    out: Counting<W>,
    entries: Vec<CentralEntry>,
    level: u32,
}

/// An entry being written with [`ZipWriter::start_deflated`].
pub struct DeflateEntry<'a, W: Write> {
    zip: &'a mut ZipWriter<W>,
    compress: Compress,
    crc: crc32fast::Hasher,
    buf: Vec<u8>,
    entry: CentralEntry,
    zip64: bool,
    expected: Option<u64>,
}

impl<W: Write> ZipWriter<W> {
    /// A writer deflating at `level` (1..=9; fwup's default is 9).
    pub fn new(out: W, level: u32) -> Self {
        ZipWriter {
            out: Counting {
                inner: out,
                count: 0,
            },
            entries: Vec::new(),
            level: level.clamp(0, 9),
        }
    }

    fn local_header(
        &mut self,
        e: &CentralEntry,
        size_in_header: u64,
        zip64: bool,
    ) -> io::Result<()> {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&LFH_SIG.to_le_bytes());
        h.extend_from_slice(&(if e.method == 0 { 10u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&8u16.to_le_bytes());
        h.extend_from_slice(&e.method.to_le_bytes());
        h.extend_from_slice(&e.time.to_le_bytes());
        h.extend_from_slice(&e.date.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        let stored_size = if e.method == 0 { size_in_header } else { 0 };
        if zip64 {
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h.extend_from_slice(&u32::MAX.to_le_bytes());
        } else {
            h.extend_from_slice(&(stored_size as u32).to_le_bytes());
            h.extend_from_slice(&(size_in_header as u32).to_le_bytes());
        }
        let mut extra = extras(e.mtime);
        if zip64 {
            extra.extend_from_slice(&[1, 0, 16, 0]);
            extra.extend_from_slice(&size_in_header.to_le_bytes());
            extra.extend_from_slice(&stored_size.to_le_bytes());
        }
        h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(e.name.as_bytes());
        h.extend_from_slice(&extra);
        self.out.write_all(&h)
    }

    fn new_entry(&self, name: &str, method: u16, mtime: Option<u32>) -> CentralEntry {
        let (date, time) = dos_datetime(mtime.map(i64::from));
        CentralEntry {
            name: name.to_owned(),
            method,
            crc: 0,
            csize: 0,
            usize: 0,
            offset: self.out.count,
            mtime,
            date,
            time,
        }
    }

    fn descriptor(&mut self, crc: u32, csize: u64, usize: u64, zip64: bool) -> io::Result<()> {
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&DD_SIG.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            d.extend_from_slice(&csize.to_le_bytes());
            d.extend_from_slice(&usize.to_le_bytes());
        } else {
            d.extend_from_slice(&(csize as u32).to_le_bytes());
            d.extend_from_slice(&(usize as u32).to_le_bytes());
        }
        self.out.write_all(&d)
    }

    /// Adds a stored (uncompressed) entry.
    pub fn add_stored(&mut self, name: &str, data: &[u8], mtime: Option<u32>) -> io::Result<()> {
        let mut e = self.new_entry(name, 0, mtime);
        let len = data.len() as u64;
        let zip64 = len >= u64::from(u32::MAX);
        self.local_header(&e, len, zip64)?;
        self.out.write_all(data)?;
        e.crc = crc32fast::hash(data);
        e.csize = len;
        e.usize = len;
        self.descriptor(e.crc, len, len, zip64)?;
        self.entries.push(e);
        Ok(())
    }

    /// Starts a deflated entry of `size` uncompressed bytes (0 in the header when unknown);
    /// write the data into the returned entry, then call [`DeflateEntry::finish`].
    pub fn start_deflated(
        &mut self,
        name: &str,
        size: Option<u64>,
        mtime: Option<u32>,
    ) -> io::Result<DeflateEntry<'_, W>> {
        let e = self.new_entry(name, 8, mtime);
        let zip64 = size.is_some_and(|s| s >= u64::from(u32::MAX));
        self.local_header(&e, size.unwrap_or(0), zip64)?;
        let level = self.level;
        Ok(DeflateEntry {
            zip: self,
            compress: Compress::new(Compression::new(level), false),
            crc: crc32fast::Hasher::new(),
            buf: Vec::with_capacity(128 * 1024),
            entry: e,
            zip64,
            expected: size,
        })
    }

    /// Adds a deflated entry from memory.
    pub fn add_deflated(&mut self, name: &str, data: &[u8], mtime: Option<u32>) -> io::Result<()> {
        let mut e = self.start_deflated(name, Some(data.len() as u64), mtime)?;
        e.write_all(data)?;
        e.finish()
    }

    /// Writes the central directory and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_start = self.out.count;
        let mut needs_zip64 = self.entries.len() >= 0xffff || cd_start >= u64::from(u32::MAX);
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let big = e.csize >= u64::from(u32::MAX)
                || e.usize >= u64::from(u32::MAX)
                || e.offset >= u64::from(u32::MAX);
            needs_zip64 |= big;
            let mut extra = extras(e.mtime);
            if big {
                extra.extend_from_slice(&[1, 0, 24, 0]);
                extra.extend_from_slice(&e.usize.to_le_bytes());
                extra.extend_from_slice(&e.csize.to_le_bytes());
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            let clamp = |v: u64| if big { u32::MAX } else { v as u32 };
            let mut h = Vec::with_capacity(80);
            h.extend_from_slice(&CDH_SIG.to_le_bytes());
            h.extend_from_slice(&(if e.method == 0 { 0x030au16 } else { 0x0314 }).to_le_bytes());
            h.extend_from_slice(&(if e.method == 0 { 10u16 } else { 20 }).to_le_bytes());
            h.extend_from_slice(&8u16.to_le_bytes());
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&e.time.to_le_bytes());
            h.extend_from_slice(&e.date.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            h.extend_from_slice(&clamp(e.csize).to_le_bytes());
            h.extend_from_slice(&clamp(e.usize).to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&0x81a4_0000u32.to_le_bytes());
            h.extend_from_slice(&clamp(e.offset).to_le_bytes());
            h.extend_from_slice(e.name.as_bytes());
            h.extend_from_slice(&extra);
            self.out.write_all(&h)?;
        }
        let cd_size = self.out.count - cd_start;
        let count = entries.len() as u64;
        if needs_zip64 {
            let z64_start = self.out.count;
            let mut z = Vec::new();
            z.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
            z.extend_from_slice(&44u64.to_le_bytes());
            z.extend_from_slice(&0x031eu16.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&count.to_le_bytes());
            z.extend_from_slice(&count.to_le_bytes());
            z.extend_from_slice(&cd_size.to_le_bytes());
            z.extend_from_slice(&cd_start.to_le_bytes());
            z.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&z64_start.to_le_bytes());
            z.extend_from_slice(&1u32.to_le_bytes());
            self.out.write_all(&z)?;
        }
        let c16 = |v: u64| if needs_zip64 { 0xffffu16 } else { v as u16 };
        let c32 = |v: u64| if needs_zip64 { u32::MAX } else { v as u32 };
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&EOCD_SIG.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&c16(count).to_le_bytes());
        end.extend_from_slice(&c16(count).to_le_bytes());
        end.extend_from_slice(&c32(cd_size).to_le_bytes());
        end.extend_from_slice(&c32(cd_start).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out.inner)
    }
}

impl<W: Write> DeflateEntry<'_, W> {
    fn pump(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.buf.clear();
            let before_in = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.buf, flush)
                .map_err(io::Error::other)?;
            let used = (self.compress.total_in() - before_in) as usize;
            input = &input[used..];
            self.zip.out.write_all(&self.buf)?;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty() && self.buf.len() < self.buf.capacity(),
            };
            if done {
                return Ok(());
            }
        }
    }

    /// Completes the entry: flushes the compressor and writes the data descriptor.
    pub fn finish(mut self) -> io::Result<()> {
        self.pump(&[], FlushCompress::Finish)?;
        let usize = self.compress.total_in();
        if let Some(expected) = self.expected.filter(|&e| e != usize) {
            return Err(io::Error::other(format!(
                "'{}' changed while being archived: {usize} bytes instead of {expected}",
                self.entry.name
            )));
        }
        let csize = self.compress.total_out();
        let crc = std::mem::take(&mut self.crc).finalize();
        self.zip.descriptor(crc, csize, usize, self.zip64)?;
        let mut e = std::mem::replace(
            &mut self.entry,
            CentralEntry {
                name: String::new(),
                method: 0,
                crc: 0,
                csize: 0,
                usize: 0,
                offset: 0,
                mtime: None,
                date: 0,
                time: 0,
            },
        );
        e.crc = crc;
        e.csize = csize;
        e.usize = usize;
        self.zip.entries.push(e);
        Ok(())
    }
}

impl<W: Write> Write for DeflateEntry<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.crc.update(data);
        self.pump(data, FlushCompress::None)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A local header as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// Path inside the archive.
    pub name: String,
    /// 0 (stored) or 8 (deflated).
    pub method: u16,
    /// Uncompressed size if the header states it.
    pub size: Option<u64>,
    /// Modification time from the "UT" extra field or the DOS fields.
    pub mtime: i64,
    /// Byte offset of the local header.
    pub offset: u64,
}

struct Current {
    name: String,
    method: u16,
    has_descriptor: bool,
    zip64: bool,
    expected_crc: u32,
    csize: Option<u64>,
    usize: Option<u64>,
    consumed: u64,
    produced: u64,
    crc: crc32fast::Hasher,
}

/// Reads an archive front to back.
pub struct ZipReader<R: Read> {
    r: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Archive offset of `buf[start]`.
    offset: u64,
    eof: bool,
    inflate: Decompress,
    current: Option<Current>,
    finished: bool,
}

const INPUT_BUF: usize = 256 * 1024;

impl<R: Read + 'static> ZipReader<R> {
    /// The same reader, at the same place, over a boxed input (to mix input kinds).
    pub fn boxed(self) -> ZipReader<Box<dyn Read>> {
        ZipReader {
            r: Box::new(self.r),
            buf: self.buf,
            start: self.start,
            end: self.end,
            offset: self.offset,
            eof: self.eof,
            inflate: self.inflate,
            current: self.current,
            finished: self.finished,
        }
    }
}

impl<R: Read> ZipReader<R> {
    /// A reader over `r`.
    pub fn new(r: R) -> Self {
        ZipReader {
            r,
            buf: vec![0u8; INPUT_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
            inflate: Decompress::new(false),
            current: None,
            finished: false,
        }
    }

    /// Bytes of the archive consumed so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Makes at least `n` (<= buffer size) bytes available unless the input ends.
    fn fill(&mut self, n: usize) -> Result<(), ArchiveError> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < n && !self.eof {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ArchiveError::Io(e)),
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ArchiveError> {
        self.fill(n)?;
        if self.end - self.start < n {
            return Err(ArchiveError::Truncated {
                offset: self.offset + (self.end - self.start) as u64,
            });
        }
        let s = self.start;
        self.start += n;
        self.offset += n as u64;
        Ok(&self.buf[s..s + n])
    }

    fn corrupt(&self, message: impl Into<String>) -> ArchiveError {
        ArchiveError::Corrupt {
            offset: self.offset,
            message: message.into(),
        }
    }

    /// The next entry's header, or `None` at the central directory. The previous entry's data
    /// is skipped (and checked) if it was not read to the end.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>, ArchiveError> {
        if self.finished {
            return Ok(None);
        }
        if self.current.is_some() {
            self.skip_entry()?;
        }
        let offset = self.offset;
        self.fill(4)?;
        if self.end - self.start < 4 {
            return Err(ArchiveError::Truncated { offset });
        }
        let sig = u32::from_le_bytes([
            self.buf[self.start],
            self.buf[self.start + 1],
            self.buf[self.start + 2],
            self.buf[self.start + 3],
        ]);
        match sig {
            LFH_SIG => {}
            CDH_SIG | EOCD_SIG | ZIP64_EOCD_SIG => {
                self.finished = true;
                return Ok(None);
            }
            other => {
                return Err(self.corrupt(format!(
                    "expected a ZIP local header, found signature {other:#010x}"
                )));
            }
        }
        let h = self.take(30)?.to_vec();
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let flags = u16_at(6);
        let method = u16_at(8);
        let (time, date) = (u16_at(10), u16_at(12));
        let crc = u32_at(14);
        let mut csize = u64::from(u32_at(18));
        let mut usize = u64::from(u32_at(22));
        let name_len = usize::from(u16_at(26));
        let extra_len = usize::from(u16_at(28));
        if flags & 1 != 0 {
            return Err(self.corrupt("encrypted ZIP entries are not supported"));
        }
        if method != 0 && method != 8 {
            return Err(self.corrupt(format!("unsupported compression method {method}")));
        }
        let name_bytes = self.take(name_len)?.to_vec();
        let name =
            String::from_utf8(name_bytes).map_err(|_| self.corrupt("entry name is not UTF-8"))?;
        let extra = self.take(extra_len)?.to_vec();
        let mut mtime = unix_from_dos(date, time);
        let mut zip64 = false;
        let mut i = 0;
        while i + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[i], extra[i + 1]]);
            let len = usize::from(u16::from_le_bytes([extra[i + 2], extra[i + 3]]));
            let body = &extra[i + 4..(i + 4 + len).min(extra.len())];
            match id {
                0x5455 if body.len() >= 5 && body[0] & 1 != 0 => {
                    mtime = i64::from(u32::from_le_bytes([body[1], body[2], body[3], body[4]]));
                }
                0x0001 => {
                    zip64 = true;
                    let mut j = 0;
                    if usize == u64::from(u32::MAX) && body.len() >= j + 8 {
                        usize = u64::from_le_bytes(body[j..j + 8].try_into().unwrap_or([0; 8]));
                        j += 8;
                    }
                    if csize == u64::from(u32::MAX) && body.len() >= j + 8 {
                        csize = u64::from_le_bytes(body[j..j + 8].try_into().unwrap_or([0; 8]));
                    }
                }
                _ => {}
            }
            i += 4 + len;
        }
        let has_descriptor = flags & 8 != 0;
        // With a descriptor, a deflated entry's header sizes are 0 (or the uncompressed size
        // only, as libarchive writes); a stored entry must state its size to be streamable.
        let (known_csize, known_usize) = if has_descriptor {
            let us = (usize != 0).then_some(usize);
            if method == 0 {
                if csize == 0 && usize != 0 {
                    (Some(usize), us)
                } else if csize == 0 {
                    return Err(self.corrupt(format!(
                        "stored entry '{name}' has no size in its local header; it cannot be streamed"
                    )));
                } else {
                    (Some(csize), us)
                }
            } else {
                (None, us)
            }
        } else {
            (Some(csize), Some(usize))
        };
        if method == 8 {
            self.inflate.reset(false);
        }
        self.current = Some(Current {
            name: name.clone(),
            method,
            has_descriptor,
            zip64,
            expected_crc: crc,
            csize: known_csize,
            usize: known_usize,
            consumed: 0,
            produced: 0,
            crc: crc32fast::Hasher::new(),
        });
        Ok(Some(EntryHeader {
            name,
            method,
            size: known_usize,
            mtime,
            offset,
        }))
    }

    /// Decompresses the next chunk of the current entry into `out` (which should hold at
    /// least [`MAX_CHUNK`] bytes); returns 0 at the end of the entry, after its CRC and sizes
    /// have been checked. A chunk never uses input across a [`BLOCK`] boundary.
    pub fn read_chunk(&mut self, out: &mut [u8]) -> Result<usize, ArchiveError> {
        if self.current.is_none() {
            return Ok(0);
        }
        let limit = out.len().min(MAX_CHUNK);
        loop {
            let Some(cur) = self.current.as_ref() else {
                return Ok(0);
            };
            let to_block_end = (BLOCK - self.offset % BLOCK) as usize;
            let method = cur.method;
            let remaining_c = cur.csize.map(|c| c.saturating_sub(cur.consumed));
            let name = cur.name.clone();
            if method == 0 {
                let Some(rem) = remaining_c else {
                    return Err(self.corrupt("stored entry without size"));
                };
                if rem == 0 {
                    self.finish_entry()?;
                    return Ok(0);
                }
                let want = (rem.min(to_block_end as u64) as usize).min(limit);
                self.fill(want)?;
                let avail = (self.end - self.start).min(want);
                if avail == 0 {
                    return Err(ArchiveError::Truncated {
                        offset: self.offset,
                    });
                }
                out[..avail].copy_from_slice(&self.buf[self.start..self.start + avail]);
                self.start += avail;
                self.offset += avail as u64;
                let cur = self
                    .current
                    .as_mut()
                    .ok_or(ArchiveError::Truncated { offset: 0 })?;
                cur.consumed += avail as u64;
                cur.produced += avail as u64;
                cur.crc.update(&out[..avail]);
                return Ok(avail);
            }
            // Deflate: give the inflater the rest of the current input block.
            let mut want = to_block_end;
            if let Some(rem) = remaining_c {
                want = want.min(rem as usize);
            }
            self.fill(want.max(1))?;
            let avail = (self.end - self.start).min(want);
            if avail == 0 {
                if remaining_c == Some(0) {
                    return Err(self.corrupt(format!(
                        "deflate data of '{name}' ends before its stream does"
                    )));
                }
                return Err(ArchiveError::Truncated {
                    offset: self.offset,
                });
            }
            let before_in = self.inflate.total_in();
            let before_out = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(
                    &self.buf[self.start..self.start + avail],
                    &mut out[..limit],
                    FlushDecompress::None,
                )
                .map_err(|e| self.corrupt(format!("bad deflate data: {e}")))?;
            let used = (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            self.start += used;
            self.offset += used as u64;
            let cur = self
                .current
                .as_mut()
                .ok_or(ArchiveError::Truncated { offset: 0 })?;
            cur.consumed += used as u64;
            cur.produced += produced as u64;
            cur.crc.update(&out[..produced]);
            if status == Status::StreamEnd {
                self.finish_entry()?;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if used == 0 {
                return Err(self.corrupt("deflate stream is stuck"));
            }
        }
    }

    /// Reads the data descriptor (if any) and checks CRC and sizes.
    fn finish_entry(&mut self) -> Result<(), ArchiveError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let crc = cur.crc.clone().finalize();
        let (mut expected_crc, mut csize, mut usize) = (cur.expected_crc, cur.csize, cur.usize);
        if cur.has_descriptor {
            self.fill(4)?;
            if self.end - self.start >= 4
                && self.buf[self.start..self.start + 4] == DD_SIG.to_le_bytes()
            {
                self.take(4)?;
            }
            let n = if cur.zip64 { 20 } else { 12 };
            let d = self.take(n)?.to_vec();
            expected_crc = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            if cur.zip64 {
                csize = Some(u64::from_le_bytes(d[4..12].try_into().unwrap_or([0; 8])));
                let u = u64::from_le_bytes(d[12..20].try_into().unwrap_or([0; 8]));
                if let Some(stated) = usize {
                    if stated != u {
                        return Err(self.corrupt(format!(
                            "'{}': sizes in header ({stated}) and descriptor ({u}) differ",
                            cur.name
                        )));
                    }
                }
                usize = Some(u);
            } else {
                csize = Some(u64::from(u32::from_le_bytes([d[4], d[5], d[6], d[7]])));
                let u = u64::from(u32::from_le_bytes([d[8], d[9], d[10], d[11]]));
                if let Some(stated) = usize {
                    if stated as u32 != u as u32 {
                        return Err(self.corrupt(format!(
                            "'{}': sizes in header ({stated}) and descriptor ({u}) differ",
                            cur.name
                        )));
                    }
                }
                usize = Some(u);
            }
        }
        if let Some(c) = csize {
            if c as u32 != cur.consumed as u32 {
                return Err(self.corrupt(format!(
                    "'{}' has {} compressed bytes, the archive says {c}",
                    cur.name, cur.consumed
                )));
            }
        }
        if let Some(u) = usize {
            if u as u32 != cur.produced as u32 {
                return Err(self.corrupt(format!(
                    "'{}' has {} bytes, the archive says {u}",
                    cur.name, cur.produced
                )));
            }
        }
        if crc != expected_crc {
            return Err(ArchiveError::Crc {
                name: cur.name,
                actual: crc,
                expected: expected_crc,
            });
        }
        Ok(())
    }

    /// Skips (and checks) the rest of the current entry, decompressing it.
    pub fn skip_data(&mut self) -> Result<(), ArchiveError> {
        let mut scratch = vec![0u8; MAX_CHUNK];
        while self.current.is_some() {
            if self.read_chunk(&mut scratch)? == 0 {
                break;
            }
        }
        self.current = None;
        Ok(())
    }

    /// Skips the current entry **without decompressing it**: a zip bomb in an entry nobody reads
    /// costs only the reading of its compressed bytes. The entry is not checked. An entry whose
    /// compressed size is known (stored, or Info-ZIP's headers) is skipped by size; a streamed
    /// deflate entry (fwup's: sizes in a data descriptor after the data) ends at the first
    /// descriptor signature whose compressed size equals the bytes since the data started and
    /// that is followed by another ZIP signature. Entries already partly read are finished by
    /// decompressing them, as only the inflater knows where they stand.
    pub fn skip_entry(&mut self) -> Result<(), ArchiveError> {
        let Some(cur) = self.current.as_ref() else {
            return Ok(());
        };
        if cur.consumed > 0 || cur.produced > 0 {
            return self.skip_data();
        }
        let (has_descriptor, zip64) = (cur.has_descriptor, cur.zip64);
        if let Some(csize) = cur.csize {
            let mut left = csize;
            while left > 0 {
                let n = left.min(INPUT_BUF as u64) as usize;
                self.fill(n)?;
                let avail = (self.end - self.start).min(n);
                if avail == 0 {
                    return Err(ArchiveError::Truncated {
                        offset: self.offset,
                    });
                }
                self.start += avail;
                self.offset += avail as u64;
                left -= avail as u64;
            }
            if has_descriptor {
                self.fill(4)?;
                if self.end - self.start >= 4
                    && self.buf[self.start..self.start + 4] == DD_SIG.to_le_bytes()
                {
                    self.take(4)?;
                }
                self.take(if zip64 { 20 } else { 12 })?;
            }
            self.current = None;
            return Ok(());
        }
        // Streamed deflate data: look for the descriptor that ends it.
        let data_start = self.offset;
        let sig = DD_SIG.to_le_bytes();
        let tail = if zip64 { 24 } else { 16 };
        loop {
            self.fill(64 * 1024)?;
            let window = &self.buf[self.start..self.end];
            let is_sig = |at: usize| {
                window.get(at..at + 4).is_some_and(|s| {
                    let v = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    matches!(v, LFH_SIG | CDH_SIG | EOCD_SIG | ZIP64_EOCD_SIG)
                })
            };
            let mut advance = window.len().saturating_sub(3);
            let mut found = None;
            for i in 0..window.len().saturating_sub(3) {
                if window[i..i + 4] != sig {
                    continue;
                }
                if i + tail + 4 > window.len() && !self.eof {
                    // Not enough look-ahead to decide: refill from here.
                    advance = i;
                    break;
                }
                let pos = self.offset + i as u64 - data_start;
                let csize = if zip64 {
                    window
                        .get(i + 8..i + 16)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                } else {
                    window
                        .get(i + 8..i + 12)
                        .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                };
                if csize == Some(pos) && is_sig(i + tail) {
                    found = Some(i + tail);
                    break;
                }
            }
            if let Some(end) = found {
                self.start += end;
                self.offset += end as u64;
                self.current = None;
                return Ok(());
            }
            if self.eof && advance == window.len().saturating_sub(3) {
                return Err(ArchiveError::Truncated {
                    offset: self.offset + window.len() as u64,
                });
            }
            if advance == 0 && self.end - self.start >= INPUT_BUF {
                advance = 1;
            }
            self.start += advance;
            self.offset += advance as u64;
        }
    }

    /// Reads the rest of the current entry into memory, failing if it exceeds `max` bytes.
    pub fn read_to_vec(&mut self, max: usize) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; MAX_CHUNK];
        loop {
            let n = self.read_chunk(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > max {
                let name = self
                    .current
                    .as_ref()
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Err(self.corrupt(format!("'{name}' is larger than {max} bytes")));
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Reads the current entry of a [`ZipReader`] as a byte stream (a delta's patch data).
pub struct EntryReader<'z, R: Read> {
    zip: &'z mut ZipReader<R>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<'z, R: Read> EntryReader<'z, R> {
    /// A reader over the rest of the current entry.
    pub fn new(zip: &'z mut ZipReader<R>) -> Self {
        EntryReader {
            zip,
            buf: vec![0u8; MAX_CHUNK],
            pos: 0,
            len: 0,
        }
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            self.len = self.zip.read_chunk(&mut self.buf).map_err(|e| match e {
                ArchiveError::Io(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, other),
            })?;
            self.pos = 0;
        }
        let n = (self.len - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One entry as the central directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Path inside the archive.
    pub name: String,
    /// 0 (stored) or 8 (deflated).
    pub method: u16,
    /// Compressed size.
    pub compressed: u64,
    /// Uncompressed size.
    pub size: u64,
    /// Offset of the local header.
    pub offset: u64,
}

/// The central directory of an archive read from a seekable input: what the archive holds,
/// known before its first entry is read, so that an applier can refuse before writing. It is
/// not signed: the streaming reader still checks every entry it uses against meta.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The entries in directory order.
    pub entries: Vec<IndexEntry>,
}

/// Largest central directory read (bytes).
const MAX_CENTRAL_DIR: u64 = 16 << 20;

impl Index {
    /// Reads the central directory at the end of `r` and rewinds `r` to the start.
    pub fn read<R: Read + io::Seek>(r: &mut R) -> Result<Index, ArchiveError> {
        use io::SeekFrom;
        let len = r.seek(SeekFrom::End(0))?;
        let tail_len = len.min(22 + 0xffff + 20);
        r.seek(SeekFrom::Start(len - tail_len))?;
        let mut tail = vec![0u8; tail_len as usize];
        r.read_exact(&mut tail)?;
        let corrupt = |m: &str| ArchiveError::Corrupt {
            offset: len,
            message: format!("central directory: {m}"),
        };
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| tail[i..i + 4] == EOCD_SIG.to_le_bytes())
            .ok_or_else(|| corrupt("no end record"))?;
        let e = &tail[eocd..];
        let mut count = u64::from(u16::from_le_bytes([e[10], e[11]]));
        let mut cd_size = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        let mut cd_off = u64::from(u32::from_le_bytes([e[16], e[17], e[18], e[19]]));
        if (count == 0xffff || cd_size == 0xffff_ffff || cd_off == 0xffff_ffff) && eocd >= 20 {
            let loc = &tail[eocd - 20..eocd];
            if loc[..4] == ZIP64_LOCATOR_SIG.to_le_bytes() {
                let z_off = u64::from_le_bytes(loc[8..16].try_into().unwrap_or([0; 8]));
                r.seek(SeekFrom::Start(z_off))?;
                let mut z = [0u8; 56];
                r.read_exact(&mut z)?;
                if z[..4] != ZIP64_EOCD_SIG.to_le_bytes() {
                    return Err(corrupt("bad ZIP64 end record"));
                }
                count = u64::from_le_bytes(z[32..40].try_into().unwrap_or([0; 8]));
                cd_size = u64::from_le_bytes(z[40..48].try_into().unwrap_or([0; 8]));
                cd_off = u64::from_le_bytes(z[48..56].try_into().unwrap_or([0; 8]));
            }
        }
        if cd_size > MAX_CENTRAL_DIR || cd_off.checked_add(cd_size).is_none_or(|e| e > len) {
            return Err(corrupt("directory out of range"));
        }
        r.seek(SeekFrom::Start(cd_off))?;
        let mut cd = vec![0u8; cd_size as usize];
        r.read_exact(&mut cd)?;
        r.seek(SeekFrom::Start(0))?;
        let mut entries = Vec::new();
        let mut i = 0usize;
        while entries.len() as u64 != count {
            let h = cd.get(i..i + 46).ok_or_else(|| corrupt("truncated"))?;
            if h[..4] != CDH_SIG.to_le_bytes() {
                return Err(corrupt("bad entry signature"));
            }
            let u16_at = |j: usize| usize::from(u16::from_le_bytes([h[j], h[j + 1]]));
            let u32_at =
                |j: usize| u64::from(u32::from_le_bytes([h[j], h[j + 1], h[j + 2], h[j + 3]]));
            let method = u16_at(10) as u16;
            let (mut csize, mut usize_, mut offset) = (u32_at(20), u32_at(24), u32_at(42));
            let (nl, xl, cl) = (u16_at(28), u16_at(30), u16_at(32));
            let name = cd
                .get(i + 46..i + 46 + nl)
                .ok_or_else(|| corrupt("truncated"))?;
            let name =
                String::from_utf8(name.to_vec()).map_err(|_| corrupt("name is not UTF-8"))?;
            let extra = cd
                .get(i + 46 + nl..i + 46 + nl + xl)
                .ok_or_else(|| corrupt("truncated"))?;
            let mut j = 0;
            while j + 4 <= extra.len() {
                let id = u16::from_le_bytes([extra[j], extra[j + 1]]);
                let l = usize::from(u16::from_le_bytes([extra[j + 2], extra[j + 3]]));
                let body = &extra[j + 4..(j + 4 + l).min(extra.len())];
                if id == 1 {
                    let mut k = 0;
                    let mut next = |v: &mut u64| {
                        if *v == 0xffff_ffff && body.len() >= k + 8 {
                            *v = u64::from_le_bytes(body[k..k + 8].try_into().unwrap_or([0; 8]));
                            k += 8;
                        }
                    };
                    next(&mut usize_);
                    next(&mut csize);
                    next(&mut offset);
                }
                j += 4 + l;
            }
            entries.push(IndexEntry {
                name,
                method,
                compressed: csize,
                size: usize_,
                offset,
            });
            i += 46 + nl + xl + cl;
        }
        Ok(Index { entries })
    }

    /// The entry stored at `name`.
    pub fn get(&self, name: &str) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(dos_datetime(None), (0x21, 0));
        assert_eq!(dos_datetime(Some(1_767_225_600)), (0x5c21, 0));
        assert_eq!(iso8601(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(unix_from_dos(0x5c21, 0), 1_767_225_600);
    }

    fn sample() -> Vec<u8> {
        let mut z = ZipWriter::new(Vec::new(), 9);
        z.add_stored("meta.conf.ed25519", &[7u8; 64], None).unwrap();
        z.add_deflated("meta.conf", b"meta-product=x\n", Some(1_767_225_600))
            .unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        z.add_deflated("data/big", &big, None).unwrap();
        z.add_deflated("data/empty", b"", None).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn write_then_stream_read() {
        let bytes = sample();
        let mut r = ZipReader::new(&bytes[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.name, "meta.conf.ed25519");
        assert_eq!(r.read_to_vec(64).unwrap(), vec![7u8; 64]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.name.as_str(), e.mtime), ("meta.conf", 1_767_225_600));
        assert_eq!(r.read_to_vec(100).unwrap(), b"meta-product=x\n");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.size, Some(200_000));
        let mut chunk = vec![0u8; MAX_CHUNK];
        let mut total = 0;
        let mut last_pos = r.position();
        loop {
            let n = r.read_chunk(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            // A chunk never reads past the next 16 KiB boundary of the input.
            assert!(r.position() <= (last_pos / BLOCK + 1) * BLOCK + 16);
            last_pos = r.position();
            for (i, b) in chunk[..n].iter().enumerate() {
                assert_eq!(*b, ((total + i) as u32 * 7 % 251) as u8);
            }
            total += n;
        }
        assert_eq!(total, 200_000);
        assert_eq!(r.next_entry().unwrap().unwrap().name, "data/empty");
        assert!(r.read_to_vec(10).unwrap().is_empty());
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn corruption_is_detected() {
        let good = sample();
        // Flip a byte inside the big entry's data: CRC (or deflate) error, never silence.
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        let mut r = ZipReader::new(&bad[..]);
        let mut err = None;
        while err.is_none() {
            match r.next_entry() {
                Ok(Some(_)) => {
                    if let Err(e) = r.read_to_vec(1 << 20) {
                        err = Some(e);
                    }
                }
                Ok(None) => break,
                Err(e) => err = Some(e),
            }
        }
        assert!(err.is_some());
        // Truncation anywhere is reported.
        for cut in [10usize, 100, 200, good.len() / 2] {
            let mut r = ZipReader::new(&good[..cut]);
            let mut failed = false;
            for _ in 0..5 {
                match r.next_entry() {
                    Ok(Some(_)) => {
                        if r.read_to_vec(1 << 20).is_err() {
                            failed = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(failed, "cut at {cut} went unnoticed");
        }
    }
}
