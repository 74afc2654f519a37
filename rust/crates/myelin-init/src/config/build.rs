//! Building the supervision tree from the files' `[[supervisor]]` and `[[service]]` tables:
//! names, parents, `after` references and the start order are checked here, each problem
//! located in its file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::DEFAULT_PATH;
use super::diagnostic::{Diagnostics, Place};
use super::init_section::InitConfig;
use super::raw::{RawRoot, RawService, RawSupervisor};
use super::start_order::find_start_cycle;
use super::tree::{
    LogLevel, NodeId, NodeKind, NodeSpec, Readiness, RestartType, ServiceSpec, StartMode,
    SupervisorSpec, Tree, valid_name,
};

/// Where the parts of a service were written, for the environment check's messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeSpans {
    pub name: Place,
    pub argv: Place,
    pub user: Place,
    pub group: Place,
    pub cwd: Place,
}

/// The nodes one file defines, as read.
pub(crate) struct FileNodes {
    pub file: usize,
    pub supervisors: Vec<Spanned<RawSupervisor>>,
    pub services: Vec<Spanned<RawService>>,
}

enum Raw {
    Sup(RawSupervisor),
    Svc(Box<RawService>),
}

/// A node before its references are resolved.
struct Unlinked {
    spec: NodeSpec,
    spans: NodeSpans,
    parent: Option<(usize, Spanned<String>)>,
    after: Vec<(usize, Spanned<String>)>,
}

fn place(file: usize, s: &Spanned<impl Sized>) -> Place {
    Place {
        file,
        span: s.span(),
    }
}

/// Builds and checks the tree; problems go to `d`.
pub(crate) fn build_tree(
    d: &mut Diagnostics<'_>,
    root: RawRoot,
    files: Vec<FileNodes>,
    init: &InitConfig,
) -> (Tree, Vec<NodeSpans>) {
    let mut nodes = vec![NodeSpec {
        name: "root".into(),
        parent: None,
        restart: RestartType::Permanent,
        after: Vec::new(),
        kind: NodeKind::Supervisor(SupervisorSpec {
            strategy: root.strategy,
            intensity: root.intensity,
            period: root.period,
            start: StartMode::Sequential,
            children: Vec::new(),
        }),
    }];
    let mut spans = vec![NodeSpans::default()];
    let mut parents = vec![None];
    let mut afters = vec![Vec::new()];
    for (file, raw) in in_file_order(files) {
        let u = match raw {
            Raw::Sup(s) => supervisor_node(file, s),
            Raw::Svc(s) => service_node(d, file, *s, init),
        };
        nodes.push(u.spec);
        spans.push(u.spans);
        parents.push(u.parent);
        afters.push(u.after);
    }
    let by_name = register_names(d, &nodes, &spans);
    link_parents(d, &mut nodes, &parents, &by_name);
    check_parent_cycles(d, &nodes, &spans);
    resolve_after(d, &mut nodes, &afters, &by_name);
    let tree = Tree { nodes };
    if d.list.is_empty() {
        if let Some(cycle) = find_start_cycle(&tree) {
            let first = cycle[0];
            let at = afters[first]
                .first()
                .map(|(f, a)| place(*f, a))
                .unwrap_or_else(|| spans[first].name.clone());
            let names: Vec<&str> = cycle.iter().map(|&i| tree.nodes[i].name.as_str()).collect();
            d.err(
                &at,
                format!(
                    "start order cycle: {} -> {} (through `after`, file order and parents)",
                    names.join(" -> "),
                    names[0]
                ),
            );
        }
    }
    (tree, spans)
}

/// Every node with its file, in order: the files in the order given, and within a file the
/// order the tables appear in (services and supervisors are two TOML arrays, but siblings keep
/// the order they were written in).
fn in_file_order(files: Vec<FileNodes>) -> Vec<(usize, Raw)> {
    let mut out = Vec::new();
    for f in files {
        let mut all: Vec<(usize, Raw)> = Vec::new();
        for s in f.supervisors {
            all.push((s.span().start, Raw::Sup(s.into_inner())));
        }
        for s in f.services {
            all.push((s.span().start, Raw::Svc(Box::new(s.into_inner()))));
        }
        all.sort_by_key(|(p, _)| *p);
        out.extend(all.into_iter().map(|(_, r)| (f.file, r)));
    }
    out
}

fn supervisor_node(file: usize, s: RawSupervisor) -> Unlinked {
    Unlinked {
        spec: NodeSpec {
            name: s.name.get_ref().clone(),
            parent: None,
            restart: s.restart,
            after: Vec::new(),
            kind: NodeKind::Supervisor(SupervisorSpec {
                strategy: s.strategy,
                intensity: s.intensity,
                period: s.period,
                start: s.start,
                children: Vec::new(),
            }),
        },
        spans: NodeSpans {
            name: place(file, &s.name),
            ..Default::default()
        },
        parent: s.supervisor.map(|p| (file, p)),
        after: s.after.into_iter().map(|a| (file, a)).collect(),
    }
}

fn service_node(
    d: &mut Diagnostics<'_>,
    file: usize,
    s: RawService,
    init: &InitConfig,
) -> Unlinked {
    let nm = s.name.get_ref().clone();
    let name_at = place(file, &s.name);
    if s.argv.get_ref().first().is_none_or(String::is_empty) {
        d.err(
            &place(file, &s.argv),
            format!("service `{nm}`: argv must name a program"),
        );
    }
    if s.notify && s.ready_path.is_some() {
        d.err(
            &name_at,
            format!("service `{nm}`: `notify` and `ready_path` exclude each other"),
        );
    }
    let readiness = match (&s.ready_path, s.notify) {
        (Some(p), _) => {
            if !p.get_ref().starts_with('/') {
                d.err(
                    &place(file, p),
                    format!("service `{nm}`: ready_path must be absolute"),
                );
            }
            Readiness::Path(PathBuf::from(p.get_ref()))
        }
        (None, true) => Readiness::Notify,
        (None, false) => Readiness::Started,
    };
    if s.watchdog.is_some_and(|w| w < Duration::from_millis(10)) {
        d.err(
            &name_at,
            format!("service `{nm}`: watchdog must be at least 10ms"),
        );
    }
    let (env, log_level) = service_env(d, &name_at, &nm, init, &s);
    let spans = NodeSpans {
        argv: place(file, &s.argv),
        user: s.user.as_ref().map_or(name_at.clone(), |u| place(file, u)),
        group: s.group.as_ref().map_or(name_at.clone(), |g| place(file, g)),
        cwd: s.cwd.as_ref().map_or(name_at.clone(), |c| place(file, c)),
        name: name_at,
    };
    let argv = s.argv.into_inner();
    let program = PathBuf::from(argv.first().cloned().unwrap_or_default());
    let spec = ServiceSpec {
        argv,
        program,
        env,
        cwd: PathBuf::from(s.cwd.map(|c| c.into_inner()).unwrap_or_else(|| "/".into())),
        user: s.user.map(|u| u.into_inner()),
        group: s.group.map(|g| g.into_inner()),
        uid: None,
        gid: None,
        shutdown: s.shutdown,
        readiness,
        ready_timeout: s.ready_timeout,
        watchdog: s.watchdog,
        critical: s.critical,
        restart_delay: s.restart_delay,
        restart_delay_max: s.restart_delay_max,
        console: s.console,
        optional: s.optional,
        absent: false,
        create_dirs: s.create_dirs.into_iter().map(PathBuf::from).collect(),
        log_level,
    };
    Unlinked {
        spec: NodeSpec {
            name: nm,
            parent: None,
            restart: s.restart,
            after: Vec::new(),
            kind: NodeKind::Service(Box::new(spec)),
        },
        spans,
        parent: s.supervisor.map(|p| (file, p)),
        after: s.after.into_iter().map(|a| (file, a)).collect(),
    }
}

/// A service's environment: the default `PATH`, `[init] env`, its own `env`, and `MYELIN_LOG`
/// from its `log_level` (or, without one, from `MYELIN_LOG` in the environment it was given).
fn service_env(
    d: &mut Diagnostics<'_>,
    at: &Place,
    nm: &str,
    init: &InitConfig,
    s: &RawService,
) -> (BTreeMap<String, String>, LogLevel) {
    let mut env = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
    env.extend(init.env.clone());
    env.extend(s.env.clone());
    for k in env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            d.err(
                at,
                format!("service `{nm}`: invalid environment variable name `{k}`"),
            );
        }
    }
    let var = crate::config::LOG_LEVEL_VAR;
    let level = match (s.log_level, env.get(var)) {
        (Some(l), _) => l,
        (None, Some(v)) => LogLevel::parse(v).unwrap_or_else(|| {
            d.err(
                at,
                format!(
                    "service `{nm}`: {var}=\"{v}\" is not a level (expected one of {})",
                    LogLevel::NAMES
                ),
            );
            LogLevel::default()
        }),
        (None, None) => LogLevel::default(),
    };
    env.insert(var.to_string(), level.env_value().to_string());
    (env, level)
}

fn register_names(
    d: &mut Diagnostics<'_>,
    nodes: &[NodeSpec],
    spans: &[NodeSpans],
) -> HashMap<String, NodeId> {
    let mut by_name: HashMap<String, NodeId> = HashMap::from([("root".to_string(), 0)]);
    for (id, n) in nodes.iter().enumerate().skip(1) {
        let nm = &n.name;
        if !valid_name(nm) {
            d.err(
                &spans[id].name,
                format!("invalid name `{nm}`: use letters, digits and _.@- (at most 64)"),
            );
        } else if let Some(&other) = by_name.get(nm) {
            if other == 0 {
                d.err(
                    &spans[id].name,
                    "the name `root` is reserved for the top supervisor",
                );
            } else {
                let first = d.where_is(&spans[other].name);
                d.err(
                    &spans[id].name,
                    format!("duplicate name `{nm}` (first defined at {first})"),
                );
            }
        } else {
            by_name.insert(nm.clone(), id);
        }
    }
    by_name
}

fn link_parents(
    d: &mut Diagnostics<'_>,
    nodes: &mut [NodeSpec],
    parents: &[Option<(usize, Spanned<String>)>],
    by_name: &HashMap<String, NodeId>,
) {
    for id in 1..nodes.len() {
        let parent = match &parents[id] {
            None => 0,
            Some((f, p)) => match by_name.get(p.get_ref()) {
                Some(&pid) if nodes[pid].supervisor().is_some() => pid,
                Some(_) => {
                    d.err(
                        &place(*f, p),
                        format!("`{}` is a service, not a supervisor", p.get_ref()),
                    );
                    0
                }
                None => {
                    d.err(
                        &place(*f, p),
                        format!("unknown supervisor `{}`", p.get_ref()),
                    );
                    0
                }
            },
        };
        nodes[id].parent = Some(parent);
        if let NodeKind::Supervisor(s) = &mut nodes[parent].kind {
            s.children.push(id);
        }
    }
}

/// Supervisors must hang off the root (a parent loop would leave them unreachable).
fn check_parent_cycles(d: &mut Diagnostics<'_>, nodes: &[NodeSpec], spans: &[NodeSpans]) {
    for id in 1..nodes.len() {
        let mut cur = id;
        let mut steps = 0;
        while let Some(p) = nodes[cur].parent {
            cur = p;
            steps += 1;
            if steps > nodes.len() {
                break;
            }
        }
        if cur != 0 {
            d.err(
                &spans[id].name,
                format!("`{}` is part of a supervisor cycle", nodes[id].name),
            );
        }
    }
}

fn resolve_after(
    d: &mut Diagnostics<'_>,
    nodes: &mut [NodeSpec],
    afters: &[Vec<(usize, Spanned<String>)>],
    by_name: &HashMap<String, NodeId>,
) {
    for id in 1..nodes.len() {
        let mut after = Vec::new();
        for (f, a) in &afters[id] {
            match by_name.get(a.get_ref()) {
                Some(&t) if t == id => d.err(
                    &place(*f, a),
                    format!("`{}` cannot wait for itself", nodes[id].name),
                ),
                Some(&t) => after.push(t),
                None => d.err(
                    &place(*f, a),
                    format!("`after`: unknown service or supervisor `{}`", a.get_ref()),
                ),
            }
        }
        nodes[id].after = after;
    }
}
