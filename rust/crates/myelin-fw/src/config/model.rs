//! fwup's schema: which options and sections exist, their types and defaults.
//!
//! ```text
//! top level      meta-product meta-description meta-version meta-author meta-platform
//!                meta-architecture meta-creation-date meta-fwup-version meta-vcs-identifier
//!                meta-misc meta-uuid meta-nickname (strings), require-fwup-version (string,
//!                default "0"), block-cache-size-mb (int, default 8), and the sections below
//! file-resource  NAME { host-path (";"-separated paths), skip-holes (bool), length (int list),
//!                contents, blake2b-256, sha256 (strings), assert-size-lte, assert-size-gte
//!                (ints, blocks) }
//! mbr            NAME { bootstrap-code-host-path, bootstrap-code (hex), include-osip (bool),
//!                osip-major (1), osip-minor, osip-num-pointers (1), signature (string),
//!                partition N { block-offset (string), block-count (int), type (int),
//!                boot, expand (bools) }, osii N { os-major os-minor start-block-offset
//!                ddr-load-address entry-point image-size-blocks attribute (ints) } }
//! gpt            NAME { guid, partition N { block-offset, block-count, type (UUID), guid,
//!                name, flags (string, default "0"), expand, boot } }
//! uboot-environment NAME { block-offset (string), block-count (int), block-offset-redund }
//! task           NAME { reqlist (string list), require-*(...) calls,
//!                require-partition1-offset (int, -1), require-unmounted-destination and
//!                verify-on-the-fly (bools), on-init, on-finish, on-error { funlist, calls },
//!                on-resource NAME { verify-on-the-fly, delta-source-raw-offset,
//!                delta-source-raw-count (int), delta-source-raw-options,
//!                delta-source-fat-offset, delta-source-fat-path, funlist, calls } }
//! ```
//!
//! Integers are C literals (`0x83`, `010` is octal); booleans are `true/false/yes/no/on/off`.
//! Titled sections may not repeat a title. A call inside an event section such as
//! `raw_write(63)` is stored as the `funlist` entry `2,raw_write,63` (argument count first,
//! counting the name); `require-*` calls go to `reqlist` the same way (see [`crate::meta`]).

use super::parser::{Mode, Node, NodeKind};
use super::{ConfigError, Span};
use std::sync::Arc;

/// Default of integer options whose absence fwup marks with `INT32_MAX`.
pub const UNSET_COUNT: i64 = i32::MAX as i64;

/// Archive metadata (`meta-*` options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// `meta-product`.
    pub product: Option<String>,
    /// `meta-description`.
    pub description: Option<String>,
    /// `meta-version`.
    pub version: Option<String>,
    /// `meta-author`.
    pub author: Option<String>,
    /// `meta-platform`.
    pub platform: Option<String>,
    /// `meta-architecture`.
    pub architecture: Option<String>,
    /// `meta-creation-date` (computed from the archive when reading).
    pub creation_date: Option<String>,
    /// `meta-fwup-version`.
    pub fwup_version: Option<String>,
    /// `meta-vcs-identifier`.
    pub vcs_identifier: Option<String>,
    /// `meta-misc`.
    pub misc: Option<String>,
    /// `meta-uuid` (computed when reading).
    pub uuid: Option<String>,
    /// `meta-nickname` (computed by fwup when reading; Myelin leaves it unset).
    pub nickname: Option<String>,
}

/// One call: `args[0]` is the function name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Name then arguments.
    pub args: Vec<String>,
    /// Where the call is written.
    pub span: Span,
}

impl Call {
    /// The function name.
    pub fn name(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    /// Argument `i` (1-based, as in fwup), or "" if absent.
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }
}

/// `file-resource NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResource {
    /// Resource name (`data/NAME` in the archive, or `NAME` at the root if it starts with `/`).
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// `host-path`: files concatenated to make the resource, `;`-separated.
    pub host_path: Option<String>,
    /// `skip-holes`: record holes of sparse input files instead of storing zeros.
    pub skip_holes: bool,
    /// `length`: data run, hole, data run, ... in bytes (one element for ordinary files).
    pub length: Vec<u64>,
    /// `contents`: the resource given inline.
    pub contents: Option<String>,
    /// `blake2b-256`: hex digest of the data runs.
    pub blake2b_256: Option<String>,
    /// `sha256` (old archives).
    pub sha256: Option<String>,
    /// `assert-size-lte` in blocks.
    pub assert_size_lte: Option<i64>,
    /// `assert-size-gte` in blocks.
    pub assert_size_gte: Option<i64>,
}

impl FileResource {
    /// Bytes stored in the archive (data runs only).
    pub fn data_len(&self) -> u64 {
        self.length
            .iter()
            .step_by(2)
            .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Bytes the resource spans once holes are put back.
    pub fn total_len(&self) -> u64 {
        self.length.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// `partition N { ... }` of an `mbr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrPartition {
    /// The title, a number 0..=15 (4 and up are logical partitions).
    pub title: String,
    /// `block-offset` as written.
    pub block_offset: Option<String>,
    /// `block-count` ([`UNSET_COUNT`] when absent).
    pub block_count: i64,
    /// `type` (-1 when absent).
    pub part_type: i64,
    /// `boot`.
    pub boot: bool,
    /// `expand`.
    pub expand: bool,
}

/// `osii N { ... }` of an `mbr` (Intel OSIP headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Osii {
    /// The title, 0..=14.
    pub title: String,
    /// `os-major`.
    pub os_major: i64,
    /// `os-minor`.
    pub os_minor: i64,
    /// `start-block-offset`.
    pub start_block_offset: i64,
    /// `ddr-load-address`.
    pub ddr_load_address: i64,
    /// `entry-point`.
    pub entry_point: i64,
    /// `image-size-blocks`.
    pub image_size_blocks: i64,
    /// `attribute` (default 0xf).
    pub attribute: i64,
}

/// `mbr NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    /// Name used by `mbr_write`.
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// `bootstrap-code-host-path` (read into `bootstrap_code` when creating).
    pub bootstrap_code_host_path: Option<String>,
    /// `bootstrap-code`: 440 bytes as hex.
    pub bootstrap_code: Option<String>,
    /// `include-osip`.
    pub include_osip: bool,
    /// `osip-major` (default 1).
    pub osip_major: i64,
    /// `osip-minor`.
    pub osip_minor: i64,
    /// `osip-num-pointers` (default 1).
    pub osip_num_pointers: i64,
    /// `signature` (disk identifier) as written.
    pub signature: Option<String>,
    /// The partitions, in file order.
    pub partitions: Vec<MbrPartition>,
    /// OSII descriptors.
    pub osii: Vec<Osii>,
}

/// `partition N { ... }` of a `gpt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// The title, 0..=15.
    pub title: String,
    /// `block-offset` as written.
    pub block_offset: Option<String>,
    /// `block-count`.
    pub block_count: i64,
    /// `type` GUID.
    pub part_type: Option<String>,
    /// `guid`.
    pub guid: Option<String>,
    /// `name` (default "").
    pub name: String,
    /// `flags` as written (default "0").
    pub flags: String,
    /// `expand`.
    pub expand: bool,
    /// `boot` (folded into `flags` bit 2 when creating).
    pub boot: bool,
}

/// `gpt NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Name used by `gpt_write`.
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// Disk `guid`.
    pub guid: Option<String>,
    /// The partitions.
    pub partitions: Vec<GptPartition>,
}

/// `uboot-environment NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootEnvironment {
    /// Name used by `uboot_*` functions.
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// `block-offset` as written.
    pub block_offset: Option<String>,
    /// `block-count`.
    pub block_count: i64,
    /// `block-offset-redund` as written.
    pub block_offset_redund: Option<String>,
}

/// An event section: the calls it runs in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The calls.
    pub funcs: Vec<Call>,
}

/// `on-resource NAME { ... }` inside a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnResource {
    /// Resource name.
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// `verify-on-the-fly` (deprecated).
    pub verify_on_the_fly: bool,
    /// `delta-source-raw-offset`.
    pub delta_source_raw_offset: Option<String>,
    /// `delta-source-raw-count`.
    pub delta_source_raw_count: i64,
    /// `delta-source-raw-options`.
    pub delta_source_raw_options: Option<String>,
    /// `delta-source-fat-offset`.
    pub delta_source_fat_offset: Option<String>,
    /// `delta-source-fat-path`.
    pub delta_source_fat_path: Option<String>,
    /// The calls.
    pub funcs: Vec<Call>,
}

impl OnResource {
    /// Whether fwup would leave this section out of meta.conf (nothing set).
    pub fn is_empty(&self) -> bool {
        !self.verify_on_the_fly
            && self
                .delta_source_raw_offset
                .as_deref()
                .unwrap_or("")
                .is_empty()
            && self.delta_source_raw_count == UNSET_COUNT
            && self
                .delta_source_raw_options
                .as_deref()
                .unwrap_or("")
                .is_empty()
            && self
                .delta_source_fat_offset
                .as_deref()
                .unwrap_or("")
                .is_empty()
            && self
                .delta_source_fat_path
                .as_deref()
                .unwrap_or("")
                .is_empty()
            && self.funcs.is_empty()
    }
}

/// `task NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Task name (matched by prefix when applying).
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// Requirements, in order.
    pub reqs: Vec<Call>,
    /// `require-partition1-offset` (deprecated; -1 when absent).
    pub require_partition1_offset: i64,
    /// `require-unmounted-destination` (deprecated, ignored).
    pub require_unmounted_destination: bool,
    /// `verify-on-the-fly` (deprecated, ignored).
    pub verify_on_the_fly: bool,
    /// `on-init`.
    pub on_init: Option<Event>,
    /// `on-finish`.
    pub on_finish: Option<Event>,
    /// `on-error`.
    pub on_error: Option<Event>,
    /// `on-resource` sections in file order.
    pub on_resource: Vec<OnResource>,
}

impl Task {
    /// The `on-resource` section for `resource`, if any.
    pub fn on_resource(&self, resource: &str) -> Option<&OnResource> {
        self.on_resource.iter().find(|r| r.name == resource)
    }
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Metadata.
    pub meta: Meta,
    /// `require-fwup-version` (default "0").
    pub require_fwup_version: Option<String>,
    /// `block-cache-size-mb` (default 8).
    pub block_cache_size_mb: i64,
    /// Resources in declaration (and archive) order.
    pub resources: Vec<FileResource>,
    /// MBR layouts.
    pub mbrs: Vec<Mbr>,
    /// GPT layouts.
    pub gpts: Vec<Gpt>,
    /// Tasks in file order.
    pub tasks: Vec<Task>,
    /// U-Boot environments.
    pub uboot_envs: Vec<UbootEnvironment>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            meta: Meta::default(),
            require_fwup_version: None,
            block_cache_size_mb: 8,
            resources: Vec::new(),
            mbrs: Vec::new(),
            gpts: Vec::new(),
            tasks: Vec::new(),
            uboot_envs: Vec::new(),
        }
    }
}

impl Config {
    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&FileResource> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The MBR called `name`.
    pub fn mbr(&self, name: &str) -> Option<&Mbr> {
        self.mbrs.iter().find(|r| r.name == name)
    }

    /// The GPT called `name`.
    pub fn gpt(&self, name: &str) -> Option<&Gpt> {
        self.gpts.iter().find(|r| r.name == name)
    }

    /// The U-Boot environment called `name`.
    pub fn uboot_env(&self, name: &str) -> Option<&UbootEnvironment> {
        self.uboot_envs.iter().find(|r| r.name == name)
    }

    /// Builds a configuration from parsed statements.
    pub fn from_nodes(nodes: &[Node], mode: Mode) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let r = Reader { mode };
        for node in nodes {
            match &node.kind {
                NodeKind::Assign { name, .. } => {
                    let slot = match name.as_str() {
                        "meta-product" => &mut cfg.meta.product,
                        "meta-description" => &mut cfg.meta.description,
                        "meta-version" => &mut cfg.meta.version,
                        "meta-author" => &mut cfg.meta.author,
                        "meta-platform" => &mut cfg.meta.platform,
                        "meta-architecture" => &mut cfg.meta.architecture,
                        "meta-creation-date" => &mut cfg.meta.creation_date,
                        "meta-fwup-version" => &mut cfg.meta.fwup_version,
                        "meta-vcs-identifier" => &mut cfg.meta.vcs_identifier,
                        "meta-misc" => &mut cfg.meta.misc,
                        "meta-uuid" => &mut cfg.meta.uuid,
                        "meta-nickname" => &mut cfg.meta.nickname,
                        "require-fwup-version" => &mut cfg.require_fwup_version,
                        "block-cache-size-mb" => {
                            cfg.block_cache_size_mb = r.int(node)?;
                            continue;
                        }
                        _ => {
                            r.unknown(node, "the top level")?;
                            continue;
                        }
                    };
                    *slot = Some(r.string(node)?);
                }
                NodeKind::Section { name, title, body } => {
                    let title = match (name.as_str(), title) {
                        ("file-resource" | "mbr" | "gpt" | "task" | "uboot-environment", None) => {
                            return Err(ConfigError::at(
                                node.span.clone(),
                                format!("missing title for section '{name}'"),
                            ));
                        }
                        (_, Some(t)) => t.clone(),
                        (_, None) => String::new(),
                    };
                    match name.as_str() {
                        "file-resource" => {
                            no_dup(cfg.resources.iter().map(|x| &x.name), &title, node, name)?;
                            cfg.resources
                                .push(r.file_resource(title, body, &node.span)?);
                        }
                        "mbr" => {
                            no_dup(cfg.mbrs.iter().map(|x| &x.name), &title, node, name)?;
                            cfg.mbrs.push(r.mbr(title, body, &node.span)?);
                        }
                        "gpt" => {
                            no_dup(cfg.gpts.iter().map(|x| &x.name), &title, node, name)?;
                            cfg.gpts.push(r.gpt(title, body, &node.span)?);
                        }
                        "task" => {
                            no_dup(cfg.tasks.iter().map(|x| &x.name), &title, node, name)?;
                            cfg.tasks.push(r.task(title, body, &node.span)?);
                        }
                        "uboot-environment" => {
                            no_dup(cfg.uboot_envs.iter().map(|x| &x.name), &title, node, name)?;
                            cfg.uboot_envs.push(r.uboot(title, body, &node.span)?);
                        }
                        _ => r.unknown(node, "the top level")?,
                    }
                }
                NodeKind::Call { name, .. } => {
                    r.unknown_call(node, name, "the top level")?;
                }
            }
        }
        Ok(cfg)
    }
}

fn no_dup<'a>(
    mut existing: impl Iterator<Item = &'a String>,
    title: &str,
    node: &Node,
    section: &str,
) -> Result<(), ConfigError> {
    if existing.any(|t| t == title) {
        return Err(ConfigError::at(
            node.span.clone(),
            format!("found duplicate title '{title}' for section '{section}'"),
        ));
    }
    Ok(())
}

/// The functions fwup allows in event sections.
pub const EVENT_FUNCTIONS: &[&str] = &[
    "raw_memset",
    "raw_write",
    "fat_mkfs",
    "fat_attrib",
    "fat_write",
    "fat_cp",
    "fat_mv",
    "fat_mv!",
    "fat_rm",
    "fat_rm!",
    "fat_mkdir",
    "fat_setlabel",
    "fat_touch",
    "gpt_write",
    "mbr_write",
    "trim",
    "uboot_clearenv",
    "uboot_recover",
    "uboot_setenv",
    "uboot_unsetenv",
    "error",
    "info",
    "path_write",
    "pipe_write",
    "ubi_volume_write",
    "execute",
    "reboot_param",
];

/// The requirement calls fwup allows in tasks.
pub const REQUIREMENTS: &[&str] = &[
    "require-partition-offset",
    "require-fat-file-exists",
    "require-uboot-variable",
    "require-path-on-device",
    "require-path-at-offset",
    "require-fat-file-match",
    "require-execute",
];

const FUN_MAX_ARGS: usize = 10;

struct Reader {
    mode: Mode,
}

/// Parses an integer the way C's `strtol(s, &end, 0)` does, requiring the whole string.
pub fn parse_c_int(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if (t.starts_with("0x") || t.starts_with("0X"))
        && t.len() > 2
        && t.as_bytes()[2].is_ascii_hexdigit()
    {
        (16, &t[2..])
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Parses a non-negative integer argument (C syntax, base detected from the prefix).
pub fn parse_c_uint(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.starts_with('-') || t.starts_with('+') {
        return None;
    }
    parse_c_int(t)
        .and_then(|v| u64::try_from(v).ok())
        .or_else(|| {
            // Values above i64::MAX.
            let (radix, digits) =
                if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    (16, h)
                } else {
                    (10, t)
                };
            u64::from_str_radix(digits, radix).ok()
        })
}

impl Reader {
    fn unknown(&self, node: &Node, place: &str) -> Result<(), ConfigError> {
        if self.mode == Mode::Meta {
            return Ok(());
        }
        let what = match &node.kind {
            NodeKind::Assign { name, .. } => format!("no such option '{name}'"),
            NodeKind::Section { name, .. } => format!("no such section '{name}'"),
            NodeKind::Call { name, .. } => format!("no such function '{name}'"),
        };
        Err(ConfigError::at(
            node.span.clone(),
            format!("{what} in {place}"),
        ))
    }

    fn unknown_call(&self, node: &Node, name: &str, place: &str) -> Result<(), ConfigError> {
        if self.mode == Mode::Meta {
            return Ok(());
        }
        Err(ConfigError::at(
            node.span.clone(),
            format!("no such function '{name}' in {place}"),
        ))
    }

    fn scalar<'a>(&self, node: &'a Node) -> Result<&'a str, ConfigError> {
        match &node.kind {
            NodeKind::Assign {
                name,
                values,
                braces,
                append,
            } => {
                if *braces || *append || values.len() != 1 {
                    return Err(ConfigError::at(
                        node.span.clone(),
                        format!("option '{name}' takes a single value, not a list"),
                    ));
                }
                Ok(&values[0])
            }
            _ => Err(ConfigError::at(node.span.clone(), "expected an option")),
        }
    }

    fn string(&self, node: &Node) -> Result<String, ConfigError> {
        self.scalar(node).map(str::to_owned)
    }

    fn int(&self, node: &Node) -> Result<i64, ConfigError> {
        let v = self.scalar(node)?;
        parse_c_int(v).ok_or_else(|| {
            ConfigError::at(
                node.span.clone(),
                format!(
                    "invalid integer value '{v}' for option '{}'",
                    opt_name(node)
                ),
            )
        })
    }

    fn boolean(&self, node: &Node) -> Result<bool, ConfigError> {
        let v = self.scalar(node)?;
        match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::at(
                node.span.clone(),
                format!(
                    "invalid boolean value '{v}' for option '{}'",
                    opt_name(node)
                ),
            )),
        }
    }

    /// A list option: `=` replaces, `+=` appends.
    fn list(&self, node: &Node, current: &mut Vec<String>) {
        if let NodeKind::Assign { values, append, .. } = &node.kind {
            if !append {
                current.clear();
            }
            current.extend(values.iter().cloned());
        }
    }

    fn file_resource(
        &self,
        name: String,
        body: &[Node],
        span: &Span,
    ) -> Result<FileResource, ConfigError> {
        let mut r = FileResource {
            name,
            span: span.clone(),
            host_path: None,
            skip_holes: false,
            length: Vec::new(),
            contents: None,
            blake2b_256: None,
            sha256: None,
            assert_size_lte: None,
            assert_size_gte: None,
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "host-path") => r.host_path = Some(self.string(node)?),
                (NodeKind::Assign { .. }, "skip-holes") => r.skip_holes = self.boolean(node)?,
                (NodeKind::Assign { .. }, "length") => {
                    let mut raw = Vec::new();
                    self.list(node, &mut raw);
                    r.length = raw
                        .iter()
                        .map(|v| {
                            parse_c_uint(v).ok_or_else(|| {
                                ConfigError::at(
                                    node.span.clone(),
                                    format!("invalid integer value '{v}' for option 'length'"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                (NodeKind::Assign { .. }, "contents") => r.contents = Some(self.string(node)?),
                (NodeKind::Assign { .. }, "blake2b-256") => {
                    r.blake2b_256 = Some(self.string(node)?)
                }
                (NodeKind::Assign { .. }, "sha256") => r.sha256 = Some(self.string(node)?),
                (NodeKind::Assign { .. }, "assert-size-lte") => {
                    r.assert_size_lte = Some(self.int(node)?).filter(|&v| v >= 0)
                }
                (NodeKind::Assign { .. }, "assert-size-gte") => {
                    r.assert_size_gte = Some(self.int(node)?).filter(|&v| v >= 0)
                }
                _ => self.unknown(node, "'file-resource'")?,
            }
        }
        if self.mode == Mode::Create {
            match (&r.host_path, &r.contents) {
                (None, None) => {
                    return Err(ConfigError::at(
                        span.clone(),
                        format!(
                            "host-path or contents must be set for file-resource '{}'",
                            r.name
                        ),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        span.clone(),
                        format!(
                            "only one of host-path or contents should be set for file-resource '{}'",
                            r.name
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(r)
    }

    fn mbr(&self, name: String, body: &[Node], span: &Span) -> Result<Mbr, ConfigError> {
        let mut m = Mbr {
            name,
            span: span.clone(),
            bootstrap_code_host_path: None,
            bootstrap_code: None,
            include_osip: false,
            osip_major: 1,
            osip_minor: 0,
            osip_num_pointers: 1,
            signature: None,
            partitions: Vec::new(),
            osii: Vec::new(),
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "bootstrap-code-host-path") => {
                    m.bootstrap_code_host_path = Some(self.string(node)?)
                }
                (NodeKind::Assign { .. }, "bootstrap-code") => {
                    m.bootstrap_code = Some(self.string(node)?)
                }
                (NodeKind::Assign { .. }, "include-osip") => m.include_osip = self.boolean(node)?,
                (NodeKind::Assign { .. }, "osip-major") => m.osip_major = self.int(node)?,
                (NodeKind::Assign { .. }, "osip-minor") => m.osip_minor = self.int(node)?,
                (NodeKind::Assign { .. }, "osip-num-pointers") => {
                    m.osip_num_pointers = self.int(node)?
                }
                (NodeKind::Assign { .. }, "signature") => m.signature = Some(self.string(node)?),
                (NodeKind::Section { title, body, .. }, "partition") => {
                    let title = self.title(node, title)?;
                    no_dup(
                        m.partitions.iter().map(|p| &p.title),
                        &title,
                        node,
                        "partition",
                    )?;
                    m.partitions.push(self.mbr_partition(title, body)?);
                }
                (NodeKind::Section { title, body, .. }, "osii") => {
                    let title = self.title(node, title)?;
                    no_dup(m.osii.iter().map(|p| &p.title), &title, node, "osii")?;
                    m.osii.push(self.osii(title, body)?);
                }
                _ => self.unknown(node, "'mbr'")?,
            }
        }
        Ok(m)
    }

    fn title(&self, node: &Node, title: &Option<String>) -> Result<String, ConfigError> {
        title.clone().ok_or_else(|| {
            ConfigError::at(
                node.span.clone(),
                format!("missing title for section '{}'", opt_name(node)),
            )
        })
    }

    fn mbr_partition(&self, title: String, body: &[Node]) -> Result<MbrPartition, ConfigError> {
        let mut p = MbrPartition {
            title,
            block_offset: None,
            block_count: UNSET_COUNT,
            part_type: -1,
            boot: false,
            expand: false,
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "block-offset") => {
                    p.block_offset = Some(self.string(node)?)
                }
                (NodeKind::Assign { .. }, "block-count") => p.block_count = self.int(node)?,
                (NodeKind::Assign { .. }, "type") => p.part_type = self.int(node)?,
                (NodeKind::Assign { .. }, "boot") => p.boot = self.boolean(node)?,
                (NodeKind::Assign { .. }, "expand") => p.expand = self.boolean(node)?,
                _ => self.unknown(node, "'mbr|partition'")?,
            }
        }
        Ok(p)
    }

    fn osii(&self, title: String, body: &[Node]) -> Result<Osii, ConfigError> {
        let mut o = Osii {
            title,
            os_major: 0,
            os_minor: 0,
            start_block_offset: 0,
            ddr_load_address: 0,
            entry_point: 0,
            image_size_blocks: 0,
            attribute: 0xf,
        };
        for node in body {
            let slot = match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "os-major") => &mut o.os_major,
                (NodeKind::Assign { .. }, "os-minor") => &mut o.os_minor,
                (NodeKind::Assign { .. }, "start-block-offset") => &mut o.start_block_offset,
                (NodeKind::Assign { .. }, "ddr-load-address") => &mut o.ddr_load_address,
                (NodeKind::Assign { .. }, "entry-point") => &mut o.entry_point,
                (NodeKind::Assign { .. }, "image-size-blocks") => &mut o.image_size_blocks,
                (NodeKind::Assign { .. }, "attribute") => &mut o.attribute,
                _ => {
                    self.unknown(node, "'mbr|osii'")?;
                    continue;
                }
            };
            *slot = self.int(node)?;
        }
        Ok(o)
    }

    fn gpt(&self, name: String, body: &[Node], span: &Span) -> Result<Gpt, ConfigError> {
        let mut g = Gpt {
            name,
            span: span.clone(),
            guid: None,
            partitions: Vec::new(),
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "guid") => g.guid = Some(self.string(node)?),
                (NodeKind::Section { title, body, .. }, "partition") => {
                    let title = self.title(node, title)?;
                    no_dup(
                        g.partitions.iter().map(|p| &p.title),
                        &title,
                        node,
                        "partition",
                    )?;
                    let mut p = GptPartition {
                        title,
                        block_offset: None,
                        block_count: UNSET_COUNT,
                        part_type: None,
                        guid: None,
                        name: String::new(),
                        flags: "0".into(),
                        expand: false,
                        boot: false,
                    };
                    for node in body {
                        match (&node.kind, opt_name(node)) {
                            (NodeKind::Assign { .. }, "block-offset") => {
                                p.block_offset = Some(self.string(node)?)
                            }
                            (NodeKind::Assign { .. }, "block-count") => {
                                p.block_count = self.int(node)?
                            }
                            (NodeKind::Assign { .. }, "type") => {
                                p.part_type = Some(self.string(node)?)
                            }
                            (NodeKind::Assign { .. }, "guid") => p.guid = Some(self.string(node)?),
                            (NodeKind::Assign { .. }, "name") => p.name = self.string(node)?,
                            (NodeKind::Assign { .. }, "flags") => p.flags = self.string(node)?,
                            (NodeKind::Assign { .. }, "expand") => p.expand = self.boolean(node)?,
                            (NodeKind::Assign { .. }, "boot") => p.boot = self.boolean(node)?,
                            _ => self.unknown(node, "'gpt|partition'")?,
                        }
                    }
                    g.partitions.push(p);
                }
                _ => self.unknown(node, "'gpt'")?,
            }
        }
        Ok(g)
    }

    fn uboot(
        &self,
        name: String,
        body: &[Node],
        span: &Span,
    ) -> Result<UbootEnvironment, ConfigError> {
        let mut u = UbootEnvironment {
            name,
            span: span.clone(),
            block_offset: None,
            block_count: UNSET_COUNT,
            block_offset_redund: None,
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "block-offset") => {
                    u.block_offset = Some(self.string(node)?)
                }
                (NodeKind::Assign { .. }, "block-count") => u.block_count = self.int(node)?,
                (NodeKind::Assign { .. }, "block-offset-redund") => {
                    u.block_offset_redund = Some(self.string(node)?)
                }
                _ => self.unknown(node, "'uboot-environment'")?,
            }
        }
        Ok(u)
    }

    fn task(&self, name: String, body: &[Node], span: &Span) -> Result<Task, ConfigError> {
        let mut t = Task {
            name,
            span: span.clone(),
            reqs: Vec::new(),
            require_partition1_offset: -1,
            require_unmounted_destination: false,
            verify_on_the_fly: false,
            on_init: None,
            on_finish: None,
            on_error: None,
            on_resource: Vec::new(),
        };
        for node in body {
            match (&node.kind, opt_name(node)) {
                (NodeKind::Assign { .. }, "reqlist") => {
                    let mut raw = Vec::new();
                    self.list(node, &mut raw);
                    t.reqs = decode_calls(&raw, &node.span, "reqlist")?;
                }
                (NodeKind::Call { name, args }, _) => {
                    if REQUIREMENTS.contains(&name.as_str()) {
                        t.reqs.push(make_call(name, args, &node.span)?);
                    } else {
                        self.unknown_call(node, name, "'task'")?;
                    }
                }
                (NodeKind::Assign { .. }, "require-partition1-offset") => {
                    t.require_partition1_offset = self.int(node)?
                }
                (NodeKind::Assign { .. }, "require-unmounted-destination") => {
                    t.require_unmounted_destination = self.boolean(node)?
                }
                (NodeKind::Assign { .. }, "verify-on-the-fly") => {
                    t.verify_on_the_fly = self.boolean(node)?
                }
                (
                    NodeKind::Section {
                        title: None,
                        body,
                        name,
                    },
                    "on-init" | "on-finish" | "on-error",
                ) => {
                    let slot = match name.as_str() {
                        "on-init" => &mut t.on_init,
                        "on-finish" => &mut t.on_finish,
                        _ => &mut t.on_error,
                    };
                    if slot.is_some() {
                        return Err(ConfigError::at(
                            node.span.clone(),
                            format!("'{name}' appears twice in task '{}'", t.name),
                        ));
                    }
                    let mut funcs = Vec::new();
                    for node in body {
                        self.event_node(node, &mut funcs, name)?;
                    }
                    *slot = Some(Event { funcs });
                }
                (
                    NodeKind::Section {
                        title: Some(title),
                        body,
                        ..
                    },
                    "on-resource",
                ) => {
                    no_dup(
                        t.on_resource.iter().map(|p| &p.name),
                        title,
                        node,
                        "on-resource",
                    )?;
                    let mut r = OnResource {
                        name: title.clone(),
                        span: node.span.clone(),
                        verify_on_the_fly: false,
                        delta_source_raw_offset: None,
                        delta_source_raw_count: UNSET_COUNT,
                        delta_source_raw_options: None,
                        delta_source_fat_offset: None,
                        delta_source_fat_path: None,
                        funcs: Vec::new(),
                    };
                    for node in body {
                        match (&node.kind, opt_name(node)) {
                            (NodeKind::Assign { .. }, "verify-on-the-fly") => {
                                r.verify_on_the_fly = self.boolean(node)?
                            }
                            (NodeKind::Assign { .. }, "delta-source-raw-offset") => {
                                r.delta_source_raw_offset = Some(self.string(node)?)
                            }
                            (NodeKind::Assign { .. }, "delta-source-raw-count") => {
                                r.delta_source_raw_count = self.int(node)?
                            }
                            (NodeKind::Assign { .. }, "delta-source-raw-options") => {
                                r.delta_source_raw_options = Some(self.string(node)?)
                            }
                            (NodeKind::Assign { .. }, "delta-source-fat-offset") => {
                                r.delta_source_fat_offset = Some(self.string(node)?)
                            }
                            (NodeKind::Assign { .. }, "delta-source-fat-path") => {
                                r.delta_source_fat_path = Some(self.string(node)?)
                            }
                            _ => self.event_node(node, &mut r.funcs, "on-resource")?,
                        }
                    }
                    t.on_resource.push(r);
                }
                (NodeKind::Section { .. }, "on-resource") => {
                    return Err(ConfigError::at(
                        node.span.clone(),
                        "missing title for section 'on-resource'",
                    ));
                }
                _ => self.unknown(node, &format!("task '{}'", t.name))?,
            }
        }
        Ok(t)
    }

    fn event_node(
        &self,
        node: &Node,
        funcs: &mut Vec<Call>,
        section: &str,
    ) -> Result<(), ConfigError> {
        match &node.kind {
            NodeKind::Call { name, args } if EVENT_FUNCTIONS.contains(&name.as_str()) => {
                funcs.push(make_call(name, args, &node.span)?);
                Ok(())
            }
            NodeKind::Call { name, .. } => self.unknown_call(node, name, &format!("'{section}'")),
            NodeKind::Assign { name, .. } if name == "funlist" => {
                let mut raw = Vec::new();
                self.list(node, &mut raw);
                let decoded = decode_calls(&raw, &node.span, "funlist")?;
                if let NodeKind::Assign { append: false, .. } = &node.kind {
                    funcs.clear();
                }
                funcs.extend(decoded);
                Ok(())
            }
            _ => self.unknown(node, &format!("'{section}'")),
        }
    }
}

fn make_call(name: &str, args: &[String], span: &Span) -> Result<Call, ConfigError> {
    if args.len() + 1 > FUN_MAX_ARGS {
        return Err(ConfigError::at(
            span.clone(),
            format!("too many arguments passed to '{name}'"),
        ));
    }
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(name.to_owned());
    all.extend(args.iter().cloned());
    Ok(Call {
        args: all,
        span: span.clone(),
    })
}

/// Decodes a `funlist`/`reqlist`: `argc, name, args..., argc, name, ...`.
pub fn decode_calls(raw: &[String], span: &Span, what: &str) -> Result<Vec<Call>, ConfigError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let argc = parse_c_uint(&raw[i])
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&n| (1..=FUN_MAX_ARGS).contains(&n))
            .ok_or_else(|| {
                ConfigError::at(
                    span.clone(),
                    format!("unexpected argument count '{}' in {what}", raw[i]),
                )
            })?;
        i += 1;
        if i + argc > raw.len() {
            return Err(ConfigError::at(span.clone(), format!("truncated {what}")));
        }
        out.push(Call {
            args: raw[i..i + argc].to_vec(),
            span: span.clone(),
        });
        i += argc;
    }
    Ok(out)
}

fn opt_name(node: &Node) -> &str {
    match &node.kind {
        NodeKind::Assign { name, .. }
        | NodeKind::Section { name, .. }
        | NodeKind::Call { name, .. } => name,
    }
}

/// A span for items that come from no file (tests, generated configs).
pub fn nowhere() -> Span {
    Span::new(Arc::from("<generated>"), 0)
}

#[cfg(test)]
mod tests {
    use super::super::Vars;
    use super::super::parser::Parser;
    use super::*;

    fn read(src: &str, mode: Mode) -> Result<Config, ConfigError> {
        let mut vars = Vars::default();
        let nodes = Parser::new(src, "f.conf", &mut vars, mode).parse()?;
        Config::from_nodes(&nodes, mode)
    }

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_int("0xc"), Some(12));
        assert_eq!(parse_c_int("0x83"), Some(131));
        assert_eq!(parse_c_int("010"), Some(8));
        assert_eq!(parse_c_int("0"), Some(0));
        assert_eq!(parse_c_int("-1"), Some(-1));
        assert_eq!(parse_c_int("12a"), None);
        assert_eq!(parse_c_int(""), None);
        assert_eq!(parse_c_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_c_uint("-1"), None);
    }

    #[test]
    fn sections_and_calls() {
        let cfg = read(
            r#"
meta-product = "p"
file-resource a { contents = "x" }
mbr m { partition 0 { block-offset = 63 block-count = 100 type = 0xc boot = true } }
uboot-environment env { block-offset = 16 block-count = 16 }
task complete {
  require-uboot-variable(env, "k", "v")
  require-unmounted-destination = true
  on-init { mbr_write(m) uboot_setenv(env, "a", "1") }
  on-resource a { fat_write(63, "a") }
  on-finish { }
}
"#,
            Mode::Create,
        )
        .unwrap();
        assert_eq!(cfg.meta.product.as_deref(), Some("p"));
        assert_eq!(cfg.mbrs[0].partitions[0].part_type, 12);
        assert!(cfg.mbrs[0].partitions[0].boot);
        let t = &cfg.tasks[0];
        assert_eq!(t.reqs[0].args, ["require-uboot-variable", "env", "k", "v"]);
        assert!(t.require_unmounted_destination);
        assert_eq!(t.on_init.as_ref().unwrap().funcs.len(), 2);
        assert_eq!(t.on_init.as_ref().unwrap().funcs[1].span.line, 9);
        assert_eq!(t.on_resource[0].funcs[0].args, ["fat_write", "63", "a"]);
        assert!(t.on_finish.as_ref().unwrap().funcs.is_empty());
    }

    #[test]
    fn unknown_constructs_fail_with_file_and_line_when_creating() {
        let e = read("meta-product = p\nbogus = 1\n", Mode::Create).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf:2: no such option 'bogus' in the top level"
        );
        let e = read("task t {\n on-init {\n raw_wirte(1)\n }\n}\n", Mode::Create).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf:3: no such function 'raw_wirte' in 'on-init'"
        );
        let e = read("mbr m { partition 0 { type = fat } }", Mode::Create).unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid integer value 'fat' for option 'type'")
        );
        let e = read("task t { }\ntask t { }", Mode::Create).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf:2: found duplicate title 't' for section 'task'"
        );
        let e = read("file-resource x { }", Mode::Create).unwrap_err();
        assert!(e.to_string().contains("host-path or contents must be set"));
        // The same unknown option is skipped in an archive's meta.conf.
        let cfg = read(
            "meta-product = p\nmeta-future = 1\ntask t { newthing = 2 }",
            Mode::Meta,
        )
        .unwrap();
        assert_eq!(cfg.tasks.len(), 1);
    }

    #[test]
    fn funlist_decoding() {
        let cfg = read(
            "task t { reqlist = {4,\"require-uboot-variable\",\"uboot-env\",nerves_fw_active,a}\n on-init { funlist = {2,mbr_write,\"mbr-a\",3,trim,10,20} } }",
            Mode::Meta,
        )
        .unwrap();
        let t = &cfg.tasks[0];
        assert_eq!(
            t.reqs[0].args,
            [
                "require-uboot-variable",
                "uboot-env",
                "nerves_fw_active",
                "a"
            ]
        );
        let f = &t.on_init.as_ref().unwrap().funcs;
        assert_eq!(f[0].args, ["mbr_write", "mbr-a"]);
        assert_eq!(f[1].args, ["trim", "10", "20"]);
        let e = read("task t { on-init { funlist = {3,trim,1} } }", Mode::Meta).unwrap_err();
        assert!(e.to_string().contains("truncated funlist"));
        let e = read("task t { on-init { funlist = {0,trim} } }", Mode::Meta).unwrap_err();
        assert!(e.to_string().contains("unexpected argument count"));
    }
}
