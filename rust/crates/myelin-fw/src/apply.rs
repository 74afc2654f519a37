//! Applying a task of an archive to a target (`fwup -a`), streaming.
//!
//! 1. **Open**: the first entry may be `meta.conf.ed25519` (64 bytes), then `meta.conf` must
//!    follow (10 < size < 50 000 bytes). If public keys are given, the archive must be signed
//!    by one of them; nothing has touched the target yet. meta.conf is parsed with `${...}`
//!    substituted from the caller's variables plus `FWUP_META_UUID` (the firmware UUID).
//! 2. **Select**: the first task, in file order, whose name starts with the requested one and
//!    whose requirements all hold (reading the MBR, FAT files, the U-Boot environment, or
//!    asking [`System`] which partition `/` is on).
//! 3. **Run**: `on-init`, whose writes are then made durable (they invalidate the slot about to
//!    be written, so they must land before any of its data); then each archive entry as it
//!    streams past: entries the task has an
//!    `on-resource` for are decompressed straight to their destination while their BLAKE2b-256
//!    is computed, and the digest (and length) is checked when the entry ends; other entries
//!    are skipped (their CRC still checked). A second data-writing call in the same
//!    `on-resource` gets no data and fails, as in fwup. Every referenced resource must appear.
//! 4. **Commit**: only when every resource has been verified, file-system structure is written
//!    and the target synced; then `on-finish` runs; its file-system changes are written, then
//!    the deferred slot-switching writes (U-Boot environment, MBR, GPT) in the order they were
//!    last changed, then the target is synced again and `reboot_param` values are written.
//! 5. **Failure**: everything not yet written is dropped (so a failed upgrade never switches
//!    slots), `on-error` runs on a clean state and its writes are committed, and the first
//!    error is returned.
//!
//! Memory use does not depend on the size of the archive: data moves in chunks of at most
//! 256 KiB (writes are gathered up to 1 MiB), and only file-system structure is cached.

use crate::archive::{MAX_CHUNK, ZipReader};
use crate::config::model::{parse_c_int, parse_c_uint};
use crate::config::{Call, Config, FileResource, Task, Vars};
use crate::create::{check_required_version, resource_name};
use crate::error::Error;
use crate::fat::{self, Fat, FatError, VolState};
use crate::hash::Blake2b256;
use crate::meta::{MAX_META_CONF, MIN_META_CONF};
use crate::output::Output;
use crate::progress::{Callback, Tracker};
use crate::sign::{PublicKey, SIGNATURE_LEN, firmware_uuid, hex};
use crate::system::System;
use crate::target::Target;
use crate::uboot::{self, Location, Txn};
use std::collections::BTreeMap;
use std::io::Read;

const BLOCK: u64 = 512;
const WRITE_GATHER: usize = 1 << 20;

/// An archive whose meta.conf has been read (and its signature checked).
pub struct Opened<R: Read> {
    /// The rest of the archive.
    pub reader: ZipReader<R>,
    /// The parsed meta.conf with `meta-creation-date` and `meta-uuid` filled in.
    pub config: Config,
    /// meta.conf as stored.
    pub meta_conf: Vec<u8>,
    /// The firmware UUID.
    pub uuid: String,
    /// Whether the archive carries a signature (checked if keys were given).
    pub signed: bool,
}

/// Reads the signature and meta.conf at the start of an archive.
///
/// With `keys` non-empty the archive must be signed by one of them. `vars` are the variables
/// `${...}` in meta.conf may use; `FWUP_META_UUID` is added.
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
    let mut vars = vars.clone();
    vars.set("FWUP_META_UUID", &uuid);
    let mut config = crate::meta::read(&meta_conf, &vars)?;
    if config.meta.uuid.as_deref().is_some_and(|u| u != uuid) || config.meta.nickname.is_some() {
        return Err(corrupt(
            "meta.conf isn't allowed to change 'meta-uuid' or 'meta-nickname'".into(),
        ));
    }
    check_required_version(config.require_fwup_version.as_deref()).map_err(Error::Unsupported)?;
    config.meta.uuid = Some(uuid.clone());
    if config.meta.creation_date.is_none() {
        config.meta.creation_date = Some(crate::archive::iso8601(entry.mtime));
    }
    Ok(Opened {
        reader,
        config,
        meta_conf,
        uuid,
        signed: signature.is_some(),
    })
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

/// Applies an archive already opened with [`open`] (with `opts.public_keys` and
/// `opts.vars`), so that callers can check the signature before opening the target.
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
    // Only now is the target touched.
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
    };
    let task = engine
        .find_task(opts.task)?
        .ok_or_else(|| Error::NoTask(opts.task.to_owned()))?;
    let total = engine.compute_progress(task)?;
    engine.tracker.set_total(total);
    let result = engine.run(task, &mut opened.reader);
    let result = match result {
        Ok(()) => engine.commit().map(|_| ()),
        Err(e) => {
            engine.fail(task);
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
        if let Some(size) = entry.size {
            if size != expected {
                return Err(Error::Unsupported(format!(
                    "'{name}' is {size} bytes in the archive instead of {expected}: delta (xdelta3) resources are not supported"
                )));
            }
        }
        let mut h = Blake2b256::new();
        let mut len = 0u64;
        loop {
            let n = opened.reader.read_chunk(&mut chunk)?;
            if n == 0 {
                break;
            }
            h.update(&chunk[..n]);
            len += n as u64;
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
    Init,
    Finish,
    Error,
    Resource(&'r FileResource),
}

struct Engine<'a, 'o, 'p> {
    cfg: &'a Config,
    out: Output<'o>,
    fat: BTreeMap<u64, VolState>,
    envs: BTreeMap<String, Txn>,
    tracker: Tracker<'p>,
    system: &'a dyn System,
    enable_trim: bool,
    reboot_params: Vec<String>,
}

fn task_err(call: &Call, msg: impl std::fmt::Display) -> Error {
    Error::Task(format!("{}: {msg}", call.name()))
}

fn fat_err(call: &Call, e: FatError) -> Error {
    match e {
        FatError::Io(io) => Error::io(call.name(), io),
        other => task_err(call, format!("{}: {other}", call.args[1..].join(", "))),
    }
}

/// Argument `i` (a block count or offset) in bytes.
fn bytes(call: &Call, i: usize) -> Result<u64, Error> {
    num(call, i)?.checked_mul(BLOCK).ok_or_else(|| {
        task_err(
            call,
            format!("argument {i} ('{}') is too large", call.arg(i)),
        )
    })
}

fn num(call: &Call, i: usize) -> Result<u64, Error> {
    parse_c_uint(call.arg(i)).ok_or_else(|| {
        task_err(
            call,
            format!(
                "argument {i} ('{}') is not a non-negative integer",
                call.arg(i)
            ),
        )
    })
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
}

impl<'a, 'o, 'p> Engine<'a, 'o, 'p> {
    fn env_location(&self, name: &str) -> Result<Location, String> {
        let env = self
            .cfg
            .uboot_env(name)
            .ok_or_else(|| format!("can't find uboot-environment reference {name}"))?;
        Location::from_config(env)
    }

    fn requirement_met(&mut self, call: &Call) -> bool {
        match call.name() {
            "require-partition-offset" => {
                let (Some(p), Some(off)) = (
                    crate::mbr::partition_index(call.arg(1)),
                    parse_c_uint(call.arg(2)),
                ) else {
                    return false;
                };
                self.partition_offset(p) == Some(off)
            }
            "require-fat-file-exists" | "require-fat-file-match" => {
                let Some(off) = parse_c_uint(call.arg(1)) else {
                    return false;
                };
                let mut st = VolState::default();
                let Ok(mut fat) = Fat::open(&mut self.out, off, &mut st) else {
                    return false;
                };
                if call.name() == "require-fat-file-exists" {
                    return call.args.len() == 3 && fat.exists(call.arg(2)).unwrap_or(false);
                }
                if call.args.len() != 4 {
                    return false;
                }
                let pattern = call.arg(3).as_bytes().to_vec();
                let mut tail: Vec<u8> = Vec::new();
                let mut found = pattern.is_empty();
                let ok = fat.read_file(call.arg(2), |chunk| {
                    if !found {
                        tail.extend_from_slice(chunk);
                        if tail.windows(pattern.len()).any(|w| w == pattern.as_slice()) {
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
            "require-uboot-variable" => {
                let Ok(loc) = self.env_location(call.arg(1)) else {
                    return false;
                };
                match uboot::read(&mut self.out, &loc) {
                    Ok(Some(cur)) => {
                        call.args.len() == 4
                            && cur.vars.get(call.arg(2)).map(String::as_str) == Some(call.arg(3))
                    }
                    _ => false,
                }
            }
            "require-path-on-device" => {
                call.args.len() == 3 && self.system.path_on_device(call.arg(1), call.arg(2))
            }
            "require-path-at-offset" => match parse_c_uint(call.arg(2)) {
                Some(off) if call.args.len() == 3 => self.system.path_at_offset(call.arg(1), off),
                _ => false,
            },
            _ => false,
        }
    }

    fn partition_offset(&mut self, index: usize) -> Option<u64> {
        let s = self.out.sector(0).ok()?;
        crate::mbr::decode(&s).map(|t| u64::from(t[index].offset))
    }

    fn find_task(&mut self, prefix: &str) -> Result<Option<&'a Task>, Error> {
        for t in &self.cfg.tasks {
            if !t.name.starts_with(prefix) {
                continue;
            }
            if t.require_partition1_offset >= 0
                && self.partition_offset(1) != Some(t.require_partition1_offset as u64)
            {
                continue;
            }
            let reqs = t.reqs.clone();
            if reqs.iter().all(|r| self.requirement_met(r)) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn units(&self, call: &Call, ctx: Ctx<'_>) -> Result<u64, Error> {
        Ok(match call.name() {
            "raw_write" => match ctx {
                Ctx::Resource(r) => r.data_len(),
                _ => 0,
            },
            "fat_write" => match ctx {
                Ctx::Resource(r) => r.total_len(),
                _ => 0,
            },
            "raw_memset" => num(call, 2)?.saturating_mul(BLOCK),
            "trim" => num(call, 2)? / 256,
            "gpt_write" => 2 * 33 * BLOCK,
            "uboot_clearenv" | "uboot_recover" | "uboot_setenv" | "uboot_unsetenv" => self
                .env_location(call.arg(1))
                .map(|l| l.progress_units())
                .unwrap_or(BLOCK),
            "error" | "info" => 0,
            _ => BLOCK,
        })
    }

    fn compute_progress(&self, task: &Task) -> Result<u64, Error> {
        let mut total = 0;
        if let Some(e) = &task.on_init {
            for c in &e.funcs {
                total += self.units(c, Ctx::Init)?;
            }
        }
        for r in &task.on_resource {
            let Some(res) = self.cfg.resource(&r.name) else {
                continue;
            };
            for c in &r.funcs {
                total += self.units(c, Ctx::Resource(res))?;
            }
        }
        if let Some(e) = &task.on_finish {
            for c in &e.funcs {
                total += self.units(c, Ctx::Finish)?;
            }
        }
        Ok(total)
    }

    fn run<R: Read>(&mut self, task: &'a Task, zip: &mut ZipReader<R>) -> Result<(), Error> {
        let mut pending: Vec<&'a FileResource> = Vec::new();
        for r in &task.on_resource {
            let res = self.cfg.resource(&r.name).ok_or_else(|| {
                corrupt(format!(
                    "Resource '{}' used, but metadata is missing. Archive is corrupt.",
                    r.name
                ))
            })?;
            pending.push(res);
        }
        if let Some(e) = &task.on_init {
            for c in &e.funcs {
                self.call(c, Ctx::Init, None::<&mut Stream<'_, R>>)?;
            }
        }
        // on-init's environment writes invalidate the slot about to be overwritten (its
        // metadata, its validated flag). They must be on the disk before the first byte of that
        // slot changes: otherwise a power cut leaves a half-written slot that the environment
        // still calls valid, and a revert or a bootloader's fallback would boot it.
        self.make_durable()?;
        for txn in self.envs.values_mut() {
            txn.reset();
        }
        while let Some(entry) = zip.next_entry()? {
            if entry.name.is_empty() || entry.name.ends_with('/') {
                continue;
            }
            let name = resource_name(&entry.name);
            let Some(on) = task.on_resource(&name) else {
                continue;
            };
            let Some(pos) = pending.iter().position(|r| r.name == name) else {
                return Err(corrupt(format!(
                    "Resource '{name}' appears twice in the archive"
                )));
            };
            let res = pending.remove(pos);
            if let Some(size) = entry.size {
                if res.length.len() <= 1 && size != res.data_len() {
                    let delta = on.delta_source_raw_offset.is_some()
                        || on.delta_source_fat_offset.is_some();
                    return Err(if delta {
                        Error::Unsupported(format!(
                            "'{name}' is a delta (xdelta3) update ({size} bytes instead of {}); myelin-fw applies full updates only",
                            res.data_len()
                        ))
                    } else {
                        Error::Resource {
                            resource: name,
                            message: format!(
                                "isn't the expected size ({size} vs {})",
                                res.data_len()
                            ),
                        }
                    });
                }
            }
            let mut stream = Stream {
                zip: &mut *zip,
                consumed: false,
            };
            for c in &on.funcs {
                self.call(c, Ctx::Resource(res), Some(&mut stream))?;
            }
        }
        if let Some(r) = pending.first() {
            return Err(Error::Resource {
                resource: r.name.clone(),
                message: "not found in archive".into(),
            });
        }
        // Every resource is verified: make the data durable before the slot switch.
        self.fat.clear();
        self.out
            .flush_cache()
            .map_err(|e| Error::io("writing file-system structure", e))?;
        self.out
            .sync()
            .map_err(|e| Error::io("syncing the target", e))?;
        if let Some(e) = &task.on_finish {
            for c in &e.funcs {
                self.call(c, Ctx::Finish, None::<&mut Stream<'_, R>>)?;
            }
        }
        Ok(())
    }

    /// Writes everything pending (file-system structure, then the environment and partition
    /// table records) and syncs after each step.
    fn make_durable(&mut self) -> Result<(), Error> {
        self.fat.clear();
        self.out
            .flush_cache()
            .map_err(|e| Error::io("writing file-system structure", e))?;
        self.out
            .sync()
            .map_err(|e| Error::io("syncing the target", e))?;
        self.out
            .commit_deferred()
            .map_err(|e| Error::io("writing the environment and partition table", e))?;
        self.out
            .sync()
            .map_err(|e| Error::io("syncing the target", e))
    }

    fn commit(&mut self) -> Result<(), Error> {
        self.make_durable()?;
        for p in std::mem::take(&mut self.reboot_params) {
            self.system
                .reboot_param(&p)
                .map_err(|e| Error::io("reboot_param", e))?;
        }
        Ok(())
    }

    fn fail(&mut self, task: &'a Task) {
        self.fat.clear();
        self.envs.clear();
        self.reboot_params.clear();
        self.out.discard_pending();
        if let Some(e) = &task.on_error {
            let mut ok = true;
            for c in &e.funcs {
                if self
                    .call(c, Ctx::Error, None::<&mut Stream<'_, std::io::Empty>>)
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
    }

    /// Writes data straight to the target, resetting environments it overwrites.
    fn write_direct(&mut self, buf: &[u8], offset: u64) -> Result<(), Error> {
        let end = offset + buf.len() as u64;
        for txn in self.envs.values_mut() {
            if txn
                .loc
                .ranges()
                .iter()
                .any(|(o, l)| *o < end && o + l > offset)
            {
                txn.reset();
            }
        }
        self.out
            .write_direct(buf, offset)
            .map_err(|e| Error::io("writing the target", e))
    }

    fn env_txn(&mut self, call: &Call) -> Result<&mut Txn, Error> {
        let name = call.arg(1).to_owned();
        if !self.envs.contains_key(&name) {
            let loc = self.env_location(&name).map_err(|m| task_err(call, m))?;
            self.envs.insert(name.clone(), Txn::new(loc));
        }
        self.envs
            .get_mut(&name)
            .ok_or_else(|| task_err(call, "environment vanished"))
    }

    fn defer_env(&mut self, call: &Call) -> Result<(), Error> {
        let name = call.arg(1).to_owned();
        let Some(txn) = self.envs.get(&name) else {
            return Ok(());
        };
        let writes = txn.writes().map_err(|e| task_err(call, e))?;
        self.out.defer(&format!("uboot-env:{name}"), writes);
        Ok(())
    }

    fn call<R: Read>(
        &mut self,
        call: &Call,
        ctx: Ctx<'_>,
        stream: Option<&mut Stream<'_, R>>,
    ) -> Result<(), Error> {
        let units = self.units(call, ctx)?;
        match call.name() {
            "raw_write" => {
                let Ctx::Resource(res) = ctx else {
                    return Err(task_err(call, "only usable in on-resource"));
                };
                if call.args.len() > 2 {
                    return Err(Error::Unsupported(
                        "raw_write with encryption options is not supported by myelin-fw".into(),
                    ));
                }
                let dest = bytes(call, 1)?;
                let stream = stream.ok_or_else(|| task_err(call, "no resource to write"))?;
                self.raw_write(call, res, stream, dest)?;
                return Ok(());
            }
            "fat_write" => {
                let Ctx::Resource(res) = ctx else {
                    return Err(task_err(call, "only usable in on-resource"));
                };
                let off = num(call, 1)?;
                let stream = stream.ok_or_else(|| task_err(call, "no resource to write"))?;
                self.fat_write(call, res, stream, off)?;
                return Ok(());
            }
            "raw_memset" => {
                let dest = bytes(call, 1)?;
                let count = bytes(call, 2)?;
                if dest.checked_add(count).is_none() {
                    return Err(task_err(call, "range out of bounds"));
                }
                let value = parse_c_int(call.arg(3))
                    .filter(|v| (0..=255).contains(v))
                    .ok_or_else(|| task_err(call, "value must be between 0 and 255"))?;
                let chunk = vec![value as u8; WRITE_GATHER.min(count as usize)];
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
            "trim" => {
                let off = bytes(call, 1)?;
                let count = bytes(call, 2)?;
                if self.enable_trim && off.checked_add(count).is_some() {
                    self.out
                        .discard(off, count)
                        .map_err(|e| Error::io("trim", e))?;
                }
            }
            "fat_mkfs" => {
                let off = num(call, 1)?;
                let count = num(call, 2)?;
                self.fat.remove(&off);
                fat::mkfs(&mut self.out, off, count).map_err(|e| fat_err(call, e))?;
            }
            "fat_mv" | "fat_mv!" | "fat_rm" | "fat_rm!" | "fat_mkdir" | "fat_setlabel"
            | "fat_touch" | "fat_attrib" => {
                let off = num(call, 1)?;
                let st = self.fat.entry(off).or_default();
                let mut fat = Fat::open(&mut self.out, off, st).map_err(|e| fat_err(call, e))?;
                let r = match call.name() {
                    "fat_mv" => fat.rename(call.arg(2), call.arg(3)),
                    "fat_mv!" => fat
                        .remove(call.arg(3))
                        .and_then(|_| fat.rename(call.arg(2), call.arg(3))),
                    "fat_rm" => fat.remove(call.arg(2)).map(|_| ()),
                    "fat_rm!" => match fat.remove(call.arg(2)) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(FatError::NoFile(call.arg(2).to_owned())),
                        Err(e) => Err(e),
                    },
                    "fat_mkdir" => fat.mkdir(call.arg(2)),
                    "fat_setlabel" => fat.set_label(call.arg(2)),
                    "fat_touch" => fat.touch(call.arg(2)),
                    _ => fat.set_attributes(call.arg(2), call.arg(3)),
                };
                r.map_err(|e| fat_err(call, e))?;
            }
            "fat_cp" => {
                let from = num(call, 1)?;
                let (to, to_name) = if call.args.len() == 5 {
                    (num(call, 3)?, call.arg(4))
                } else {
                    (from, call.arg(3))
                };
                fat::copy(
                    &mut self.out,
                    &mut self.fat,
                    (from, call.arg(2)),
                    (to, to_name),
                )
                .map_err(|e| fat_err(call, e))?;
            }
            "mbr_write" => {
                let mbr = self.cfg.mbr(call.arg(1)).ok_or_else(|| {
                    task_err(call, format!("can't find mbr reference {}", call.arg(1)))
                })?;
                let blocks = self.out.size().unwrap_or(0) / BLOCK;
                let sectors = crate::mbr::encode(mbr, blocks).map_err(|e| task_err(call, e))?;
                self.out.defer(
                    "partition-table",
                    sectors
                        .into_iter()
                        .map(|(b, s)| (b.saturating_mul(BLOCK), s.to_vec()))
                        .collect(),
                );
            }
            "gpt_write" => {
                let gpt = self.cfg.gpt(call.arg(1)).ok_or_else(|| {
                    task_err(call, format!("can't find gpt reference {}", call.arg(1)))
                })?;
                let blocks = self.out.size().unwrap_or(0) / BLOCK;
                let writes = crate::gpt::encode(gpt, blocks).map_err(|e| task_err(call, e))?;
                self.out.defer("partition-table", writes);
            }
            "uboot_clearenv" => {
                self.env_txn(call)?.clear();
                self.defer_env(call)?;
            }
            "uboot_setenv" | "uboot_unsetenv" | "uboot_recover" => {
                let name = call.arg(1).to_owned();
                if !self.envs.contains_key(&name) {
                    self.env_txn(call)?;
                }
                let (envs, out) = (&mut self.envs, &mut self.out);
                let txn = envs
                    .get_mut(&name)
                    .ok_or_else(|| task_err(call, "environment vanished"))?;
                let r = match call.name() {
                    "uboot_setenv" => txn.set(out, call.arg(2), call.arg(3)),
                    "uboot_unsetenv" => txn.unset(out, call.arg(2)),
                    _ => txn.recover(out),
                };
                r.map_err(|e| task_err(call, e))?;
                self.defer_env(call)?;
            }
            "info" => {
                let msg = call.arg(1).to_owned();
                self.tracker.info(&msg);
            }
            "error" => return Err(Error::Task(call.arg(1).to_owned())),
            "reboot_param" => self.reboot_params.push(call.arg(1).to_owned()),
            other => {
                return Err(Error::Unsupported(format!(
                    "function '{other}' is not supported by myelin-fw"
                )));
            }
        }
        self.tracker.report(units);
        Ok(())
    }

    /// Streams a resource through `sink(offset, bytes)`, checking length and hash.
    /// Returns the resource's full size and the size of a final hole.
    fn stream<R: Read>(
        &mut self,
        call: &Call,
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
        let data_len: u64 = map
            .iter()
            .step_by(2)
            .fold(0u64, |a, &b| a.saturating_add(b));
        let total: u64 = map.iter().fold(0u64, |a, &b| a.saturating_add(b));
        let ending_hole = if map.len() % 2 == 0 {
            map[map.len() - 1]
        } else {
            0
        };
        if stream.consumed {
            return Err(task_err(
                call,
                format!(
                    "didn't write anything and was likely called twice in an on-resource for '{}'. Try a \"cp\" function.",
                    res.name
                ),
            ));
        }
        stream.consumed = true;
        let mut h = Hasher::new(data_len);
        let mut seg = 0usize;
        let mut in_seg = 0u64;
        let mut actual = 0u64;
        if map[0] == 0 {
            if map.len() > 2 {
                seg = 2;
                actual = map[1];
            } else {
                seg = map.len();
            }
        }
        let mut read_total = 0u64;
        let mut last_offset = 0u64;
        loop {
            let mut chunk = h.buffer();
            let n = stream.zip.read_chunk(&mut chunk)?;
            if n == 0 {
                break;
            }
            let mut data = &chunk[..n];
            while !data.is_empty() {
                if seg >= map.len() {
                    return Err(Error::Resource {
                        resource: res.name.clone(),
                        message: format!("holds more than the {data_len} bytes meta.conf states"),
                    });
                }
                let take = ((map[seg] - in_seg) as usize).min(data.len());
                let offset = actual;
                sink(self, offset, &data[..take])?;
                data = &data[take..];
                actual += take as u64;
                in_seg += take as u64;
                read_total += take as u64;
                if count_holes {
                    self.tracker.report(actual - last_offset);
                    last_offset = actual;
                } else {
                    self.tracker.report(take as u64);
                }
                if in_seg == map[seg] {
                    seg += 1;
                    in_seg = 0;
                    if seg < map.len() {
                        actual = actual.saturating_add(map[seg]);
                        seg += 1;
                    }
                }
            }
            h.submit(chunk, n);
        }
        if ending_hole > 0 && count_holes {
            self.tracker.report(ending_hole);
        }
        if map.len() > 1 && total > (1u64 << 52) {
            return Err(Error::Resource {
                resource: res.name.clone(),
                message: "sparse map in meta.conf is too large".into(),
            });
        }
        if read_total != data_len {
            return Err(Error::Resource {
                resource: res.name.clone(),
                message: format!(
                    "{} wrote {read_total} bytes, but should have written {data_len}",
                    call.name()
                ),
            });
        }
        check_hash(res, &h.finish()?)?;
        Ok((total, ending_hole))
    }

    fn raw_write<R: Read>(
        &mut self,
        call: &Call,
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
        let (total, ending_hole) = self.stream(call, res, stream, false, |eng, offset, data| {
            let abs = dest
                .checked_add(offset)
                .filter(|a| a.checked_add(data.len() as u64 + 2 * BLOCK).is_some())
                .ok_or_else(|| task_err(call, "offset out of range"))?;
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
                .ok_or_else(|| task_err(call, "offset out of range"))?;
            self.write_direct(&zeros, at)?;
        }
        Ok(())
    }

    fn fat_write<R: Read>(
        &mut self,
        call: &Call,
        res: &FileResource,
        stream: &mut Stream<'_, R>,
        off: u64,
    ) -> Result<(), Error> {
        let path = call.arg(2).to_owned();
        let mut fw = {
            let st = self.fat.entry(off).or_default();
            let mut fat = Fat::open(&mut self.out, off, st).map_err(|e| fat_err(call, e))?;
            fat.create(&path).map_err(|e| fat_err(call, e))?
        };
        let mut size = 0u64;
        let (total, _) = self.stream(call, res, stream, true, |eng, offset, data| {
            let st = eng.fat.entry(off).or_default();
            let mut fat = Fat::open(&mut eng.out, off, st).map_err(|e| fat_err(call, e))?;
            write_zeros(&mut fat, &mut fw, offset.saturating_sub(size))
                .map_err(|e| fat_err(call, e))?;
            fat.write(&mut fw, data).map_err(|e| fat_err(call, e))?;
            size = offset + data.len() as u64;
            Ok(())
        })?;
        let st = self.fat.entry(off).or_default();
        let mut fat = Fat::open(&mut self.out, off, st).map_err(|e| fat_err(call, e))?;
        write_zeros(&mut fat, &mut fw, total.saturating_sub(size)).map_err(|e| fat_err(call, e))?;
        fat.close(fw).map_err(|e| fat_err(call, e))
    }
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
