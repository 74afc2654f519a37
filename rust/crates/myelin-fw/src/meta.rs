//! meta.conf: the compiled configuration stored (and signed) in every archive.
//!
//! fwup writes it with its own printer, and Myelin must produce the same bytes because the
//! signature and the firmware UUID are computed over them:
//!
//! * one `name=value` per line, no indentation, no blanks around `=`;
//! * options and sections in schema order (see [`crate::config::model`]), never in file order:
//!   the `meta-*` options, `require-fwup-version`, `block-cache-size-mb`, then every
//!   `file-resource`, `mbr`, `gpt`, `task` and `uboot-environment`, each in declaration order;
//! * options that are unset, empty or equal to their default are left out, and so are the
//!   options only used while creating (`host-path`, `bootstrap-code-host-path`, `contents`,
//!   `skip-holes`, `assert-size-*`) and the ones computed when reading (`meta-creation-date`,
//!   `meta-uuid`, `meta-nickname`);
//! * a section is `name "title" {` ... `}` (title always quoted; `\` and `"` escaped, which fwup
//!   does not do: its meta.conf for such a name cannot be read back); a section that prints
//!   nothing is left out, except a task (an empty task is a valid no-op);
//! * a list with more than one value is `name={a,b,c}`; one value prints as a scalar;
//! * integers print in decimal, booleans as `true`/`false`; a string is printed bare if it is
//!   non-empty and only has ASCII letters, digits, `_` and `.`, otherwise it is quoted with `"`
//!   and `\` and `"` are escaped with a backslash;
//! * calls are stored as `funlist={argc,name,arg,...}` and requirements as `reqlist={...}`
//!   where argc counts the name: `raw_write(63)` is `2,raw_write,63`.
//!
//! An empty configuration is written as `# Empty file\n`.
//!
//! Reading is the configuration parser in [`crate::config::parser::Mode::Meta`] (unknown
//! options skipped, no `define`/`include`), with `${...}` substituted from the apply-time
//! variables: that is how `\${FWUP_META_UUID}` written in fwup.conf becomes the UUID.

use crate::config::model::UNSET_COUNT;
use crate::config::parser::{Mode, Parser};
use crate::config::{Call, Config, ConfigError, Event, Vars};
use std::fmt::Write;

/// Whether fwup prints `s` without quotes.
fn is_bare(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A string value as fwup prints it.
pub fn quote(s: &str) -> String {
    if is_bare(s) {
        return s.to_owned();
    }
    title(s)
}

/// A section title as printed: always quoted, with `\` and `"` escaped so that meta.conf
/// reads back to the same title. (fwup prints titles unescaped, so a name holding either
/// character gives it a meta.conf it cannot read; for every other name the bytes are fwup's.)
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Printer {
    out: String,
}

impl Printer {
    fn string(&mut self, name: &str, value: &Option<String>) {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let _ = writeln!(self.out, "{name}={}", quote(v));
        }
    }

    fn string_default(&mut self, name: &str, value: &str, default: &str) {
        if !value.is_empty() && value != default {
            let _ = writeln!(self.out, "{name}={}", quote(value));
        }
    }

    fn int(&mut self, name: &str, value: i64, default: i64) {
        if value != default {
            let _ = writeln!(self.out, "{name}={value}");
        }
    }

    fn boolean(&mut self, name: &str, value: bool) {
        if value {
            let _ = writeln!(self.out, "{name}=true");
        }
    }

    fn calls(&mut self, name: &str, calls: &[Call]) {
        let mut items: Vec<String> = Vec::new();
        for c in calls {
            items.push(c.args.len().to_string());
            items.extend(c.args.iter().map(|a| quote(a)));
        }
        match items.len() {
            0 => {}
            1 => {
                let _ = writeln!(self.out, "{name}={}", items[0]);
            }
            _ => {
                let _ = writeln!(self.out, "{name}={{{}}}", items.join(","));
            }
        }
    }

    /// Prints `header {` + body + `}` unless the body is empty and `keep_empty` is false.
    fn section(&mut self, header: String, keep_empty: bool, body: impl FnOnce(&mut Printer)) {
        let start = self.out.len();
        let _ = writeln!(self.out, "{header} {{");
        let before = self.out.len();
        body(self);
        if self.out.len() == before && !keep_empty {
            self.out.truncate(start);
        } else {
            self.out.push_str("}\n");
        }
    }

    fn event(&mut self, name: &str, event: &Option<Event>) {
        if let Some(e) = event {
            self.section(name.to_owned(), false, |p| p.calls("funlist", &e.funcs));
        }
    }
}

/// meta.conf for `cfg`, byte for byte as fwup writes it.
pub fn write(cfg: &Config) -> String {
    let mut p = Printer { out: String::new() };
    let m = &cfg.meta;
    p.string("meta-product", &m.product);
    p.string("meta-description", &m.description);
    p.string("meta-version", &m.version);
    p.string("meta-author", &m.author);
    p.string("meta-platform", &m.platform);
    p.string("meta-architecture", &m.architecture);
    p.string("meta-fwup-version", &m.fwup_version);
    p.string("meta-vcs-identifier", &m.vcs_identifier);
    p.string("meta-misc", &m.misc);
    p.string_default(
        "require-fwup-version",
        cfg.require_fwup_version.as_deref().unwrap_or(""),
        "0",
    );
    p.int("block-cache-size-mb", cfg.block_cache_size_mb, 8);
    for r in &cfg.resources {
        p.section(format!("file-resource {}", title(&r.name)), false, |p| {
            match r.length.len() {
                0 => {}
                1 => p.int("length", r.length[0] as i64, 0),
                _ => {
                    let items: Vec<String> = r.length.iter().map(u64::to_string).collect();
                    let _ = writeln!(p.out, "length={{{}}}", items.join(","));
                }
            }
            p.string("blake2b-256", &r.blake2b_256);
            p.string("sha256", &r.sha256);
        });
    }
    for mbr in &cfg.mbrs {
        p.section(format!("mbr {}", title(&mbr.name)), false, |p| {
            p.string("bootstrap-code", &mbr.bootstrap_code);
            p.boolean("include-osip", mbr.include_osip);
            p.int("osip-major", mbr.osip_major, 1);
            p.int("osip-minor", mbr.osip_minor, 0);
            p.int("osip-num-pointers", mbr.osip_num_pointers, 1);
            p.string("signature", &mbr.signature);
            for part in &mbr.partitions {
                p.section(format!("partition {}", title(&part.title)), false, |p| {
                    p.string("block-offset", &part.block_offset);
                    p.int("block-count", part.block_count, UNSET_COUNT);
                    p.int("type", part.part_type, -1);
                    p.boolean("boot", part.boot);
                    p.boolean("expand", part.expand);
                });
            }
            for o in &mbr.osii {
                p.section(format!("osii {}", title(&o.title)), false, |p| {
                    p.int("os-major", o.os_major, 0);
                    p.int("os-minor", o.os_minor, 0);
                    p.int("start-block-offset", o.start_block_offset, 0);
                    p.int("ddr-load-address", o.ddr_load_address, 0);
                    p.int("entry-point", o.entry_point, 0);
                    p.int("image-size-blocks", o.image_size_blocks, 0);
                    p.int("attribute", o.attribute, 0xf);
                });
            }
        });
    }
    for gpt in &cfg.gpts {
        p.section(format!("gpt {}", title(&gpt.name)), false, |p| {
            p.string("guid", &gpt.guid);
            for part in &gpt.partitions {
                p.section(format!("partition {}", title(&part.title)), false, |p| {
                    p.string("block-offset", &part.block_offset);
                    p.int("block-count", part.block_count, UNSET_COUNT);
                    p.string("type", &part.part_type);
                    p.string("guid", &part.guid);
                    p.string_default("name", &part.name, "");
                    p.string_default("flags", &part.flags, "0");
                    p.boolean("expand", part.expand);
                    p.boolean("boot", part.boot);
                });
            }
        });
    }
    for t in &cfg.tasks {
        p.section(format!("task {}", title(&t.name)), true, |p| {
            p.calls("reqlist", &t.reqs);
            p.int("require-partition1-offset", t.require_partition1_offset, -1);
            p.boolean(
                "require-unmounted-destination",
                t.require_unmounted_destination,
            );
            p.boolean("verify-on-the-fly", t.verify_on_the_fly);
            p.event("on-init", &t.on_init);
            p.event("on-finish", &t.on_finish);
            p.event("on-error", &t.on_error);
            for r in &t.on_resource {
                p.section(format!("on-resource {}", title(&r.name)), false, |p| {
                    p.boolean("verify-on-the-fly", r.verify_on_the_fly);
                    p.string("delta-source-raw-offset", &r.delta_source_raw_offset);
                    p.int(
                        "delta-source-raw-count",
                        r.delta_source_raw_count,
                        UNSET_COUNT,
                    );
                    p.string("delta-source-raw-options", &r.delta_source_raw_options);
                    p.string("delta-source-fat-offset", &r.delta_source_fat_offset);
                    p.string("delta-source-fat-path", &r.delta_source_fat_path);
                    p.calls("funlist", &r.funcs);
                });
            }
        });
    }
    for u in &cfg.uboot_envs {
        p.section(
            format!("uboot-environment {}", title(&u.name)),
            false,
            |p| {
                p.string("block-offset", &u.block_offset);
                p.int("block-count", u.block_count, UNSET_COUNT);
                p.string("block-offset-redund", &u.block_offset_redund);
            },
        );
    }
    if p.out.is_empty() {
        return "# Empty file\n".to_owned();
    }
    p.out
}

/// Largest meta.conf fwup accepts (exclusive), and the smallest (exclusive).
pub const MAX_META_CONF: usize = 50_000;
/// See [`MAX_META_CONF`].
pub const MIN_META_CONF: usize = 10;

/// Parses an archive's meta.conf with `vars` for `${...}` (the caller adds
/// `FWUP_META_UUID`); the computed fields are filled in by [`crate::archive`]'s caller.
pub fn read(text: &[u8], vars: &Vars) -> Result<Config, ConfigError> {
    let mut vars = vars.clone();
    let nodes = Parser::new(text.to_vec(), "meta.conf", &mut vars, Mode::Meta).parse()?;
    Config::from_nodes(&nodes, Mode::Meta)
}

/// `key="value"` lines of `fwup -m`, in fwup's order, for the metadata that is set.
pub fn metadata_lines(cfg: &Config) -> String {
    let m = &cfg.meta;
    let mut p = Printer { out: String::new() };
    p.string("meta-product", &m.product);
    p.string("meta-description", &m.description);
    p.string("meta-version", &m.version);
    p.string("meta-author", &m.author);
    p.string("meta-platform", &m.platform);
    p.string("meta-architecture", &m.architecture);
    p.string("meta-creation-date", &m.creation_date);
    p.string("meta-fwup-version", &m.fwup_version);
    p.string("meta-misc", &m.misc);
    p.string("meta-vcs-identifier", &m.vcs_identifier);
    p.string("meta-uuid", &m.uuid);
    p.string("meta-nickname", &m.nickname);
    p.out
}

/// The value of one `meta-*` key, for `--metadata-key`.
pub fn metadata_value(cfg: &Config, key: &str) -> Option<String> {
    let m = &cfg.meta;
    match key {
        "meta-product" => m.product.clone(),
        "meta-description" => m.description.clone(),
        "meta-version" => m.version.clone(),
        "meta-author" => m.author.clone(),
        "meta-platform" => m.platform.clone(),
        "meta-architecture" => m.architecture.clone(),
        "meta-creation-date" => m.creation_date.clone(),
        "meta-fwup-version" => m.fwup_version.clone(),
        "meta-misc" => m.misc.clone(),
        "meta-vcs-identifier" => m.vcs_identifier.clone(),
        "meta-uuid" => m.uuid.clone(),
        "meta-nickname" => m.nickname.clone(),
        "require-fwup-version" => cfg.require_fwup_version.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_fwup() {
        assert_eq!(quote("golden"), "golden");
        assert_eq!(quote("1.0.0"), "1.0.0");
        assert_eq!(quote("zImage.a"), "zImage.a");
        assert_eq!(quote("0xff"), "0xff");
        assert_eq!(quote("mbr-a"), "\"mbr-a\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("${FWUP_META_UUID}"), "\"${FWUP_META_UUID}\"");
        assert_eq!(quote("q\"b\\s"), "\"q\\\"b\\\\s\"");
    }

    #[test]
    fn round_trip_through_the_reader() {
        let text = "meta-product=golden\nmeta-description=\"a b\"\nfile-resource \"r\" {\nlength={0,512,1024}\nblake2b-256=00\n}\ntask \"t\" {\nreqlist={4,\"require-uboot-variable\",\"uboot-env\",a,b}\non-init {\nfunlist={2,mbr_write,\"mbr-a\",3,trim,1,2}\n}\n}\ntask \"empty\" {\n}\n";
        let cfg = read(text.as_bytes(), &Vars::default()).unwrap();
        assert_eq!(cfg.resources[0].length, vec![0, 512, 1024]);
        assert_eq!(write(&cfg), text);
    }

    #[test]
    fn empty_config() {
        assert_eq!(write(&Config::default()), "# Empty file\n");
    }
}
