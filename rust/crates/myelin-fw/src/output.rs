//! The applier's view of the target: direct writes, a sector cache, and deferred writes.
//!
//! Three kinds of writes reach the target, in this order of durability:
//!
//! * **direct**: streamed resource data (`raw_write`, the contents of `fat_write`),
//!   `raw_memset`. Written at once (they land in the inactive slot or in free FAT clusters).
//! * **file data**: the contents `fat_write` and `fat_cp` give files, in runs of sectors of
//!   free clusters. Kept until the applier flushes (as fwup's cache keeps segments it has not
//!   filled), so a failed update leaves even the free space of a FAT volume as it was; past
//!   [`FILE_DATA_LIMIT`] bytes the runs are written early (they lie in free clusters, which no
//!   file points to until the structure is written).
//! * **cached**: 512-byte sectors of file-system structure (FAT boot sectors, tables,
//!   directories). Kept in memory (all-zero sectors cost nothing) and written back when the
//!   applier flushes: after every resource has been verified, before `on-finish`, and at the
//!   end. An update that fails before that leaves the on-disk FAT structure untouched. The
//!   cache is bounded: past [`CACHE_LIMIT`] bytes of sector data it is written back early.
//! * **deferred**: the writes that switch slots (U-Boot environment, MBR, GPT). Kept as whole
//!   records, replaced when rewritten, and written last, in the order they were last changed,
//!   once everything else is durable.
//!
//! Reads see the newest data: the target, overlaid with cached sectors, overlaid with deferred
//! writes. A direct write over a cached sector drops it; a direct write over a deferred record
//! writes that record first (fwup would have written it earlier too).
//!
//! **Trimmed segments** reproduce fwup's block cache, so that the bytes left on the disk are
//! fwup's: `trim()` and `fat_mkfs` mark the 128 KiB segments (aligned on the disk, rounded
//! inwards) of their range as trimmed. A trimmed segment reads as zeros; the first write that
//! touches it also writes zeros to the rest of it (fwup writes whole segments); a trimmed
//! segment never touched keeps its old bytes on the disk.

use crate::target::Target;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// fwup's block cache segment: the unit of trimming.
pub const SEGMENT: u64 = 128 * 1024;

/// Bytes of non-zero sector data kept before the cache is written back early.
pub const CACHE_LIMIT: usize = 16 * 1024 * 1024;
/// Bytes of file data kept before they are written early.
pub const FILE_DATA_LIMIT: usize = 16 * 1024 * 1024;
/// Clean sectors kept for reading before they are dropped.
const CLEAN_LIMIT: usize = 16 * 1024;
/// Dirty sectors (zero or not) kept before the cache is written back early: every entry
/// costs memory, so a `fat_mkfs` of a huge partition must not pile them up.
const DIRTY_LIMIT: usize = 64 * 1024;

const SECTOR: u64 = 512;

#[derive(Clone)]
enum Data {
    Zero,
    Bytes(Box<[u8; 512]>),
}

#[derive(Clone)]
struct Cached {
    data: Data,
    dirty: bool,
}

/// One deferred record.
#[derive(Debug, Clone)]
struct Deferred {
    key: String,
    writes: Vec<(u64, Vec<u8>)>,
    /// Each write must be durable before the next one starts.
    ordered: bool,
}

/// The target as the applier sees it.
pub struct Output<'t> {
    target: &'t mut dyn Target,
    cache: BTreeMap<u64, Cached>,
    cached_bytes: usize,
    clean: usize,
    deferred: Vec<Deferred>,
    written: u64,
    trimmed: BTreeSet<u64>,
    file_runs: BTreeMap<u64, Vec<u8>>,
    file_bytes: usize,
}

fn io_ctx(e: io::Error, what: &str, offset: u64) -> io::Error {
    io::Error::new(e.kind(), format!("{what} at byte {offset}: {e}"))
}

impl<'t> Output<'t> {
    /// Wraps a target.
    pub fn new(target: &'t mut dyn Target) -> Self {
        Output {
            target,
            cache: BTreeMap::new(),
            cached_bytes: 0,
            clean: 0,
            deferred: Vec::new(),
            written: 0,
            trimmed: BTreeSet::new(),
            file_runs: BTreeMap::new(),
            file_bytes: 0,
        }
    }

    /// Keeps file data (whole sectors at `offset`) until the next flush (see the module
    /// documentation).
    pub fn write_file_data(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        self.check_deferred_overlap(offset, data.len() as u64)?;
        if self.file_runs_overlap(offset, end) {
            self.write_file_runs()?;
        }
        let covered: Vec<u64> = self
            .cache
            .range(offset / SECTOR..end.div_ceil(SECTOR))
            .map(|(&s, _)| s)
            .collect();
        for s in covered {
            self.forget(s);
        }
        self.file_runs.insert(offset, data.to_vec());
        self.file_bytes += data.len();
        if self.file_bytes > FILE_DATA_LIMIT {
            self.write_file_runs()?;
        }
        Ok(())
    }

    fn file_runs_overlap(&self, offset: u64, end: u64) -> bool {
        self.file_runs
            .range(..end)
            .next_back()
            .is_some_and(|(o, d)| o + d.len() as u64 > offset)
            || self.file_runs.range(offset..end).next().is_some()
    }

    fn overlay_file_runs(&self, buf: &mut [u8], offset: u64) {
        if self.file_runs.is_empty() {
            return;
        }
        let end = offset + buf.len() as u64;
        for (o, d) in &self.file_runs {
            let from = (*o).max(offset);
            let to = (o + d.len() as u64).min(end);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&d[(from - o) as usize..(to - o) as usize]);
            }
        }
    }

    /// Writes the file data kept so far.
    fn write_file_runs(&mut self) -> io::Result<()> {
        let runs = std::mem::take(&mut self.file_runs);
        self.file_bytes = 0;
        for (o, d) in runs {
            self.untrim(o, d.len() as u64)?;
            self.target
                .write_at(&d, o)
                .map_err(|e| io_ctx(e, "write", o))?;
            self.written += d.len() as u64;
        }
        Ok(())
    }

    /// The size the target cannot grow past (a device, or `--max-size`), if any.
    pub fn hard_size(&self) -> Option<u64> {
        self.target.hard_size()
    }

    /// Marks the whole segments inside `offset..offset + len` as trimmed (see the module
    /// documentation) and drops cached sectors in them.
    pub fn trim(&mut self, offset: u64, len: u64) {
        let first = offset.div_ceil(SEGMENT);
        let last = offset.saturating_add(len) / SEGMENT;
        if first >= last {
            return;
        }
        let covered: Vec<u64> = self
            .cache
            .range(first * (SEGMENT / SECTOR)..last * (SEGMENT / SECTOR))
            .map(|(&s, _)| s)
            .collect();
        for s in covered {
            self.forget(s);
        }
        // Bounded: a trim of a huge range is remembered as at most this many segments; the
        // rest is simply not zero-filled (it keeps whatever the disk holds).
        const MAX_TRIMMED: u64 = 1 << 20;
        for g in first..last.min(first.saturating_add(MAX_TRIMMED)) {
            self.trimmed.insert(g);
        }
    }

    /// Zeroes, in `buf` read from `offset`, the bytes that lie in trimmed segments.
    fn zero_trimmed(&self, buf: &mut [u8], offset: u64) {
        if self.trimmed.is_empty() || buf.is_empty() {
            return;
        }
        let end = offset + buf.len() as u64;
        for &g in self.trimmed.range(offset / SEGMENT..end.div_ceil(SEGMENT)) {
            let from = (g * SEGMENT).max(offset);
            let to = ((g + 1) * SEGMENT).min(end);
            buf[(from - offset) as usize..(to - offset) as usize].fill(0);
        }
    }

    /// Before a write of `len` bytes at `offset` reaches the target: the trimmed segments it
    /// touches get zeros everywhere else, as fwup writes them whole.
    fn untrim(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.trimmed.is_empty() || len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let hit: Vec<u64> = self
            .trimmed
            .range(offset / SEGMENT..end.div_ceil(SEGMENT))
            .copied()
            .collect();
        for g in hit {
            self.trimmed.remove(&g);
            let (gs, ge) = (g * SEGMENT, (g + 1) * SEGMENT);
            for (a, b) in [(gs, offset.max(gs).min(ge)), (end.min(ge).max(gs), ge)] {
                if a < b {
                    let zeros = vec![0u8; (b - a) as usize];
                    self.target
                        .write_at(&zeros, a)
                        .map_err(|e| io_ctx(e, "write", a))?;
                    self.written += b - a;
                }
            }
        }
        Ok(())
    }

    /// The target's size in bytes, if known.
    pub fn size(&self) -> Option<u64> {
        self.target.size()
    }

    /// Total bytes written to the target so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Reads `buf.len()` bytes at `offset`, newest data first.
    pub fn read(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.target
            .read_at(buf, offset)
            .map_err(|e| io_ctx(e, "read", offset))?;
        self.zero_trimmed(buf, offset);
        self.overlay_file_runs(buf, offset);
        let end = offset + buf.len() as u64;
        let first = offset / SECTOR;
        let last = end.div_ceil(SECTOR);
        for (&s, c) in self.cache.range(first..last) {
            let s_off = s * SECTOR;
            let from = s_off.max(offset);
            let to = (s_off + SECTOR).min(end);
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            match &c.data {
                Data::Zero => dst.fill(0),
                Data::Bytes(b) => {
                    dst.copy_from_slice(&b[(from - s_off) as usize..(to - s_off) as usize])
                }
            }
        }
        for d in &self.deferred {
            for (w_off, bytes) in &d.writes {
                let w_end = w_off + bytes.len() as u64;
                let from = (*w_off).max(offset);
                let to = w_end.min(end);
                if from < to {
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&bytes[(from - w_off) as usize..(to - w_off) as usize]);
                }
            }
        }
        Ok(())
    }

    /// Reads what the target itself holds, without the cache or pending writes (for data another
    /// process may have written since it was first read).
    pub fn read_target(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.target
            .read_at(buf, offset)
            .map_err(|e| io_ctx(e, "read", offset))
    }

    /// One sector through the cache (read from the target once, then kept).
    pub fn sector(&mut self, sector: u64) -> io::Result<[u8; 512]> {
        if let Some(c) = self.cache.get(&sector) {
            let mut out = [0u8; 512];
            if let Data::Bytes(b) = &c.data {
                out.copy_from_slice(&b[..]);
            }
            if !self.deferred.is_empty() {
                self.overlay_deferred(&mut out, sector * SECTOR);
            }
            return Ok(out);
        }
        let mut out = [0u8; 512];
        self.target
            .read_at(&mut out, sector * SECTOR)
            .map_err(|e| io_ctx(e, "read", sector * SECTOR))?;
        self.zero_trimmed(&mut out, sector * SECTOR);
        self.overlay_file_runs(&mut out, sector * SECTOR);
        if self.clean >= CLEAN_LIMIT {
            self.drop_clean();
        }
        self.cache.insert(
            sector,
            Cached {
                data: Data::Bytes(Box::new(out)),
                dirty: false,
            },
        );
        self.clean += 1;
        if !self.deferred.is_empty() {
            self.overlay_deferred(&mut out, sector * SECTOR);
        }
        Ok(out)
    }

    fn overlay_deferred(&self, buf: &mut [u8; 512], offset: u64) {
        let end = offset + SECTOR;
        for d in &self.deferred {
            for (w_off, bytes) in &d.writes {
                let from = (*w_off).max(offset);
                let to = (w_off + bytes.len() as u64).min(end);
                if from < to {
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&bytes[(from - w_off) as usize..(to - w_off) as usize]);
                }
            }
        }
    }

    fn drop_clean(&mut self) {
        self.cache.retain(|_, c| c.dirty);
        self.clean = 0;
    }

    /// Runs `f` on a cached sector without copying it out.
    pub fn with_sector<R>(
        &mut self,
        sector: u64,
        f: impl FnOnce(&[u8; 512]) -> R,
    ) -> io::Result<R> {
        if !self.deferred.is_empty() {
            let copy = self.sector(sector)?;
            return Ok(f(&copy));
        }
        if !self.cache.contains_key(&sector) {
            self.sector(sector)?;
        }
        static ZERO: [u8; 512] = [0; 512];
        match self.cache.get(&sector).map(|c| &c.data) {
            Some(Data::Bytes(b)) => Ok(f(b)),
            _ => Ok(f(&ZERO)),
        }
    }

    /// Changes a sector in place in the cache (written back at the next flush).
    pub fn modify_sector(&mut self, sector: u64, f: impl FnOnce(&mut [u8; 512])) -> io::Result<()> {
        self.check_deferred_overlap(sector * SECTOR, SECTOR)?;
        if !self.cache.contains_key(&sector) {
            self.sector(sector)?;
        }
        let Some(c) = self.cache.get_mut(&sector) else {
            return Err(io::Error::other("sector cache lost a sector"));
        };
        let was_bytes = matches!(c.data, Data::Bytes(_));
        if !was_bytes {
            c.data = Data::Bytes(Box::new([0u8; 512]));
        }
        if let Data::Bytes(b) = &mut c.data {
            f(b);
        }
        if !c.dirty {
            c.dirty = true;
            self.clean = self.clean.saturating_sub(1);
            self.cached_bytes += 512;
        } else if !was_bytes {
            self.cached_bytes += 512;
        }
        if self.cached_bytes > CACHE_LIMIT {
            self.flush_cache()?;
        }
        Ok(())
    }

    /// Replaces one sector in the cache (written back at the next flush).
    pub fn write_sector(&mut self, sector: u64, data: &[u8; 512]) -> io::Result<()> {
        let zero = data.iter().all(|&b| b == 0);
        let new = Cached {
            data: if zero {
                Data::Zero
            } else {
                Data::Bytes(Box::new(*data))
            },
            dirty: true,
        };
        self.put(sector, new)
    }

    /// Marks `count` sectors from `sector` as zero in the cache.
    pub fn zero_sectors(&mut self, sector: u64, count: u64) -> io::Result<()> {
        for s in sector..sector + count {
            self.put(
                s,
                Cached {
                    data: Data::Zero,
                    dirty: true,
                },
            )?;
        }
        Ok(())
    }

    fn put(&mut self, sector: u64, new: Cached) -> io::Result<()> {
        self.check_deferred_overlap(sector * SECTOR, SECTOR)?;
        let added = matches!(new.data, Data::Bytes(_)) as usize * 512;
        if let Some(old) = self.cache.insert(sector, new) {
            if old.dirty {
                if matches!(old.data, Data::Bytes(_)) {
                    self.cached_bytes -= 512;
                }
            } else {
                self.clean = self.clean.saturating_sub(1);
            }
        }
        self.cached_bytes += added;
        if self.cached_bytes > CACHE_LIMIT
            || self.cache.len().saturating_sub(self.clean) > DIRTY_LIMIT
        {
            self.flush_cache()?;
        }
        Ok(())
    }

    /// Writes straight to the target (dropping cached copies of the sectors it covers).
    pub fn write_direct(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        self.check_deferred_overlap(offset, buf.len() as u64)?;
        if self.file_runs_overlap(offset, end) {
            self.write_file_runs()?;
        }
        if !self.cache.is_empty() {
            let first = offset / SECTOR;
            let last = end.div_ceil(SECTOR);
            let covered: Vec<u64> = self.cache.range(first..last).map(|(&s, _)| s).collect();
            for s in covered {
                let s_off = s * SECTOR;
                if s_off >= offset && s_off + SECTOR <= end {
                    self.forget(s);
                } else if let Some(c) = self.cache.get_mut(&s) {
                    // Partly overwritten: update the cached copy so it stays the newest.
                    let mut bytes = match &c.data {
                        Data::Zero => Box::new([0u8; 512]),
                        Data::Bytes(b) => b.clone(),
                    };
                    let from = s_off.max(offset);
                    let to = (s_off + SECTOR).min(end);
                    bytes[(from - s_off) as usize..(to - s_off) as usize]
                        .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
                    if matches!(c.data, Data::Zero) && c.dirty {
                        self.cached_bytes += 512;
                    }
                    c.data = Data::Bytes(bytes);
                }
            }
        }
        self.untrim(offset, buf.len() as u64)?;
        self.target
            .write_at(buf, offset)
            .map_err(|e| io_ctx(e, "write", offset))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn forget(&mut self, sector: u64) {
        if let Some(old) = self.cache.remove(&sector) {
            if old.dirty {
                if matches!(old.data, Data::Bytes(_)) {
                    self.cached_bytes -= 512;
                }
            } else {
                self.clean = self.clean.saturating_sub(1);
            }
        }
    }

    /// Writes the file data kept, then every dirty cached sector, in runs.
    pub fn flush_cache(&mut self) -> io::Result<()> {
        self.write_file_runs()?;
        let dirty: Vec<u64> = self
            .cache
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(&s, _)| s)
            .collect();
        let mut i = 0;
        let mut run: Vec<u8> = Vec::new();
        while i < dirty.len() {
            let start = dirty[i];
            let mut j = i;
            run.clear();
            while j < dirty.len() && dirty[j] == start + (j - i) as u64 && run.len() < (1 << 20) {
                match &self.cache[&dirty[j]].data {
                    Data::Zero => run.extend_from_slice(&[0u8; 512]),
                    Data::Bytes(b) => run.extend_from_slice(&b[..]),
                }
                j += 1;
            }
            self.untrim(start * SECTOR, run.len() as u64)?;
            self.target
                .write_at(&run, start * SECTOR)
                .map_err(|e| io_ctx(e, "write", start * SECTOR))?;
            self.written += run.len() as u64;
            i = j;
        }
        for s in dirty {
            if let Some(c) = self.cache.get_mut(&s) {
                c.dirty = false;
            }
        }
        self.clean = self.cache.len();
        self.cached_bytes = 0;
        if self.clean > CLEAN_LIMIT {
            self.drop_clean();
        }
        Ok(())
    }

    /// Drops everything not yet written (cache and deferred records), as after a failure.
    pub fn discard_pending(&mut self) {
        self.trimmed.clear();
        self.file_runs.clear();
        self.file_bytes = 0;
        self.cache.clear();
        self.cached_bytes = 0;
        self.clean = 0;
        self.deferred.clear();
    }

    /// Records (or replaces) a deferred record under `key`.
    pub fn defer(&mut self, key: &str, writes: Vec<(u64, Vec<u8>)>) {
        self.defer_with(key, writes, false);
    }

    /// Like [`Output::defer`], and each write of the record is synced before the next one
    /// starts (a sequence whose order makes it power-cut safe).
    pub fn defer_ordered(&mut self, key: &str, writes: Vec<(u64, Vec<u8>)>) {
        self.defer_with(key, writes, true);
    }

    fn defer_with(&mut self, key: &str, writes: Vec<(u64, Vec<u8>)>, ordered: bool) {
        self.deferred.retain(|d| d.key != key);
        if writes.is_empty() {
            return;
        }
        self.deferred.push(Deferred {
            key: key.to_owned(),
            writes,
            ordered,
        });
    }

    /// Whether a deferred record exists under `key`.
    pub fn has_deferred(&self, key: &str) -> bool {
        self.deferred.iter().any(|d| d.key == key)
    }

    /// If a deferred record overlaps the range, writes it now.
    fn check_deferred_overlap(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        let hit = self.deferred.iter().position(|d| {
            d.writes
                .iter()
                .any(|(o, b)| *o < end && o + b.len() as u64 > offset)
        });
        if let Some(i) = hit {
            let d = self.deferred.remove(i);
            self.write_records(&d)?;
        }
        Ok(())
    }

    fn write_records(&mut self, d: &Deferred) -> io::Result<()> {
        for (i, (o, b)) in d.writes.iter().enumerate() {
            if d.ordered && i > 0 {
                self.target.sync()?;
            }
            self.untrim(*o, b.len() as u64)?;
            let first = o / SECTOR;
            let last = (o + b.len() as u64).div_ceil(SECTOR);
            let covered: Vec<u64> = self.cache.range(first..last).map(|(&s, _)| s).collect();
            for s in covered {
                self.forget(s);
            }
            self.target
                .write_at(b, *o)
                .map_err(|e| io_ctx(e, "write", *o))?;
            self.written += b.len() as u64;
        }
        Ok(())
    }

    /// Writes the deferred records in the order they were last changed.
    pub fn commit_deferred(&mut self) -> io::Result<()> {
        self.commit_deferred_except(|_| false)
    }

    /// Writes the deferred records except those whose key `keep` selects, which stay
    /// deferred.
    pub fn commit_deferred_except(&mut self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        let records = std::mem::take(&mut self.deferred);
        let (kept, now): (Vec<_>, Vec<_>) = records.into_iter().partition(|d| keep(&d.key));
        self.deferred = kept;
        for d in &now {
            self.write_records(d)?;
        }
        Ok(())
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.target.sync()
    }

    /// Discards a range (TRIM) after dropping cached sectors in it.
    pub fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let first = offset / SECTOR;
        let last = (offset + len) / SECTOR;
        let covered: Vec<u64> = self
            .cache
            .range(first.div_ceil(1)..last)
            .map(|(&s, _)| s)
            .filter(|&s| s * SECTOR >= offset)
            .collect();
        for s in covered {
            self.forget(s);
        }
        self.target.discard(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemTarget;

    #[test]
    fn cached_sectors_wait_for_flush_and_reads_see_them() {
        let mut t = MemTarget::zeroed(8192);
        {
            let mut o = Output::new(&mut t);
            let mut s = [0u8; 512];
            s[0] = 0xab;
            o.write_sector(2, &s).unwrap();
            let mut buf = [0u8; 4];
            o.read(&mut buf, 1023).unwrap();
            assert_eq!(buf, [0, 0xab, 0, 0]);
            o.flush_cache().unwrap();
        }
        assert_eq!(t.data[1024], 0xab);
        assert_eq!(t.log, vec![(1024, 512)]);
    }

    #[test]
    fn discarded_cache_never_reaches_the_target() {
        let mut t = MemTarget::zeroed(8192);
        {
            let mut o = Output::new(&mut t);
            o.write_sector(1, &[9u8; 512]).unwrap();
            o.defer("env", vec![(0, vec![1, 2, 3])]);
            o.discard_pending();
            o.flush_cache().unwrap();
            o.commit_deferred().unwrap();
        }
        assert!(t.log.is_empty());
    }

    #[test]
    fn deferred_records_are_written_last_in_change_order() {
        let mut t = MemTarget::zeroed(8192);
        {
            let mut o = Output::new(&mut t);
            o.defer("mbr", vec![(0, vec![1; 512])]);
            o.defer("env", vec![(4096, vec![2; 16])]);
            o.defer("mbr", vec![(0, vec![3; 512])]);
            let mut b = [0u8; 1];
            o.read(&mut b, 10).unwrap();
            assert_eq!(b[0], 3);
            o.write_direct(&[7; 512], 2048).unwrap();
            o.commit_deferred().unwrap();
        }
        assert_eq!(t.log, vec![(2048, 512), (4096, 16), (0, 512)]);
        assert_eq!(t.data[0], 3);
    }

    #[test]
    fn direct_write_over_a_deferred_record_writes_it_first() {
        let mut t = MemTarget::zeroed(8192);
        {
            let mut o = Output::new(&mut t);
            o.defer("env", vec![(1024, vec![5; 512])]);
            o.write_direct(&[6; 16], 1100).unwrap();
            o.commit_deferred().unwrap();
        }
        assert_eq!(t.log, vec![(1024, 512), (1100, 16)]);
        assert_eq!(t.data[1100], 6);
        assert_eq!(t.data[1024], 5);
    }
}
