//! MBR partition tables (`mbr` sections and `mbr_write`), encoded as fwup does.
//!
//! ```text
//! 0..440    bootstrap code (440 bytes from bootstrap-code, else zeros) or an OSIP header
//! 440..444  disk signature, little-endian (`signature`, 0 if unset)
//! 444..446  zero
//! 446..510  four entries of 16 bytes:
//!             +0 0x80 if boot, +1..4 CHS of the first block, +4 type,
//!             +5..8 CHS of the last block, +8 first LBA (LE32), +12 block count (LE32)
//!           an unused entry (type 0) is zero except LBA and count, copied as given
//! 510..512  55 AA
//! ```
//!
//! CHS uses 63 sectors per head and 255 heads and is left zero beyond 1023 cylinders.
//! Partitions 4..=15 are logical partitions inside partition 3, which must have type 0x05 or
//! 0x0f: one extended boot record per logical partition at consecutive blocks from the
//! extended partition's start, each with its partition (offset relative to that EBR) and a
//! link (type 0x0f, offset i+1 relative to the extended partition, count 1) to the next. The
//! extended partition always grows to cover the last logical partition; `expand = true` on the
//! last partition grows it to the end of the device when its size is known. Overlaps are
//! refused.

use crate::config::model::{Mbr, UNSET_COUNT, parse_c_int, parse_c_uint};
use std::fmt;

/// A mistake in an `mbr` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrError(pub String);

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MbrError {}

fn err<T>(m: impl Into<String>) -> Result<T, MbrError> {
    Err(MbrError(m.into()))
}

const MAX_PARTITIONS: usize = 16;
const PRIMARY: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Part {
    ptype: u8,
    offset: u32,
    count: u32,
    boot: bool,
    expand: bool,
    record_offset: u32,
}

fn is_extended(t: u8) -> bool {
    t == 0x05 || t == 0x0f
}

struct Table {
    parts: [Part; MAX_PARTITIONS],
    logical: usize,
}

fn table(cfg: &Mbr) -> Result<Table, MbrError> {
    let mut parts = [Part::default(); MAX_PARTITIONS];
    let mut found = 0u32;
    let mut logical = 0;
    for p in &cfg.partitions {
        let ix = parse_c_uint(&p.title)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v < MAX_PARTITIONS)
            .ok_or_else(|| {
                MbrError(format!(
                    "partition must be numbered 0 through {}",
                    MAX_PARTITIONS - 1
                ))
            })?;
        if found & (1 << ix) != 0 {
            return err(format!(
                "invalid or duplicate partition number found for {ix}"
            ));
        }
        found |= 1 << ix;
        if ix >= PRIMARY {
            logical = logical.max(ix - PRIMARY + 1);
        }
        if !(0..=0xff).contains(&p.part_type) {
            return err(format!("partition {ix}'s type must be between 0 and 255"));
        }
        let ptype = p.part_type as u8;
        let offset = match p.block_offset.as_deref() {
            None | Some("") => return err(format!("partition {ix}'s block_offset is required")),
            Some(s) => parse_c_uint(s)
                .filter(|&v| v < u64::from(u32::MAX))
                .ok_or_else(|| {
                    MbrError(format!(
                        "partition {ix}'s block_offset must be positive and less than 2^32 - 1: '{s}'"
                    ))
                })? as u32,
        };
        let mut part = Part {
            ptype,
            offset,
            count: 0,
            boot: false,
            expand: false,
            record_offset: 0,
        };
        if is_extended(ptype) {
            if ix != 3 {
                return err("only partition 3 may be specified as the extended partition");
            }
            part.expand = true;
            part.count = if p.block_count >= UNSET_COUNT || p.block_count < 0 {
                1
            } else {
                p.block_count as u32
            };
        } else {
            part.boot = p.boot;
            part.expand = p.expand;
            if p.block_count >= UNSET_COUNT || p.block_count < 0 {
                return err(format!(
                    "partition {ix}'s block-count must be specified and less than 2^31 - 1"
                ));
            }
            part.count = p.block_count as u32;
        }
        parts[ix] = part;
    }
    if logical > 0 {
        if !is_extended(parts[3].ptype) {
            return err(
                "to use more than 4 partitions with MBR, partition 3 must have extended partition type 0xf or 0x5",
            );
        }
        let first = parts[3].offset;
        for (record, p) in (first..).zip(parts.iter_mut().skip(PRIMARY)) {
            if p.ptype == 0 {
                break;
            }
            p.record_offset = record;
        }
    }
    Ok(Table { parts, logical })
}

fn expand(t: &Table, device_blocks: u64) -> Table {
    let mut num = device_blocks.min(u64::from(u32::MAX)) as u32;
    for p in &t.parts {
        num = num.max(p.offset.saturating_add(p.count));
    }
    let mut parts = t.parts;
    for p in parts.iter_mut() {
        if p.expand && num > p.offset.saturating_add(p.count) {
            p.count = num - p.offset;
        }
        p.expand = false;
    }
    Table {
        parts,
        logical: t.logical,
    }
}

fn verify(t: &Table) -> Result<(), MbrError> {
    let mut expanding = false;
    for i in 0..MAX_PARTITIONS {
        let pi = &t.parts[i];
        let (il, ir) = (
            u64::from(pi.offset),
            u64::from(pi.offset) + u64::from(pi.count),
        );
        if pi.ptype == 0 || (il == ir && !pi.expand) {
            continue;
        }
        if expanding {
            return err("a partition can't be specified after the one with \"expand = true\"");
        }
        if pi.expand && i != 3 && !is_extended(pi.ptype) {
            expanding = true;
        }
        for (j, pj) in t.parts.iter().enumerate().skip(i + 1) {
            if pj.ptype == 0 {
                continue;
            }
            let (jl, jr) = (
                u64::from(pj.offset),
                u64::from(pj.offset) + u64::from(pj.count),
            );
            if jl == jr {
                continue;
            }
            let required = i == 3 && is_extended(pi.ptype);
            let overlaps = !(il >= jr || ir <= jl);
            let ebr_i = pi.record_offset > 0
                && u64::from(pi.record_offset) >= jl
                && u64::from(pi.record_offset) < jr;
            let ebr_j = pj.record_offset > 0
                && u64::from(pj.record_offset) >= il
                && u64::from(pj.record_offset) < ir;
            if overlaps != required {
                if !required {
                    return err(format!(
                        "partitions {i} (blocks {il} to {ir}) and {j} (blocks {jl} to {jr}) overlap"
                    ));
                }
                return err(format!(
                    "partition 3, the extended partition, is expected to contain partition {j}"
                ));
            }
            if ebr_j != required {
                if !required {
                    return err(format!(
                        "partition {i} (blocks {il} to {ir}) overlaps the EBR at {} for partition {j}",
                        pj.record_offset
                    ));
                }
                return err(format!(
                    "partition 3, the extended partition, is expected to contain the EBR for partition {j}"
                ));
            }
            if ebr_i {
                return err(format!(
                    "partition {j} (blocks {jl} to {jr}) overlaps the EBR at {} for partition {i}",
                    pi.record_offset
                ));
            }
        }
    }
    Ok(())
}

fn chs(lba: u32, out: &mut [u8]) {
    const SPH: u32 = 63;
    const HPC: u32 = 255;
    if lba <= SPH * HPC * 0x3ff {
        let cyl = lba / (SPH * HPC);
        let head = (lba / SPH) % HPC;
        let sector = lba % SPH + 1;
        out[0] = head as u8;
        out[1] = (((cyl & 0x300) >> 2) | sector) as u8;
        out[2] = (cyl & 0xff) as u8;
    }
}

fn entry(p: &Part, out: &mut [u8]) {
    if p.ptype > 0 {
        out[0] = if p.boot { 0x80 } else { 0 };
        chs(p.offset, &mut out[1..4]);
        out[4] = p.ptype;
        chs(
            p.offset.wrapping_add(p.count).wrapping_sub(1),
            &mut out[5..8],
        );
    } else {
        out[..8].fill(0);
    }
    out[8..12].copy_from_slice(&p.offset.to_le_bytes());
    out[12..16].copy_from_slice(&p.count.to_le_bytes());
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn osip(cfg: &Mbr, out: &mut [u8]) -> Result<(), MbrError> {
    let mut found = 0u32;
    let mut descriptors = [[0i64; 7]; 15];
    let mut largest: i64 = -1;
    for o in &cfg.osii {
        let ix = parse_c_uint(&o.title)
            .filter(|&v| v < 15)
            .ok_or_else(|| MbrError("osii must be numbered 0 through 15".into()))?
            as usize;
        if found & (1 << ix) != 0 {
            return err("invalid or duplicate osii number found");
        }
        found |= 1 << ix;
        largest = largest.max(ix as i64);
        descriptors[ix] = [
            o.os_major,
            o.os_minor,
            o.start_block_offset,
            o.ddr_load_address,
            o.entry_point,
            o.image_size_blocks,
            o.attribute,
        ];
    }
    let num = (largest + 1) as usize;
    if num == 0 {
        return err("need to specify one or more osii");
    }
    out[0..4].copy_from_slice(b"$OS$");
    out[4] = 0;
    out[5] = cfg.osip_minor as u8;
    out[6] = cfg.osip_major as u8;
    out[7] = 0;
    out[8] = cfg.osip_num_pointers as u8;
    out[9] = num as u8;
    let header_size = 32 + 24 * num;
    out[10..12].copy_from_slice(&(header_size as u16).to_le_bytes());
    out[12..32].fill(0);
    for (i, d) in descriptors.iter().take(num).enumerate() {
        let o = &mut out[32 + i * 24..32 + (i + 1) * 24];
        o[0..2].copy_from_slice(&(d[1] as u16).to_le_bytes());
        o[2..4].copy_from_slice(&(d[0] as u16).to_le_bytes());
        o[4..8].copy_from_slice(&(d[2] as u32).to_le_bytes());
        o[8..12].copy_from_slice(&(d[3] as u32).to_le_bytes());
        o[12..16].copy_from_slice(&(d[4] as u32).to_le_bytes());
        o[16..20].copy_from_slice(&(d[5] as u32).to_le_bytes());
        o[20] = d[6] as u8;
        o[21..24].fill(0);
    }
    let mut sum = out[0];
    for b in &out[1..header_size] {
        sum ^= b;
    }
    out[7] = sum;
    Ok(())
}

/// Checks an `mbr` section as fwup does when creating an archive.
pub fn verify_config(cfg: &Mbr) -> Result<(), MbrError> {
    if let Some(code) = &cfg.bootstrap_code {
        if code.len() != 880 || hex_bytes(code).is_none() {
            return err("bootstrap-code should be exactly 440 bytes");
        }
        if cfg.include_osip {
            return err("cannot specify OSIP if including bootstrap code");
        }
    }
    if cfg.include_osip {
        osip(cfg, &mut [0u8; 512])?;
    }
    let t = table(cfg)?;
    verify(&expand(&t, 0))
}

/// The sectors `mbr_write` writes: (block number, 512 bytes) for the MBR and every EBR.
/// `device_blocks` is the device size in 512-byte blocks, 0 if unknown.
pub fn encode(cfg: &Mbr, device_blocks: u64) -> Result<Vec<(u64, [u8; 512])>, MbrError> {
    let t = expand(&table(cfg)?, device_blocks);
    verify(&t)?;
    let mut mbr = [0u8; 512];
    if let Some(code) = &cfg.bootstrap_code {
        let bytes = hex_bytes(code)
            .filter(|b| b.len() == 440)
            .ok_or_else(|| MbrError("bootstrap-code should be exactly 440 bytes".into()))?;
        mbr[..440].copy_from_slice(&bytes);
    } else if cfg.include_osip {
        osip(cfg, &mut mbr)?;
    }
    let signature = cfg.signature.as_deref().and_then(parse_c_uint).unwrap_or(0) as u32;
    mbr[440..444].copy_from_slice(&signature.to_le_bytes());
    for i in 0..PRIMARY {
        entry(&t.parts[i], &mut mbr[446 + i * 16..462 + i * 16]);
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut out = vec![(0u64, mbr)];
    for i in 0..t.logical {
        let p = &t.parts[PRIMARY + i];
        let mut ebr = [0u8; 512];
        let part = Part {
            ptype: p.ptype,
            offset: p.offset.wrapping_sub(p.record_offset),
            count: p.count,
            ..Part::default()
        };
        entry(&part, &mut ebr[446..462]);
        if i + 1 < t.logical {
            let link = Part {
                ptype: 0x0f,
                offset: (i + 1) as u32,
                count: 1,
                ..Part::default()
            };
            entry(&link, &mut ebr[462..478]);
        }
        ebr[510] = 0x55;
        ebr[511] = 0xaa;
        out.push((u64::from(p.record_offset), ebr));
    }
    Ok(out)
}

/// A primary partition entry as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Boot flag.
    pub boot: bool,
    /// Partition type.
    pub ptype: u8,
    /// First block.
    pub offset: u32,
    /// Block count.
    pub count: u32,
}

/// The four primary entries of an MBR, if it has the 55 AA signature.
pub fn decode(sector: &[u8; 512]) -> Option<[Entry; 4]> {
    if sector[510] != 0x55 || sector[511] != 0xaa {
        return None;
    }
    let mut out = [Entry {
        boot: false,
        ptype: 0,
        offset: 0,
        count: 0,
    }; 4];
    for (i, e) in out.iter_mut().enumerate() {
        let b = &sector[446 + i * 16..462 + i * 16];
        *e = Entry {
            boot: b[0] & 0x80 != 0,
            ptype: b[4],
            offset: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            count: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        };
    }
    Some(out)
}

/// Parses a partition number argument (0..=3) for `require-partition-offset`.
pub fn partition_index(s: &str) -> Option<usize> {
    parse_c_int(s)
        .filter(|v| (0..4).contains(v))
        .map(|v| v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{MbrPartition, nowhere};

    fn part(title: &str, off: &str, count: i64, t: i64, boot: bool, expand: bool) -> MbrPartition {
        MbrPartition {
            title: title.into(),
            block_offset: Some(off.into()),
            block_count: count,
            part_type: t,
            boot,
            expand,
        }
    }

    fn mbr(parts: Vec<MbrPartition>) -> Mbr {
        Mbr {
            name: "m".into(),
            span: nowhere(),
            bootstrap_code_host_path: None,
            bootstrap_code: None,
            include_osip: false,
            osip_major: 1,
            osip_minor: 0,
            osip_num_pointers: 1,
            signature: None,
            partitions: parts,
            osii: Vec::new(),
        }
    }

    #[test]
    fn golden_mbr_a_matches_fwup() {
        // The MBR fwup wrote for the golden corpus (complete-v1.img, bytes 0x1be..0x1fe).
        let m = mbr(vec![
            part("0", "2048", 8192, 0xc, true, false),
            part("1", "10240", 4096, 0x83, false, false),
            part("2", "18432", 4096, 0x83, false, false),
        ]);
        let sectors = encode(&m, 22528).unwrap();
        assert_eq!(sectors.len(), 1);
        let s = &sectors[0].1;
        assert_eq!(
            &s[0x1be..0x1ee],
            &[
                0x80, 0x20, 0x21, 0x00, 0x0c, 0xa2, 0x22, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x20,
                0x00, 0x00, 0x00, 0xa2, 0x23, 0x00, 0x83, 0xe3, 0x23, 0x00, 0x00, 0x28, 0x00, 0x00,
                0x00, 0x10, 0x00, 0x00, 0x00, 0x25, 0x25, 0x01, 0x83, 0x66, 0x25, 0x01, 0x00, 0x48,
                0x00, 0x00, 0x00, 0x10, 0x00, 0x00
            ]
        );
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert!(s[..446].iter().all(|&b| b == 0));
    }

    #[test]
    fn logical_partitions_and_expand() {
        let m = mbr(vec![
            part("0", "77323", 32749, 0xc, true, false),
            MbrPartition {
                title: "3".into(),
                block_offset: Some("110072".into()),
                block_count: UNSET_COUNT,
                part_type: 0xf,
                boot: false,
                expand: false,
            },
            part("4", "110080", 272666, 0x83, false, false),
            part("5", "382746", 272666, 0x83, false, false),
            part("6", "655412", 1048576, 0x83, false, true),
        ]);
        verify_config(&m).unwrap();
        let s = encode(&m, 4_000_000).unwrap();
        assert_eq!(
            s.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 110072, 110073, 110074]
        );
        let primary = decode(&s[0].1).unwrap();
        assert_eq!(primary[3].ptype, 0x0f);
        assert_eq!(primary[3].offset, 110072);
        assert_eq!(primary[3].count, 4_000_000 - 110072);
        let ebr0 = decode(&s[1].1).unwrap();
        assert_eq!(
            (ebr0[0].ptype, ebr0[0].offset, ebr0[0].count),
            (0x83, 8, 272666)
        );
        assert_eq!((ebr0[1].ptype, ebr0[1].offset, ebr0[1].count), (0x0f, 1, 1));
        let ebr2 = decode(&s[3].1).unwrap();
        assert_eq!(ebr2[0].count, 4_000_000 - 655412);
        assert_eq!(ebr2[1].ptype, 0);
    }

    #[test]
    fn overlaps_are_refused() {
        let m = mbr(vec![
            part("0", "100", 100, 0xc, false, false),
            part("1", "150", 100, 0x83, false, false),
        ]);
        assert!(verify_config(&m).unwrap_err().0.contains("overlap"));
        let m = mbr(vec![part("0", "100", UNSET_COUNT, 0xc, false, false)]);
        assert!(verify_config(&m).unwrap_err().0.contains("block-count"));
    }
}
