//! The functions and requirements of tasks: their arguments, checked when an archive is
//! created so that a mistake is reported with its file and line rather than on a device.
//!
//! | function | arguments | where |
//! |---|---|---|
//! | `raw_write` | block offset | on-resource |
//! | `raw_memset` | block offset, block count (>0), byte (0..=255) | any |
//! | `trim` | block offset, block count (>0) | any |
//! | `fat_mkfs` | block offset, block count | any |
//! | `fat_write` | block offset, file name (default: the resource name) | on-resource |
//! | `fat_mv`, `fat_mv!` | block offset, old name, new name (`!`: replace) | any |
//! | `fat_rm`, `fat_rm!` | block offset, name (`!`: must exist) | any |
//! | `fat_cp` | block offset, from, [block offset,] to | any |
//! | `fat_mkdir`, `fat_setlabel`, `fat_touch` | block offset, name | any |
//! | `fat_attrib` | block offset, name, letters of `RHS` | any |
//! | `mbr_write`, `gpt_write` | name of an `mbr`/`gpt` section | any |
//! | `uboot_clearenv`, `uboot_recover` | environment | any |
//! | `uboot_setenv` | environment, name, value | any |
//! | `uboot_unsetenv` | environment, name | any |
//! | `info`, `error`, `reboot_param` | text | any |
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
//! Block offsets and counts are non-negative C integers. Arguments containing `${...}` that
//! are only resolved when applying must still be valid where a number is expected.

use crate::config::model::parse_c_uint;
use crate::config::{Call, Config, ConfigError, Task};

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

fn bad(call: &Call, msg: impl Into<String>) -> ConfigError {
    ConfigError::at(call.span.clone(), msg)
}

fn argc(call: &Call, n: usize, msg: &str) -> Result<(), ConfigError> {
    if call.args.len() != n {
        return Err(bad(call, msg));
    }
    Ok(())
}

fn uint(call: &Call, i: usize, msg: &str) -> Result<u64, ConfigError> {
    parse_c_uint(call.arg(i)).ok_or_else(|| bad(call, msg))
}

/// Checks one event function, filling in defaults as fwup does (`fat_write` without a name
/// writes a file named after the resource).
pub fn validate_call(cfg: &Config, ctx: Context<'_>, call: &mut Call) -> Result<(), ConfigError> {
    let name = call.name().to_owned();
    match name.as_str() {
        "raw_write" => {
            let Context::Resource(_) = ctx else {
                return Err(bad(call, "raw_write only usable in on-resource"));
            };
            if call.args.len() < 2 {
                return Err(bad(call, "raw_write requires a block offset"));
            }
            uint(
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
        }
        "raw_memset" => {
            argc(
                call,
                4,
                "raw_memset requires a block offset, count, and value",
            )?;
            uint(
                call,
                1,
                "raw_memset requires a non-negative integer block offset",
            )?;
            let n = uint(
                call,
                2,
                "raw_memset requires a positive integer block count",
            )?;
            if n == 0 || n > (i64::MAX as u64) / 512 {
                return Err(bad(
                    call,
                    "raw_memset requires a positive integer block count",
                ));
            }
            match crate::config::model::parse_c_int(call.arg(3)) {
                Some(v) if (0..=255).contains(&v) => {}
                _ => {
                    return Err(bad(
                        call,
                        "raw_memset requires value to be between 0 and 255",
                    ));
                }
            }
        }
        "trim" => {
            argc(call, 3, "trim requires a block offset and count")?;
            uint(call, 1, "trim requires a non-negative integer block offset")?;
            let n = uint(call, 2, "trim requires a block count >1")?;
            if n == 0 {
                return Err(bad(call, "trim requires a block count >1"));
            }
        }
        "fat_mkfs" => {
            argc(call, 3, "fat_mkfs requires a block offset and block count")?;
            uint(
                call,
                1,
                "fat_mkfs requires a non-negative integer block offset",
            )?;
            uint(
                call,
                2,
                "fat_mkfs requires a non-negative integer block count",
            )?;
        }
        "fat_write" => {
            let Context::Resource(resource) = ctx else {
                return Err(bad(call, "fat_write only usable in on-resource"));
            };
            if call.args.len() == 2 {
                call.args.push(resource.to_owned());
            }
            argc(
                call,
                3,
                "fat_write requires a block offset and optional destination filename",
            )?;
            uint(
                call,
                1,
                "fat_write requires a non-negative integer block offset",
            )?;
        }
        "fat_mv" | "fat_mv!" => {
            argc(
                call,
                4,
                "fat_mv requires a block offset, old filename, new filename",
            )?;
            uint(
                call,
                1,
                "fat_mv requires a non-negative integer block offset",
            )?;
        }
        "fat_rm" | "fat_rm!" => {
            argc(call, 3, "fat_rm requires a block offset and filename")?;
            uint(
                call,
                1,
                "fat_rm requires a non-negative integer block offset",
            )?;
        }
        "fat_cp" => match call.args.len() {
            4 => {
                uint(
                    call,
                    1,
                    "fat_cp requires a non-negative integer block offset",
                )?;
            }
            5 => {
                uint(
                    call,
                    1,
                    "fat_cp requires a non-negative integer source block offset",
                )?;
                uint(
                    call,
                    3,
                    "fat_cp requires a non-negative integer destination block offset",
                )?;
            }
            _ => return Err(bad(call, "fat_cp requires either 3 or 4 arguments")),
        },
        "fat_mkdir" | "fat_setlabel" | "fat_touch" => {
            let what = match name.as_str() {
                "fat_mkdir" => "directory name",
                "fat_setlabel" => "name",
                _ => "filename",
            };
            argc(
                call,
                3,
                &format!("{name} requires a block offset and {what}"),
            )?;
            uint(
                call,
                1,
                &format!("{name} requires a non-negative integer block offset"),
            )?;
        }
        "fat_attrib" => {
            argc(
                call,
                4,
                "fat_attrib requires a block offset, filename, and attributes (SHR)",
            )?;
            uint(
                call,
                1,
                "fat_attrib requires a non-negative integer block offset",
            )?;
            if !call.arg(3).chars().all(|c| "SHRshr".contains(c)) {
                return Err(bad(call, "fat_attrib only supports R, H, and S attributes"));
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
        }
        "gpt_write" => {
            argc(call, 2, "gpt_write requires a gpt")?;
            if cfg.gpt(call.arg(1)).is_none() {
                return Err(bad(
                    call,
                    format!("gpt_write can't find gpt reference '{}'", call.arg(1)),
                ));
            }
        }
        "uboot_clearenv" | "uboot_recover" | "uboot_setenv" | "uboot_unsetenv" => {
            let (n, msg) = match name.as_str() {
                "uboot_setenv" => (
                    4,
                    "uboot_setenv requires a uboot-environment reference, variable name and value",
                ),
                "uboot_unsetenv" => (
                    3,
                    "uboot_unsetenv requires a uboot-environment reference and a variable name",
                ),
                "uboot_clearenv" => (2, "uboot_clearenv requires a uboot-environment reference"),
                _ => (2, "uboot_recover requires a uboot-environment reference"),
            };
            argc(call, n, msg)?;
            if cfg.uboot_env(call.arg(1)).is_none() {
                return Err(bad(
                    call,
                    format!(
                        "{name} can't find uboot-environment reference '{}'",
                        call.arg(1)
                    ),
                ));
            }
        }
        "info" | "error" => argc(call, 2, &format!("{name}() requires a message parameter"))?,
        "reboot_param" => argc(call, 2, "reboot_param requires a single string parameter")?,
        "path_write" | "pipe_write" | "execute" | "ubi_volume_write" => {
            return Err(bad(
                call,
                format!(
                    "{name} is not supported by myelin-fw (it runs host commands or writes outside the target)"
                ),
            ));
        }
        other => return Err(bad(call, format!("no such function '{other}'"))),
    }
    Ok(())
}

/// Checks one requirement.
pub fn validate_requirement(cfg: &Config, call: &Call) -> Result<(), ConfigError> {
    match call.name() {
        "require-partition-offset" => {
            argc(
                call,
                3,
                "require-partition-offset requires a partition number and a block offset",
            )?;
            if crate::mbr::partition_index(call.arg(1)).is_none() {
                return Err(bad(
                    call,
                    "require-partition-offset requires the partition number to be 0-3",
                ));
            }
            uint(
                call,
                2,
                "require-partition-offset requires a non-negative integer block offset",
            )?;
        }
        "require-fat-file-exists" => {
            argc(
                call,
                3,
                "require-fat-file-exists requires a FAT FS block offset and a filename",
            )?;
            uint(
                call,
                1,
                "require-fat-file-exists requires a non-negative integer block offset",
            )?;
        }
        "require-fat-file-match" => {
            argc(
                call,
                4,
                "require-fat-file-match requires a FAT FS block offset, a filename, and a pattern",
            )?;
            uint(
                call,
                1,
                "require-fat-file-match requires a non-negative integer block offset",
            )?;
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
        }
        "require-path-on-device" => {
            argc(
                call,
                3,
                "require-path-on-device requires a path and a device",
            )?;
        }
        "require-path-at-offset" => {
            argc(
                call,
                3,
                "require-path-at-offset requires a path and a block offset",
            )?;
            uint(
                call,
                2,
                "require-path-at-offset requires a non-negative integer block offset",
            )?;
        }
        "require-execute" => {
            return Err(bad(
                call,
                "require-execute is not supported by myelin-fw (it runs host commands)",
            ));
        }
        other => return Err(bad(call, format!("no such requirement '{other}'"))),
    }
    Ok(())
}

/// Checks (and completes) every task of a configuration being created.
pub fn validate_tasks(cfg: &mut Config) -> Result<(), ConfigError> {
    let snapshot = cfg.clone();
    for task in &mut cfg.tasks {
        validate_task(&snapshot, task)?;
    }
    Ok(())
}

fn validate_task(cfg: &Config, task: &mut Task) -> Result<(), ConfigError> {
    for r in &task.reqs {
        validate_requirement(cfg, r)?;
    }
    for (ctx, ev) in [
        (Context::Init, &mut task.on_init),
        (Context::Finish, &mut task.on_finish),
        (Context::Error, &mut task.on_error),
    ] {
        if let Some(ev) = ev {
            for c in &mut ev.funcs {
                validate_call(cfg, ctx, c)?;
            }
        }
    }
    for r in &mut task.on_resource {
        if cfg.resource(&r.name).is_none() {
            return Err(ConfigError::at(
                r.span.clone(),
                format!("unknown resource: {}", r.name),
            ));
        }
        let name = r.name.clone();
        let mut writer: Option<&Call> = None;
        for c in &mut r.funcs {
            validate_call(cfg, Context::Resource(&name), c)?;
        }
        // A resource streams past once: a second writing call would get no data (fwup fails
        // with "didn't write anything" when applying; say it now instead).
        for c in &r.funcs {
            if matches!(c.name(), "raw_write" | "fat_write") {
                if let Some(first) = writer {
                    return Err(bad(
                        c,
                        format!(
                            "{} in on-resource '{name}' would get no data: the resource streams past once and {} at {} already writes it; copy it with fat_cp instead",
                            c.name(),
                            first.name(),
                            first.span
                        ),
                    ));
                }
                writer = Some(c);
            }
        }
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
