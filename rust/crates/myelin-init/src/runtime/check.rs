//! `myelin-init --check`: validate a configuration (and its drop-ins) without running it.

use std::path::Path;

use crate::config::Config;

/// Checks `path` and the drop-ins next to it, against the running system or, with `root`,
/// against an image's root directory; prints the result and returns the exit code.
pub fn check_only(path: &Path, root: Option<&Path>) -> i32 {
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let checked = match root {
        Some(r) => cfg.check_target(r),
        None => cfg.check_environment(Path::new("/etc")),
    };
    if let Err(e) = checked {
        eprintln!("{e}");
        return 1;
    }
    let drop_ins = cfg.sources.len() - 1;
    let extra = match drop_ins {
        0 => String::new(),
        1 => ", 1 drop-in".to_string(),
        n => format!(", {n} drop-ins"),
    };
    println!(
        "{}: ok ({} nodes{extra})",
        path.display(),
        cfg.tree.nodes.len()
    );
    0
}
