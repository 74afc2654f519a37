//! FAT12/16/32 file systems inside a partition: `fat_mkfs`, `fat_write` and friends.
//!
//! fwup drives ChaN's FatFs; to produce the same bytes, this module follows FatFs's on-disk
//! decisions (it shares no code with it):
//!
//! * `fat_mkfs(offset, count)`: first the partition's last sector is filled with 0xFF, then a
//!   volume with 512-byte clusters, 2 FATs and 512 root entries (FAT12/16) is written: FAT12
//!   below 4086 clusters, FAT16 up to 65525, FAT32 above (32 reserved sectors, FSInfo at +1,
//!   backup boot sector at +6 and backup FSInfo at +7). Boot sector: jump `EB FE 90`, OEM
//!   `MSDOS5.0`, media F8, 63 sectors/track, 255 heads, hidden sectors 0, drive 0x80, serial
//!   number = sector count + 0x00210000, label `NO NAME`, type `FAT12`/`FAT16`/`FAT32`.
//!   Volumes under 128 sectors, or whose cluster count falls between the FAT types, are
//!   refused.
//! * Every timestamp written is 1980-01-01 00:00:00 (date 0x0021, time 0), so images are
//!   reproducible.
//! * Names: a name that fits 8.3 in one case (`config.txt`, `MLO`) gets only a short entry,
//!   with the NT lower-case flags (0x08 base, 0x10 extension) when lower case; any other name
//!   (`zImage.a`, `bcm2711-rpi-4-b.dtb`) gets long-name entries (13 UTF-16 units each, padded
//!   with 0xFFFF after the terminating 0) before a short name. Lossy short names take a
//!   `~N` tail (N = 1..5, then a 16-bit hash of the long name), checked against existing
//!   short names. Characters outside ASCII become `_` in the short name (FatFs converts them
//!   through code page 850; such names differ from fwup's in their short form only). Paths use
//!   `/` or `\`; lookups ignore case.
//! * Allocation: a new chain starts after the last cluster allocated on this mount (from
//!   FSInfo's next-free hint on FAT32, from cluster 2 otherwise); a chain grows into the next
//!   cluster when it is free, else the search continues from the hint. Rewriting a file frees
//!   its chain and restarts the search just before the freed chain.
//! * Files are written through a one-sector buffer as FatFs does, so the unused tail of a
//!   file's last sector holds the same bytes fwup would leave there.
//! * Directory entries: new entries take the first run of free slots; directories grow by
//!   one zeroed cluster; a new directory starts with `.` and `..` (`..` is 0 for the root).
//! * FAT32's FSInfo (free count, next free) is rewritten after changes when it was valid.
//! * `fat_setlabel` writes the label's root directory entry only, as FatFs does; the boot
//!   sector keeps `NO NAME` (`fsck.fat` notes the difference; fwup's images have it too).
//!
//! Structure sectors (boot sector, FATs, directories) go through the applier's sector cache
//! and reach the disk only when it flushes; file contents go to clusters that are free in the
//! on-disk FAT, kept by the applier until it flushes too (see [`crate::output`]). Mount state (the allocation hint and free count) lives
//! in [`VolState`], kept by the applier per partition until it closes the file systems.

use crate::output::Output;
use std::fmt;
use std::io;

const SS: u64 = 512;
const FATTIME: u32 = 0x0021_0000;
const DDEM: u8 = 0xE5;
const RDDEM: u8 = 0x05;
const AM_RDO: u8 = 0x01;
const AM_HID: u8 = 0x02;
const AM_SYS: u8 = 0x04;
const AM_VOL: u8 = 0x08;
const AM_LFN: u8 = 0x0F;
const AM_DIR: u8 = 0x10;
const AM_ARC: u8 = 0x20;
const AM_MASK: u8 = 0x3F;
const LLEF: u8 = 0x40;
const MAX_FAT12: u32 = 0xFF5;
const MAX_FAT16: u32 = 0xFFF5;
const MAX_FAT32: u32 = 0x0FFF_FFF5;
const MAX_DIR_ENTRIES: u32 = 0x20_0000 / 32;
const MAX_LFN: usize = 255;
const LFN_OFS: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

const NS_LOSS: u8 = 0x01;
const NS_LFN: u8 = 0x02;
const NS_BODY: u8 = 0x08;
const NS_EXT: u8 = 0x10;

/// A FAT operation that failed, in FatFs's terms.
#[derive(Debug)]
pub enum FatError {
    /// The file does not exist.
    NoFile(String),
    /// A directory on the path does not exist.
    NoPath(String),
    /// The name is not valid for FAT.
    InvalidName(String),
    /// Not allowed: read-only, a directory, directory not empty, no free entry or space.
    Denied(String),
    /// The name is already taken.
    Exist(String),
    /// The partition does not hold a FAT file system.
    NoFilesystem(String),
    /// `fat_mkfs` cannot fit a FAT volume in this many sectors.
    MkfsAborted(u64),
    /// The structure is inconsistent.
    Corrupt(String),
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for FatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatError::NoFile(p) => write!(f, "could not find the file '{p}'"),
            FatError::NoPath(p) => write!(f, "could not find the path to '{p}'"),
            FatError::InvalidName(p) => write!(f, "the name '{p}' is invalid"),
            FatError::Denied(p) => write!(
                f,
                "access denied to '{p}' (read-only, directory, not empty, or full)"
            ),
            FatError::Exist(p) => write!(f, "'{p}' already exists"),
            FatError::NoFilesystem(m) => write!(f, "no valid FAT volume: {m}"),
            FatError::MkfsAborted(n) => write!(
                f,
                "cannot make a FAT file system in {n} blocks; try adjusting the partition size"
            ),
            FatError::Corrupt(m) => write!(f, "corrupt FAT volume: {m}"),
            FatError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FatError {}

impl From<io::Error> for FatError {
    fn from(e: io::Error) -> Self {
        FatError::Io(e)
    }
}

type Result<T> = std::result::Result<T, FatError>;

/// What FatFs keeps per mounted volume between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolState {
    last_clst: u32,
    free_clst: u32,
    fsi_flag: u8,
    mounted: bool,
}

impl Default for VolState {
    fn default() -> Self {
        VolState {
            last_clst: u32::MAX,
            free_clst: u32::MAX,
            fsi_flag: 0x80,
            mounted: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsType {
    Fat12,
    Fat16,
    Fat32,
}

#[derive(Debug, Clone, Copy)]
struct Geo {
    fs_type: FsType,
    csize: u32,
    n_fats: u32,
    n_rootdir: u32,
    fsize: u64,
    volbase: u64,
    fatbase: u64,
    dirbase: u64,
    database: u64,
    n_fatent: u32,
    fsinfo: bool,
}

/// An open FAT volume.
pub struct Fat<'a, 'o> {
    out: &'a mut Output<'o>,
    g: Geo,
    st: &'a mut VolState,
}

fn ld16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn ld32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn st16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_le_bytes());
}
fn st32(b: &mut [u8], i: usize, v: u32) {
    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
}

/// Creates a file system on `count` blocks at block `offset`.
pub fn mkfs(out: &mut Output<'_>, offset: u64, count: u64) -> Result<()> {
    if offset
        .checked_add(count)
        .is_none_or(|end| end > u64::MAX / 1024)
    {
        return Err(FatError::MkfsAborted(count));
    }
    if count > 0 {
        out.write_sector(offset + count - 1, &[0xFF; 512])?;
    }
    let sz_vol = count;
    if !(128..1 << 32).contains(&sz_vol) {
        return Err(FatError::MkfsAborted(count));
    }
    let n_fat: u64 = 2;
    let n_root: u64 = 512;
    let pau: u64 = 1;
    let mut fsty = FsType::Fat16;
    let (sz_rsv, sz_fat, sz_dir, n_clst) = loop {
        let (sz_rsv, sz_fat, sz_dir);
        if fsty == FsType::Fat32 {
            let n = sz_vol / pau;
            sz_fat = (n * 4 + 8).div_ceil(SS);
            sz_rsv = 32;
            sz_dir = 0;
            if n <= u64::from(MAX_FAT16) || n > u64::from(MAX_FAT32) {
                return Err(FatError::MkfsAborted(count));
            }
        } else {
            let n = sz_vol / pau;
            let bytes = if n > u64::from(MAX_FAT12) {
                n * 2 + 4
            } else {
                fsty = FsType::Fat12;
                (n * 3).div_ceil(2) + 3
            };
            sz_fat = bytes.div_ceil(SS);
            sz_rsv = 1;
            sz_dir = n_root * 32 / SS;
        }
        let b_data = sz_rsv + sz_fat * n_fat + sz_dir;
        if sz_vol < b_data + pau * 16 {
            return Err(FatError::MkfsAborted(count));
        }
        let n_clst = (sz_vol - sz_rsv - sz_fat * n_fat - sz_dir) / pau;
        if fsty == FsType::Fat32 && n_clst <= u64::from(MAX_FAT16) {
            return Err(FatError::MkfsAborted(count));
        }
        if fsty == FsType::Fat16 {
            if n_clst > u64::from(MAX_FAT16) {
                fsty = FsType::Fat32;
                continue;
            }
            if n_clst <= u64::from(MAX_FAT12) {
                return Err(FatError::MkfsAborted(count));
            }
        }
        if fsty == FsType::Fat12 && n_clst > u64::from(MAX_FAT12) {
            return Err(FatError::MkfsAborted(count));
        }
        break (sz_rsv, sz_fat, sz_dir, n_clst);
    };
    let vsn = (sz_vol as u32).wrapping_add(FATTIME);
    let mut vbr = [0u8; 512];
    vbr[0..11].copy_from_slice(b"\xEB\xFE\x90MSDOS5.0");
    st16(&mut vbr, 11, 512);
    vbr[13] = pau as u8;
    st16(&mut vbr, 14, sz_rsv as u16);
    vbr[16] = n_fat as u8;
    st16(
        &mut vbr,
        17,
        if fsty == FsType::Fat32 {
            0
        } else {
            n_root as u16
        },
    );
    if sz_vol < 0x10000 {
        st16(&mut vbr, 19, sz_vol as u16);
    } else {
        st32(&mut vbr, 32, sz_vol as u32);
    }
    vbr[21] = 0xF8;
    st16(&mut vbr, 24, 63);
    st16(&mut vbr, 26, 255);
    st32(&mut vbr, 28, 0);
    if fsty == FsType::Fat32 {
        st32(&mut vbr, 67, vsn);
        st32(&mut vbr, 36, sz_fat as u32);
        st32(&mut vbr, 44, 2);
        st16(&mut vbr, 48, 1);
        st16(&mut vbr, 50, 6);
        vbr[64] = 0x80;
        vbr[66] = 0x29;
        vbr[71..90].copy_from_slice(b"NO NAME    FAT32   ");
    } else {
        st32(&mut vbr, 39, vsn);
        st16(&mut vbr, 22, sz_fat as u16);
        vbr[36] = 0x80;
        vbr[38] = 0x29;
        let label: &[u8; 19] = if fsty == FsType::Fat12 {
            b"NO NAME    FAT12   "
        } else {
            b"NO NAME    FAT16   "
        };
        vbr[43..62].copy_from_slice(label);
    }
    vbr[510] = 0x55;
    vbr[511] = 0xAA;
    out.write_sector(offset, &vbr)?;
    if fsty == FsType::Fat32 {
        out.write_sector(offset + 6, &vbr)?;
        let mut fsi = [0u8; 512];
        st32(&mut fsi, 0, 0x4161_5252);
        st32(&mut fsi, 484, 0x6141_7272);
        st32(&mut fsi, 488, (n_clst - 1) as u32);
        st32(&mut fsi, 492, 2);
        fsi[510] = 0x55;
        fsi[511] = 0xAA;
        out.write_sector(offset + 7, &fsi)?;
        out.write_sector(offset + 1, &fsi)?;
    }
    let mut sect = offset + sz_rsv;
    for _ in 0..n_fat {
        let mut first = [0u8; 512];
        match fsty {
            FsType::Fat32 => {
                st32(&mut first, 0, 0xFFFF_FFF8);
                st32(&mut first, 4, 0xFFFF_FFFF);
                st32(&mut first, 8, 0x0FFF_FFFF);
            }
            FsType::Fat12 => st32(&mut first, 0, 0x00FF_FFF8),
            FsType::Fat16 => st32(&mut first, 0, 0xFFFF_FFF8),
        }
        out.write_sector(sect, &first)?;
        out.zero_sectors(sect + 1, sz_fat - 1)?;
        sect += sz_fat;
    }
    let root = if fsty == FsType::Fat32 { pau } else { sz_dir };
    out.zero_sectors(sect, root)?;
    Ok(())
}

/// Parsed name: short name, flags, long name in UTF-16.
#[derive(Debug, Clone)]
struct Name {
    sfn: [u8; 11],
    flags: u8,
    lfn: Vec<u16>,
}

fn is_sep(c: char) -> bool {
    c == '/' || c == '\\'
}

/// Builds the short and long names of one path segment as FatFs does.
fn create_name(seg: &str) -> Result<Name> {
    let mut lfn: Vec<u16> = Vec::new();
    for c in seg.chars() {
        if (c as u32) < 0x20 || "*:<>|\"?\x7F".contains(c) {
            return Err(FatError::InvalidName(seg.to_owned()));
        }
        let mut buf = [0u16; 2];
        lfn.extend_from_slice(c.encode_utf16(&mut buf));
        if lfn.len() > MAX_LFN {
            return Err(FatError::InvalidName(seg.to_owned()));
        }
    }
    while let Some(&last) = lfn.last() {
        if last != u16::from(b' ') && last != u16::from(b'.') {
            break;
        }
        lfn.pop();
    }
    if lfn.is_empty() {
        return Err(FatError::InvalidName(seg.to_owned()));
    }
    let mut cf = 0u8;
    let mut si = 0usize;
    while si < lfn.len() && lfn[si] == u16::from(b' ') {
        si += 1;
    }
    if si > 0 || lfn[si] == u16::from(b'.') {
        cf |= NS_LOSS | NS_LFN;
    }
    let mut di = lfn.len();
    while di > 0 && lfn[di - 1] != u16::from(b'.') {
        di -= 1;
    }
    let mut sfn = [b' '; 11];
    let (mut i, mut ni, mut b) = (0usize, 8usize, 0u8);
    while let Some(&wc0) = lfn.get(si) {
        si += 1;
        let mut wc = wc0;
        if wc == u16::from(b' ') || (wc == u16::from(b'.') && si != di) {
            cf |= NS_LOSS | NS_LFN;
            continue;
        }
        if i >= ni || si == di {
            if ni == 11 {
                cf |= NS_LOSS | NS_LFN;
                break;
            }
            if si != di {
                cf |= NS_LOSS | NS_LFN;
            }
            if si > di {
                break;
            }
            si = di;
            i = 8;
            ni = 11;
            b <<= 2;
            continue;
        }
        if wc >= 0x80 {
            cf |= NS_LFN | NS_LOSS;
            wc = u16::from(b'_');
        } else if wc == 0 || "+,;=[]".contains(char::from(wc as u8)) {
            wc = u16::from(b'_');
            cf |= NS_LOSS | NS_LFN;
        } else if (u16::from(b'A')..=u16::from(b'Z')).contains(&wc) {
            b |= 2;
        } else if (u16::from(b'a')..=u16::from(b'z')).contains(&wc) {
            b |= 1;
            wc -= 0x20;
        }
        sfn[i] = wc as u8;
        i += 1;
    }
    if sfn[0] == DDEM {
        sfn[0] = RDDEM;
    }
    if ni == 8 {
        b <<= 2;
    }
    if (b & 0x0C) == 0x0C || (b & 0x03) == 0x03 {
        cf |= NS_LFN;
    }
    if cf & NS_LFN == 0 {
        if b & 0x01 != 0 {
            cf |= NS_EXT;
        }
        if b & 0x04 != 0 {
            cf |= NS_BODY;
        }
    }
    Ok(Name {
        sfn,
        flags: cf,
        lfn,
    })
}

fn gen_numname(src: &[u8; 11], lfn: &[u16], seq: u32) -> [u8; 11] {
    let mut dst = *src;
    let mut seq = seq;
    if seq > 5 {
        let mut sreg = seq;
        for &c in lfn {
            let mut wc = c;
            for _ in 0..16 {
                sreg = (sreg << 1) + u32::from(wc & 1);
                wc >>= 1;
                if sreg & 0x10000 != 0 {
                    sreg ^= 0x11021;
                }
            }
        }
        seq = sreg;
    }
    let mut ns = [0u8; 8];
    let mut i = 7usize;
    loop {
        let mut c = (seq % 16) as u8 + b'0';
        seq /= 16;
        if c > b'9' {
            c += 7;
        }
        ns[i] = c;
        i -= 1;
        if i == 0 || seq == 0 {
            break;
        }
    }
    ns[i] = b'~';
    let mut j = 0;
    while j < i && dst[j] != b' ' {
        j += 1;
    }
    loop {
        dst[j] = if i < 8 {
            let c = ns[i];
            i += 1;
            c
        } else {
            b' '
        };
        j += 1;
        if j >= 8 {
            break;
        }
    }
    dst
}

fn sum_sfn(name: &[u8]) -> u8 {
    let mut sum = 0u8;
    for &c in &name[..11] {
        sum = (sum >> 1).wrapping_add(sum << 7).wrapping_add(c);
    }
    sum
}

fn upper16(c: u16) -> u16 {
    match char::from_u32(u32::from(c)) {
        Some(ch) => {
            let mut up = ch.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) if (u as u32) < 0x10000 => u as u32 as u16,
                _ => c,
            }
        }
        None => c,
    }
}

/// One directory entry as found.
#[derive(Debug, Clone)]
struct Found {
    /// Index of the short entry in its directory.
    index: u32,
    /// Index of the first long-name entry (or the short entry if none).
    blk: u32,
    /// Byte offset of the short entry on the target.
    pos: u64,
    raw: [u8; 32],
}

/// Result of following a path.
struct Walk {
    /// Start cluster of the directory holding the last segment (0: root).
    dir: u32,
    name: Name,
    found: Option<Found>,
}

/// A file opened for reading.
pub struct FileReader {
    path: String,
    cl: u32,
    in_cluster: u64,
    left: u64,
    hops: u32,
}

/// A file opened for writing.
pub struct FileWriter {
    entry_pos: u64,
    sclust: u32,
    clust: u32,
    fptr: u32,
    size: u32,
    buf: [u8; 512],
    buf_sect: u64,
    dirty: bool,
    run_start: u64,
    run: Vec<u8>,
}

const RUN_LIMIT: usize = 1 << 20;

impl<'a, 'o> Fat<'a, 'o> {
    /// Opens the FAT volume at block `offset`, reusing (or starting) its mount state.
    pub fn open(out: &'a mut Output<'o>, offset: u64, st: &'a mut VolState) -> Result<Self> {
        if offset > u64::MAX / 1024 {
            return Err(FatError::NoFilesystem(format!(
                "block {offset} is out of range"
            )));
        }
        let bs = out.sector(offset)?;
        let bad = |m: &str| FatError::NoFilesystem(format!("{m} at block {offset}"));
        if ld16(&bs, 510) != 0xAA55 || !matches!(bs[0], 0xEB | 0xE9 | 0xE8) {
            return Err(bad("no boot sector"));
        }
        if ld16(&bs, 11) != 512 {
            return Err(bad("sector size is not 512 bytes"));
        }
        let mut fsize = u64::from(ld16(&bs, 22));
        if fsize == 0 {
            fsize = u64::from(ld32(&bs, 36));
        }
        let n_fats = u32::from(bs[16]);
        if n_fats != 1 && n_fats != 2 {
            return Err(bad("bad number of FATs"));
        }
        let csize = u32::from(bs[13]);
        if csize == 0 || !csize.is_power_of_two() {
            return Err(bad("bad cluster size"));
        }
        let n_rootdir = u32::from(ld16(&bs, 17));
        if n_rootdir % 16 != 0 {
            return Err(bad("bad root directory size"));
        }
        let mut tsect = u64::from(ld16(&bs, 19));
        if tsect == 0 {
            tsect = u64::from(ld32(&bs, 32));
        }
        let nrsv = u64::from(ld16(&bs, 14));
        if nrsv == 0 {
            return Err(bad("no reserved sectors"));
        }
        let fasize = fsize * u64::from(n_fats);
        let sysect = nrsv + fasize + u64::from(n_rootdir / 16);
        if tsect < sysect {
            return Err(bad("volume too small"));
        }
        let nclst = (tsect - sysect) / u64::from(csize);
        if nclst == 0 || nclst > u64::from(MAX_FAT32) {
            return Err(bad("bad cluster count"));
        }
        let fs_type = if nclst <= u64::from(MAX_FAT12) {
            FsType::Fat12
        } else if nclst <= u64::from(MAX_FAT16) {
            FsType::Fat16
        } else {
            FsType::Fat32
        };
        let n_fatent = nclst as u32 + 2;
        let fatbase = offset + nrsv;
        let database = offset + sysect;
        let (dirbase, needed) = if fs_type == FsType::Fat32 {
            if ld16(&bs, 42) != 0 || n_rootdir != 0 {
                return Err(bad("unsupported FAT32 version"));
            }
            (u64::from(ld32(&bs, 44)), u64::from(n_fatent) * 4)
        } else {
            if n_rootdir == 0 {
                return Err(bad("no root directory"));
            }
            let needed = if fs_type == FsType::Fat16 {
                u64::from(n_fatent) * 2
            } else {
                u64::from(n_fatent) * 3 / 2 + u64::from(n_fatent & 1)
            };
            (fatbase + fasize, needed)
        };
        if fsize < needed.div_ceil(SS) {
            return Err(bad("FAT too small"));
        }
        let fsinfo = fs_type == FsType::Fat32 && ld16(&bs, 48) == 1;
        if !st.mounted {
            *st = VolState::default();
            st.mounted = true;
            if fsinfo {
                let fsi = out.sector(offset + 1)?;
                st.fsi_flag = 0;
                if ld16(&fsi, 510) == 0xAA55
                    && ld32(&fsi, 0) == 0x4161_5252
                    && ld32(&fsi, 484) == 0x6141_7272
                {
                    st.free_clst = ld32(&fsi, 488);
                    st.last_clst = ld32(&fsi, 492);
                }
            }
        }
        Ok(Fat {
            out,
            g: Geo {
                fs_type,
                csize,
                n_fats,
                n_rootdir,
                fsize,
                volbase: offset,
                fatbase,
                dirbase,
                database,
                n_fatent,
                fsinfo,
            },
            st,
        })
    }

    fn clust2sect(&self, cl: u32) -> Result<u64> {
        if cl < 2 || cl >= self.g.n_fatent {
            return Err(FatError::Corrupt(format!("cluster {cl} out of range")));
        }
        Ok(self.g.database + u64::from(self.g.csize) * u64::from(cl - 2))
    }

    fn read_bytes(&mut self, pos: u64, out: &mut [u8]) -> Result<()> {
        for (i, b) in out.iter_mut().enumerate() {
            let p = pos + i as u64;
            *b = self.out.with_sector(p / SS, |s| s[(p % SS) as usize])?;
        }
        Ok(())
    }

    fn write_byte(&mut self, pos: u64, v: u8) -> Result<()> {
        self.out
            .modify_sector(pos / SS, |s| s[(pos % SS) as usize] = v)?;
        Ok(())
    }

    fn get_fat(&mut self, cl: u32) -> Result<u32> {
        if cl < 2 || cl >= self.g.n_fatent {
            return Err(FatError::Corrupt(format!("FAT entry {cl} out of range")));
        }
        let base = self.g.fatbase * SS;
        Ok(match self.g.fs_type {
            FsType::Fat12 => {
                let bc = u64::from(cl + cl / 2);
                let mut b = [0u8; 2];
                self.read_bytes(base + bc, &mut b)?;
                let wc = u32::from(u16::from_le_bytes(b));
                if cl & 1 != 0 { wc >> 4 } else { wc & 0xFFF }
            }
            FsType::Fat16 => {
                let p = base + u64::from(cl) * 2;
                self.out
                    .with_sector(p / SS, |s| u32::from(ld16(s, (p % SS) as usize)))?
            }
            FsType::Fat32 => {
                let p = base + u64::from(cl) * 4;
                self.out
                    .with_sector(p / SS, |s| ld32(s, (p % SS) as usize) & 0x0FFF_FFFF)?
            }
        })
    }

    fn put_fat(&mut self, cl: u32, val: u32) -> Result<()> {
        if cl < 2 || cl >= self.g.n_fatent {
            return Err(FatError::Corrupt(format!("FAT entry {cl} out of range")));
        }
        let base = self.g.fatbase * SS;
        let mut touched = Vec::with_capacity(2);
        match self.g.fs_type {
            FsType::Fat12 => {
                let bc = base + u64::from(cl + cl / 2);
                let mut b = [0u8; 2];
                self.read_bytes(bc, &mut b)?;
                if cl & 1 != 0 {
                    b[0] = (b[0] & 0x0F) | ((val << 4) as u8 & 0xF0);
                    b[1] = (val >> 4) as u8;
                } else {
                    b[0] = val as u8;
                    b[1] = (b[1] & 0xF0) | ((val >> 8) as u8 & 0x0F);
                }
                self.write_byte(bc, b[0])?;
                self.write_byte(bc + 1, b[1])?;
                touched.push(bc / SS);
                touched.push((bc + 1) / SS);
            }
            FsType::Fat16 => {
                let p = base + u64::from(cl) * 2;
                self.out
                    .modify_sector(p / SS, |s| st16(s, (p % SS) as usize, val as u16))?;
                touched.push(p / SS);
            }
            FsType::Fat32 => {
                let p = base + u64::from(cl) * 4;
                self.out.modify_sector(p / SS, |s| {
                    let i = (p % SS) as usize;
                    let old = ld32(s, i);
                    st32(s, i, (old & 0xF000_0000) | (val & 0x0FFF_FFFF));
                })?;
                touched.push(p / SS);
            }
        }
        if self.g.n_fats == 2 {
            touched.dedup();
            for s in touched {
                let copy = self.out.sector(s)?;
                self.out.write_sector(s + self.g.fsize, &copy)?;
            }
        }
        Ok(())
    }

    fn eoc(&self) -> u32 {
        0xFFFF_FFFF
    }

    fn remove_chain(&mut self, mut clst: u32, pclst: u32) -> Result<()> {
        if clst < 2 || clst >= self.g.n_fatent {
            return Err(FatError::Corrupt(format!(
                "chain start {clst} out of range"
            )));
        }
        if pclst != 0 {
            self.put_fat(pclst, self.eoc())?;
        }
        let mut guard = 0u32;
        loop {
            let nxt = self.get_fat(clst)?;
            if nxt == 0 {
                break;
            }
            if nxt == 1 {
                return Err(FatError::Corrupt("cluster chain points at 1".into()));
            }
            self.put_fat(clst, 0)?;
            if self.st.free_clst < self.g.n_fatent - 2 {
                self.st.free_clst += 1;
                self.st.fsi_flag |= 1;
            }
            clst = nxt;
            guard += 1;
            if clst >= self.g.n_fatent || guard > self.g.n_fatent {
                break;
            }
        }
        Ok(())
    }

    /// Stretches the chain after `clst` (or starts one if 0). Returns 0 when the disk is full.
    fn create_chain(&mut self, clst: u32) -> Result<u32> {
        let mut scl;
        if clst == 0 {
            scl = self.st.last_clst;
            if scl == 0 || scl >= self.g.n_fatent {
                scl = 1;
            }
        } else {
            let cs = self.get_fat(clst)?;
            if cs < 2 {
                return Err(FatError::Corrupt(format!(
                    "cluster {clst} is not in a chain"
                )));
            }
            if cs < self.g.n_fatent {
                return Ok(cs);
            }
            scl = clst;
        }
        if self.st.free_clst == 0 {
            return Ok(0);
        }
        let mut ncl = 0;
        if scl == clst {
            ncl = scl + 1;
            if ncl >= self.g.n_fatent {
                ncl = 2;
            }
            let cs = self.get_fat(ncl)?;
            if cs != 0 {
                let hint = self.st.last_clst;
                if hint >= 2 && hint < self.g.n_fatent {
                    scl = hint;
                }
                ncl = 0;
            }
        }
        if ncl == 0 {
            ncl = scl;
            loop {
                ncl += 1;
                if ncl >= self.g.n_fatent {
                    ncl = 2;
                    if ncl > scl {
                        return Ok(0);
                    }
                }
                if self.get_fat(ncl)? == 0 {
                    break;
                }
                if ncl == scl {
                    return Ok(0);
                }
            }
        }
        self.put_fat(ncl, self.eoc())?;
        if clst != 0 {
            self.put_fat(clst, ncl)?;
        }
        self.st.last_clst = ncl;
        if self.st.free_clst <= self.g.n_fatent - 2 {
            self.st.free_clst -= 1;
        }
        self.st.fsi_flag |= 1;
        Ok(ncl)
    }

    fn sync_fs(&mut self) -> Result<()> {
        if self.g.fs_type == FsType::Fat32 && self.g.fsinfo && self.st.fsi_flag == 1 {
            let mut fsi = [0u8; 512];
            fsi[510] = 0x55;
            fsi[511] = 0xAA;
            st32(&mut fsi, 0, 0x4161_5252);
            st32(&mut fsi, 484, 0x6141_7272);
            st32(&mut fsi, 488, self.st.free_clst);
            st32(&mut fsi, 492, self.st.last_clst);
            self.out.write_sector(self.g.volbase + 1, &fsi)?;
            self.st.fsi_flag = 0;
        }
        Ok(())
    }

    fn ld_clust(&self, e: &[u8]) -> u32 {
        let mut cl = u32::from(ld16(e, 26));
        if self.g.fs_type == FsType::Fat32 {
            cl |= u32::from(ld16(e, 20)) << 16;
        }
        cl
    }

    fn st_clust(&self, e: &mut [u8], cl: u32) {
        st16(e, 26, cl as u16);
        if self.g.fs_type == FsType::Fat32 {
            st16(e, 20, (cl >> 16) as u16);
        }
    }

    /// Byte position of entry `index` of directory `dir` (0 = root), optionally growing it.
    fn entry_pos(&mut self, dir: u32, index: u32, stretch: bool) -> Result<Option<u64>> {
        if index >= MAX_DIR_ENTRIES {
            return Ok(None);
        }
        let mut clst = dir;
        if clst == 0 && self.g.fs_type == FsType::Fat32 {
            clst = self.g.dirbase as u32;
        }
        if clst == 0 {
            if index >= self.g.n_rootdir {
                return Ok(None);
            }
            return Ok(Some(self.g.dirbase * SS + u64::from(index) * 32));
        }
        let per_cluster = self.g.csize * 512 / 32;
        let mut hops = index / per_cluster;
        while hops > 0 {
            let next = self.get_fat(clst)?;
            if next < 2 {
                return Err(FatError::Corrupt("directory chain is broken".into()));
            }
            if next >= self.g.n_fatent {
                if !stretch || hops > 1 {
                    return Ok(None);
                }
                let ncl = self.create_chain(clst)?;
                if ncl == 0 {
                    return Err(FatError::Denied("directory (disk full)".into()));
                }
                let first = self.clust2sect(ncl)?;
                self.out.zero_sectors(first, u64::from(self.g.csize))?;
                clst = ncl;
            } else {
                clst = next;
            }
            hops -= 1;
        }
        let within = u64::from(index % per_cluster) * 32;
        Ok(Some(self.clust2sect(clst)? * SS + within))
    }

    fn read_entry(&mut self, pos: u64) -> Result<[u8; 32]> {
        let off = (pos % SS) as usize;
        Ok(self.out.with_sector(pos / SS, |s| {
            let mut e = [0u8; 32];
            e.copy_from_slice(&s[off..off + 32]);
            e
        })?)
    }

    fn write_entry(&mut self, pos: u64, e: &[u8; 32]) -> Result<()> {
        let off = (pos % SS) as usize;
        self.out
            .modify_sector(pos / SS, |s| s[off..off + 32].copy_from_slice(e))?;
        Ok(())
    }

    /// Finds `name` in `dir`. With `sfn_only`, only the short name is compared.
    fn dir_find(&mut self, dir: u32, name: &Name, sfn_only: bool) -> Result<Option<Found>> {
        let mut ord: u8 = 0xFF;
        let mut sum: u8 = 0xFF;
        let mut blk: Option<u32> = None;
        let mut parts: Vec<u16> = Vec::new();
        let target: Vec<u16> = name.lfn.iter().map(|&c| upper16(c)).collect();
        let mut index = 0u32;
        loop {
            let Some(pos) = self.entry_pos(dir, index, false)? else {
                return Ok(None);
            };
            let e = self.read_entry(pos)?;
            let c = e[0];
            if c == 0 {
                return Ok(None);
            }
            let a = e[11] & AM_MASK;
            if c == DDEM || ((a & AM_VOL) != 0 && a != AM_LFN) {
                ord = 0xFF;
                blk = None;
            } else if a == AM_LFN {
                if !sfn_only {
                    let mut c = c;
                    if c & LLEF != 0 {
                        sum = e[13];
                        c &= !LLEF;
                        ord = c;
                        blk = Some(index);
                        parts = vec![0xFFFF; usize::from(c) * 13];
                    }
                    ord = if c == ord && sum == e[13] && ld16(&e, 26) == 0 && c >= 1 {
                        let at = usize::from(c - 1) * 13;
                        for (k, &o) in LFN_OFS.iter().enumerate() {
                            if let Some(slot) = parts.get_mut(at + k) {
                                *slot = ld16(&e, o);
                            }
                        }
                        c - 1
                    } else {
                        0xFF
                    };
                }
            } else {
                let mut matched = false;
                if ord == 0 && sum == sum_sfn(&e) && !sfn_only {
                    let len = parts.iter().position(|&w| w == 0).unwrap_or(parts.len());
                    let got: Vec<u16> = parts[..len].iter().map(|&w| upper16(w)).collect();
                    matched = got == target;
                }
                if !matched && (sfn_only || name.flags & NS_LOSS == 0) && e[..11] == name.sfn {
                    matched = true;
                }
                if matched {
                    return Ok(Some(Found {
                        index,
                        blk: blk.unwrap_or(index),
                        pos,
                        raw: e,
                    }));
                }
                ord = 0xFF;
                blk = None;
            }
            index += 1;
        }
    }

    fn walk(&mut self, path: &str) -> Result<Walk> {
        let segs: Vec<&str> = path.split(is_sep).filter(|s| !s.is_empty()).collect();
        if segs.is_empty() {
            return Err(FatError::InvalidName(path.to_owned()));
        }
        let mut dir = 0u32;
        for (i, seg) in segs.iter().enumerate() {
            let name = create_name(seg)?;
            let found = self.dir_find(dir, &name, false)?;
            if i + 1 == segs.len() {
                return Ok(Walk { dir, name, found });
            }
            match found {
                Some(f) if f.raw[11] & AM_DIR != 0 => dir = self.ld_clust(&f.raw),
                _ => return Err(FatError::NoPath(path.to_owned())),
            }
        }
        Err(FatError::InvalidName(path.to_owned()))
    }

    /// Allocates entries for `name` in `dir` and writes the long-name entries and a zeroed
    /// short entry; returns the short entry's position.
    fn dir_register(&mut self, dir: u32, name: &Name) -> Result<(u64, [u8; 32])> {
        let mut sn = name.sfn;
        if name.flags & NS_LOSS != 0 {
            let mut ok = false;
            for n in 1..100 {
                let cand = gen_numname(&name.sfn, &name.lfn, n);
                let probe = Name {
                    sfn: cand,
                    flags: 0,
                    lfn: Vec::new(),
                };
                if self.dir_find(dir, &probe, true)?.is_none() {
                    sn = cand;
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(FatError::Denied("too many short-name collisions".into()));
            }
        }
        let n_lfn = if name.flags & NS_LFN != 0 {
            name.lfn.len().div_ceil(13)
        } else {
            0
        };
        let n_ent = n_lfn as u32 + 1;
        // First run of n_ent free slots.
        let mut run = 0u32;
        let mut index = 0u32;
        let start = loop {
            let Some(pos) = self.entry_pos(dir, index, true)? else {
                return Err(FatError::Denied("directory is full".into()));
            };
            let e0 = self.read_entry(pos)?[0];
            if e0 == DDEM || e0 == 0 {
                run += 1;
                if run == n_ent {
                    break index + 1 - n_ent;
                }
            } else {
                run = 0;
            }
            index += 1;
        };
        let sum = sum_sfn(&sn);
        for k in 0..n_lfn {
            let ord = (n_lfn - k) as u8;
            let pos = self
                .entry_pos(dir, start + k as u32, false)?
                .ok_or_else(|| FatError::Corrupt("lost directory entry".into()))?;
            let mut e = [0u8; 32];
            e[13] = sum;
            e[11] = AM_LFN;
            let mut i = usize::from(ord - 1) * 13;
            let mut wc: u16 = 0;
            for &o in &LFN_OFS {
                if wc != 0xFFFF {
                    wc = name.lfn.get(i).copied().unwrap_or(0);
                    i += 1;
                }
                st16(&mut e, o, wc);
                if wc == 0 {
                    wc = 0xFFFF;
                }
            }
            let mut o = ord;
            if wc == 0xFFFF || name.lfn.get(i).copied().unwrap_or(0) == 0 {
                o |= LLEF;
            }
            e[0] = o;
            self.write_entry(pos, &e)?;
        }
        let pos = self
            .entry_pos(dir, start + n_lfn as u32, false)?
            .ok_or_else(|| FatError::Corrupt("lost directory entry".into()))?;
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(&sn);
        e[12] = name.flags & (NS_BODY | NS_EXT);
        self.write_entry(pos, &e)?;
        Ok((pos, e))
    }

    fn dir_remove(&mut self, dir: u32, f: &Found) -> Result<()> {
        for i in f.blk..=f.index {
            if let Some(pos) = self.entry_pos(dir, i, false)? {
                self.out
                    .modify_sector(pos / SS, |s| s[(pos % SS) as usize] = DDEM)?;
            }
        }
        Ok(())
    }

    /// Opens `path` for writing from scratch (creating it or truncating it).
    pub fn create(&mut self, path: &str) -> Result<FileWriter> {
        let w = self.walk(path)?;
        let (pos, mut e) = match &w.found {
            Some(f) => {
                if f.raw[11] & (AM_RDO | AM_DIR) != 0 {
                    return Err(FatError::Denied(path.to_owned()));
                }
                (f.pos, f.raw)
            }
            None => self.dir_register(w.dir, &w.name)?,
        };
        st32(&mut e, 14, FATTIME);
        st32(&mut e, 22, FATTIME);
        let cl = self.ld_clust(&e);
        e[11] = AM_ARC;
        self.st_clust(&mut e, 0);
        st32(&mut e, 28, 0);
        self.write_entry(pos, &e)?;
        if cl != 0 {
            self.remove_chain(cl, 0)?;
            self.st.last_clst = cl - 1;
        }
        let mut fw = FileWriter {
            entry_pos: pos,
            sclust: 0,
            clust: 0,
            fptr: 0,
            size: 0,
            buf: [0; 512],
            buf_sect: 0,
            dirty: false,
            run_start: 0,
            run: Vec::new(),
        };
        self.sync_file(&mut fw)?;
        Ok(fw)
    }

    fn flush_run(&mut self, fw: &mut FileWriter) -> Result<()> {
        if !fw.run.is_empty() {
            self.out.write_file_data(&fw.run, fw.run_start * SS)?;
            fw.run.clear();
        }
        Ok(())
    }

    fn put_direct(&mut self, fw: &mut FileWriter, sect: u64, data: &[u8]) -> Result<()> {
        if !fw.run.is_empty() && fw.run_start + (fw.run.len() as u64 / SS) != sect {
            self.flush_run(fw)?;
        }
        if fw.run.is_empty() {
            fw.run_start = sect;
        }
        fw.run.extend_from_slice(data);
        if fw.run.len() >= RUN_LIMIT {
            self.flush_run(fw)?;
        }
        Ok(())
    }

    /// Appends `data` to a file opened with [`Fat::create`].
    pub fn write(&mut self, fw: &mut FileWriter, mut data: &[u8]) -> Result<()> {
        if u64::from(fw.fptr) + data.len() as u64 > u64::from(u32::MAX) {
            return Err(FatError::Denied("file larger than 4 GiB".into()));
        }
        while !data.is_empty() {
            if fw.fptr % 512 == 0 {
                let csect = (fw.fptr / 512) & (self.g.csize - 1);
                if csect == 0 {
                    let clst = if fw.fptr == 0 {
                        if fw.sclust == 0 {
                            self.create_chain(0)?
                        } else {
                            fw.sclust
                        }
                    } else {
                        self.create_chain(fw.clust)?
                    };
                    if clst == 0 {
                        return Err(FatError::Denied("disk full".into()));
                    }
                    fw.clust = clst;
                    if fw.sclust == 0 {
                        fw.sclust = clst;
                    }
                }
                if fw.dirty {
                    let sect = fw.buf_sect;
                    let buf = fw.buf;
                    self.put_direct(fw, sect, &buf)?;
                    fw.dirty = false;
                }
                let sect = self.clust2sect(fw.clust)? + u64::from(csect);
                let mut cc = (data.len() / 512) as u32;
                if cc > 0 {
                    if csect + cc > self.g.csize {
                        cc = self.g.csize - csect;
                    }
                    let n = cc as usize * 512;
                    if fw.buf_sect >= sect && fw.buf_sect < sect + u64::from(cc) {
                        let at = ((fw.buf_sect - sect) * SS) as usize;
                        fw.buf.copy_from_slice(&data[at..at + 512]);
                    }
                    self.put_direct(fw, sect, &data[..n])?;
                    data = &data[n..];
                    fw.fptr += n as u32;
                    fw.size = fw.size.max(fw.fptr);
                    continue;
                }
                if fw.buf_sect != sect && fw.fptr < fw.size {
                    self.flush_run(fw)?;
                    let mut b = [0u8; 512];
                    self.out.read(&mut b, sect * SS)?;
                    fw.buf = b;
                }
                fw.buf_sect = sect;
            }
            let off = (fw.fptr % 512) as usize;
            let wcnt = (512 - off).min(data.len());
            fw.buf[off..off + wcnt].copy_from_slice(&data[..wcnt]);
            fw.dirty = true;
            data = &data[wcnt..];
            fw.fptr += wcnt as u32;
            fw.size = fw.size.max(fw.fptr);
        }
        Ok(())
    }

    fn sync_file(&mut self, fw: &mut FileWriter) -> Result<()> {
        if fw.dirty {
            let sect = fw.buf_sect;
            let buf = fw.buf;
            self.put_direct(fw, sect, &buf)?;
            fw.dirty = false;
        }
        self.flush_run(fw)?;
        let mut e = self.read_entry(fw.entry_pos)?;
        e[11] |= AM_ARC;
        self.st_clust(&mut e, fw.sclust);
        st32(&mut e, 28, fw.size);
        st32(&mut e, 22, FATTIME);
        st16(&mut e, 18, 0);
        self.write_entry(fw.entry_pos, &e)?;
        self.sync_fs()
    }

    /// Finishes a file: writes its last sector and updates its directory entry.
    pub fn close(&mut self, mut fw: FileWriter) -> Result<()> {
        self.sync_file(&mut fw)
    }

    /// Size and first cluster of an existing file.
    fn open_existing(&mut self, path: &str) -> Result<(u32, u32)> {
        let w = self.walk(path)?;
        match w.found {
            Some(f) if f.raw[11] & AM_DIR == 0 => Ok((self.ld_clust(&f.raw), ld32(&f.raw, 28))),
            _ => Err(FatError::NoFile(path.to_owned())),
        }
    }

    /// Whether a file (not a directory) exists at `path`.
    pub fn exists(&mut self, path: &str) -> Result<bool> {
        match self.open_existing(path) {
            Ok(_) => Ok(true),
            Err(FatError::NoFile(_) | FatError::NoPath(_) | FatError::InvalidName(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens an existing file for reading.
    pub fn open_reader(&mut self, path: &str) -> Result<FileReader> {
        let (cl, size) = self.open_existing(path)?;
        Ok(FileReader {
            path: path.to_owned(),
            cl,
            in_cluster: 0,
            left: u64::from(size),
            hops: 0,
        })
    }

    /// Reads the next bytes of a file into `buf`; 0 at the end.
    pub fn read_some(&mut self, r: &mut FileReader, buf: &mut [u8]) -> Result<usize> {
        let csize_bytes = u64::from(self.g.csize) * SS;
        if r.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if r.in_cluster == csize_bytes {
            r.cl = self.get_fat(r.cl)?;
            r.hops += 1;
            r.in_cluster = 0;
            if r.cl < 2 || r.cl >= self.g.n_fatent || r.hops > self.g.n_fatent {
                return Err(FatError::Corrupt(format!(
                    "chain of '{}' ends early",
                    r.path
                )));
            }
        }
        let n = (csize_bytes - r.in_cluster)
            .min(r.left)
            .min(buf.len() as u64) as usize;
        let pos = self.clust2sect(r.cl)? * SS + r.in_cluster;
        self.out.read(&mut buf[..n], pos)?;
        r.in_cluster += n as u64;
        r.left -= n as u64;
        Ok(n)
    }

    /// Where a file's bytes lie on the disk: `(size, [(byte offset, length)])`, extents in file
    /// order (adjacent clusters merged). Used to read a delta's source file at random.
    pub fn file_extents(&mut self, path: &str) -> Result<(u64, Vec<(u64, u64)>)> {
        let (mut cl, size) = self.open_existing(path)?;
        let csize_bytes = u64::from(self.g.csize) * SS;
        let mut left = u64::from(size);
        let mut extents: Vec<(u64, u64)> = Vec::new();
        let mut hops = 0u32;
        while left > 0 {
            if cl < 2 || cl >= self.g.n_fatent || hops > self.g.n_fatent {
                return Err(FatError::Corrupt(format!("chain of '{path}' ends early")));
            }
            let pos = self.clust2sect(cl)? * SS;
            let n = left.min(csize_bytes);
            match extents.last_mut() {
                Some((o, l)) if *o + *l == pos => *l += n,
                _ => extents.push((pos, n)),
            }
            left -= n;
            if left > 0 {
                cl = self.get_fat(cl)?;
                hops += 1;
            }
        }
        Ok((u64::from(size), extents))
    }

    /// Reads a whole file chunk by chunk into `sink`.
    pub fn read_file(
        &mut self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut r = self.open_reader(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_some(&mut r, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n])?;
        }
    }

    /// Creates a directory; an existing directory is fine.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        let w = self.walk(path)?;
        if let Some(f) = &w.found {
            if f.raw[11] & AM_DIR != 0 {
                return Ok(());
            }
            return Err(FatError::Exist(path.to_owned()));
        }
        let dcl = self.create_chain(0)?;
        if dcl == 0 {
            return Err(FatError::Denied(format!("{path} (disk full)")));
        }
        let first = self.clust2sect(dcl)?;
        self.out.zero_sectors(first, u64::from(self.g.csize))?;
        let mut dot = [0u8; 32];
        dot[..11].copy_from_slice(b".          ");
        dot[11] = AM_DIR;
        st32(&mut dot, 22, FATTIME);
        self.st_clust(&mut dot, dcl);
        let mut dotdot = dot;
        dotdot[1] = b'.';
        self.st_clust(&mut dotdot, w.dir);
        self.out.modify_sector(first, |s| {
            s[..32].copy_from_slice(&dot);
            s[32..64].copy_from_slice(&dotdot);
        })?;
        let (pos, mut e) = match self.dir_register(w.dir, &w.name) {
            Ok(r) => r,
            Err(err) => {
                self.remove_chain(dcl, 0)?;
                return Err(err);
            }
        };
        st32(&mut e, 22, FATTIME);
        self.st_clust(&mut e, dcl);
        e[11] = AM_DIR;
        self.write_entry(pos, &e)?;
        self.sync_fs()
    }

    /// Deletes a file or an empty directory. Returns false if it did not exist.
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let w = match self.walk(path) {
            Ok(w) => w,
            Err(FatError::NoPath(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(f) = w.found else { return Ok(false) };
        if f.raw[11] & AM_RDO != 0 {
            return Err(FatError::Denied(path.to_owned()));
        }
        let dcl = self.ld_clust(&f.raw);
        if f.raw[11] & AM_DIR != 0 && !self.dir_is_empty(dcl)? {
            return Err(FatError::Denied(format!("{path} (directory not empty)")));
        }
        self.dir_remove(w.dir, &f)?;
        if dcl != 0 {
            self.remove_chain(dcl, 0)?;
        }
        self.sync_fs()?;
        Ok(true)
    }

    fn dir_is_empty(&mut self, dir: u32) -> Result<bool> {
        let mut index = 0;
        while let Some(pos) = self.entry_pos(dir, index, false)? {
            let e = self.read_entry(pos)?;
            if e[0] == 0 {
                break;
            }
            let a = e[11] & AM_MASK;
            let is_vol = (a & !AM_ARC) == AM_VOL;
            if e[0] != DDEM && e[0] != b'.' && a != AM_LFN && !is_vol {
                return Ok(false);
            }
            index += 1;
        }
        Ok(true)
    }

    /// Renames (moves) `from` to `to`; fails if `to` exists.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let old = self.walk(from)?;
        let Some(of) = old.found.clone() else {
            return Err(FatError::NoFile(from.to_owned()));
        };
        let new = self.walk(to)?;
        if let Some(nf) = &new.found {
            if !(new.dir == old.dir && nf.index == of.index) {
                return Err(FatError::Exist(to.to_owned()));
            }
        }
        let (pos, mut e) = self.dir_register(new.dir, &new.name)?;
        e[13..32].copy_from_slice(&of.raw[13..32]);
        e[11] = of.raw[11];
        if e[11] & AM_DIR == 0 {
            e[11] |= AM_ARC;
        }
        self.write_entry(pos, &e)?;
        if e[11] & AM_DIR != 0 && old.dir != new.dir {
            let sect = self.clust2sect(self.ld_clust(&e))?;
            let mut dd = self.read_entry(sect * SS + 32)?;
            if dd[1] == b'.' {
                self.st_clust(&mut dd, new.dir);
                self.write_entry(sect * SS + 32, &dd)?;
            }
        }
        self.dir_remove(old.dir, &of)?;
        self.sync_fs()
    }

    /// Sets the volume label (a root directory entry); an empty label removes it.
    pub fn set_label(&mut self, label: &str) -> Result<()> {
        let mut vn = [b' '; 11];
        let mut di = 0;
        for c in label.chars() {
            if (c as u32) < 0x20 {
                break;
            }
            let u = c.to_ascii_uppercase();
            if !u.is_ascii() || "+.,;=[]/*:<>|\\\"?\x7F".contains(u) || di >= 11 {
                return Err(FatError::InvalidName(label.to_owned()));
            }
            vn[di] = u as u8;
            di += 1;
        }
        if vn[0] == DDEM {
            return Err(FatError::InvalidName(label.to_owned()));
        }
        while di > 0 && vn[di - 1] == b' ' {
            di -= 1;
        }
        let mut index = 0u32;
        let mut existing = None;
        while let Some(pos) = self.entry_pos(0, index, false)? {
            let e = self.read_entry(pos)?;
            if e[0] == 0 {
                break;
            }
            let a = e[11] & AM_MASK;
            if e[0] != DDEM && e[0] != b'.' && (a & !AM_ARC) == AM_VOL {
                existing = Some((pos, e));
                break;
            }
            index += 1;
        }
        match existing {
            Some((pos, mut e)) => {
                if di != 0 {
                    e[..11].copy_from_slice(&vn);
                } else {
                    e[0] = DDEM;
                }
                self.write_entry(pos, &e)?;
            }
            None if di != 0 => {
                let mut index = 0u32;
                let pos = loop {
                    let Some(pos) = self.entry_pos(0, index, true)? else {
                        return Err(FatError::Denied("root directory is full".into()));
                    };
                    let e0 = self.read_entry(pos)?[0];
                    if e0 == 0 || e0 == DDEM {
                        break pos;
                    }
                    index += 1;
                };
                let mut e = [0u8; 32];
                e[11] = AM_VOL;
                e[..11].copy_from_slice(&vn);
                self.write_entry(pos, &e)?;
            }
            None => {}
        }
        self.sync_fs()
    }

    /// Creates an empty file unless it exists.
    pub fn touch(&mut self, path: &str) -> Result<()> {
        let w = self.walk(path)?;
        if let Some(f) = &w.found {
            if f.raw[11] & (AM_RDO | AM_DIR) != 0 {
                return Err(FatError::Denied(path.to_owned()));
            }
            return Ok(());
        }
        let fw = self.create(path)?;
        self.close(fw)
    }

    /// Sets the read-only, hidden and system attributes from letters `R`, `H`, `S`.
    pub fn set_attributes(&mut self, path: &str, attrib: &str) -> Result<()> {
        let mut mode = 0u8;
        for c in attrib.chars() {
            match c.to_ascii_uppercase() {
                'S' => mode |= AM_SYS,
                'H' => mode |= AM_HID,
                'R' => mode |= AM_RDO,
                _ => {}
            }
        }
        let w = self.walk(path)?;
        let Some(f) = w.found else {
            return Err(FatError::NoFile(path.to_owned()));
        };
        let mut e = f.raw;
        let mask = AM_RDO | AM_HID | AM_SYS;
        e[11] = (mode & mask) | (e[11] & !mask);
        self.write_entry(f.pos, &e)?;
        self.sync_fs()
    }
}

/// Copies a file, possibly between two volumes, as `fat_cp` does (4 KiB at a time).
pub fn copy(
    out: &mut Output<'_>,
    states: &mut std::collections::BTreeMap<u64, VolState>,
    from: (u64, &str),
    to: (u64, &str),
) -> Result<()> {
    // Each step reopens the volume it needs: two volumes cannot share the output at once.
    let mut reader =
        Fat::open(out, from.0, states.entry(from.0).or_default())?.open_reader(from.1)?;
    let mut fw = Fat::open(out, to.0, states.entry(to.0).or_default())?.create(to.1)?;
    let mut buf = [0u8; 4096];
    loop {
        let mut n = 0;
        {
            let mut src = Fat::open(out, from.0, states.entry(from.0).or_default())?;
            while n < buf.len() {
                let k = src.read_some(&mut reader, &mut buf[n..])?;
                if k == 0 {
                    break;
                }
                n += k;
            }
        }
        let mut dst = Fat::open(out, to.0, states.entry(to.0).or_default())?;
        if n == 0 {
            return dst.close(fw);
        }
        dst.write(&mut fw, &buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemTarget;
    use std::collections::BTreeMap;

    #[test]
    fn short_names_and_case_flags() {
        let n = create_name("config.txt").unwrap();
        assert_eq!(&n.sfn, b"CONFIG  TXT");
        assert_eq!(n.flags & (NS_LFN | NS_LOSS), 0);
        assert_eq!(n.flags & (NS_BODY | NS_EXT), NS_BODY | NS_EXT);
        let n = create_name("zImage.a").unwrap();
        assert_eq!(&n.sfn, b"ZIMAGE  A  ");
        assert_eq!(n.flags & NS_LFN, NS_LFN);
        assert_eq!(n.flags & NS_LOSS, 0);
        let n = create_name("MLO").unwrap();
        assert_eq!(&n.sfn, b"MLO        ");
        assert_eq!(n.flags, 0);
        let n = create_name("bcm2711-rpi-4-b.dtb").unwrap();
        assert_eq!(&n.sfn, b"BCM2711-DTB");
        assert_eq!(n.flags & NS_LOSS, NS_LOSS);
        assert_eq!(&gen_numname(&n.sfn, &n.lfn, 1), b"BCM271~1DTB");
        assert_eq!(&gen_numname(&n.sfn, &n.lfn, 2), b"BCM271~2DTB");
        assert!(create_name("a*b").is_err());
        assert!(create_name(" . ").is_err());
        let n = create_name(".hidden").unwrap();
        assert_eq!(n.flags & NS_LOSS, NS_LOSS);
    }

    #[test]
    fn golden_boot_partition_layout() {
        // What fwup wrote at 1 MiB of complete-v1.img: FAT16 on 8192 sectors, label BOOT,
        // zImage.a (64 KiB) and config.txt (25 bytes).
        let mut t = MemTarget::zeroed(8 << 20);
        let mut states = BTreeMap::new();
        {
            let mut o = Output::new(&mut t);
            mkfs(&mut o, 2048, 8192).unwrap();
            let st = states.entry(2048).or_insert_with(VolState::default);
            *st = VolState::default();
            let mut fat = Fat::open(&mut o, 2048, st).unwrap();
            fat.set_label("BOOT").unwrap();
            let mut f = fat.create("zImage.a").unwrap();
            fat.write(&mut f, &vec![0x5a; 65536]).unwrap();
            fat.close(f).unwrap();
            let mut f = fat.create("config.txt").unwrap();
            fat.write(&mut f, b"1234567890123456789012345").unwrap();
            fat.close(f).unwrap();
            o.flush_cache().unwrap();
        }
        let base = 2048 * 512;
        let bs = &t.data[base..base + 512];
        assert_eq!(
            &bs[..0x26],
            &[
                0xeb, 0xfe, 0x90, 0x4d, 0x53, 0x44, 0x4f, 0x53, 0x35, 0x2e, 0x30, 0x00, 0x02, 0x01,
                0x01, 0x00, 0x02, 0x00, 0x02, 0x00, 0x20, 0xf8, 0x21, 0x00, 0x3f, 0x00, 0xff, 0x00,
                0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00
            ][..]
        );
        assert_eq!(&bs[0x27..0x2b], &[0x00, 0x20, 0x21, 0x00]);
        let root = base + 67 * 512;
        assert_eq!(&t.data[root..root + 12], b"BOOT       \x08");
        assert_eq!(t.data[root + 32], 0x41);
        assert_eq!(&t.data[root + 64..root + 76], b"ZIMAGE  A   ");
        assert_eq!(&t.data[root + 64 + 26..root + 64 + 32], &[2, 0, 0, 0, 1, 0]);
        assert_eq!(&t.data[root + 96..root + 109], b"CONFIG  TXT\x20\x18");
        assert_eq!(
            &t.data[root + 96 + 24..root + 96 + 32],
            &[0x21, 0, 0x82, 0, 25, 0, 0, 0]
        );
        // FAT16 chain 2 -> 3 -> ... -> 129 -> EOC, then 130 -> EOC; both FATs equal.
        let fat1 = base + 512;
        assert_eq!(
            &t.data[fat1..fat1 + 8],
            &[0xf8, 0xff, 0xff, 0xff, 3, 0, 4, 0]
        );
        assert_eq!(
            &t.data[fat1 + 129 * 2..fat1 + 131 * 2],
            &[0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            t.data[fat1..fat1 + 33 * 512],
            t.data[fat1 + 33 * 512..fat1 + 66 * 512]
        );
        // The partition's last sector carries fwup's 0xFF marker.
        assert!(
            t.data[base + 8191 * 512..base + 8192 * 512]
                .iter()
                .all(|&b| b == 0xff)
        );
    }

    #[test]
    fn directories_rename_remove_and_lookup() {
        let mut t = MemTarget::zeroed(40 << 20);
        let mut states = BTreeMap::new();
        let mut o = Output::new(&mut t);
        mkfs(&mut o, 0, 70_000).unwrap();
        let st = states.entry(0).or_insert_with(VolState::default);
        let mut fat = Fat::open(&mut o, 0, st).unwrap();
        assert_eq!(fat.g.fs_type, FsType::Fat32);
        fat.mkdir("/boot").unwrap();
        fat.mkdir("/boot/grub").unwrap();
        fat.mkdir("boot").unwrap();
        let mut f = fat.create("/boot/grub/grub.cfg").unwrap();
        fat.write(&mut f, &[7u8; 1000]).unwrap();
        fat.close(f).unwrap();
        assert!(fat.exists("BOOT/GRUB/GRUB.CFG").unwrap());
        assert!(!fat.exists("boot/grub/missing").unwrap());
        assert!(matches!(fat.create("nodir/x"), Err(FatError::NoPath(_))));
        fat.rename("/boot/grub/grub.cfg", "/boot/grub.cfg").unwrap();
        assert!(!fat.exists("boot/grub/grub.cfg").unwrap());
        let mut got = Vec::new();
        fat.read_file("boot/grub.cfg", |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![7u8; 1000]);
        assert!(matches!(fat.remove("boot"), Err(FatError::Denied(_))));
        assert!(fat.remove("boot/grub.cfg").unwrap());
        assert!(!fat.remove("boot/grub.cfg").unwrap());
        fat.touch("a.txt").unwrap();
        assert!(fat.exists("A.TXT").unwrap());
        for i in 0..40 {
            let mut f = fat
                .create(&format!("long file name number {i}.bin"))
                .unwrap();
            fat.write(&mut f, &[i as u8; 3]).unwrap();
            fat.close(f).unwrap();
        }
        for i in 0..40 {
            assert!(
                fat.exists(&format!("LONG FILE NAME NUMBER {i}.BIN"))
                    .unwrap()
            );
        }
    }
}
