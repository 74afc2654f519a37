//! Applying a task of an archive to a target (`fwup -a`), streaming, refusing before writing.
//!
//! 1. **Open**: the first entry may be `meta.conf.ed25519` (64 bytes), then `meta.conf` must
//!    follow (10 < size < 50 000 bytes). If public keys are given, the archive must be signed
//!    by one of them; nothing has touched the target yet. meta.conf is parsed with `${...}`
//!    substituted from the caller's variables plus `FWUP_META_UUID` and `FWUP_META_NICKNAME`.
//!    From a seekable input ([`open_seekable`]) the ZIP central directory is read first, so
//!    that what the archive holds is known before anything is written.
//! 2. **Select**: the first task, in file order, whose name starts with the requested one and
//!    whose requirements all hold (reading the MBR, FAT files, the U-Boot environment, or
//!    asking [`System`] which partition `/` is on).
//! 3. **Check, before the first write**: every call of the task is parsed and its arguments
//!    checked ([`crate::funcs`]); every range it writes (raw writes with the resource's size,
//!    memsets, trims, FAT volumes, environments, partition tables) must lie inside a target
//!    whose size is fixed (a device, `--max-size`); a resource offered as a delta must have a
//!    delta source in the task, and that source must exist (its raw range inside the target,
//!    its FAT file present). With a central directory every resource the task uses must be in
//!    the archive and each delta is known in advance; on a stream, the first resource's header
//!    is read before `on-init` runs, and later ones are checked as they arrive.
//! 4. **Run**: `on-init`, whose writes are then made durable when they change the environment
//!    (they invalidate the slot about to be written, so they must land before any of its data);
//!    then each archive entry as it streams past: entries the task has an `on-resource` for are
//!    decompressed (or, for a delta, decoded against the running slot, see [`crate::vcdiff`])
//!    straight to their destination while their BLAKE2b-256 is computed, and the digest and
//!    length are checked when the entry ends; other entries are skipped without being
//!    decompressed. A second data-writing call in the same `on-resource` is refused when the
//!    task is parsed. Every referenced resource must appear.
//! 5. **Commit**: only when every resource has been verified, file-system structure is written
//!    and the target synced; then `on-finish` runs, and its writes land in the order that
//!    keeps a power cut bootable, each step synced: the U-Boot environments (which describe
//!    the slots), then file-system changes (GRUB's selection on x86_64), then partition tables
//!    (MBR, GPT); then `reboot_param` values are written.
//! 6. **Failure**: everything not yet written is dropped (so a failed upgrade never switches
//!    slots), `on-error` runs on a clean state and its writes are committed, and the first
//!    error is returned.
//!
//! Memory use does not depend on the size of the archive: data moves in chunks of at most
//! 256 KiB (writes are gathered up to 1 MiB), a delta's window is at most 16 MiB, and only
//! file-system structure is cached.

use crate::archive::{EntryHeader, EntryReader, Index, MAX_CHUNK, ZipReader};
use crate::config::{Config, FileResource, OnResource, Task, Vars};
use crate::create::{check_required_version, resource_name};
use crate::envop::{self, EnvOp};
use crate::error::Error;
use crate::fat::{self, Fat, FatError, VolState};
use crate::funcs::{self, BLOCK, Func, Requirement, Step, TaskSteps};
use crate::hash::Blake2b256;
use crate::meta::{MAX_META_CONF, MIN_META_CONF};
use crate::output::Output;
use crate::progress::{Callback, Tracker};
use crate::sign::{PublicKey, SIGNATURE_LEN, firmware_nickname, firmware_uuid, hex};
use crate::system::System;
use crate::target::Target;
use crate::uboot::{self, Copies, EnvError, Location};
use crate::vcdiff::{self, Decoder};
use std::collections::BTreeMap;
use std::io::{Read, Seek};

const WRITE_GATHER: usize = 1 << 20;

/// An archive whose meta.conf has been read (and its signature checked).
pub struct Opened<R: Read> {
    /// The rest of the archive.
    pub reader: ZipReader<R>,
    /// The parsed meta.conf with `meta-creation-date`, `meta-uuid` and `meta-nickname` filled
    /// in.
    pub config: Config,
    /// meta.conf as stored.
    pub meta_conf: Vec<u8>,
    /// The firmware UUID.
    pub uuid: String,
    /// Whether the archive carries a signature (checked if keys were given).
    pub signed: bool,
    /// The central directory, when the input could be read from its end.
    pub index: Option<Index>,
}

/// Reads the signature and meta.conf at the start of an archive.
///
/// With `keys` non-empty the archive must be signed by one of them. `vars` are the variables
/// `${...}` in meta.conf may use; `FWUP_META_UUID` and `FWUP_META_NICKNAME` are added.
pub fn open<R: Read>(input: R, keys: &[PublicKey], vars: &Vars) -> Result<Opened<R>, Error> {
    let mut reader = ZipReader::new(input);
    let mut entry = reader.next_entry()?.ok_or_else(|| {
        Error::Archive(crate::archive::ArchiveError::Corrupt {
            offset: 0,
            message: "the archive has no entries".into(),
        })
    })?;
    let mut signature = None;
    if entry.name == "meta.conf.ed25519" {
        let sig = reader.read_to_vec(SIGNATURE_LEN + 1)?;
        if sig.len() != SIGNATURE_LEN {
            return Err(corrupt(format!(
                "Unexpected meta.conf.ed25519 size: {}",
                sig.len()
            )));
        }
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(&sig);
        signature = Some(s);
        entry = reader
            .next_entry()?
            .ok_or_else(|| corrupt("Expecting more than meta.conf.ed25519 in archive".into()))?;
    }
    if entry.name != "meta.conf" {
        return Err(corrupt(
            "Expecting meta.conf to be at the beginning of the archive".into(),
        ));
    }
    let meta_conf = reader.read_to_vec(MAX_META_CONF)?;
    if meta_conf.len() <= MIN_META_CONF || meta_conf.len() >= MAX_META_CONF {
        return Err(corrupt(format!(
            "Unexpected meta.conf size: {}",
            meta_conf.len()
        )));
    }
    if !keys.is_empty() {
        let Some(sig) = signature else {
            return Err(Error::Unsigned);
        };
        if !keys.iter().any(|k| k.verify(&meta_conf, &sig)) {
            return Err(Error::BadSignature);
        }
    }
    let uuid = firmware_uuid(&meta_conf);
    let nickname = firmware_nickname(&meta_conf);
    let mut vars = vars.clone();
    vars.set("FWUP_META_UUID", &uuid);
    vars.set("FWUP_META_NICKNAME", &nickname);
    let mut config = crate::meta::read(&meta_conf, &vars)?;
    if config.meta.uuid.as_deref().is_some_and(|u| u != uuid) || config.meta.nickname.is_some() {
        return Err(corrupt(
            "meta.conf isn't allowed to change 'meta-uuid' or 'meta-nickname'".into(),
        ));
    }
    check_required_version(config.require_fwup_version.as_deref())
        .map_err(|e| Error::Unsupported(e.to_string()))?;
    config.meta.uuid = Some(uuid.clone());
    config.meta.nickname = Some(nickname);
    if config.meta.creation_date.is_none() {
        config.meta.creation_date = Some(crate::archive::iso8601(entry.mtime));
    }
    Ok(Opened {
        reader,
        config,
        meta_conf,
        uuid,
        signed: signature.is_some(),
        index: None,
    })
}

/// [`open`] on a seekable input (a file): the central directory is read first, so that the
/// applier knows every entry before it writes anything.
pub fn open_seekable<R: Read + Seek>(
    mut input: R,
    keys: &[PublicKey],
    vars: &Vars,
) -> Result<Opened<R>, Error> {
    let index = Index::read(&mut input)?;
    let mut opened = open(input, keys, vars)?;
    opened.index = Some(index);
    Ok(opened)
}

fn corrupt(message: String) -> Error {
    Error::Archive(crate::archive::ArchiveError::Corrupt { offset: 0, message })
}

/// How to apply.
pub struct ApplyOptions<'a> {
    /// Task name or prefix (`complete`, `upgrade`, ...).
    pub task: &'a str,
    /// Accepted signing keys; empty to accept unsigned archives.
    pub public_keys: &'a [PublicKey],
    /// Variables for `${...}` in meta.conf (the process environment for the CLI).
    pub vars: Vars,
    /// Queries and side effects of the running system.
    pub system: &'a dyn System,
    /// Whether `trim()` may discard blocks (block devices only).
    pub enable_trim: bool,
    /// Progress range reported (normally 0..=100).
    pub progress_range: (u16, u16),
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The task that ran.
    pub task: String,
    /// Firmware UUID of the archive.
    pub uuid: String,
    /// Whether the archive was signed.
    pub signed: bool,
    /// Bytes written to the target.
    pub bytes_written: u64,
}

/// Applies the task `opts.task` of the archive read from `input` to `target`.
pub fn apply<R: Read>(
    input: R,
    target: &mut dyn Target,
    opts: &ApplyOptions<'_>,
    progress: Option<Callback<'_>>,
) -> Result<Applied, Error> {
    let opened = open(input, opts.public_keys, &opts.vars)?;
    apply_opened(opened, target, opts, progress)
}

/// Applies an archive already opened with [`open`] or [`open_seekable`] (with
/// `opts.public_keys` and `opts.vars`), so that callers can check the signature before opening
/// the target.
pub fn apply_opened<R: Read>(
    mut opened: Opened<R>,
    target: &mut dyn Target,
    opts: &ApplyOptions<'_>,
    progress: Option<Callback<'_>>,
) -> Result<Applied, Error> {
    let mut tracker = Tracker::new(opts.progress_range.0, opts.progress_range.1, progress);
    tracker.report(0);
    if opened.signed && opts.public_keys.is_empty() {
        tracker.info("Firmware archive is signed, but signature verification is off.");
    }
    let cfg = &opened.config;
    let mut engine = Engine {
        cfg,
        out: Output::new(target),
        fat: BTreeMap::new(),
        envs: BTreeMap::new(),
        tracker,
        system: opts.system,
        enable_trim: opts.enable_trim,
        reboot_params: Vec::new(),
        deltas: BTreeMap::new(),
    };
    let task = engine
        .find_task(opts.task)?
        .ok_or_else(|| Error::NoTask(opts.task.to_owned()))?;
    log::info!("applying task '{}' of firmware {}", task.name, opened.uuid);
    // Everything that can be checked without the resources' data, before the first write.
    let steps = funcs::parse_task(cfg, task)?;
    let total = engine.compute_progress(&steps);
    engine.tracker.set_total(total);
    engine.preflight(task, &steps, opened.index.as_ref())?;
    let result = engine.run(task, &steps, &mut opened.reader);
    let result = match result {
        Ok(()) => engine.commit(),
        Err(e) => {
            engine.fail(&steps);
            Err(e)
        }
    };
    result?;
    let written = engine.out.bytes_written();
    engine.tracker.complete();
    Ok(Applied {
        task: task.name.clone(),
        uuid: opened.uuid.clone(),
        signed: opened.signed,
        bytes_written: written,
    })
}

/// Result of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Signed, and the signature was checked against a given key.
    GoodSignature,
    /// Signed, but no key was given.
    UnverifiedSignature,
    /// Not signed (and no key was required).
    Unsigned,
}

/// Checks a whole archive without applying it: signature, every resource's length and hash.
/// A delta resource (an entry whose size differs from meta.conf's) can only be checked for
/// being VCDIFF: its result depends on the device it is applied to (as `fwup -V`).
pub fn verify<R: Read>(input: R, keys: &[PublicKey], vars: &Vars) -> Result<Verified, Error> {
    let mut opened = open(input, keys, vars)?;
    let cfg = &opened.config;
    let mut seen = vec![false; cfg.resources.len()];
    let mut chunk = vec![0u8; MAX_CHUNK];
    while let Some(entry) = opened.reader.next_entry()? {
        let name = resource_name(&entry.name);
        if name == "/" || entry.name.ends_with('/') {
            continue;
        }
        let Some(ix) = cfg.resources.iter().position(|r| r.name == name) else {
            return Err(corrupt(format!("Can't find file-resource for {name}")));
        };
        if seen[ix] {
            return Err(corrupt(format!(
                "Processing {name} twice. Archive is corrupt."
            )));
        }
        seen[ix] = true;
        let r = &cfg.resources[ix];
        let expected = r.data_len();
        if let Some(size) = entry.size.filter(|&s| s != expected) {
            if r.length.len() > 1 {
                return Err(Error::Resource {
                    resource: name,
                    message: format!("is {size} bytes in the archive instead of {expected}"),
                });
            }
            let mut magic = [0u8; 4];
            let n = opened.reader.read_chunk(&mut chunk)?;
            magic[..n.min(4)].copy_from_slice(&chunk[..n.min(4)]);
            if magic != [0xD6, 0xC3, 0xC4, 0x00] {
                return Err(Error::Resource {
                    resource: name,
                    message: format!(
                        "is {size} bytes in the archive instead of {expected} and is not a VCDIFF delta"
                    ),
                });
            }
            continue;
        }
        let mut h = Blake2b256::new();
        let mut len = 0u64;
        loop {
            let n = opened.reader.read_chunk(&mut chunk)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            if len > expected {
                return Err(Error::Resource {
                    resource: name,
                    message: format!("holds more than the {expected} bytes meta.conf states"),
                });
            }
            h.update(&chunk[..n]);
        }
        if len != expected {
            return Err(Error::Resource {
                resource: name,
                message: format!("ZIP data length mismatch ({len} bytes, expected {expected})"),
            });
        }
        check_hash(r, &h.finalize())?;
    }
    if let Some(ix) = seen.iter().position(|s| !s) {
        return Err(Error::Resource {
            resource: cfg.resources[ix].name.clone(),
            message: "not found in archive".into(),
        });
    }
    Ok(match (opened.signed, keys.is_empty()) {
        (true, false) => Verified::GoodSignature,
        (true, true) => Verified::UnverifiedSignature,
        (false, _) => Verified::Unsigned,
    })
}

fn check_hash(r: &FileResource, digest: &[u8]) -> Result<(), Error> {
    let expected = r.blake2b_256.as_deref().unwrap_or("");
    if expected.len() != 64 {
        return Err(Error::Resource {
            resource: r.name.clone(),
            message: "invalid blake2b-256 hash in meta.conf".into(),
        });
    }
    if !expected.eq_ignore_ascii_case(&hex(digest)) {
        return Err(Error::Resource {
            resource: r.name.clone(),
            message: "blake2b-256 mismatch: the resource is corrupt".into(),
        });
    }
    Ok(())
}

/// The tasks of an archive, sorted by name (`fwup -l`).
pub fn list<R: Read>(input: R, keys: &[PublicKey]) -> Result<Vec<String>, Error> {
    let opened = open(input, keys, &Vars::default())?;
    let mut names: Vec<String> = opened.config.tasks.iter().map(|t| t.name.clone()).collect();
    names.sort();
    Ok(names)
}

/// The metadata of an archive (`fwup -m`).
pub fn metadata<R: Read>(input: R, keys: &[PublicKey]) -> Result<Config, Error> {
    Ok(open(input, keys, &Vars::default())?.config)
}

#[derive(Clone, Copy)]
enum Ctx<'r> {
    Event,
    Resource(&'r FileResource),
}

/// Where a delta's source lies on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaSource {
    /// `delta-source-raw-offset/count`: a range of the target (bytes).
    Raw {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// `delta-source-fat-offset/path`: a file's extents on the target (bytes).
    Fat {
        /// The file's size.
        len: u64,
        /// `(offset, length)` in file order.
        extents: Vec<(u64, u64)>,
    },
}

/// A delta source read through the applier's view of the target.
struct OutSource<'x, 'o> {
    out: &'x mut Output<'o>,
    src: &'x DeltaSource,
}

impl vcdiff::Source for OutSource<'_, '_> {
    fn len(&self) -> u64 {
        match self.src {
            DeltaSource::Raw { len, .. } | DeltaSource::Fat { len, .. } => *len,
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self.src {
            DeltaSource::Raw { offset: base, .. } => self.out.read(buf, base + offset),
            DeltaSource::Fat { extents, .. } => {
                let mut pos = 0u64;
                let mut done = 0usize;
                for &(at, len) in extents {
                    let want = offset + done as u64;
                    if done == buf.len() {
                        break;
                    }
                    if want < pos + len {
                        let skip = want - pos;
                        let n = ((len - skip) as usize).min(buf.len() - done);
                        self.out.read(&mut buf[done..done + n], at + skip)?;
                        done += n;
                    }
                    pos += len;
                }
                if done < buf.len() {
                    return Err(std::io::Error::other(
                        "read past the end of the source file",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// One environment's copies: as on the disk, and as the task has changed them, with the
/// calls not yet written (replayed if someone else writes the environment meanwhile).
struct EnvState {
    loc: Location,
    disk: Copies,
    cur: Copies,
    ops: Vec<EnvOp>,
}

struct Engine<'a, 'o, 'p> {
    cfg: &'a Config,
    out: Output<'o>,
    fat: BTreeMap<u64, VolState>,
    envs: BTreeMap<String, EnvState>,
    tracker: Tracker<'p>,
    system: &'a dyn System,
    enable_trim: bool,
    reboot_params: Vec<String>,
    /// Delta sources found before the first write, per resource.
    deltas: BTreeMap<String, DeltaSource>,
}

/// Resources at least this large are hashed on a helper thread.
const THREADED_HASH: u64 = 8 << 20;
/// Chunks in flight to the hashing thread.
const HASH_QUEUE: usize = 8;

/// BLAKE2b-256 of a resource. Large resources are hashed on a helper thread, so that hashing
/// (the most expensive step on cores without BLAKE2 acceleration) overlaps decompression and
/// writing. The buffers the archive inflates into come from the hasher's pool
/// ([`Hasher::buffer`]) and are handed to the thread once written ([`Hasher::submit`]), so no
/// byte is copied for hashing; at most `HASH_QUEUE + 2` buffers exist, so memory stays bounded.
enum Hasher {
    Inline(Blake2b256, Vec<u8>),
    Thread {
        tx: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
        back: std::sync::mpsc::Receiver<Vec<u8>>,
        allocated: usize,
        handle: Option<std::thread::JoinHandle<Vec<u8>>>,
    },
}

impl Hasher {
    fn new(len: u64) -> Hasher {
        if len < THREADED_HASH {
            return Hasher::Inline(Blake2b256::new(), Vec::new());
        }
        Hasher::threaded()
    }

    fn threaded() -> Hasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(HASH_QUEUE);
        let (back_tx, back) = std::sync::mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new()
            .name("blake2b".into())
            .spawn(move || {
                let mut h = Blake2b256::new();
                for (buf, n) in rx {
                    h.update(&buf[..n]);
                    let _ = back_tx.send(buf);
                }
                h.finalize().to_vec()
            });
        match spawned {
            Ok(handle) => Hasher::Thread {
                tx: Some(tx),
                back,
                allocated: 0,
                handle: Some(handle),
            },
            Err(_) => Hasher::Inline(Blake2b256::new(), Vec::new()),
        }
    }

    /// A buffer of [`MAX_CHUNK`] bytes to read the next chunk into.
    fn buffer(&mut self) -> Vec<u8> {
        let mut buf = match self {
            Hasher::Inline(_, spare) => std::mem::take(spare),
            Hasher::Thread {
                back, allocated, ..
            } => match back.try_recv() {
                Ok(b) => b,
                Err(_) if *allocated < HASH_QUEUE + 2 => {
                    *allocated += 1;
                    Vec::new()
                }
                Err(_) => back.recv().unwrap_or_default(),
            },
        };
        buf.resize(MAX_CHUNK, 0);
        buf
    }

    /// Hashes `buf[..n]` and takes the buffer back into the pool.
    fn submit(&mut self, buf: Vec<u8>, n: usize) {
        match self {
            Hasher::Inline(h, spare) => {
                h.update(&buf[..n]);
                *spare = buf;
            }
            Hasher::Thread { tx, .. } => {
                if let Some(tx) = tx {
                    let _ = tx.send((buf, n));
                }
            }
        }
    }

    fn finish(self) -> Result<Vec<u8>, Error> {
        match self {
            Hasher::Inline(h, _) => Ok(h.finalize().to_vec()),
            Hasher::Thread {
                mut tx, mut handle, ..
            } => {
                tx.take();
                handle
                    .take()
                    .ok_or_else(|| Error::Task("hashing thread lost".into()))?
                    .join()
                    .map_err(|_| Error::Task("hashing thread failed".into()))
            }
        }
    }
}

/// A resource's stream, consumed by the first function that writes it.
struct Stream<'s, R: Read> {
    zip: &'s mut ZipReader<R>,
    consumed: bool,
    /// Set when the entry is a delta against this source.
    delta: Option<DeltaSource>,
}

/// Where the bytes of a resource stand while they stream (its sparse map).
struct Runs {
    map: Vec<u64>,
    seg: usize,
    in_seg: u64,
    actual: u64,
    read_total: u64,
    last_offset: u64,
}

fn fat_err(func: &Func, e: FatError) -> Error {
    match e {
        FatError::Io(io) => Error::io(func.name(), io),
        other => Error::Fat {
            func: func.name().to_owned(),
            source: other,
        },
    }
}

fn env_err(func: &str, e: EnvError) -> Error {
    Error::Env {
        func: func.to_owned(),
        source: e,
    }
}

fn task_err(func: &Func, msg: impl std::fmt::Display) -> Error {
    Error::Task(format!("{}: {msg}", func.name()))
}

/// fwup's message for a resource whose size is wrong and that has no delta source.
fn not_a_delta(name: &str, size: u64, expected: u64) -> Error {
    Error::Resource {
        resource: name.to_owned(),
        message: format!(
            "File '{name}' isn't expected size ({size} vs {expected}) and xdelta3 patch support not enabled on it. (Add delta-source-raw-offset / delta-source-raw-count or delta-source-fat-offset / delta-source-fat-path)"
        ),
    }
}

impl<'a, 'o, 'p> Engine<'a, 'o, 'p> {
    fn env_location(&self, name: &str) -> Result<Location, Error> {
        let env = self
            .cfg
            .uboot_env(name)
            .ok_or_else(|| Error::Task(format!("can't find uboot-environment reference {name}")))?;
        Location::from_config(env).map_err(|source| Error::EnvLocation {
            name: name.to_owned(),
            source,
        })
    }

    fn requirement_met(&mut self, req: &Requirement) -> bool {
        match req {
            Requirement::PartitionOffset { partition, offset } => {
                self.partition_offset(*partition) == Some(*offset)
            }
            Requirement::FatFileExists { offset, path } => {
                let mut st = VolState::default();
                let Ok(mut fat) = Fat::open(&mut self.out, *offset, &mut st) else {
                    return false;
                };
                fat.exists(path).unwrap_or(false)
            }
            Requirement::FatFileMatch {
                offset,
                path,
                pattern,
            } => {
                let mut st = VolState::default();
                let Ok(mut fat) = Fat::open(&mut self.out, *offset, &mut st) else {
                    return false;
                };
                let pattern = pattern.as_bytes();
                let mut tail: Vec<u8> = Vec::new();
                let mut found = pattern.is_empty();
                let ok = fat.read_file(path, |chunk| {
                    if !found {
                        tail.extend_from_slice(chunk);
                        if tail.windows(pattern.len()).any(|w| w == pattern) {
                            found = true;
                        }
                        let keep = pattern.len().saturating_sub(1);
                        if tail.len() > keep {
                            tail.drain(..tail.len() - keep);
                        }
                    }
                    Ok(())
                });
                ok.is_ok() && found
            }
            Requirement::UbootVariable { env, name, value } => {
                let Ok(loc) = self.env_location(env) else {
                    return false;
                };
                let Ok(copies) = uboot::read_copies(&mut self.out, &loc) else {
                    return false;
                };
                uboot::fwup_read(&loc, &copies)
                    .is_ok_and(|r| r.vars.get(name).map(String::as_str) == Some(value.as_str()))
            }
            Requirement::PathOnDevice { path, device } => self.system.path_on_device(path, device),
            Requirement::PathAtOffset { path, offset } => self.system.path_at_offset(path, *offset),
        }
    }

    fn partition_offset(&mut self, index: usize) -> Option<u64> {
        let s = self.out.sector(0).ok()?;
        crate::mbr::decode(&s).map(|t| u64::from(t[index].offset))
    }

    fn find_task(&mut self, prefix: &str) -> Result<Option<&'a Task>, Error> {
        let cfg = self.cfg;
        for t in &cfg.tasks {
            if !t.name.starts_with(prefix) {
                continue;
            }
            if t.require_partition1_offset >= 0
                && self.partition_offset(1) != Some(t.require_partition1_offset as u64)
            {
                continue;
            }
            // A requirement that does not parse is not met.
            let reqs: Option<Vec<Requirement>> = t
                .reqs
                .iter()
                .map(|r| Requirement::parse(cfg, r).ok())
                .collect();
            let Some(reqs) = reqs else {
                continue;
            };
            if reqs.iter().all(|r| self.requirement_met(r)) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn env_units(&self, env: &str) -> u64 {
        self.env_location(env)
            .map(|l| l.progress_units())
            .unwrap_or(BLOCK)
    }

    fn compute_progress(&self, steps: &TaskSteps) -> u64 {
        let mut total = 0u64;
        let env_units = |e: &str| self.env_units(e);
        for s in &steps.on_init {
            total = total.saturating_add(s.func.units(None, env_units));
        }
        for r in &steps.on_resource {
            let Some(res) = self.cfg.resource(&r.name) else {
                continue;
            };
            let sizes = Some((res.data_len(), res.total_len()));
            for s in &r.steps {
                total = total.saturating_add(s.func.units(sizes, env_units));
            }
        }
        for s in &steps.on_finish {
            total = total.saturating_add(s.func.units(None, env_units));
        }
        total
    }

    /// Refuses, before anything is written, what can be known to fail (see the module's
    /// documentation, step 3).
    fn preflight(
        &mut self,
        task: &'a Task,
        steps: &TaskSteps,
        index: Option<&Index>,
    ) -> Result<(), Error> {
        let hard = self.out.hard_size();
        let size = self.out.size();
        let within = |what: String, start: u64, len: u64| -> Result<(), Error> {
            let end = start.checked_add(len).ok_or_else(|| Error::OutOfRange {
                what: what.clone(),
                end: u64::MAX,
                size: hard.unwrap_or(0),
            })?;
            match hard {
                Some(h) if end > h => Err(Error::OutOfRange { what, end, size: h }),
                _ => Ok(()),
            }
        };
        let blocks = size.unwrap_or(0) / BLOCK;
        let all = steps
            .on_init
            .iter()
            .map(|s| (s, None))
            .chain(steps.on_resource.iter().flat_map(|r| {
                let res = self.cfg.resource(&r.name);
                r.steps.iter().map(move |s| (s, res))
            }))
            .chain(steps.on_finish.iter().map(|s| (s, None)))
            .chain(steps.on_error.iter().map(|s| (s, None)));
        for (step, res) in all {
            let at = |b: u64| b * BLOCK;
            let what = format!("{} at {}", step.func.name(), step.span);
            match &step.func {
                Func::RawWrite { offset } => {
                    let len = res.map_or(0, FileResource::total_len);
                    within(what, at(*offset), len)?;
                }
                Func::RawMemset { offset, count, .. }
                | Func::Trim { offset, count }
                | Func::FatMkfs { offset, count } => within(what, at(*offset), at(*count))?,
                Func::FatWrite { offset, .. }
                | Func::FatMv { offset, .. }
                | Func::FatRm { offset, .. }
                | Func::FatMkdir { offset, .. }
                | Func::FatSetlabel { offset, .. }
                | Func::FatTouch { offset, .. }
                | Func::FatAttrib { offset, .. } => within(what, at(*offset), BLOCK)?,
                Func::FatCp { from, to } => {
                    within(what.clone(), at(from.0), BLOCK)?;
                    within(what, at(to.0), BLOCK)?;
                }
                Func::MbrWrite { mbr } => {
                    if let Some(m) = self.cfg.mbr(mbr) {
                        for (b, sector) in crate::mbr::encode(m, blocks)? {
                            within(what.clone(), at(b), BLOCK)?;
                            // Every partition (primary or logical) lies inside the device.
                            for e in crate::mbr::decode(&sector).into_iter().flatten() {
                                if e.count > 0 && e.ptype != 0x0f && e.ptype != 0x05 {
                                    let start = b + u64::from(e.offset);
                                    within(
                                        format!("{what}: partition at block {start}"),
                                        at(start),
                                        at(u64::from(e.count)),
                                    )?;
                                }
                            }
                        }
                    }
                }
                Func::GptWrite { gpt } => {
                    if let Some(g) = self.cfg.gpt(gpt) {
                        for (o, bytes) in crate::gpt::encode(g, blocks)? {
                            within(what.clone(), o, bytes.len() as u64)?;
                        }
                    }
                }
                Func::UbootClearenv { env }
                | Func::UbootRecover { env }
                | Func::UbootSetenv { env, .. }
                | Func::UbootUnsetenv { env, .. } => {
                    let loc = self.env_location(env)?;
                    within(what, 0, loc.end())?;
                    if let Func::UbootSetenv { name, .. } | Func::UbootUnsetenv { name, .. } =
                        &step.func
                    {
                        myelin_ubootenv::format::check_name(name)
                            .map_err(|e| task_err(&step.func, format!("{e}")))?;
                    }
                }
                _ => {}
            }
        }
        // Delta sources the task names for its resources must make sense, and a delta in
        // the archive needs one.
        for on in &task.on_resource {
            let Some(res) = self.cfg.resource(&on.name) else {
                return Err(corrupt(format!(
                    "Resource '{}' used, but metadata is missing. Archive is corrupt.",
                    on.name
                )));
            };
            let writes = steps
                .on_resource(&on.name)
                .is_some_and(|r| r.steps.iter().any(|s| s.func.writes_resource()));
            if let Some(index) = index {
                let path =
                    crate::create::archive_path(&on.name).map_err(|e| corrupt(e.to_string()))?;
                let Some(entry) = index.get(&path) else {
                    return Err(Error::Resource {
                        resource: on.name.clone(),
                        message: "not found in archive (nothing was written)".into(),
                    });
                };
                if writes && entry.size != res.data_len() {
                    self.delta_for(res, on, entry.size)?;
                }
            }
        }
        Ok(())
    }

    /// Resolves (once) the delta source of a resource whose entry is `size` bytes instead of
    /// meta.conf's length.
    fn delta_for(
        &mut self,
        res: &FileResource,
        on: &OnResource,
        size: u64,
    ) -> Result<DeltaSource, Error> {
        if let Some(d) = self.deltas.get(&res.name) {
            return Ok(d.clone());
        }
        let name = res.name.clone();
        let bad = |message: String| Error::Resource {
            resource: name.clone(),
            message,
        };
        if res.length.len() > 1 {
            return Err(bad(format!(
                "is {size} bytes in the archive instead of {}; a sparse resource cannot be a delta",
                res.data_len()
            )));
        }
        let raw = on
            .delta_source_raw_offset
            .as_deref()
            .filter(|s| !s.is_empty());
        let fat_off = on
            .delta_source_fat_offset
            .as_deref()
            .filter(|s| !s.is_empty());
        let src = if let Some(off) = raw {
            if on
                .delta_source_raw_options
                .as_deref()
                .is_some_and(|o| !o.is_empty())
            {
                return Err(Error::Unsupported(format!(
                    "{name}: delta-source-raw-options (encrypted delta sources) are not supported by myelin-fw"
                )));
            }
            let off = block_offset(off).ok_or_else(|| {
                bad(format!(
                    "delta-source-raw-offset '{off}' is not a block offset"
                ))
            })?;
            let count = on.delta_source_raw_count;
            if count <= 0 || count == crate::config::model::UNSET_COUNT {
                return Err(bad(
                    "delta-source-raw-count must be set with delta-source-raw-offset".into(),
                ));
            }
            let (offset, len) = (off * BLOCK, count as u64 * BLOCK);
            let end = offset.saturating_add(len);
            let limit = self.out.hard_size().or(self.out.size());
            if let Some(l) = limit.filter(|&l| end > l) {
                return Err(bad(format!(
                    "the delta source (bytes {offset}..{end}) lies outside the target ({l} bytes)"
                )));
            }
            DeltaSource::Raw { offset, len }
        } else if let Some(off) = fat_off {
            let off = block_offset(off).ok_or_else(|| {
                bad(format!(
                    "delta-source-fat-offset '{off}' is not a block offset"
                ))
            })?;
            let path = on.delta_source_fat_path.clone().unwrap_or_default();
            let mut st = VolState::default();
            let found =
                Fat::open(&mut self.out, off, &mut st).and_then(|mut fat| fat.file_extents(&path));
            let (len, extents) = found.map_err(|e| {
                bad(format!(
                    "the delta source '{path}' is missing from the FAT file system at block {off}: {e}"
                ))
            })?;
            DeltaSource::Fat { len, extents }
        } else {
            return Err(not_a_delta(&name, size, res.data_len()));
        };
        log::info!(
            "'{}' is a {size}-byte delta; source: {}",
            res.name,
            match &src {
                DeltaSource::Raw { offset, len } => format!("{len} bytes at byte {offset}"),
                DeltaSource::Fat { len, .. } => format!(
                    "'{}' ({len} bytes)",
                    on.delta_source_fat_path.as_deref().unwrap_or("")
                ),
            }
        );
        self.deltas.insert(res.name.clone(), src.clone());
        Ok(src)
    }

    /// Checks an entry's header against meta.conf before its data is used; returns the delta
    /// source if the entry is a delta.
    fn check_entry(
        &mut self,
        res: &FileResource,
        on: &OnResource,
        writes: bool,
        entry: &EntryHeader,
    ) -> Result<Option<DeltaSource>, Error> {
        match entry.size {
            Some(size) if writes && size != res.data_len() => {
                self.delta_for(res, on, size).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn run<R: Read>(
        &mut self,
        task: &'a Task,
        steps: &TaskSteps,
        zip: &mut ZipReader<R>,
    ) -> Result<(), Error> {
        let mut pending: Vec<&'a FileResource> = Vec::new();
        for r in &task.on_resource {
            if let Some(res) = self.cfg.resource(&r.name) {
                pending.push(res);
            }
        }
        // On a stream, the first entry the task uses is read (its header only) before on-init
        // writes anything, so that a delta without a source is refused first.
        let mut first = None;
        if !pending.is_empty() {
            while let Some(entry) = zip.next_entry()? {
                if entry.name.is_empty() || entry.name.ends_with('/') {
                    continue;
                }
                let name = resource_name(&entry.name);
                if let (Some(on), Some(res)) = (task.on_resource(&name), self.cfg.resource(&name)) {
                    let writes = steps
                        .on_resource(&name)
                        .is_some_and(|r| r.steps.iter().any(|s| s.func.writes_resource()));
                    let delta = self.check_entry(res, on, writes, &entry)?;
                    first = Some((name, delta));
                    break;
                }
            }
        }
        for s in &steps.on_init {
            self.call(s, Ctx::Event, None::<&mut Stream<'_, R>>)?;
        }
        // on-init's environment writes invalidate the slot about to be overwritten (its
        // metadata, its validated flag). They must be on the disk before the first byte of that
        // slot changes: otherwise a power cut leaves a half-written slot that the environment
        // still calls valid. An environment whose variables on-init left as they were is not
        // rewritten yet (fwup does not either: its cache writes it at the end).
        self.make_durable(true)?;
        let mut next: Option<(String, Option<DeltaSource>)> = first;
        loop {
            let (name, delta) = match next.take() {
                Some(r) => r,
                None => {
                    let Some(entry) = zip.next_entry()? else {
                        break;
                    };
                    if entry.name.is_empty() || entry.name.ends_with('/') {
                        continue;
                    }
                    let name = resource_name(&entry.name);
                    let (Some(on), Some(res)) = (task.on_resource(&name), self.cfg.resource(&name))
                    else {
                        continue;
                    };
                    let writes = steps
                        .on_resource(&name)
                        .is_some_and(|r| r.steps.iter().any(|s| s.func.writes_resource()));
                    let delta = self.check_entry(res, on, writes, &entry)?;
                    (name, delta)
                }
            };
            let Some(pos) = pending.iter().position(|r| r.name == name) else {
                return Err(corrupt(format!(
                    "Resource '{name}' appears twice in the archive"
                )));
            };
            let res = pending.remove(pos);
            let mut stream = Stream {
                zip: &mut *zip,
                consumed: false,
                delta,
            };
            if let Some(rs) = steps.on_resource(&name) {
                for s in &rs.steps {
                    self.call(s, Ctx::Resource(res), Some(&mut stream))?;
                }
            }
        }
        if let Some(r) = pending.first() {
            return Err(Error::Resource {
                resource: r.name.clone(),
                message: "not found in archive".into(),
            });
        }
        // Every resource is verified: make the data durable before the slot switch.
        self.flush_file_systems()?;
        for s in &steps.on_finish {
            self.call(s, Ctx::Event, None::<&mut Stream<'_, R>>)?;
        }
        Ok(())
    }

    /// Writes everything pending, syncing after each step, in the order that keeps every
    /// moment of a power cut bootable: the U-Boot environments first (they describe the
    /// slots: metadata, validated flags), then file-system structure (where GRUB's boot
    /// selection lives on x86_64), then partition tables (the selection on boards that swap
    /// MBR entries). A boot selection never points at a slot before the environment
    /// describes it; fwup's order is the same (its environment writes happen at the call, its
    /// FAT cache is written at the end). With `init`, an environment whose variables are
    /// unchanged stays pending.
    fn make_durable(&mut self, init: bool) -> Result<(), Error> {
        let mut keep: Vec<String> = Vec::new();
        if init {
            for (name, st) in &self.envs {
                let old = uboot::active(&st.loc, &st.disk).map(|a| a.1);
                let new = uboot::active(&st.loc, &st.cur).map(|a| a.1);
                if old == new {
                    log::debug!(
                        "environment '{name}': on-init left its variables, not written yet"
                    );
                    keep.push(env_key(name));
                }
            }
        }
        let writing: Vec<String> = self
            .envs
            .keys()
            .filter(|n| !keep.contains(&env_key(n)) && self.out.has_deferred(&env_key(n)))
            .cloned()
            .collect();
        if !writing.is_empty() {
            // Held from the re-read to the sync after the write: nobody else writes in between.
            let lock = self.system.lock_environment()?;
            // Without a lock (an image file on a build host) nobody else writes: no re-read.
            if lock.is_some() {
                for name in &writing {
                    self.rebase_env(name)?;
                }
            }
            let envs: Vec<String> = writing.iter().map(|n| env_key(n)).collect();
            self.out
                .commit_deferred_except(|k| !envs.iter().any(|x| x == k))
                .map_err(|e| Error::io("writing the environment", e))?;
            for name in &writing {
                if let Some(st) = self.envs.get_mut(name) {
                    st.disk.clone_from(&st.cur);
                    st.ops.clear();
                }
            }
            let synced = self
                .out
                .sync()
                .map_err(|e| Error::io("syncing the target", e));
            drop(lock);
            synced?;
        }
        self.flush_file_systems()?;
        self.out
            .commit_deferred_except(|k| keep.iter().any(|x| x == k))
            .map_err(|e| Error::io("writing the partition table", e))?;
        self.out
            .sync()
            .map_err(|e| Error::io("syncing the target", e))
    }

    /// Writes the cached file-system structure (FAT tables, directories) and syncs it.
    fn flush_file_systems(&mut self) -> Result<(), Error> {
        self.fat.clear();
        self.out
            .flush_cache()
            .map_err(|e| Error::io("writing file-system structure", e))?;
        self.out
            .sync()
            .map_err(|e| Error::io("syncing the target", e))
    }

    /// Re-reads environment `name` as the target holds it (the caller holds the lock); if
    /// another writer changed it since the task read it, replays the task's calls on top.
    fn rebase_env(&mut self, name: &str) -> Result<(), Error> {
        let Some(st) = self.envs.get_mut(name) else {
            return Ok(());
        };
        let mut fresh = Copies::new();
        for (off, len) in st.loc.ranges() {
            let mut b = vec![0u8; len as usize];
            self.out
                .read_target(&mut b, off)
                .map_err(|e| Error::io("re-reading the environment", e))?;
            fresh.push(b);
        }
        if fresh == st.disk {
            return Ok(());
        }
        log::info!(
            "environment '{name}' was changed by another writer since the task read it: replaying the task's {} call(s) on top",
            st.ops.len()
        );
        st.cur = envop::replay(&st.loc, &fresh, &st.ops)
            .map_err(|e| env_err("replaying uboot_* calls", e))?;
        st.disk = fresh;
        let writes = uboot::safe_writes(&st.loc, &st.disk, &st.cur);
        self.out.defer_ordered(&env_key(name), writes);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Error> {
        self.make_durable(false)?;
        for p in std::mem::take(&mut self.reboot_params) {
            self.system
                .reboot_param(&p)
                .map_err(|e| Error::io("reboot_param", e))?;
        }
        Ok(())
    }

    fn fail(&mut self, steps: &TaskSteps) {
        log::debug!("the task failed: dropping everything not yet written");
        self.fat.clear();
        self.envs.clear();
        self.reboot_params.clear();
        self.out.discard_pending();
        if steps.on_error.is_empty() {
            return;
        }
        let mut ok = true;
        for s in &steps.on_error {
            if self
                .call(s, Ctx::Event, None::<&mut Stream<'_, std::io::Empty>>)
                .is_err()
            {
                ok = false;
                break;
            }
        }
        if ok {
            let _ = self.commit();
        } else {
            self.out.discard_pending();
        }
    }

    /// Writes data straight to the target, forgetting environments it overwrites.
    fn write_direct(&mut self, buf: &[u8], offset: u64) -> Result<(), Error> {
        let end = offset + buf.len() as u64;
        self.envs.retain(|_, st| {
            !st.loc
                .ranges()
                .iter()
                .any(|(o, l)| *o < end && o + l > offset)
        });
        self.out
            .write_direct(buf, offset)
            .map_err(|e| Error::io("writing the target", e))
    }

    /// One `uboot_*` call: read (once per task), change, and record the writes.
    fn env_call(&mut self, func: &Func, env: &str, op: EnvOp) -> Result<(), Error> {
        if !self.envs.contains_key(env) {
            let loc = self.env_location(env)?;
            let copies =
                uboot::read_copies(&mut self.out, &loc).map_err(|e| Error::io(func.name(), e))?;
            self.envs.insert(
                env.to_owned(),
                EnvState {
                    loc,
                    disk: copies.clone(),
                    cur: copies,
                    ops: Vec::new(),
                },
            );
        }
        let Some(st) = self.envs.get_mut(env) else {
            return Err(task_err(func, "environment vanished"));
        };
        op.apply(&st.loc, &mut st.cur)
            .map_err(|e| env_err(func.name(), e))?;
        st.ops.push(op);
        let writes = uboot::safe_writes(&st.loc, &st.disk, &st.cur);
        self.out.defer_ordered(&env_key(env), writes);
        Ok(())
    }

    fn call<R: Read>(
        &mut self,
        step: &Step,
        ctx: Ctx<'_>,
        stream: Option<&mut Stream<'_, R>>,
    ) -> Result<(), Error> {
        let func = &step.func;
        let sizes = match ctx {
            Ctx::Resource(r) => Some((r.data_len(), r.total_len())),
            Ctx::Event => None,
        };
        let units = func.units(sizes, |e| self.env_units(e));
        match func {
            Func::RawWrite { offset } => {
                let (Ctx::Resource(res), Some(stream)) = (ctx, stream) else {
                    return Err(task_err(func, "only usable in on-resource"));
                };
                return self.raw_write(func, res, stream, offset * BLOCK);
            }
            Func::FatWrite { offset, path } => {
                let (Ctx::Resource(res), Some(stream)) = (ctx, stream) else {
                    return Err(task_err(func, "only usable in on-resource"));
                };
                return self.fat_write(func, res, stream, *offset, path);
            }
            Func::RawMemset {
                offset,
                count,
                value,
            } => {
                let (dest, count) = (offset * BLOCK, count * BLOCK);
                let chunk = vec![*value; WRITE_GATHER.min(count as usize)];
                let mut done = 0;
                while done < count {
                    let n = (count - done).min(chunk.len() as u64);
                    self.write_direct(&chunk[..n as usize], dest + done)?;
                    done += n;
                    for _ in 0..n / BLOCK {
                        self.tracker.report(BLOCK);
                    }
                }
                return Ok(());
            }
            Func::Trim { offset, count } => {
                let (off, len) = (offset * BLOCK, count * BLOCK);
                self.out.trim(off, len);
                if self.enable_trim {
                    self.out
                        .discard(off, len)
                        .map_err(|e| Error::io("trim", e))?;
                }
            }
            Func::FatMkfs { offset, count } => {
                self.fat.remove(offset);
                // As fwup: the volume's segments read as zeros from now on, so the free
                // space of the new file system is zero where it is written.
                self.out.trim(offset * BLOCK, count * BLOCK);
                fat::mkfs(&mut self.out, *offset, *count).map_err(|e| fat_err(func, e))?;
            }
            Func::FatMv {
                offset,
                from,
                to,
                replace,
            } => self.with_fat(func, *offset, |fat| {
                if *replace {
                    fat.remove(to)?;
                }
                fat.rename(from, to)
            })?,
            Func::FatRm {
                offset,
                path,
                must_exist,
            } => self.with_fat(func, *offset, |fat| match fat.remove(path) {
                Ok(false) if *must_exist => Err(FatError::NoFile(path.clone())),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            })?,
            Func::FatMkdir { offset, path } => self.with_fat(func, *offset, |f| f.mkdir(path))?,
            Func::FatSetlabel { offset, label } => {
                self.with_fat(func, *offset, |f| f.set_label(label))?
            }
            Func::FatTouch { offset, path } => self.with_fat(func, *offset, |f| f.touch(path))?,
            Func::FatAttrib {
                offset,
                path,
                attrib,
            } => self.with_fat(func, *offset, |f| f.set_attributes(path, attrib))?,
            Func::FatCp { from, to } => {
                fat::copy(
                    &mut self.out,
                    &mut self.fat,
                    (from.0, &from.1),
                    (to.0, &to.1),
                )
                .map_err(|e| fat_err(func, e))?;
            }
            Func::MbrWrite { mbr } => {
                let mbr = self
                    .cfg
                    .mbr(mbr)
                    .ok_or_else(|| task_err(func, format!("can't find mbr reference {mbr}")))?;
                let blocks = self.out.size().unwrap_or(0) / BLOCK;
                let sectors = crate::mbr::encode(mbr, blocks)?;
                self.out.defer(
                    "partition-table",
                    sectors
                        .into_iter()
                        .map(|(b, s)| (b.saturating_mul(BLOCK), s.to_vec()))
                        .collect(),
                );
            }
            Func::GptWrite { gpt } => {
                let gpt = self
                    .cfg
                    .gpt(gpt)
                    .ok_or_else(|| task_err(func, format!("can't find gpt reference {gpt}")))?;
                let blocks = self.out.size().unwrap_or(0) / BLOCK;
                let writes = crate::gpt::encode(gpt, blocks)?;
                self.out.defer("partition-table", writes);
            }
            Func::UbootClearenv { env } => self.env_call(func, env, EnvOp::Clear)?,
            Func::UbootRecover { env } => self.env_call(func, env, EnvOp::Recover)?,
            Func::UbootSetenv { env, name, value } => {
                myelin_ubootenv::format::check_name(name)
                    .map_err(|e| env_err(func.name(), EnvError::Encode(e.into())))?;
                let op = EnvOp::Set {
                    name: name.clone(),
                    value: value.clone(),
                };
                self.env_call(func, env, op)?;
            }
            Func::UbootUnsetenv { env, name } => {
                let op = EnvOp::Unset { name: name.clone() };
                self.env_call(func, env, op)?
            }
            Func::Info { message } => self.tracker.info(message),
            Func::Error { message } => return Err(Error::Task(message.clone())),
            Func::RebootParam { param } => self.reboot_params.push(param.clone()),
        }
        self.tracker.report(units);
        Ok(())
    }

    fn with_fat(
        &mut self,
        func: &Func,
        offset: u64,
        f: impl FnOnce(&mut Fat<'_, '_>) -> Result<(), FatError>,
    ) -> Result<(), Error> {
        let st = self.fat.entry(offset).or_default();
        let mut fat = Fat::open(&mut self.out, offset, st).map_err(|e| fat_err(func, e))?;
        f(&mut fat).map_err(|e| fat_err(func, e))
    }

    /// Hands `data` (the next bytes of a resource's data runs) to `sink` at their offsets.
    fn feed(
        &mut self,
        res: &FileResource,
        runs: &mut Runs,
        mut data: &[u8],
        count_holes: bool,
        sink: &mut impl FnMut(&mut Self, u64, &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while !data.is_empty() {
            if runs.seg >= runs.map.len() {
                return Err(Error::Resource {
                    resource: res.name.clone(),
                    message: format!(
                        "holds more than the {} bytes meta.conf states",
                        res.data_len()
                    ),
                });
            }
            let take = ((runs.map[runs.seg] - runs.in_seg) as usize).min(data.len());
            sink(self, runs.actual, &data[..take])?;
            data = &data[take..];
            runs.actual += take as u64;
            runs.in_seg += take as u64;
            runs.read_total += take as u64;
            if count_holes {
                self.tracker.report(runs.actual - runs.last_offset);
                runs.last_offset = runs.actual;
            } else {
                self.tracker.report(take as u64);
            }
            if runs.in_seg == runs.map[runs.seg] {
                runs.seg += 1;
                runs.in_seg = 0;
                if runs.seg < runs.map.len() {
                    runs.actual = runs.actual.saturating_add(runs.map[runs.seg]);
                    runs.seg += 1;
                }
            }
        }
        Ok(())
    }

    /// Streams a resource (inflated, or decoded from its delta) through `sink(offset, bytes)`,
    /// checking length and hash. Returns the resource's full size and the size of a final hole.
    fn stream<R: Read>(
        &mut self,
        func: &Func,
        res: &FileResource,
        stream: &mut Stream<'_, R>,
        count_holes: bool,
        mut sink: impl FnMut(&mut Self, u64, &[u8]) -> Result<(), Error>,
    ) -> Result<(u64, u64), Error> {
        let map: Vec<u64> = if res.length.is_empty() {
            vec![0]
        } else {
            res.length.clone()
        };
        let data_len = res.data_len();
        let total: u64 = map.iter().fold(0u64, |a, &b| a.saturating_add(b));
        let ending_hole = if map.len() % 2 == 0 {
            map[map.len() - 1]
        } else {
            0
        };
        if stream.consumed {
            return Err(task_err(
                func,
                format!(
                    "didn't write anything and was likely called twice in an on-resource for '{}'. Try a \"cp\" function.",
                    res.name
                ),
            ));
        }
        stream.consumed = true;
        if map.len() > 1 && total > (1u64 << 52) {
            return Err(Error::Resource {
                resource: res.name.clone(),
                message: "sparse map in meta.conf is too large".into(),
            });
        }
        let mut h = Hasher::new(data_len);
        let mut runs = Runs {
            seg: 0,
            in_seg: 0,
            actual: 0,
            read_total: 0,
            last_offset: 0,
            map,
        };
        if runs.map[0] == 0 {
            if runs.map.len() > 2 {
                runs.seg = 2;
                runs.actual = runs.map[1];
            } else {
                runs.seg = runs.map.len();
            }
        }
        if let Some(src) = stream.delta.clone() {
            let mut patch = EntryReader::new(&mut *stream.zip);
            let mut decoder = Decoder::new();
            let mut window = Vec::new();
            loop {
                let more = {
                    let mut source = OutSource {
                        out: &mut self.out,
                        src: &src,
                    };
                    decoder
                        .next_window(&mut patch, &mut source, &mut window)
                        .map_err(|source| Error::Delta {
                            resource: res.name.clone(),
                            source,
                        })?
                };
                if !more {
                    break;
                }
                for piece in window.chunks(MAX_CHUNK) {
                    let mut chunk = h.buffer();
                    chunk[..piece.len()].copy_from_slice(piece);
                    self.feed(res, &mut runs, piece, count_holes, &mut sink)?;
                    h.submit(chunk, piece.len());
                }
            }
        } else {
            loop {
                let mut chunk = h.buffer();
                let n = stream.zip.read_chunk(&mut chunk)?;
                if n == 0 {
                    break;
                }
                self.feed(res, &mut runs, &chunk[..n], count_holes, &mut sink)?;
                h.submit(chunk, n);
            }
        }
        if ending_hole > 0 && count_holes {
            self.tracker.report(ending_hole);
        }
        if runs.read_total != data_len {
            return Err(Error::Resource {
                resource: res.name.clone(),
                message: format!(
                    "{} wrote {} bytes, but should have written {data_len}",
                    func.name(),
                    runs.read_total
                ),
            });
        }
        check_hash(res, &h.finish()?)?;
        Ok((total, ending_hole))
    }

    fn raw_write<R: Read>(
        &mut self,
        func: &Func,
        res: &FileResource,
        stream: &mut Stream<'_, R>,
        dest: u64,
    ) -> Result<(), Error> {
        // Writes are padded to whole 512-byte blocks with zeros, as fwup does.
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_GATHER + 2 * BLOCK as usize);
        let mut start = 0u64;
        let flush =
            |eng: &mut Self, buf: &mut Vec<u8>, start: u64, all: bool| -> Result<(), Error> {
                if all {
                    let padded = buf.len().div_ceil(BLOCK as usize) * BLOCK as usize;
                    buf.resize(padded, 0);
                    eng.write_direct(buf, start)?;
                    buf.clear();
                } else {
                    let whole = buf.len() / BLOCK as usize * BLOCK as usize;
                    eng.write_direct(&buf[..whole], start)?;
                    buf.drain(..whole);
                }
                Ok(())
            };
        let (total, ending_hole) = self.stream(func, res, stream, false, |eng, offset, data| {
            let abs = dest
                .checked_add(offset)
                .filter(|a| a.checked_add(data.len() as u64 + 2 * BLOCK).is_some())
                .ok_or_else(|| task_err(func, "offset out of range"))?;
            let end = start + buf.len() as u64;
            if !buf.is_empty() && abs != end {
                let block_end = end.div_ceil(BLOCK) * BLOCK;
                if abs > end && abs < block_end {
                    buf.resize(buf.len() + (abs - end) as usize, 0);
                } else {
                    flush(eng, &mut buf, start, true)?;
                }
            }
            if buf.is_empty() {
                start = abs / BLOCK * BLOCK;
                buf.resize((abs - start) as usize, 0);
            }
            buf.extend_from_slice(data);
            if buf.len() >= WRITE_GATHER {
                let whole = buf.len() as u64 / BLOCK * BLOCK;
                flush(eng, &mut buf, start, false)?;
                start += whole;
            }
            Ok(())
        })?;
        if !buf.is_empty() {
            flush(self, &mut buf, start, true)?;
        }
        if ending_hole > 0 {
            // A regular file must grow to the resource's full size: write its last block.
            let n = ending_hole.min(BLOCK);
            let zeros = vec![0u8; n as usize];
            let at = dest
                .checked_add(total - n)
                .ok_or_else(|| task_err(func, "offset out of range"))?;
            self.write_direct(&zeros, at)?;
        }
        Ok(())
    }

    fn fat_write<R: Read>(
        &mut self,
        func: &Func,
        res: &FileResource,
        stream: &mut Stream<'_, R>,
        off: u64,
        path: &str,
    ) -> Result<(), Error> {
        let mut fw = {
            let st = self.fat.entry(off).or_default();
            let mut fat = Fat::open(&mut self.out, off, st).map_err(|e| fat_err(func, e))?;
            fat.create(path).map_err(|e| fat_err(func, e))?
        };
        let mut size = 0u64;
        let (total, _) = self.stream(func, res, stream, true, |eng, offset, data| {
            let st = eng.fat.entry(off).or_default();
            let mut fat = Fat::open(&mut eng.out, off, st).map_err(|e| fat_err(func, e))?;
            write_zeros(&mut fat, &mut fw, offset.saturating_sub(size))
                .map_err(|e| fat_err(func, e))?;
            fat.write(&mut fw, data).map_err(|e| fat_err(func, e))?;
            size = offset + data.len() as u64;
            Ok(())
        })?;
        let st = self.fat.entry(off).or_default();
        let mut fat = Fat::open(&mut self.out, off, st).map_err(|e| fat_err(func, e))?;
        write_zeros(&mut fat, &mut fw, total.saturating_sub(size)).map_err(|e| fat_err(func, e))?;
        fat.close(fw).map_err(|e| fat_err(func, e))
    }
}

/// A block number whose byte offset fits 64 bits.
fn block_offset(s: &str) -> Option<u64> {
    crate::config::model::parse_c_uint(s).filter(|o| o.checked_mul(BLOCK).is_some())
}

fn env_key(name: &str) -> String {
    format!("uboot-env:{name}")
}

fn write_zeros(
    fat: &mut Fat<'_, '_>,
    fw: &mut fat::FileWriter,
    mut n: u64,
) -> Result<(), FatError> {
    let zeros = [0u8; 4096];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        fat.write(fw, &zeros[..k])?;
        n -= k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(mut h: Hasher, data: &[u8]) -> Vec<u8> {
        for piece in data.chunks(MAX_CHUNK - 7) {
            let mut buf = h.buffer();
            assert_eq!(buf.len(), MAX_CHUNK);
            buf[..piece.len()].copy_from_slice(piece);
            h.submit(buf, piece.len());
        }
        h.finish().unwrap()
    }

    #[test]
    fn threaded_and_inline_hashes_agree() {
        // More chunks than the pool holds, so buffers are recycled while the thread hashes.
        let data: Vec<u8> = (0..(HASH_QUEUE + 4) * MAX_CHUNK + 12345)
            .map(|i| (i * 7 + i / 4099) as u8)
            .collect();
        let want = Blake2b256::digest(&data).to_vec();
        assert_eq!(digest(Hasher::new(0), &data), want);
        assert_eq!(digest(Hasher::threaded(), &data), want);
        assert!(matches!(Hasher::new(THREADED_HASH), Hasher::Thread { .. }));
    }
}
