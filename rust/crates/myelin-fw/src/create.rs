//! Turning a fwup.conf into a `.fw` archive (`fwup -c`).
//!
//! 1. The configuration is read with the process environment (or the caller's variables),
//!    `FWUP_META_UUID`/`FWUP_META_NICKNAME` kept literal for the applier, and every construct
//!    checked (see [`crate::config`] and [`crate::funcs`]).
//! 2. Each `file-resource` is measured and hashed: `host-path` files (`;`-separated, relative
//!    to the configuration file) are concatenated; with `skip-holes = true` the holes of sparse
//!    files are recorded in `length` instead of being stored. `assert-size-lte/gte` (in
//!    512-byte blocks) are checked against the resource's full size.
//! 3. meta.conf is written ([`crate::meta`]), signed if a key is given, and the archive is
//!    written ([`crate::archive`]): signature, meta.conf (with the creation time: the
//!    `SOURCE_DATE_EPOCH` variable, else `NOW` as `YYYY-MM-DDTHH:MM:SSZ`, else the clock), then
//!    the resources in declaration order, deflated at the requested level (9 by default).
//!
//! **Ops archives** (`ops_only`, a Myelin extension): only the tasks that need no host file
//! are kept (tasks whose resources are all `contents = "..."`), with the resources, MBRs and
//! GPTs they use, and no host file is opened. This is how `/usr/share/myelin/ops.fw` (validate,
//! revert, factory-reset, status ...) is made from a board's full fwup.conf; fwup reads such
//! archives like any other.

use crate::archive::{ZipWriter, iso8601};
use crate::config::model::parse_c_uint;
use crate::config::parser::{Mode, Parser, relative_to};
use crate::config::{Config, ConfigError, Vars};
use crate::error::Error;
use crate::hash::Blake2b256;
use crate::sign::{PrivateKey, firmware_uuid, hex};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The fwup version whose language and format this crate implements.
pub const FWUP_COMPATIBLE_VERSION: (u64, u64, u64) = (1, 16, 0);

const MAX_SPARSE_MAP: usize = 256;

/// How to create an archive.
pub struct CreateOptions {
    /// The fwup.conf to read.
    pub config: PathBuf,
    /// Variables for `${...}` (normally the process environment).
    pub vars: Vars,
    /// Key to sign meta.conf with.
    pub signing_key: Option<PrivateKey>,
    /// Deflate level, 1..=9.
    pub level: u32,
    /// Keep only the tasks that need no host file (ops.fw).
    pub ops_only: bool,
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Created {
    /// The meta.conf stored (and signed).
    pub meta_conf: String,
    /// The firmware UUID.
    pub uuid: String,
    /// Creation time (Unix seconds).
    pub creation_time: i64,
    /// Names of the tasks in the archive.
    pub tasks: Vec<String>,
}

fn creation_time(vars: &Vars) -> i64 {
    if let Some(s) = vars.get("SOURCE_DATE_EPOCH") {
        if let Some(v) = parse_c_uint(s) {
            return v as i64;
        }
        return 0;
    }
    if let Some(now) = vars.get("NOW").and_then(parse_iso8601) {
        return now;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86400 + h * 3600 + mi * 60 + se)
}

fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let core = s.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next().unwrap_or("0").parse().ok()?;
    let c = it.next().unwrap_or("0").parse().ok()?;
    Some((a, b, c))
}

/// A `require-fwup-version` this crate cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not a version number.
    #[error("Invalid version '{0}' passed to require-fwup-version")]
    Invalid(String),
    /// Newer than the fwup this crate implements.
    #[error("fwup version '{0}' required. myelin-fw implements fwup {1}.{2}.{3}.")]
    TooNew(String, u64, u64, u64),
}

/// Checks `require-fwup-version` against the version Myelin implements.
pub fn check_required_version(req: Option<&str>) -> Result<(), VersionError> {
    let Some(req) = req.filter(|r| !r.is_empty() && *r != "0") else {
        return Ok(());
    };
    let v = parse_version(req).ok_or_else(|| VersionError::Invalid(req.to_owned()))?;
    if v > FWUP_COMPATIBLE_VERSION {
        let (a, b, c) = FWUP_COMPATIBLE_VERSION;
        return Err(VersionError::TooNew(req.to_owned(), a, b, c));
    }
    Ok(())
}

/// A resource name that cannot be stored in an archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceNameError {
    /// Empty.
    #[error("resource name can't be empty")]
    Empty,
    /// Ends in `/`.
    #[error("resource name '{0}' can't end in a '/'")]
    Directory(String),
    /// `/` alone.
    #[error("resource name can't be the root directory")]
    Root,
    /// `/meta.conf`.
    #[error("resources can't be named /meta.conf")]
    MetaConf,
    /// Under `/data`.
    #[error("use a normal resource name rather than specifying /data")]
    Data,
}

/// Archive path of a resource: `data/NAME`, or `NAME` without its leading `/`.
pub fn archive_path(name: &str) -> Result<String, ResourceNameError> {
    if name.is_empty() {
        return Err(ResourceNameError::Empty);
    }
    if name.ends_with('/') {
        return Err(ResourceNameError::Directory(name.to_owned()));
    }
    if let Some(rest) = name.strip_prefix('/') {
        if rest.is_empty() {
            return Err(ResourceNameError::Root);
        }
        if name == "/meta.conf" {
            return Err(ResourceNameError::MetaConf);
        }
        if name == "/data" || name.starts_with("/data/") {
            return Err(ResourceNameError::Data);
        }
        return Ok(rest.to_owned());
    }
    Ok(format!("data/{name}"))
}

/// Resource name of an archive path (the inverse of [`archive_path`]).
pub fn resource_name(path: &str) -> String {
    match path.strip_prefix("data/") {
        Some(rest) => rest.to_owned(),
        None => format!("/{path}"),
    }
}

/// Reads the data runs of a resource from its files, skipping holes.
struct DataRuns {
    files: Vec<(File, u64)>,
    file_ix: usize,
    pos_in_file: u64,
    map: Vec<u64>,
    map_ix: usize,
    in_seg: u64,
}

impl DataRuns {
    fn open(paths: &[PathBuf], map: Vec<u64>) -> std::io::Result<Self> {
        let mut files = Vec::new();
        for p in paths {
            let f = File::open(p)?;
            let len = f.metadata()?.len();
            files.push((f, len));
        }
        Ok(DataRuns {
            files,
            file_ix: 0,
            pos_in_file: 0,
            map,
            map_ix: 0,
            in_seg: 0,
        })
    }

    fn skip(&mut self, mut n: u64) -> std::io::Result<()> {
        while n > 0 && self.file_ix < self.files.len() {
            let left = self.files[self.file_ix].1 - self.pos_in_file;
            let k = left.min(n);
            self.pos_in_file += k;
            n -= k;
            if self.pos_in_file == self.files[self.file_ix].1 {
                self.file_ix += 1;
                self.pos_in_file = 0;
            }
        }
        Ok(())
    }

    /// Next bytes of data (0 at the end).
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.map_ix >= self.map.len() {
                return Ok(0);
            }
            let seg = self.map[self.map_ix];
            if self.in_seg == seg {
                self.map_ix += 1;
                self.in_seg = 0;
                continue;
            }
            if self.map_ix % 2 == 1 {
                let n = seg - self.in_seg;
                self.skip(n)?;
                self.in_seg = seg;
                continue;
            }
            while self.file_ix < self.files.len() && self.pos_in_file == self.files[self.file_ix].1
            {
                self.file_ix += 1;
                self.pos_in_file = 0;
            }
            let Some((f, flen)) = self.files.get_mut(self.file_ix) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "resource files shrank while being read",
                ));
            };
            let want = (seg - self.in_seg)
                .min(*flen - self.pos_in_file)
                .min(buf.len() as u64) as usize;
            f.seek(SeekFrom::Start(self.pos_in_file))?;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "resource files shrank while being read",
                ));
            }
            self.pos_in_file += n as u64;
            self.in_seg += n as u64;
            return Ok(n);
        }
    }
}

fn push_run(map: &mut Vec<u64>, hole: bool, len: u64) {
    if len == 0 {
        return;
    }
    if map.is_empty() && hole {
        map.push(0);
    }
    let last_is_hole = map.len() % 2 == 0;
    if !map.is_empty() && last_is_hole == hole {
        if let Some(l) = map.last_mut() {
            *l += len;
        }
    } else {
        map.push(len);
    }
}

/// Data/hole runs of a file, using SEEK_DATA/SEEK_HOLE.
fn file_runs(path: &Path, map: &mut Vec<u64>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let fd = f.as_raw_fd();
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            push_run(map, true, len - pos);
            break;
        }
        let data = (data as u64).min(len);
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            len
        } else {
            (hole as u64).min(len)
        };
        push_run(map, true, data - pos);
        if hole <= data {
            push_run(map, false, len - data);
            break;
        }
        push_run(map, false, hole - data);
        pos = hole;
    }
    Ok(())
}

/// Why `--sparse-check` failed.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// The test file could not be made.
    #[error("Couldn't create sparse test file: {path}: {source}")]
    Create {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file system stored data where the hole should be.
    #[error("Hole of {0} bytes not created on filesystem")]
    NoHole(u64),
}

/// fwup's `--sparse-check PATH`: whether a file at `path` can hold a hole of `hole` bytes
/// (written past the hole, then `SEEK_DATA` must skip it). The test file is removed.
pub fn sparse_files_supported(path: &Path, hole: u64) -> Result<(), SparseError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let err = |source| SparseError::Create {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let result = f
        .write_all_at(&[0x5a; 4], hole)
        .map_err(err)
        .and_then(|()| {
            // SAFETY: lseek on an open descriptor; no memory is passed.
            let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
            if data == hole as libc::off_t {
                Ok(())
            } else {
                Err(SparseError::NoHole(hole))
            }
        });
    let _ = std::fs::remove_file(path);
    result
}

fn sparse_map(paths: &[PathBuf], skip_holes: bool) -> std::io::Result<Vec<u64>> {
    let total: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    if !skip_holes {
        return Ok(vec![total]);
    }
    let mut map = Vec::new();
    for p in paths {
        file_runs(p, &mut map)?;
    }
    if map.is_empty() {
        map.push(0);
    }
    if map.len() > MAX_SPARSE_MAP {
        return Ok(vec![total]);
    }
    Ok(map)
}

/// Reads and checks a configuration for creating an archive.
pub fn load_config(path: &Path, vars: &Vars) -> Result<Config, Error> {
    let text = std::fs::read(path).map_err(|e| {
        Error::io(
            format!("Error opening configuration file '{}'", path.display()),
            e,
        )
    })?;
    let mut vars = vars.clone();
    vars.set("FWUP_META_UUID", "${FWUP_META_UUID}");
    vars.set("FWUP_META_NICKNAME", "${FWUP_META_NICKNAME}");
    let file = path.to_string_lossy().into_owned();
    let nodes = Parser::new(text, &file, &mut vars, Mode::Create).parse()?;
    let mut cfg = Config::from_nodes(&nodes, Mode::Create)?;
    check_required_version(cfg.require_fwup_version.as_deref()).map_err(|m| {
        ConfigError::at(
            crate::config::Span::new(file.clone().into(), 0),
            m.to_string(),
        )
    })?;
    crate::funcs::validate_tasks(&mut cfg)?;
    for gpt in &mut cfg.gpts {
        crate::gpt::verify_config(gpt).map_err(|e| ConfigError::at(gpt.span.clone(), e.0))?;
        for p in &mut gpt.partitions {
            if p.boot {
                // fwup folds `boot` into the flags so older appliers understand it.
                let flags = parse_c_uint(&p.flags).unwrap_or(0) | 4;
                p.flags = format!("0x{flags:x}");
                p.boot = false;
            }
        }
    }
    for env in &cfg.uboot_envs {
        crate::uboot::Location::from_config(env)
            .map_err(|m| ConfigError::at(env.span.clone(), m.to_string()))?;
    }
    Ok(cfg)
}

fn referenced(cfg: &Config, pick: impl Fn(&crate::config::Call) -> Option<String>) -> Vec<String> {
    let mut names = Vec::new();
    for t in &cfg.tasks {
        let events = [&t.on_init, &t.on_finish, &t.on_error];
        let mut calls: Vec<&crate::config::Call> = events
            .iter()
            .filter_map(|e| e.as_ref())
            .flat_map(|e| e.funcs.iter())
            .collect();
        calls.extend(t.on_resource.iter().flat_map(|r| r.funcs.iter()));
        for c in calls {
            if let Some(n) = pick(c) {
                names.push(n);
            }
        }
    }
    names
}

/// Keeps only what an ops archive needs.
fn keep_ops_tasks(cfg: &mut Config) {
    let host_resources: Vec<String> = cfg
        .resources
        .iter()
        .filter(|r| r.host_path.is_some())
        .map(|r| r.name.clone())
        .collect();
    cfg.tasks.retain(|t| {
        t.on_resource
            .iter()
            .filter(|r| !r.is_empty())
            .all(|r| !host_resources.contains(&r.name))
    });
    let used: Vec<String> = cfg
        .tasks
        .iter()
        .flat_map(|t| {
            t.on_resource
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.name.clone())
        })
        .collect();
    cfg.resources.retain(|r| used.contains(&r.name));
    let mbrs = referenced(cfg, |c| {
        (c.name() == "mbr_write").then(|| c.arg(1).to_owned())
    });
    cfg.mbrs.retain(|m| mbrs.contains(&m.name));
    let gpts = referenced(cfg, |c| {
        (c.name() == "gpt_write").then(|| c.arg(1).to_owned())
    });
    cfg.gpts.retain(|g| gpts.contains(&g.name));
    for t in &mut cfg.tasks {
        t.on_resource.retain(|r| !r.is_empty());
    }
}

fn resolve_paths(cfg_file: &str, host_path: &str) -> Vec<PathBuf> {
    host_path
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| relative_to(cfg_file, p))
        .collect()
}

/// Creates an archive from `opts.config`, writing it to `out`.
pub fn create<W: Write>(opts: &CreateOptions, out: W) -> Result<Created, Error> {
    let mut cfg = load_config(&opts.config, &opts.vars)?;
    if opts.ops_only {
        keep_ops_tasks(&mut cfg);
    }
    let cfg_file = opts.config.to_string_lossy().into_owned();
    for mbr in &mut cfg.mbrs {
        if let (Some(path), None) = (&mbr.bootstrap_code_host_path, &mbr.bootstrap_code) {
            let p = relative_to(&cfg_file, path);
            let mut code = vec![0u8; 440];
            File::open(&p)
                .and_then(|mut f| f.read_exact(&mut code))
                .map_err(|e| {
                    ConfigError::at(
                        mbr.span.clone(),
                        format!(
                            "mbr bootstrap code path '{path}' must hold at least 440 bytes: {e}"
                        ),
                    )
                })?;
            mbr.bootstrap_code = Some(hex(&code));
        }
        crate::mbr::verify_config(mbr).map_err(|e| ConfigError::at(mbr.span.clone(), e.0))?;
    }
    let mut maps: Vec<Vec<PathBuf>> = Vec::new();
    for r in &mut cfg.resources {
        archive_path(&r.name).map_err(|m| ConfigError::at(r.span.clone(), m.to_string()))?;
        let mut h = Blake2b256::new();
        if let Some(host) = r.host_path.clone() {
            let paths = resolve_paths(&cfg_file, &host);
            if paths.is_empty() {
                return Err(ConfigError::at(
                    r.span.clone(),
                    format!("must specify a host-path for resource '{}'", r.name),
                )
                .into());
            }
            for p in &paths {
                if !p.is_file() {
                    return Err(ConfigError::at(
                        r.span.clone(),
                        format!(
                            "can't open path '{}' in file-resource '{}'",
                            p.display(),
                            r.name
                        ),
                    )
                    .into());
                }
            }
            let map = sparse_map(&paths, r.skip_holes)
                .map_err(|e| Error::io(format!("reading resource '{}'", r.name), e))?;
            let total: u64 = map.iter().sum();
            if let Some(lte) = r.assert_size_lte {
                if total > (lte as u64) * 512 {
                    return Err(ConfigError::at(r.span.clone(), format!(
                        "file size assertion failed on '{host}'. Size is {total} bytes. It must be <= {} bytes ({lte} blocks)",
                        lte * 512
                    )).into());
                }
            }
            if let Some(gte) = r.assert_size_gte {
                if total < (gte as u64) * 512 {
                    return Err(ConfigError::at(r.span.clone(), format!(
                        "file size assertion failed on '{host}'. Size is {total} bytes. It must be >= {} bytes ({gte} blocks)",
                        gte * 512
                    )).into());
                }
            }
            let mut runs = DataRuns::open(&paths, map.clone())
                .map_err(|e| Error::io(format!("reading resource '{}'", r.name), e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = runs
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading resource '{}'", r.name), e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            r.length = map;
            maps.push(paths);
        } else {
            let contents = r.contents.clone().unwrap_or_default();
            h.update(contents.as_bytes());
            r.length = vec![contents.len() as u64];
            maps.push(Vec::new());
        }
        r.blake2b_256 = Some(hex(&h.finalize()));
    }
    let meta_conf = crate::meta::write(&cfg);
    let created_at = creation_time(&opts.vars);
    let mut zip = ZipWriter::new(out, opts.level);
    if let Some(key) = &opts.signing_key {
        zip.add_stored("meta.conf.ed25519", &key.sign(meta_conf.as_bytes()), None)
            .map_err(|e| Error::io("writing the archive", e))?;
    }
    zip.add_deflated("meta.conf", meta_conf.as_bytes(), Some(created_at as u32))
        .map_err(|e| Error::io("writing the archive", e))?;
    let mut buf = vec![0u8; 1 << 20];
    for (r, paths) in cfg.resources.iter().zip(&maps) {
        let path =
            archive_path(&r.name).map_err(|m| ConfigError::at(r.span.clone(), m.to_string()))?;
        let wio = |e| Error::io(format!("writing resource '{}' to the archive", r.name), e);
        let mut entry = zip
            .start_deflated(&path, Some(r.data_len()), None)
            .map_err(wio)?;
        if r.host_path.is_some() {
            let mut runs = DataRuns::open(paths, r.length.clone())
                .map_err(|e| Error::io(format!("reading resource '{}'", r.name), e))?;
            loop {
                let n = runs
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading resource '{}'", r.name), e))?;
                if n == 0 {
                    break;
                }
                entry.write_all(&buf[..n]).map_err(wio)?;
            }
        } else {
            entry
                .write_all(r.contents.as_deref().unwrap_or("").as_bytes())
                .map_err(wio)?;
        }
        entry.finish().map_err(wio)?;
    }
    zip.finish()
        .map_err(|e| Error::io("writing the archive", e))?;
    Ok(Created {
        uuid: firmware_uuid(meta_conf.as_bytes()),
        meta_conf,
        creation_time: created_at,
        tasks: cfg.tasks.iter().map(|t| t.name.clone()).collect(),
    })
}

/// Creates an archive at `output` (written to a temporary file first, then renamed).
pub fn create_file(opts: &CreateOptions, output: &Path) -> Result<Created, Error> {
    let tmp = output.with_extension(format!(
        "{}tmp",
        output
            .extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let file = File::create(&tmp)
        .map_err(|e| Error::io(format!("error creating archive '{}'", output.display()), e))?;
    let result = create(opts, std::io::BufWriter::with_capacity(1 << 20, file)).and_then(|c| {
        std::fs::rename(&tmp, output)
            .map_err(|e| Error::io(format!("error creating archive '{}'", output.display()), e))?;
        Ok(c)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Re-signs an archive (`fwup -S`): the old signature is dropped, meta.conf is signed with
/// `key` and every other entry is copied (recompressed at `level`), in the same order.
/// meta.conf keeps its creation time unless `SOURCE_DATE_EPOCH` (or `NOW`) is in `vars`.
pub fn sign_archive<R: Read, W: Write>(
    input: R,
    output: W,
    key: &PrivateKey,
    level: u32,
    vars: &Vars,
) -> Result<String, Error> {
    use crate::archive::{MAX_CHUNK, ZipReader};
    let mut reader = ZipReader::new(input);
    let mut zip = ZipWriter::new(output, level);
    let mut uuid = None;
    let mut chunk = vec![0u8; MAX_CHUNK];
    let wio = |e| Error::io("writing the signed archive", e);
    while let Some(entry) = reader.next_entry()? {
        if entry.name == "meta.conf.ed25519" {
            continue;
        }
        if entry.name == "meta.conf" {
            if uuid.is_some() {
                return Err(Error::Task(
                    "Invalid firmware. More than one meta.conf found".into(),
                ));
            }
            let meta = reader.read_to_vec(crate::meta::MAX_META_CONF)?;
            if meta.len() <= crate::meta::MIN_META_CONF {
                return Err(Error::Task(format!(
                    "Unexpected meta.conf size: {}",
                    meta.len()
                )));
            }
            let mtime = if vars.get("SOURCE_DATE_EPOCH").is_some() || vars.get("NOW").is_some() {
                creation_time(vars)
            } else {
                entry.mtime
            };
            zip.add_stored("meta.conf.ed25519", &key.sign(&meta), None)
                .map_err(wio)?;
            zip.add_deflated("meta.conf", &meta, Some(mtime as u32))
                .map_err(wio)?;
            uuid = Some(firmware_uuid(&meta));
            continue;
        }
        if uuid.is_none() {
            return Err(Error::Task(
                "Invalid firmware. meta.conf must be at the beginning of archive".into(),
            ));
        }
        let mut out = zip
            .start_deflated(&entry.name, entry.size, None)
            .map_err(wio)?;
        loop {
            let n = reader.read_chunk(&mut chunk)?;
            if n == 0 {
                break;
            }
            out.write_all(&chunk[..n]).map_err(wio)?;
        }
        out.finish().map_err(wio)?;
    }
    zip.finish().map_err(wio)?;
    uuid.ok_or_else(|| Error::Task("Invalid firmware. No meta.conf found".into()))
}

/// The ISO 8601 creation date fwup reports for a time.
pub fn creation_date(t: i64) -> String {
    iso8601(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_versions() {
        assert_eq!(archive_path("rootfs.img").unwrap(), "data/rootfs.img");
        assert_eq!(archive_path("/custom").unwrap(), "custom");
        assert!(archive_path("/meta.conf").is_err());
        assert!(archive_path("/data/x").is_err());
        assert!(archive_path("dir/").is_err());
        assert_eq!(resource_name("data/a/b"), "a/b");
        assert_eq!(resource_name("custom"), "/custom");
        assert!(check_required_version(Some("1.12.0")).is_ok());
        assert!(check_required_version(Some("0")).is_ok());
        assert!(check_required_version(Some("1.17.0")).is_err());
        assert!(check_required_version(Some("x")).is_err());
        assert_eq!(parse_iso8601("2026-01-01T00:00:00Z"), Some(1_767_225_600));
    }

    #[test]
    fn sparse_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        {
            let f = File::create(&p).unwrap();
            f.set_len(4 << 20).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[1u8; 4096], 1 << 20).unwrap();
        }
        let map = sparse_map(std::slice::from_ref(&p), true).unwrap();
        assert_eq!(map.iter().sum::<u64>(), 4 << 20);
        // tmpfs and ext4 report the hole; the data run holds the written block.
        if map.len() > 1 {
            assert_eq!(map[0], 0);
            assert!(map[2] >= 4096);
        }
        let mut runs = DataRuns::open(&[p], map.clone()).unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = runs.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert_eq!(total, map.iter().step_by(2).sum::<u64>());
    }
}
