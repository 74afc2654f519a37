//! What the start of a partition holds: nothing (a wiped start), an ext4 or f2fs superblock, or
//! something else (a damaged superblock, another filesystem). Only [`Probe::Blank`] may be
//! formatted.
//!
//! * ext2/3/4: the superblock at byte 1024, magic `0xEF53` (little endian) at its offset 56.
//! * f2fs: two superblocks, at bytes 1024 and 4096 + 1024, magic `0xF2F52010` (little endian)
//!   at their start.
//! * Blank: every byte of the first [`PROBE_BYTES`] the same value. That is what a new image's
//!   `complete` task and the factory reset leave (fwup's `raw_memset` of 256 blocks of 0xff, on
//!   top of a trim), and what an erased flash or a zeroed disk holds; a filesystem, even with a
//!   damaged superblock, has varied metadata there (group descriptors, bitmaps, the second f2fs
//!   superblock, checkpoints).

/// How much of the partition is read: the 256 blocks of 512 bytes the wipe covers.
pub const PROBE_BYTES: usize = 256 * 512;

const EXT_MAGIC_AT: usize = 1024 + 56;
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];
const F2FS_SB: [usize; 2] = [1024, 4096 + 1024];
const F2FS_MAGIC: [u8; 4] = [0x10, 0x20, 0xf5, 0xf2];

/// What the start of a partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing: every byte read is the same (wiped, erased or never written).
    Blank,
    /// An ext2/3/4 superblock.
    Ext4,
    /// An f2fs superblock (either copy).
    F2fs,
    /// Something, but no superblock this probe knows.
    Unknown,
}

/// Classifies the first bytes of a partition (at most [`PROBE_BYTES`] are looked at).
pub fn probe(start: &[u8]) -> Probe {
    let at = |off: usize, magic: &[u8]| start.get(off..off + magic.len()) == Some(magic);
    if at(EXT_MAGIC_AT, &EXT_MAGIC) {
        return Probe::Ext4;
    }
    if F2FS_SB.iter().any(|&o| at(o, &F2FS_MAGIC)) {
        return Probe::F2fs;
    }
    let start = &start[..start.len().min(PROBE_BYTES)];
    match start.first() {
        // An empty read says nothing: a partition of zero bytes cannot be formatted either.
        None => Probe::Unknown,
        Some(&b) if start.iter().all(|&x| x == b) => Probe::Blank,
        Some(_) => Probe::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiped_starts_are_blank_and_nothing_else_is() {
        assert_eq!(probe(&vec![0xff; PROBE_BYTES]), Probe::Blank);
        assert_eq!(probe(&vec![0; PROBE_BYTES]), Probe::Blank);
        assert_eq!(probe(&[]), Probe::Unknown);
        let mut one_byte = vec![0; PROBE_BYTES];
        one_byte[PROBE_BYTES - 1] = 1;
        assert_eq!(probe(&one_byte), Probe::Unknown);
        // Past the probe: not looked at.
        let mut longer = vec![0; PROBE_BYTES + 10];
        longer[PROBE_BYTES + 5] = 7;
        assert_eq!(probe(&longer), Probe::Blank);
    }

    #[test]
    fn superblocks() {
        let mut ext = vec![0; PROBE_BYTES];
        ext[1080] = 0x53;
        ext[1081] = 0xef;
        assert_eq!(probe(&ext), Probe::Ext4);
        // Two bytes of the magic gone: not blank, not ext4.
        ext[1080] = 0;
        ext[1081] = 0;
        ext[4096] = 1;
        assert_eq!(probe(&ext), Probe::Unknown);
        let mut f2 = vec![0xff; PROBE_BYTES];
        f2[5120..5124].copy_from_slice(&F2FS_MAGIC);
        assert_eq!(probe(&f2), Probe::F2fs, "the second copy suffices");
    }
}
