//! The functions and requirements of tasks, parsed once into typed values.
//!
//! A task's calls are stored in meta.conf as strings (`funlist={2,raw_write,63}`); they are
//! parsed into [`Func`] and [`Requirement`] values, with every argument checked, when an archive
//! is created (errors name the file and line) and again when it is applied, before anything is
//! written (an archive that carries a misused function is refused before the first write). One
//! row per function:
//!
//! | function | arguments | where | progress units |
//! |---|---|---|---|
//! | `raw_write` | block offset | on-resource | the resource's data bytes |
//! | `raw_memset` | block offset, block count (>0), byte (0..=255) | any | count × 512 |
//! | `trim` | block offset, block count (>0) | any | count / 256 |
//! | `fat_mkfs` | block offset, block count | any | 512 |
//! | `fat_write` | block offset, file name (default: the resource name) | on-resource | the resource's bytes, holes included |
//! | `fat_mv`, `fat_mv!` | block offset, old name, new name (`!`: replace) | any | 512 |
//! | `fat_rm`, `fat_rm!` | block offset, name (`!`: must exist) | any | 512 |
//! | `fat_cp` | block offset, from, [block offset,] to | any | 512 |
//! | `fat_mkdir`, `fat_setlabel`, `fat_touch` | block offset, name | any | 512 |
//! | `fat_attrib` | block offset, name, letters of `RHS` | any | 512 |
//! | `mbr_write`, `gpt_write` | name of an `mbr`/`gpt` section | any | 512 / 2 × 33 × 512 |
//! | `uboot_clearenv`, `uboot_recover` | environment | any | the environment's size (both copies) |
//! | `uboot_setenv` | environment, name, value | any | the same |
//! | `uboot_unsetenv` | environment, name | any | the same |
//! | `info`, `error` | text | any | 0 |
//! | `reboot_param` | text | any | 512 |
//!
//! Requirements: `require-partition-offset(partition 0..=3, block offset)`,
//! `require-fat-file-exists(block offset, name)`, `require-fat-file-match(block offset, name,
//! text)`, `require-uboot-variable(environment, name, value)`,
//! `require-path-on-device(path, device)`, `require-path-at-offset(path, block offset)`.
//!
//! Not supported by Myelin (refused when creating): `path_write`, `pipe_write`, `execute`,
//! `ubi_volume_write`, `require-execute` (they run host commands or need `--unsafe`), and the
//! encryption options of `raw_write`.
//!
//! An `on-resource` may contain only one of `raw_write`/`fat_write`: the resource streams past
//! once (fwup accepts a second one when creating and fails when applying).
//!
//! Block offsets and counts are non-negative C integers whose byte value (× 512) fits 64 bits.
//! Arguments containing `${...}` that are only resolved when applying must still be valid where
//! a number is expected.

use crate::config::model::{parse_c_int, parse_c_uint};
use crate::config::{Call, Config, ConfigError, Span, Task};

/// Bytes in a block, the unit of every offset and count.
pub const BLOCK: u64 = 512;

/// Where a call appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context<'a> {
    /// `on-init`.
    Init,
    /// `on-finish`.
    Finish,
    /// `on-error`.
    Error,
    /// `on-resource NAME`.
    Resource(&'a str),
}

/// One task function with its arguments checked (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Func {
    /// `raw_write(offset)`: the resource's data at a block offset.
    RawWrite {
        /// Destination block.
        offset: u64,
    },
    /// `raw_memset(offset, count, value)`.
    RawMemset {
        /// First block.
        offset: u64,
        /// Blocks to fill.
        count: u64,
        /// The byte written.
        value: u8,
    },
    /// `trim(offset, count)`: the range's contents no longer matter.
    Trim {
        /// First block.
        offset: u64,
        /// Blocks.
        count: u64,
    },
    /// `fat_mkfs(offset, count)`.
    FatMkfs {
        /// First block of the volume.
        offset: u64,
        /// Blocks in the volume.
        count: u64,
    },
    /// `fat_write(offset, name)`: the resource as a file.
    FatWrite {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
    },
    /// `fat_mv` and `fat_mv!`.
    FatMv {
        /// The volume's first block.
        offset: u64,
        /// Old name.
        from: String,
        /// New name.
        to: String,
        /// `fat_mv!`: replace an existing `to`.
        replace: bool,
    },
    /// `fat_rm` and `fat_rm!`.
    FatRm {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
        /// `fat_rm!`: the file must exist.
        must_exist: bool,
    },
    /// `fat_cp(offset, from, [offset,] to)`.
    FatCp {
        /// Source volume and file.
        from: (u64, String),
        /// Destination volume and file.
        to: (u64, String),
    },
    /// `fat_mkdir(offset, name)`.
    FatMkdir {
        /// The volume's first block.
        offset: u64,
        /// Directory name.
        path: String,
    },
    /// `fat_setlabel(offset, label)`.
    FatSetlabel {
        /// The volume's first block.
        offset: u64,
        /// The label.
        label: String,
    },
    /// `fat_touch(offset, name)`.
    FatTouch {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
    },
    /// `fat_attrib(offset, name, attributes)`.
    FatAttrib {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
        /// Letters of `RHS` (read-only, hidden, system).
        attrib: String,
    },
    /// `mbr_write(name)`.
    MbrWrite {
        /// The `mbr` section.
        mbr: String,
    },
    /// `gpt_write(name)`.
    GptWrite {
        /// The `gpt` section.
        gpt: String,
    },
    /// `uboot_clearenv(env)`.
    UbootClearenv {
        /// The `uboot-environment` section.
        env: String,
    },
    /// `uboot_recover(env)`: clears the environment only if no copy is valid.
    UbootRecover {
        /// The `uboot-environment` section.
        env: String,
    },
    /// `uboot_setenv(env, name, value)`.
    UbootSetenv {
        /// The `uboot-environment` section.
        env: String,
        /// Variable.
        name: String,
        /// Value (may be empty: kept as `name=`, as fwup and U-Boot's tools keep it).
        value: String,
    },
    /// `uboot_unsetenv(env, name)`.
    UbootUnsetenv {
        /// The `uboot-environment` section.
        env: String,
        /// Variable.
        name: String,
    },
    /// `info(message)`.
    Info {
        /// Text reported to the user.
        message: String,
    },
    /// `error(message)`: fails the task.
    Error {
        /// The error.
        message: String,
    },
    /// `reboot_param(text)`: recorded for the next reboot once the task succeeded.
    RebootParam {
        /// The parameter.
        param: String,
    },
}

/// One task requirement with its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `require-partition-offset(partition, offset)`.
    PartitionOffset {
        /// MBR entry 0..=3.
        partition: usize,
        /// Block offset it must start at.
        offset: u64,
    },
    /// `require-fat-file-exists(offset, name)`.
    FatFileExists {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
    },
    /// `require-fat-file-match(offset, name, pattern)`.
    FatFileMatch {
        /// The volume's first block.
        offset: u64,
        /// File name.
        path: String,
        /// Text the file must contain.
        pattern: String,
    },
    /// `require-uboot-variable(env, name, value)`.
    UbootVariable {
        /// The `uboot-environment` section.
        env: String,
        /// Variable.
        name: String,
        /// Value it must have.
        value: String,
    },
    /// `require-path-on-device(path, device)`.
    PathOnDevice {
        /// A path of the running system.
        path: String,
        /// The block device.
        device: String,
    },
    /// `require-path-at-offset(path, offset)`.
    PathAtOffset {
        /// A path of the running system.
        path: String,
        /// Block offset of its partition.
        offset: u64,
    },
}

fn bad(call: &Call, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(call.span.clone(), msg)
}

fn argc(call: &Call, n: usize, msg: &str) -> Result<(), ConfigError> {
    if call.args.len() != n {
        return Err(bad(call, msg));
    }
    Ok(())
}

/// A block number whose byte offset fits 64 bits.
fn block(call: &Call, i: usize, msg: &str) -> Result<u64, ConfigError> {
    parse_c_uint(call.arg(i))
        .filter(|v| v.checked_mul(BLOCK).is_some())
        .ok_or_else(|| bad(call, msg))
}

/// An offset and a count whose end (in bytes) fits 64 bits.
fn range(call: &Call, off_msg: &str, count_msg: &str) -> Result<(u64, u64), ConfigError> {
    let offset = block(call, 1, off_msg)?;
    let count = block(call, 2, count_msg)?;
    if offset
        .checked_add(count)
        .and_then(|e| e.checked_mul(BLOCK))
        .is_none()
    {
        return Err(bad(call, format!("{} range is too large", call.name())));
    }
    Ok((offset, count))
}

fn env_ref(cfg: &Config, call: &Call, name: &str) -> Result<String, ConfigError> {
    if cfg.uboot_env(call.arg(1)).is_none() {
        return Err(bad(
            call,
            format!(
                "{name} can't find uboot-environment reference '{}'",
                call.arg(1)
            ),
        ));
    }
    Ok(call.arg(1).to_owned())
}

/// Fills in what fwup fills in before storing a call: `fat_write` without a name writes a file
/// named after the resource.
pub fn complete_call(ctx: Context<'_>, call: &mut Call) {
    if let (Context::Resource(resource), "fat_write") = (ctx, call.name()) {
        if call.args.len() == 2 {
            call.args.push(resource.to_owned());
        }
    }
}

impl Func {
    /// Parses and checks one call made in `ctx` (see the module's table).
    pub fn parse(cfg: &Config, ctx: Context<'_>, call: &Call) -> Result<Func, ConfigError> {
        let name = call.name();
        let func = match name {
            "raw_write" => {
                let Context::Resource(_) = ctx else {
                    return Err(bad(call, "raw_write only usable in on-resource"));
                };
                if call.args.len() < 2 {
                    return Err(bad(call, "raw_write requires a block offset"));
                }
                let offset = block(
                    call,
                    1,
                    "raw_write requires a non-negative integer block offset",
                )?;
                if call.args.len() > 2 {
                    return Err(bad(
                        call,
                        "raw_write encryption options (cipher=, secret=) are not supported by myelin-fw",
                    ));
                }
                Func::RawWrite { offset }
            }
            "raw_memset" => {
                argc(
                    call,
                    4,
                    "raw_memset requires a block offset, count, and value",
                )?;
                let (offset, count) = range(
                    call,
                    "raw_memset requires a non-negative integer block offset",
                    "raw_memset requires a positive integer block count",
                )?;
                if count == 0 || count > (i64::MAX as u64) / BLOCK {
                    return Err(bad(
                        call,
                        "raw_memset requires a positive integer block count",
                    ));
                }
                let value = parse_c_int(call.arg(3))
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        bad(call, "raw_memset requires value to be between 0 and 255")
                    })?;
                Func::RawMemset {
                    offset,
                    count,
                    value,
                }
            }
            "trim" => {
                argc(call, 3, "trim requires a block offset and count")?;
                let (offset, count) = range(
                    call,
                    "trim requires a non-negative integer block offset",
                    "trim requires a block count >1",
                )?;
                if count == 0 {
                    return Err(bad(call, "trim requires a block count >1"));
                }
                Func::Trim { offset, count }
            }
            "fat_mkfs" => {
                argc(call, 3, "fat_mkfs requires a block offset and block count")?;
                let (offset, count) = range(
                    call,
                    "fat_mkfs requires a non-negative integer block offset",
                    "fat_mkfs requires a non-negative integer block count",
                )?;
                Func::FatMkfs { offset, count }
            }
            "fat_write" => {
                let Context::Resource(resource) = ctx else {
                    return Err(bad(call, "fat_write only usable in on-resource"));
                };
                if !(2..=3).contains(&call.args.len()) {
                    return Err(bad(
                        call,
                        "fat_write requires a block offset and optional destination filename",
                    ));
                }
                let offset = block(
                    call,
                    1,
                    "fat_write requires a non-negative integer block offset",
                )?;
                let path = if call.args.len() == 3 {
                    call.arg(2).to_owned()
                } else {
                    resource.to_owned()
                };
                Func::FatWrite { offset, path }
            }
            "fat_mv" | "fat_mv!" => {
                argc(
                    call,
                    4,
                    "fat_mv requires a block offset, old filename, new filename",
                )?;
                Func::FatMv {
                    offset: block(
                        call,
                        1,
                        "fat_mv requires a non-negative integer block offset",
                    )?,
                    from: call.arg(2).to_owned(),
                    to: call.arg(3).to_owned(),
                    replace: name == "fat_mv!",
                }
            }
            "fat_rm" | "fat_rm!" => {
                argc(call, 3, "fat_rm requires a block offset and filename")?;
                Func::FatRm {
                    offset: block(
                        call,
                        1,
                        "fat_rm requires a non-negative integer block offset",
                    )?,
                    path: call.arg(2).to_owned(),
                    must_exist: name == "fat_rm!",
                }
            }
            "fat_cp" => match call.args.len() {
                4 => {
                    let off = block(
                        call,
                        1,
                        "fat_cp requires a non-negative integer block offset",
                    )?;
                    Func::FatCp {
                        from: (off, call.arg(2).to_owned()),
                        to: (off, call.arg(3).to_owned()),
                    }
                }
                5 => Func::FatCp {
                    from: (
                        block(
                            call,
                            1,
                            "fat_cp requires a non-negative integer source block offset",
                        )?,
                        call.arg(2).to_owned(),
                    ),
                    to: (
                        block(
                            call,
                            3,
                            "fat_cp requires a non-negative integer destination block offset",
                        )?,
                        call.arg(4).to_owned(),
                    ),
                },
                _ => return Err(bad(call, "fat_cp requires either 3 or 4 arguments")),
            },
            "fat_mkdir" | "fat_setlabel" | "fat_touch" => {
                let what = match name {
                    "fat_mkdir" => "directory name",
                    "fat_setlabel" => "name",
                    _ => "filename",
                };
                argc(
                    call,
                    3,
                    &format!("{name} requires a block offset and {what}"),
                )?;
                let offset = block(
                    call,
                    1,
                    &format!("{name} requires a non-negative integer block offset"),
                )?;
                let path = call.arg(2).to_owned();
                match name {
                    "fat_mkdir" => Func::FatMkdir { offset, path },
                    "fat_setlabel" => Func::FatSetlabel {
                        offset,
                        label: path,
                    },
                    _ => Func::FatTouch { offset, path },
                }
            }
            "fat_attrib" => {
                argc(
                    call,
                    4,
                    "fat_attrib requires a block offset, filename, and attributes (SHR)",
                )?;
                let offset = block(
                    call,
                    1,
                    "fat_attrib requires a non-negative integer block offset",
                )?;
                if !call.arg(3).chars().all(|c| "SHRshr".contains(c)) {
                    return Err(bad(call, "fat_attrib only supports R, H, and S attributes"));
                }
                Func::FatAttrib {
                    offset,
                    path: call.arg(2).to_owned(),
                    attrib: call.arg(3).to_owned(),
                }
            }
            "mbr_write" => {
                argc(call, 2, "mbr_write requires an mbr")?;
                if cfg.mbr(call.arg(1)).is_none() {
                    return Err(bad(
                        call,
                        format!("mbr_write can't find mbr reference '{}'", call.arg(1)),
                    ));
                }
                Func::MbrWrite {
                    mbr: call.arg(1).to_owned(),
                }
            }
            "gpt_write" => {
                argc(call, 2, "gpt_write requires a gpt")?;
                if cfg.gpt(call.arg(1)).is_none() {
                    return Err(bad(
                        call,
                        format!("gpt_write can't find gpt reference '{}'", call.arg(1)),
                    ));
                }
                Func::GptWrite {
                    gpt: call.arg(1).to_owned(),
                }
            }
            "uboot_clearenv" => {
                argc(
                    call,
                    2,
                    "uboot_clearenv requires a uboot-environment reference",
                )?;
                Func::UbootClearenv {
                    env: env_ref(cfg, call, name)?,
                }
            }
            "uboot_recover" => {
                argc(
                    call,
                    2,
                    "uboot_recover requires a uboot-environment reference",
                )?;
                Func::UbootRecover {
                    env: env_ref(cfg, call, name)?,
                }
            }
            "uboot_setenv" => {
                argc(
                    call,
                    4,
                    "uboot_setenv requires a uboot-environment reference, variable name and value",
                )?;
                Func::UbootSetenv {
                    env: env_ref(cfg, call, name)?,
                    name: call.arg(2).to_owned(),
                    value: call.arg(3).to_owned(),
                }
            }
            "uboot_unsetenv" => {
                argc(
                    call,
                    3,
                    "uboot_unsetenv requires a uboot-environment reference and a variable name",
                )?;
                Func::UbootUnsetenv {
                    env: env_ref(cfg, call, name)?,
                    name: call.arg(2).to_owned(),
                }
            }
            "info" | "error" => {
                argc(call, 2, &format!("{name}() requires a message parameter"))?;
                let message = call.arg(1).to_owned();
                if name == "info" {
                    Func::Info { message }
                } else {
                    Func::Error { message }
                }
            }
            "reboot_param" => {
                argc(call, 2, "reboot_param requires a single string parameter")?;
                Func::RebootParam {
                    param: call.arg(1).to_owned(),
                }
            }
            "path_write" | "pipe_write" | "execute" | "ubi_volume_write" => {
                return Err(bad(
                    call,
                    format!(
                        "{name} is not supported by myelin-fw (it runs host commands or writes outside the target)"
                    ),
                ));
            }
            other => return Err(bad(call, format!("no such function '{other}'"))),
        };
        Ok(func)
    }

    /// The function's name as written in fwup.conf.
    pub fn name(&self) -> &'static str {
        match self {
            Func::RawWrite { .. } => "raw_write",
            Func::RawMemset { .. } => "raw_memset",
            Func::Trim { .. } => "trim",
            Func::FatMkfs { .. } => "fat_mkfs",
            Func::FatWrite { .. } => "fat_write",
            Func::FatMv { replace: false, .. } => "fat_mv",
            Func::FatMv { replace: true, .. } => "fat_mv!",
            Func::FatRm {
                must_exist: false, ..
            } => "fat_rm",
            Func::FatRm {
                must_exist: true, ..
            } => "fat_rm!",
            Func::FatCp { .. } => "fat_cp",
            Func::FatMkdir { .. } => "fat_mkdir",
            Func::FatSetlabel { .. } => "fat_setlabel",
            Func::FatTouch { .. } => "fat_touch",
            Func::FatAttrib { .. } => "fat_attrib",
            Func::MbrWrite { .. } => "mbr_write",
            Func::GptWrite { .. } => "gpt_write",
            Func::UbootClearenv { .. } => "uboot_clearenv",
            Func::UbootRecover { .. } => "uboot_recover",
            Func::UbootSetenv { .. } => "uboot_setenv",
            Func::UbootUnsetenv { .. } => "uboot_unsetenv",
            Func::Info { .. } => "info",
            Func::Error { .. } => "error",
            Func::RebootParam { .. } => "reboot_param",
        }
    }

    /// Whether the function consumes the resource's data (`raw_write`, `fat_write`).
    pub fn writes_resource(&self) -> bool {
        matches!(self, Func::RawWrite { .. } | Func::FatWrite { .. })
    }

    /// fwup's progress units for this call; `resource` is `(data bytes, total bytes)` of the
    /// resource in an `on-resource`, `env_units` the size of an environment (both copies).
    pub fn units(&self, resource: Option<(u64, u64)>, env_units: impl Fn(&str) -> u64) -> u64 {
        match self {
            Func::RawWrite { .. } => resource.map_or(0, |r| r.0),
            Func::FatWrite { .. } => resource.map_or(0, |r| r.1),
            Func::RawMemset { count, .. } => count.saturating_mul(BLOCK),
            Func::Trim { count, .. } => count / 256,
            Func::GptWrite { .. } => 2 * 33 * BLOCK,
            Func::UbootClearenv { env }
            | Func::UbootRecover { env }
            | Func::UbootSetenv { env, .. }
            | Func::UbootUnsetenv { env, .. } => env_units(env),
            Func::Info { .. } | Func::Error { .. } => 0,
            _ => BLOCK,
        }
    }
}

impl Requirement {
    /// Parses and checks one requirement.
    pub fn parse(cfg: &Config, call: &Call) -> Result<Requirement, ConfigError> {
        Ok(match call.name() {
            "require-partition-offset" => {
                argc(
                    call,
                    3,
                    "require-partition-offset requires a partition number and a block offset",
                )?;
                let partition = crate::mbr::partition_index(call.arg(1)).ok_or_else(|| {
                    bad(
                        call,
                        "require-partition-offset requires the partition number to be 0-3",
                    )
                })?;
                Requirement::PartitionOffset {
                    partition,
                    offset: block(
                        call,
                        2,
                        "require-partition-offset requires a non-negative integer block offset",
                    )?,
                }
            }
            "require-fat-file-exists" => {
                argc(
                    call,
                    3,
                    "require-fat-file-exists requires a FAT FS block offset and a filename",
                )?;
                Requirement::FatFileExists {
                    offset: block(
                        call,
                        1,
                        "require-fat-file-exists requires a non-negative integer block offset",
                    )?,
                    path: call.arg(2).to_owned(),
                }
            }
            "require-fat-file-match" => {
                argc(
                    call,
                    4,
                    "require-fat-file-match requires a FAT FS block offset, a filename, and a pattern",
                )?;
                Requirement::FatFileMatch {
                    offset: block(
                        call,
                        1,
                        "require-fat-file-match requires a non-negative integer block offset",
                    )?,
                    path: call.arg(2).to_owned(),
                    pattern: call.arg(3).to_owned(),
                }
            }
            "require-uboot-variable" => {
                argc(
                    call,
                    4,
                    "require-uboot-variable requires a uboot-environment reference, variable name, and value",
                )?;
                if cfg.uboot_env(call.arg(1)).is_none() {
                    return Err(bad(
                        call,
                        "require-uboot-variable can't find uboot-environment reference",
                    ));
                }
                Requirement::UbootVariable {
                    env: call.arg(1).to_owned(),
                    name: call.arg(2).to_owned(),
                    value: call.arg(3).to_owned(),
                }
            }
            "require-path-on-device" => {
                argc(
                    call,
                    3,
                    "require-path-on-device requires a path and a device",
                )?;
                Requirement::PathOnDevice {
                    path: call.arg(1).to_owned(),
                    device: call.arg(2).to_owned(),
                }
            }
            "require-path-at-offset" => {
                argc(
                    call,
                    3,
                    "require-path-at-offset requires a path and a block offset",
                )?;
                Requirement::PathAtOffset {
                    path: call.arg(1).to_owned(),
                    offset: block(
                        call,
                        2,
                        "require-path-at-offset requires a non-negative integer block offset",
                    )?,
                }
            }
            "require-execute" => {
                return Err(bad(
                    call,
                    "require-execute is not supported by myelin-fw (it runs host commands)",
                ));
            }
            other => return Err(bad(call, format!("no such requirement '{other}'"))),
        })
    }
}

/// A call parsed, with where it was written (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The function.
    pub func: Func,
    /// Where it is written (fwup.conf line, or meta.conf).
    pub span: Span,
}

/// The functions of one `on-resource`, with its delta source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSteps {
    /// Resource name.
    pub name: String,
    /// The calls.
    pub steps: Vec<Step>,
}

/// A task with every call parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSteps {
    /// Requirements (only parsed; a task whose requirement does not parse is not selected).
    pub reqs: Vec<Requirement>,
    /// `on-init`.
    pub on_init: Vec<Step>,
    /// `on-resource` sections, in file order.
    pub on_resource: Vec<ResourceSteps>,
    /// `on-finish`.
    pub on_finish: Vec<Step>,
    /// `on-error`.
    pub on_error: Vec<Step>,
}

impl TaskSteps {
    /// The steps of the `on-resource` for `name`.
    pub fn on_resource(&self, name: &str) -> Option<&ResourceSteps> {
        self.on_resource.iter().find(|r| r.name == name)
    }
}

fn parse_steps(cfg: &Config, ctx: Context<'_>, calls: &[Call]) -> Result<Vec<Step>, ConfigError> {
    calls
        .iter()
        .map(|c| {
            Ok(Step {
                func: Func::parse(cfg, ctx, c)?,
                span: c.span.clone(),
            })
        })
        .collect()
}

/// Parses every call of `task` (requirements included) against `cfg`.
pub fn parse_task(cfg: &Config, task: &Task) -> Result<TaskSteps, ConfigError> {
    let reqs = task
        .reqs
        .iter()
        .map(|r| Requirement::parse(cfg, r))
        .collect::<Result<Vec<_>, _>>()?;
    let event = |ctx, e: &Option<crate::config::Event>| match e {
        Some(e) => parse_steps(cfg, ctx, &e.funcs),
        None => Ok(Vec::new()),
    };
    let mut on_resource = Vec::new();
    for r in &task.on_resource {
        if cfg.resource(&r.name).is_none() {
            return Err(ConfigError::at(
                r.span.clone(),
                format!("unknown resource: {}", r.name),
            ));
        }
        let steps = parse_steps(cfg, Context::Resource(&r.name), &r.funcs)?;
        // A resource streams past once: a second writing call would get no data (fwup fails
        // with "didn't write anything" when applying; say it now instead).
        let mut writers = steps.iter().filter(|s| s.func.writes_resource());
        if let (Some(first), Some(second)) = (writers.next(), writers.next()) {
            return Err(ConfigError::at(
                second.span.clone(),
                format!(
                    "{} in on-resource '{}' would get no data: the resource streams past once and {} at {} already writes it; copy it with fat_cp instead",
                    second.func.name(),
                    r.name,
                    first.func.name(),
                    first.span
                ),
            ));
        }
        on_resource.push(ResourceSteps {
            name: r.name.clone(),
            steps,
        });
    }
    Ok(TaskSteps {
        reqs,
        on_init: event(Context::Init, &task.on_init)?,
        on_resource,
        on_finish: event(Context::Finish, &task.on_finish)?,
        on_error: event(Context::Error, &task.on_error)?,
    })
}

/// Checks (and completes, see [`complete_call`]) every task of a configuration being created.
pub fn validate_tasks(cfg: &mut Config) -> Result<(), ConfigError> {
    for task in &mut cfg.tasks {
        for r in &mut task.on_resource {
            let name = r.name.clone();
            for c in &mut r.funcs {
                complete_call(Context::Resource(&name), c);
            }
        }
    }
    for task in &cfg.tasks {
        parse_task(cfg, task)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use crate::config::parser::{Mode, Parser};

    fn cfg(src: &str) -> Result<Config, ConfigError> {
        let mut vars = Vars::default();
        let nodes = Parser::new(src, "f.conf", &mut vars, Mode::Create).parse()?;
        let mut c = Config::from_nodes(&nodes, Mode::Create)?;
        validate_tasks(&mut c)?;
        Ok(c)
    }

    #[test]
    fn fat_write_gets_the_resource_name() {
        let c =
            cfg("file-resource k { contents = \"x\" }\ntask t { on-resource k { fat_write(63) } }")
                .unwrap();
        assert_eq!(
            c.tasks[0].on_resource[0].funcs[0].args,
            ["fat_write", "63", "k"]
        );
        let steps = parse_task(&c, &c.tasks[0]).unwrap();
        assert_eq!(
            steps.on_resource[0].steps[0].func,
            Func::FatWrite {
                offset: 63,
                path: "k".into()
            }
        );
    }

    #[test]
    fn typed_arguments() {
        let c = cfg("uboot-environment e { block-offset = 16 block-count = 16 }\n\
                     task t { on-init { raw_memset(0x10, 2, 0xff) uboot_setenv(e, a, \"\") trim(8, 512) } }")
        .unwrap();
        let steps = parse_task(&c, &c.tasks[0]).unwrap();
        let funcs: Vec<_> = steps.on_init.iter().map(|s| s.func.clone()).collect();
        assert_eq!(
            funcs,
            vec![
                Func::RawMemset {
                    offset: 16,
                    count: 2,
                    value: 255
                },
                Func::UbootSetenv {
                    env: "e".into(),
                    name: "a".into(),
                    value: String::new()
                },
                Func::Trim {
                    offset: 8,
                    count: 512
                },
            ]
        );
        assert_eq!(funcs[0].units(None, |_| 0), 1024);
        assert_eq!(funcs[1].units(None, |_| 8192), 8192);
        assert_eq!(funcs[2].units(None, |_| 0), 2);
    }

    #[test]
    fn argument_errors_point_at_the_call() {
        let e = cfg("task t {\n on-init {\n raw_write(0)\n }\n}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf:3: raw_write only usable in on-resource"
        );
        let e = cfg("task t { on-init { raw_memset(0, 0, 1) } }").unwrap_err();
        assert!(e.to_string().contains("positive integer block count"));
        let e = cfg("task t { on-init { raw_memset(0, 1, 256) } }").unwrap_err();
        assert!(e.to_string().contains("between 0 and 255"));
        let e = cfg("task t { on-init { mbr_write(nope) } }").unwrap_err();
        assert!(e.to_string().contains("can't find mbr reference"));
        let e = cfg("task t { on-init { fat_mkfs(x, 1) } }").unwrap_err();
        assert!(e.to_string().contains("non-negative integer block offset"));
        let e = cfg("task t { on-init { trim(0x7fffffffffffffff, 1) } }").unwrap_err();
        assert!(e.to_string().contains("block offset"), "{e}");
        let e = cfg("task t { on-init { trim(0x7fffffffffffff, 0x7fffffffffffff) } }").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let e = cfg("task t { on-init { execute(\"rm -rf /\") } }").unwrap_err();
        assert!(e.to_string().contains("not supported"));
        let e = cfg("task t { on-resource nope { } }").unwrap_err();
        assert!(e.to_string().contains("unknown resource: nope"));
        let e = cfg("task t { require-partition-offset(4, 0) }").unwrap_err();
        assert!(e.to_string().contains("0-3"));
        let e = cfg("file-resource k { contents = \"x\" }\ntask t { on-resource k {\n fat_write(0, \"a\")\n fat_write(0, \"b\")\n } }")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f.conf:4: fat_write in on-resource 'k' would get no data"),
            "{e}"
        );
        assert!(e.to_string().contains("f.conf:3"), "{e}");
        let e = cfg("task t { require-uboot-variable(env, a, b) }").unwrap_err();
        assert!(e.to_string().contains("can't find uboot-environment"));
    }
}
