//! `myelin-fw delta OLD.fw NEW.fw -o DELTA.fw`: a delta archive as fwup's documentation makes
//! one by hand (`xdelta3 -A -S -f -s old/data/NAME new/data/NAME patch/data/NAME`, then the
//! patch zipped over the entry in a copy of the new archive).
//!
//! * The signature and meta.conf of NEW are kept byte for byte (the signature covers
//!   meta.conf only, and meta.conf records the size and BLAKE2b-256 of each *decoded*
//!   resource, so they stay valid); entries keep their order.
//! * A resource becomes a delta when a task of NEW names a delta source for it
//!   (`delta-source-raw-*` or `delta-source-fat-*`), it is not sparse, OLD holds a resource of
//!   the same name (the bytes the device's running slot holds), and the delta is smaller than
//!   the resource. Its entry then holds the VCDIFF bytes ([`crate::vcdiff::encode`]), deflated;
//!   its size differs from meta.conf's length, which is how an applier knows it is a delta.
//! * Every delta is decoded against its source and checked against meta.conf's BLAKE2b-256
//!   before the archive is written.
//!
//! A delta archive only applies to devices running OLD, with tasks that have delta sources:
//! fwup and myelin-fw refuse it elsewhere (for instance `complete`) before writing.

use crate::archive::{MAX_CHUNK, ZipReader, ZipWriter};
use crate::config::Config;
use crate::create::{archive_path, resource_name};
use crate::error::Error;
use crate::hash::Blake2b256;
use crate::sign::hex;
use crate::vcdiff::{self, EncodeOptions};
use std::io::{Read, Write};

/// What [`make`] did to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEntry {
    /// Resource name.
    pub name: String,
    /// Its size (decoded).
    pub size: u64,
    /// The delta's size, if it became one.
    pub delta: Option<u64>,
}

/// Largest resource read into memory (source and target each).
pub const MAX_RESOURCE: usize = 4 << 30;

fn read_entry<R: Read>(r: &mut ZipReader<R>) -> Result<Vec<u8>, Error> {
    Ok(r.read_to_vec(MAX_RESOURCE)?)
}

fn wants_delta(cfg: &Config, name: &str) -> bool {
    cfg.tasks.iter().any(|t| {
        t.on_resource(name).is_some_and(|on| {
            on.delta_source_raw_offset
                .as_deref()
                .is_some_and(|s| !s.is_empty())
                || on
                    .delta_source_fat_offset
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
        })
    })
}

/// Writes to `out` the delta archive that takes a device from `old` to `new` (both `.fw`
/// archives, read front to back); deflate `level` as for `create`.
pub fn make<R1: Read, R2: Read, W: Write>(
    old: R1,
    new: R2,
    out: W,
    level: u32,
    opts: &EncodeOptions,
) -> Result<Vec<DeltaEntry>, Error> {
    // The old resources, by name (they are the sources).
    let mut sources = std::collections::BTreeMap::new();
    let mut o = ZipReader::new(old);
    while let Some(e) = o.next_entry()? {
        if let Some(rest) = e.name.strip_prefix("data/") {
            sources.insert(rest.to_owned(), read_entry(&mut o)?);
        }
    }
    let mut r = ZipReader::new(new);
    let mut w = ZipWriter::new(out, level);
    let mut cfg: Option<Config> = None;
    let mut report = Vec::new();
    let wio = |e| Error::io("writing the delta archive", e);
    while let Some(e) = r.next_entry()? {
        if e.name == "meta.conf.ed25519" {
            let sig = r.read_to_vec(crate::sign::SIGNATURE_LEN + 1)?;
            w.add_stored(&e.name, &sig, None).map_err(wio)?;
            continue;
        }
        if e.name == "meta.conf" {
            let meta = r.read_to_vec(crate::meta::MAX_META_CONF)?;
            cfg = Some(crate::meta::read(&meta, &crate::config::Vars::default())?);
            w.add_deflated(&e.name, &meta, Some(e.mtime as u32))
                .map_err(wio)?;
            continue;
        }
        let Some(cfg) = cfg.as_ref() else {
            return Err(Error::Task(
                "Invalid firmware. meta.conf must be at the beginning of archive".into(),
            ));
        };
        let name = resource_name(&e.name);
        let data = read_entry(&mut r)?;
        let res = cfg.resource(&name);
        let mut delta = None;
        if let (Some(res), Some(src)) = (res, sources.get(&name)) {
            if res.length.len() <= 1 && wants_delta(cfg, &name) {
                let patch = vcdiff::encode(src, &data, opts);
                // Check it as an applier will: decode, then meta.conf's hash.
                let decoded = vcdiff::decode_all(&patch, src).map_err(|source| Error::Delta {
                    resource: name.clone(),
                    source,
                })?;
                let digest = hex(&Blake2b256::digest(&decoded));
                if res.blake2b_256.as_deref() != Some(digest.as_str()) {
                    return Err(Error::Resource {
                        resource: name.clone(),
                        message: "the delta does not rebuild the resource meta.conf describes"
                            .into(),
                    });
                }
                if patch.len() < data.len() && patch.len() as u64 != res.data_len() {
                    delta = Some(patch);
                }
            }
        }
        let path = archive_path(&name).map_err(|e| Error::Task(e.to_string()))?;
        let bytes = delta.as_deref().unwrap_or(&data);
        let mut entry = w
            .start_deflated(&path, Some(bytes.len() as u64), None)
            .map_err(wio)?;
        for piece in bytes.chunks(MAX_CHUNK) {
            entry.write_all(piece).map_err(wio)?;
        }
        entry.finish().map_err(wio)?;
        report.push(DeltaEntry {
            name,
            size: data.len() as u64,
            delta: delta.map(|d| d.len() as u64),
        });
    }
    w.finish().map_err(wio)?;
    Ok(report)
}
