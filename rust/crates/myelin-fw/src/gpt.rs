//! GPT partition tables (`gpt` sections and `gpt_write`), encoded as fwup does.
//!
//! ```text
//! LBA 0          protective MBR: one entry, type 0xEE, CHS start 00 02 00, CHS end ff ff ff,
//!                first LBA 1, count = device blocks - 1; 55 AA
//! LBA 1          header: "EFI PART", revision 0x00010000, size 92, header CRC-32, current LBA,
//!                backup LBA, first usable (34), last usable (blocks - 34), disk GUID,
//!                entries LBA (2), 128 entries of 128 bytes, CRC-32 of the 16 KiB entry array
//! LBA 2..34      entries: type GUID, partition GUID, first LBA, last LBA, flags (LE64),
//!                name (UTF-16LE, at most 36 characters)
//! last 33 blocks the entries again, then the backup header (current and backup swapped,
//!                entries at blocks - 33)
//! ```
//!
//! GUIDs are written mixed-endian (the first three groups byte-swapped). `boot = true` sets
//! flag bit 2 (and is folded into `flags` in meta.conf when creating, for old fwup versions).
//! When the device size is unknown (0), it is taken as the end of the last partition plus 33
//! blocks. `expand = true` on the last partition grows it to the end of the usable area.

use crate::config::model::{Gpt, UNSET_COUNT, parse_c_uint};

const MAX_PARTITIONS: usize = 16;
const TABLE_BLOCKS: u64 = 32;
const GPT_BLOCKS: u64 = 1 + TABLE_BLOCKS;
const ENTRY_SIZE: usize = 128;
const ENTRIES: usize = (TABLE_BLOCKS as usize * 512) / ENTRY_SIZE;

/// A mistake in a `gpt` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptError(pub String);

impl std::fmt::Display for GptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GptError {}

/// Parses a GUID written `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` into GPT's mixed-endian bytes.
pub fn guid_mixed_endian(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() < 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let byte = |i: usize| -> Option<u8> { u8::from_str_radix(s.get(i..i + 2)?, 16).ok() };
    let order: [(usize, usize); 16] = [
        (0, 3),
        (2, 2),
        (4, 1),
        (6, 0),
        (9, 5),
        (11, 4),
        (14, 7),
        (16, 6),
        (19, 8),
        (21, 9),
        (24, 10),
        (26, 11),
        (28, 12),
        (30, 13),
        (32, 14),
        (34, 15),
    ];
    let mut out = [0u8; 16];
    for (pos, idx) in order {
        out[idx] = byte(pos)?;
    }
    Some(out)
}

#[derive(Clone, Copy)]
struct Part {
    valid: bool,
    offset: u32,
    count: u32,
    flags: u64,
    ptype: [u8; 16],
    guid: [u8; 16],
    name: [u8; 72],
    expand: bool,
}

fn partitions(cfg: &Gpt) -> Result<[Part; MAX_PARTITIONS], GptError> {
    let mut parts = [Part {
        valid: false,
        offset: 0,
        count: 0,
        flags: 0,
        ptype: [0; 16],
        guid: [0; 16],
        name: [0; 72],
        expand: false,
    }; MAX_PARTITIONS];
    let mut found = 0u32;
    for p in &cfg.partitions {
        let ix = parse_c_uint(&p.title)
            .filter(|&v| (v as usize) < MAX_PARTITIONS)
            .ok_or_else(|| {
                GptError(format!(
                    "partition must be numbered 0 through {}",
                    MAX_PARTITIONS - 1
                ))
            })? as usize;
        if found & (1 << ix) != 0 {
            return Err(GptError(format!(
                "invalid or duplicate partition number found for {ix}"
            )));
        }
        found |= 1 << ix;
        let ptype = p
            .part_type
            .as_deref()
            .and_then(guid_mixed_endian)
            .ok_or_else(|| GptError(format!("partition {ix}'s type must set to a UUID")))?;
        let guid = p
            .guid
            .as_deref()
            .and_then(guid_mixed_endian)
            .ok_or_else(|| GptError(format!("partition {ix} must have a valid guid")))?;
        let mut name = [0u8; 72];
        for (i, c) in p.name.bytes().take(36).enumerate() {
            name[i * 2] = c;
        }
        let offset = p
            .block_offset
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GptError(format!("partition {ix}'s block_offset is required")))?;
        let offset = parse_c_uint(offset)
            .filter(|&v| v < u64::from(u32::MAX))
            .ok_or_else(|| {
                GptError(format!(
                    "partition {ix}'s block_offset must be positive and less than 2^32 - 1: '{offset}'"
                ))
            })? as u32;
        if p.block_count >= UNSET_COUNT || p.block_count < 0 {
            return Err(GptError(format!(
                "partition {ix}'s block-count must be specified and less than 2^31 - 1"
            )));
        }
        let mut flags = parse_c_uint(&p.flags)
            .ok_or_else(|| GptError(format!("error parsing partition {ix}'s flags")))?;
        if p.boot {
            flags |= 4;
        }
        parts[ix] = Part {
            valid: true,
            offset,
            count: p.block_count as u32,
            flags,
            ptype,
            guid,
            name,
            expand: p.expand,
        };
    }
    if found == 0 {
        return Err(GptError("empty partition table?".into()));
    }
    Ok(parts)
}

fn verify(parts: &[Part; MAX_PARTITIONS]) -> Result<(), GptError> {
    let mut expanding = false;
    for (i, p) in parts.iter().enumerate() {
        if !p.valid {
            continue;
        }
        let (il, ir) = (
            u64::from(p.offset),
            u64::from(p.offset) + u64::from(p.count),
        );
        if il == ir && !p.expand {
            continue;
        }
        if expanding {
            return Err(GptError(
                "a partition can't be specified after the one with \"expand = true\"".into(),
            ));
        }
        if p.expand {
            expanding = true;
        }
        for (j, q) in parts.iter().enumerate() {
            if !q.valid || i == j {
                continue;
            }
            let (jl, jr) = (
                u64::from(q.offset),
                u64::from(q.offset) + u64::from(q.count),
            );
            if (il >= jl && il < jr) || (ir > jl && ir <= jr) {
                return Err(GptError(format!(
                    "partitions {i} (blocks {il} to {ir}) and {j} (blocks {jl} to {jr}) overlap"
                )));
            }
        }
    }
    Ok(())
}

/// Checks a `gpt` section as fwup does when creating an archive.
pub fn verify_config(cfg: &Gpt) -> Result<(), GptError> {
    if cfg.guid.as_deref().and_then(guid_mixed_endian).is_none() {
        return Err(GptError("GPT must have a valid disk guid".into()));
    }
    verify(&partitions(cfg)?)
}

fn entries(parts: &[Part; MAX_PARTITIONS], num_blocks: u64) -> Vec<u8> {
    let mut out = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (i, p) in parts.iter().enumerate() {
        if !p.valid {
            continue;
        }
        let mut count = u64::from(p.count);
        if p.expand && num_blocks > u64::from(p.offset) + count + GPT_BLOCKS {
            count = num_blocks - GPT_BLOCKS - 1 - u64::from(p.offset);
        }
        let e = &mut out[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
        e[0..16].copy_from_slice(&p.ptype);
        e[16..32].copy_from_slice(&p.guid);
        e[32..40].copy_from_slice(&u64::from(p.offset).to_le_bytes());
        e[40..48].copy_from_slice(&(u64::from(p.offset) + count).wrapping_sub(1).to_le_bytes());
        e[48..56].copy_from_slice(&p.flags.to_le_bytes());
        e[56..128].copy_from_slice(&p.name);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut [u8],
    current: u64,
    backup: u64,
    first: u64,
    last: u64,
    disk: &[u8; 16],
    table: u64,
    table_crc: u32,
) {
    out.fill(0);
    out[0..8].copy_from_slice(b"EFI PART");
    out[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    out[12..16].copy_from_slice(&92u32.to_le_bytes());
    out[24..32].copy_from_slice(&current.to_le_bytes());
    out[32..40].copy_from_slice(&backup.to_le_bytes());
    out[40..48].copy_from_slice(&first.to_le_bytes());
    out[48..56].copy_from_slice(&last.to_le_bytes());
    out[56..72].copy_from_slice(disk);
    out[72..80].copy_from_slice(&table.to_le_bytes());
    out[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    out[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    out[88..92].copy_from_slice(&table_crc.to_le_bytes());
    let crc = crc32fast::hash(&out[..92]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// The writes of `gpt_write`: (byte offset, bytes) for the protective MBR with the primary
/// table, and for the backup table. `device_blocks` is 0 when unknown.
pub fn encode(cfg: &Gpt, device_blocks: u64) -> Result<Vec<(u64, Vec<u8>)>, GptError> {
    let parts = partitions(cfg)?;
    verify(&parts)?;
    let disk = cfg
        .guid
        .as_deref()
        .and_then(guid_mixed_endian)
        .ok_or_else(|| GptError("GPT must have a valid disk guid".into()))?;
    let num_blocks = if device_blocks == 0 {
        parts
            .iter()
            .filter(|p| p.valid)
            .map(|p| u64::from(p.offset) + u64::from(p.count))
            .max()
            .unwrap_or(0)
            + GPT_BLOCKS
            + 1
    } else {
        device_blocks.min(u64::from(u32::MAX))
    };
    if num_blocks < 2 * GPT_BLOCKS + 2 {
        return Err(GptError(format!(
            "the device ({num_blocks} blocks) is too small for a GPT"
        )));
    }
    let table = entries(&parts, num_blocks);
    let table_crc = crc32fast::hash(&table);
    let mut primary = vec![0u8; 512 * (1 + GPT_BLOCKS as usize)];
    primary[446 + 2] = 0x02;
    primary[446 + 4] = 0xee;
    primary[446 + 5..446 + 8].fill(0xff);
    primary[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    primary[446 + 12..446 + 16].copy_from_slice(&((num_blocks - 1) as u32).to_le_bytes());
    primary[510] = 0x55;
    primary[511] = 0xaa;
    let first = 1 + GPT_BLOCKS;
    let last = num_blocks - GPT_BLOCKS - 1;
    header(
        &mut primary[512..1024],
        1,
        num_blocks - 1,
        first,
        last,
        &disk,
        2,
        table_crc,
    );
    primary[1024..].copy_from_slice(&table);
    let mut secondary = vec![0u8; 512 * GPT_BLOCKS as usize];
    secondary[..table.len()].copy_from_slice(&table);
    let backup_table = num_blocks - GPT_BLOCKS;
    let hdr = secondary.len() - 512;
    header(
        &mut secondary[hdr..],
        num_blocks - 1,
        1,
        first,
        last,
        &disk,
        backup_table,
        table_crc,
    );
    Ok(vec![(0, primary), (backup_table * 512, secondary)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{GptPartition, nowhere};

    #[test]
    fn mixed_endian_guid() {
        let g = guid_mixed_endian("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        assert_eq!(
            g,
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert!(guid_mixed_endian("nope").is_none());
    }

    #[test]
    fn table_layout() {
        let gpt = Gpt {
            name: "g".into(),
            span: nowhere(),
            guid: Some("b443fbeb-2c93-481b-88b3-0ecb0aeba911".into()),
            partitions: vec![GptPartition {
                title: "0".into(),
                block_offset: Some("2048".into()),
                block_count: 4096,
                part_type: Some("0fc63daf-8483-4772-8e79-3d69d8477de4".into()),
                guid: Some("5278721d-0089-4768-85df-b8f1b97e6684".into()),
                name: "root".into(),
                flags: "0".into(),
                expand: true,
                boot: true,
            }],
        };
        let w = encode(&gpt, 100_000).unwrap();
        let (p, s) = (&w[0].1, &w[1].1);
        assert_eq!(&p[512..520], b"EFI PART");
        assert_eq!(w[1].0, (100_000 - 33) * 512);
        let last = u64::from_le_bytes(p[1024 + 40..1024 + 48].try_into().unwrap());
        assert_eq!(last, 100_000 - 34 - 1);
        assert_eq!(p[1024 + 48], 4);
        assert_eq!(
            &p[1024 + 56..1024 + 64],
            &[b'r', 0, b'o', 0, b'o', 0, b't', 0]
        );
        // The header CRC covers the 92 header bytes with the CRC field zeroed.
        let mut h = p[512..604].to_vec();
        let stored = u32::from_le_bytes(h[16..20].try_into().unwrap());
        h[16..20].fill(0);
        assert_eq!(crc32fast::hash(&h), stored);
        assert_eq!(&s[..16384], &p[1024..]);
    }
}
