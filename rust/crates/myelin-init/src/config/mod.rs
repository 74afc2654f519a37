//! The configuration, `/etc/myelin/init.toml` and its drop-ins `/etc/myelin/init.d/*.toml`:
//! format, defaults and validation.
//!
//! PID 1 reads one TOML file (another path with `--config PATH` on its command line, or the
//! `myelin_config=PATH` kernel parameter, which the kernel hands to init as an environment
//! variable), then every `*.toml` file of the `init.d` directory next to it, sorted by name.
//! Unknown keys and wrongly typed values are errors; every error names `file:line:column` and
//! the field. Durations are strings with a unit: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`.
//! Sizes and counts have bounds (given below); a file may hold at most 1 MiB.
//!
//! ```toml
//! [init]
//! fatal_action = "reboot"        # when the top supervisor gives up: reboot | poweroff | halt | hang
//! shell = "/bin/sh"              # console shell for safe mode and `hang` (default: none)
//! run_dir = "/run/myelin"        # control socket (init.sock) and sd_notify sockets (notify/)
//! shutdown_timeout = "30s"       # cap on stopping all services at shutdown
//! kill_wait = "1s"               # TERM to every leftover process, then KILL after this
//! reboot_param = "/run/reboot-param"  # first line = reboot(2) argument (RPi: "0 tryboot")
//! unmount = true                 # unmount everything in reverse order at shutdown
//! fatal_delay = "3s"             # safe mode: time to read the error before the fatal action
//! env = { LANG = "C.UTF-8" }     # added to every service's environment
//! cgroups = true                 # one cgroup v2 per service when the kernel has cgroup2
//! control_idle_timeout = "10s"   # idle myelinctl connections are closed (100ms .. 1h)
//!
//! [boot]                         # PID 1's boot duties, in this order; `enabled = false` skips all
//! enabled = true
//! pseudo_fs = true               # /proc /sys /dev (devtmpfs) /dev/pts /dev/shm /sys/fs/cgroup
//! tmpfs = true                   # /tmp and /run
//! rootdisk_links = true          # /dev/rootdisk0 and /dev/rootdisk0pN -> the disk holding /
//! console = "ttyS0"              # reopen stdin/out/err on /dev/<console> (default: keep)
//! rlimits = { core = "0:unlimited", nofile = 4096 }   # soft:hard, a number, or "unlimited"
//! clock_floor = true             # never start before the build time (SOURCE_DATE_EPOCH)
//! build_time_file = "/etc/myelin/build-time"  # a later build time written by the image build
//! loopback = true                # bring `lo` up
//! hostname = "myelin-%-.4s"      # %s serial, %.Ns first N chars, %-.Ns last N chars
//! serial_sources = ["uboot_env", "devicetree", "cpuinfo", "dmi", "mac"]
//! uboot_serial_keys = ["nerves_serial_number", "serial_number"]
//! time_file = "/data/myelin/time"     # clock floor saved at shutdown (mtime)
//! rng_seed = "/data/myelin/random-seed"  # restored at boot, saved at shutdown
//! pstore_archive = "/data/myelin/previous-boot"  # the last boot's pstore records, moved here
//!
//! [[boot.mount]]                 # extra mounts, best effort, after /tmp and /run
//! source = "/dev/rootdisk0p1"
//! target = "/boot"
//! fstype = "vfat"
//! options = "ro,nodev,noexec,nosuid"  # mount(8) flag names; anything else is fs data
//!
//! [boot.data]                    # the writable application partition (see crate::boot::data)
//! device = "/dev/rootdisk0p4"
//! mountpoint = "/data"
//! fstype = "ext4"                # ext4 | f2fs
//! options = "nodev"
//! format = true                  # mkfs only when it holds no filesystem at all (first boot,
//!                                # factory reset); anything else is checked, never formatted
//! from_uboot_env = true          # device/fstype/mountpoint from <slot>.nerves_fw_application_part0_*
//!
//! [watchdog]                     # the hardware watchdog (absent: none)
//! device = "/dev/watchdog0"
//! timeout = "30s"                # WDIOC_SETTIMEOUT if given (1s .. 1h); pets every timeout/2
//! grace = "60s"                  # pet unconditionally this long after start
//! snooze = "15m"                 # length of one `myelinctl watchdog snooze`
//!
//! [log]
//! ring_bytes = 262144            # in-memory log budget, all services together (4 KiB .. 64 MiB)
//! line_max = 1024                # longer lines are cut (16 .. 65536)
//! kmsg = "/dev/kmsg"             # "" = don't copy to the kernel log
//! kmsg_rate = 20                 # lines per second to kmsg (at most 10000) ...
//! kmsg_burst = 200               # ... and at once (1 .. 100000)
//! pmsg = "/dev/pmsg0"             # every kept line, kept across a reset by pstore; "" = none
//! console_level = "notice"       # PID 1's own messages this important also go to the console
//!
//! [root]                         # the top supervisor
//! strategy = "one_for_one"       # one_for_one | one_for_all | rest_for_one
//! intensity = 3                  # more than this many restarts (at most 1000000) ...
//! period = "5s"                  # ... within this window: give up (escalate); see below
//!
//! [[supervisor]]                 # a nested supervisor
//! name = "app"
//! supervisor = "root"            # parent (default "root")
//! strategy = "one_for_all"
//! intensity = 3
//! period = "5s"
//! start = "sequential"           # each child waits for the previous one to be ready (OTP);
//!                                # "parallel": for its `after` nodes only (the order still
//!                                # says what rest_for_one restarts and how children stop)
//! restart = "permanent"          # how its parent treats it
//! after = ["myelin-kv"]
//!
//! [[service]]
//! name = "myelin-kv"             # [A-Za-z0-9][A-Za-z0-9_.@-]*, unique in the tree
//! supervisor = "root"
//! argv = ["/usr/bin/myelin-kv", "daemon"]
//! env = { TZ = "UTC" }
//! cwd = "/"
//! user = "root"                  # name or number; group defaults to the user's
//! group = 0
//! restart = "permanent"          # permanent | transient | temporary
//! shutdown = "5s"                # TERM, then KILL after this; or "brutal_kill" | "infinity"
//! notify = true                  # wait for READY=1 before starting the next sibling
//! ready_path = "/run/x.sock"     # or: ready when this path exists (a socket: accepts)
//! ready_timeout = "60s"          # not ready in time = failed start ("infinity" allowed)
//! watchdog = "10s"               # WATCHDOG=1 at least this often once ready
//! critical = true                # the hardware watchdog needs this service alive
//! restart_delay = "100ms"        # backoff: 0, then this, doubling ...
//! restart_delay_max = "5s"       # ... up to this ("0s": never wait)
//! after = ["dbus"]               # also wait for these nodes to be ready
//! create_dirs = ["/run/x"]       # made (owned by the service's user) before each start
//! console = false                # true: stdio on the console terminal (a shell), not logged
//! optional = false               # true: skipped when not installed; failures stay its own
//! log_level = "info"             # off | error | warn | info | debug | trace: MYELIN_LOG, and
//!                                # the least severe of its lines PID 1 keeps
//! ```
//!
//! Services run in the foreground: the process started is the service, and when it ends the
//! service has ended (a daemon that forks into the background looks like a crash; run it with
//! its "don't fork" flag, e.g. `dbus-daemon --nofork`, `dropbear -F`). Its stdout and stderr
//! are logged line by line, stdin is /dev/null, the environment is only `PATH`, `HOME`,
//! `[init] env`, its own `env`, `MYELIN_LOG` and `NOTIFY_SOCKET`.
//!
//! The tree: `[root]` is the top supervisor; every `[[supervisor]]` and `[[service]]` names its
//! parent with `supervisor` (default `root`). A supervisor's children start in the order they
//! appear (the main file first, then the drop-ins by name), each after the previous one is
//! ready, and stop in reverse order. `after` adds waits on any other node of the tree; a wait
//! that can never be satisfied (a cycle through `after`, sibling order or parenthood) is an
//! error. How restarts, intensity and backoff delays interact is described in
//! [`crate::supervisor`].
//!
//! Drop-ins (`init.d/*.toml`) hold only `[[service]]` and `[[supervisor]]` tables: a product
//! adds its application to the `app` group without copying init.toml. Names are unique across
//! all files. Executables, users and groups are checked by [`Config::check_environment`] once
//! the boot duties have mounted everything, or against an image's root directory on the build
//! host by [`Config::check_target`] (`myelin-init --check FILE --root DIR`).

mod boot_section;
mod build;
mod diagnostic;
mod environment;
mod fallback;
mod init_section;
mod log_section;
mod raw;
mod start_order;
mod tree;
mod values;
mod watchdog_section;

use std::path::{Path, PathBuf};

pub use boot_section::{
    BootConfig, DataFs, DataSpec, MountSpec, RLIMIT_NAMES, RLimit, SerialSource,
};
pub use diagnostic::{ConfigError, Diagnostic, SourceFile, line_col};
pub use environment::{in_root, resolve_program};
pub use fallback::load_fallback;
pub use init_section::{FatalAction, InitConfig};
pub use log_section::LogConfig;
pub use start_order::find_start_cycle;
pub use tree::{
    IdOrName, LogLevel, NodeId, NodeKind, NodeSpec, Readiness, RestartType, ServiceSpec, Shutdown,
    StartMode, Strategy, SupervisorSpec, Tree, valid_name,
};
pub use values::{INTENSITY_MAX, KMSG_BURST, KMSG_RATE_MAX, LINE_MAX, MAX_FILE_BYTES, RING_BYTES};
pub use watchdog_section::WatchdogConfig;

use build::{FileNodes, NodeSpans, build_tree};
use diagnostic::Diagnostics;
use raw::{RawDropIn, RawFile};

/// Default `PATH` of services.
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/myelin/init.toml";

/// Directory of drop-ins, next to the main file.
pub const DROP_IN_DIR: &str = "init.d";

/// The environment variable carrying a service's log level (myelin-api's logger reads it).
pub const LOG_LEVEL_VAR: &str = "MYELIN_LOG";

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main file it came from.
    pub path: PathBuf,
    /// `[init]`.
    pub init: InitConfig,
    /// `[boot]`.
    pub boot: BootConfig,
    /// `[watchdog]`, if present.
    pub watchdog: Option<WatchdogConfig>,
    /// `[log]`.
    pub log: LogConfig,
    /// The supervision tree.
    pub tree: Tree,
    /// Every file read: the main file first, then the drop-ins.
    pub sources: Vec<SourceFile>,
    node_spans: Vec<NodeSpans>,
}

/// Reads a file PID 1 takes as configuration, refusing one too large to be one.
pub fn read_source(path: &Path) -> Result<SourceFile, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let size = f.metadata().map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
            max: MAX_FILE_BYTES,
        });
    }
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    Ok(SourceFile {
        path: path.to_path_buf(),
        text,
    })
}

/// The drop-ins of a main file: `init.d/*.toml` next to it, sorted by name.
pub fn drop_in_paths(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = main.parent().unwrap_or(Path::new("/")).join(DROP_IN_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

impl Config {
    /// Reads and validates a configuration file and its drop-ins (structure only; see
    /// [`Config::check_environment`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut sources = vec![read_source(path)?];
        for p in drop_in_paths(path)? {
            sources.push(read_source(&p)?);
        }
        Config::from_sources(sources)
    }

    /// Validates configuration text alone (no drop-ins); `path` is only used in diagnostics.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_sources(vec![SourceFile {
            path: path.to_path_buf(),
            text: src.to_string(),
        }])
    }

    /// Validates a main file (first) and drop-ins (the rest, in order).
    pub fn from_sources(sources: Vec<SourceFile>) -> Result<Config, ConfigError> {
        let Some(main) = sources.first() else {
            return Config::parse("", Path::new(DEFAULT_CONFIG_PATH));
        };
        let mut d = Diagnostics::new(&sources);
        let raw: RawFile = match toml::from_str(&main.text) {
            Ok(r) => r,
            Err(e) => return Err(syntax_error(main, &e)),
        };
        let mut files = vec![FileNodes {
            file: 0,
            supervisors: raw.supervisor,
            services: raw.service,
        }];
        let mut syntax = Vec::new();
        for (i, f) in sources.iter().enumerate().skip(1) {
            match toml::from_str::<RawDropIn>(&f.text) {
                Ok(r) => files.push(FileNodes {
                    file: i,
                    supervisors: r.supervisor,
                    services: r.service,
                }),
                Err(e) => syntax.extend(match syntax_error(f, &e) {
                    ConfigError::Invalid(v) => v,
                    _ => Vec::new(),
                }),
            }
        }
        if !syntax.is_empty() {
            return Err(ConfigError::Invalid(syntax));
        }
        let (tree, node_spans) = build_tree(&mut d, raw.root, files, &raw.init);
        d.finish()?;
        Ok(Config {
            path: main.path.clone(),
            init: raw.init,
            boot: raw.boot,
            watchdog: raw.watchdog,
            log: raw.log,
            tree,
            sources,
            node_spans,
        })
    }
}

fn syntax_error(f: &SourceFile, e: &toml::de::Error) -> ConfigError {
    let (line, column) = line_col(&f.text, e.span().map(|s| s.start).unwrap_or(0));
    let mut message = e.message().trim_end().to_string();
    if f.path.parent().is_some_and(|p| p.ends_with(DROP_IN_DIR))
        && message.contains("unknown field")
    {
        message.push_str(" (a drop-in holds only [[service]] and [[supervisor]] tables)");
    }
    ConfigError::Invalid(vec![Diagnostic {
        file: f.path.clone(),
        line,
        column,
        message,
    }])
}

#[cfg(test)]
mod tests;
