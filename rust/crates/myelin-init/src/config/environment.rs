//! What only the running system (or the target root directory on a build host) can tell:
//! executables exist (`argv[0]` resolved through the service's PATH), users and groups exist
//! (resolved to ids, `HOME` set from the user's entry), working directories exist.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::diagnostic::{ConfigError, Diagnostics};
use super::tree::{IdOrName, NodeKind};
use super::{Config, DEFAULT_PATH};

/// Where the files a configuration names are looked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum View<'a> {
    /// The running system; `passwd` and `group` are in this directory (normally `/etc`).
    Live {
        /// Directory of `passwd` and `group`.
        etc: &'a Path,
    },
    /// A target root directory on a build host: absolute paths (and absolute symbolic links)
    /// are taken inside it; working directories are not checked (they may be on filesystems
    /// mounted at boot).
    Target {
        /// The root directory.
        root: &'a Path,
    },
}

impl View<'_> {
    fn etc_file(&self, name: &str) -> PathBuf {
        match self {
            View::Live { etc } => etc.join(name),
            View::Target { root } => root.join("etc").join(name),
        }
    }

    /// The file a path of the device names, as this view reaches it.
    fn host_path(&self, p: &Path) -> Option<PathBuf> {
        match self {
            View::Live { .. } => Some(p.to_path_buf()),
            View::Target { root } => in_root(root, p),
        }
    }

    fn is_exec(&self, p: &Path) -> bool {
        self.host_path(p)
            .and_then(|h| std::fs::metadata(h).ok())
            .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
}

/// Follows `path` inside `root` as the device would see it: `..` stops at the root and absolute
/// symbolic links start again from it. `None` after 40 links (a loop).
pub fn in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let comps = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    };
    let mut todo: Vec<OsString> = comps(path);
    todo.reverse();
    let mut rel: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            rel.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&rel);
        here.push(&c);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = std::fs::read_link(&here).ok()?;
                if target.is_absolute() {
                    rel.clear();
                }
                let mut t = comps(&target);
                t.reverse();
                todo.extend(t);
            }
            _ => rel.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&rel);
    Some(out)
}

/// Resolves a program name like `execvp` would: names with a `/` as is, others through `path`.
pub fn resolve_program(name: &str, path: &str) -> Option<PathBuf> {
    resolve_in(
        View::Live {
            etc: Path::new("/etc"),
        },
        name,
        path,
    )
}

fn resolve_in(view: View<'_>, name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return view.is_exec(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| view.is_exec(p))
}

type PasswdEntry = (String, u32, u32, String);

fn lookup_passwd(passwd: &str, pred: impl Fn(&(String, u32)) -> bool) -> Option<PasswdEntry> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let gid: u32 = f[3].parse().ok()?;
        pred(&(f[0].to_string(), uid)).then(|| (f[0].to_string(), uid, gid, f[5].to_string()))
    })
}

fn lookup_group(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

impl Config {
    /// Checks what only the running system can tell, once the boot duties have mounted
    /// everything: executables exist, users and groups exist (resolved to ids, `HOME` set from
    /// the user's entry), working directories exist. `etc` is the directory holding `passwd`
    /// and `group` (normally `/etc`).
    pub fn check_environment(&mut self, etc: &Path) -> Result<(), ConfigError> {
        self.check_view(View::Live { etc })
    }

    /// Checks executables and users against a target root directory on the build host (the
    /// image's root filesystem before it is packed), so a tree that could not start is rejected
    /// before it ships. Working directories are not checked.
    pub fn check_target(&mut self, root: &Path) -> Result<(), ConfigError> {
        self.check_view(View::Target { root })
    }

    pub(crate) fn check_view(&mut self, view: View<'_>) -> Result<(), ConfigError> {
        let passwd = std::fs::read_to_string(view.etc_file("passwd")).unwrap_or_default();
        let group = std::fs::read_to_string(view.etc_file("group")).unwrap_or_default();
        let mut d = Diagnostics::new(&self.sources);
        for (id, node) in self.tree.nodes.iter_mut().enumerate() {
            let name = node.name.clone();
            let NodeKind::Service(svc) = &mut node.kind else {
                continue;
            };
            let spans = &self.node_spans[id];
            let path_var = svc
                .env
                .get("PATH")
                .cloned()
                .unwrap_or_else(|| DEFAULT_PATH.to_string());
            match resolve_in(view, &svc.argv[0], &path_var) {
                Some(p) => svc.program = p,
                None if svc.optional => {
                    svc.absent = true;
                    continue;
                }
                None => d.err(
                    &spans.argv,
                    format!(
                        "service `{name}`: `{}` is not an executable file (PATH={path_var})",
                        svc.argv[0]
                    ),
                ),
            }
            if matches!(view, View::Live { .. }) && !svc.cwd.is_dir() {
                d.err(
                    &spans.cwd,
                    format!(
                        "service `{name}`: working directory {} does not exist",
                        svc.cwd.display()
                    ),
                );
            }
            let mut home = None;
            match &svc.user {
                Some(IdOrName::Name(u)) => match lookup_passwd(&passwd, |e| &e.0 == u) {
                    Some((_, uid, gid, h)) => {
                        svc.uid = Some(uid);
                        svc.gid.get_or_insert(gid);
                        home = Some(h);
                    }
                    None => d.err(&spans.user, format!("service `{name}`: unknown user `{u}`")),
                },
                Some(IdOrName::Id(uid)) => {
                    svc.uid = Some(*uid);
                    if let Some((_, _, gid, h)) = lookup_passwd(&passwd, |e| e.1 == *uid) {
                        svc.gid.get_or_insert(gid);
                        home = Some(h);
                    }
                }
                None => {}
            }
            match &svc.group {
                Some(IdOrName::Name(g)) => match lookup_group(&group, g) {
                    Some(gid) => svc.gid = Some(gid),
                    None => d.err(
                        &spans.group,
                        format!("service `{name}`: unknown group `{g}`"),
                    ),
                },
                Some(IdOrName::Id(gid)) => svc.gid = Some(*gid),
                None => {}
            }
            if !svc.env.contains_key("HOME") {
                let h = home.unwrap_or_else(|| {
                    if svc.uid.unwrap_or(0) == 0 {
                        "/root".into()
                    } else {
                        "/".into()
                    }
                });
                svc.env.insert("HOME".into(), h);
            }
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), "").unwrap();
        // Absolute and relative links, as a Buildroot target directory has them.
        symlink("/bin/busybox", root.join("usr/bin/abs")).unwrap();
        symlink("../../bin/busybox", root.join("usr/bin/rel")).unwrap();
        symlink("/usr/bin/loop", root.join("usr/bin/loop")).unwrap();
        symlink("/etc/passwd", root.join("usr/bin/host")).unwrap();
        let busybox = root.join("bin/busybox");
        assert_eq!(
            in_root(root, Path::new("/usr/bin/abs")),
            Some(busybox.clone())
        );
        assert_eq!(
            in_root(root, Path::new("/usr/bin/rel")),
            Some(busybox.clone())
        );
        assert_eq!(
            in_root(root, Path::new("/../../bin/busybox")),
            Some(busybox)
        );
        assert_eq!(in_root(root, Path::new("/usr/bin/loop")), None);
        // A link to an absolute path means that path in the target, not on the host.
        assert_eq!(
            in_root(root, Path::new("/usr/bin/host")),
            Some(root.join("etc/passwd"))
        );
    }
}
