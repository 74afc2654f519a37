//! The configuration file, `/etc/myelin/init.toml`: format, defaults and validation.
//!
//! PID 1 reads one TOML file (another path with `--config PATH` on its command line, or the
//! `myelin_config=PATH` kernel parameter, which the kernel hands to init as an environment
//! variable). Unknown keys and wrongly typed values are errors; every error names
//! `file:line:column`. Durations are strings with a unit: `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`,
//! `"1h"`.
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
//!
//! [boot]                         # PID 1's boot duties, in this order; `enabled = false` skips all
//! enabled = true
//! pseudo_fs = true               # /proc /sys /dev (devtmpfs) /dev/pts /dev/shm
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
//!
//! [[boot.mount]]                 # extra mounts, best effort, after /tmp and /run
//! source = "/dev/rootdisk0p1"
//! target = "/boot"
//! fstype = "vfat"
//! options = "ro,nodev,noexec,nosuid"  # mount(8) flag names; anything else is fs data
//!
//! [boot.data]                    # the writable application partition
//! device = "/dev/rootdisk0p4"
//! mountpoint = "/data"
//! fstype = "ext4"                # ext4 | f2fs
//! options = "nodev"
//! format = true                  # mkfs when it cannot be mounted or comes up read-only
//! from_uboot_env = true          # device/fstype/mountpoint from <slot>.nerves_fw_application_part0_*
//!
//! [watchdog]                     # the hardware watchdog (absent: none)
//! device = "/dev/watchdog0"
//! timeout = "30s"                # WDIOC_SETTIMEOUT if given; pets every timeout/2
//! grace = "60s"                  # pet unconditionally this long after start
//! snooze = "15m"                 # length of one `myelinctl watchdog snooze`
//!
//! [log]
//! ring_bytes = 262144            # in-memory log budget (all services together)
//! line_max = 1024                # longer lines are cut
//! kmsg = "/dev/kmsg"             # "" = don't copy to the kernel log
//! kmsg_rate = 20                 # lines per second to kmsg (burst: kmsg_burst)
//! kmsg_burst = 200
//! console_level = "notice"       # PID 1's own messages this important also go to the console
//!
//! [root]                         # the top supervisor
//! strategy = "one_for_one"       # one_for_one | one_for_all | rest_for_one
//! intensity = 3                  # more than this many restarts ...
//! period = "5s"                  # ... within this window: give up (escalate)
//!
//! [[supervisor]]                 # a nested supervisor
//! name = "app"
//! supervisor = "root"            # parent (default "root")
//! strategy = "one_for_all"
//! intensity = 3
//! period = "5s"
//! restart = "permanent"          # how its parent treats it
//! after = ["myelin-kv"]
//!
//! [[service]]
//! name = "myelin-kv"             # [A-Za-z0-9][A-Za-z0-9_.@-]*, unique in the tree
//! supervisor = "root"
//! argv = ["/usr/bin/myelin-kv", "daemon"]
//! env = { RUST_LOG = "info" }
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
//! optional = false               # true: skipped when the executable is not installed
//! ```
//!
//! Services run in the foreground: the process started is the service, and when it ends the
//! service has ended (a daemon that forks into the background looks like a crash; run it with
//! its "don't fork" flag, e.g. `dbus-daemon --nofork`, `dropbear -F`). Its stdout and stderr
//! are logged line by line, stdin is /dev/null, the environment is only `PATH`, `HOME`,
//! `[init] env`, its own `env` and `NOTIFY_SOCKET`.
//!
//! The tree: `[root]` is the top supervisor; every `[[supervisor]]` and `[[service]]` names its
//! parent with `supervisor` (default `root`). A supervisor's children start in the order they
//! appear in the file, each after the previous one is ready, and stop in reverse order.
//! `after` adds waits on any other node of the tree; a wait that can never be satisfied (a cycle
//! through `after`, sibling order or parenthood) is an error. Executables, users and groups are
//! checked by [`Config::check_environment`] once the boot duties have mounted everything.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::clock::parse_duration;

/// Default `PATH` of services.
pub const DEFAULT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/myelin/init.toml";

/// A configuration problem, located in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is invalid; one diagnostic per problem.
    #[error("{}", join_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

fn join_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What PID 1 does when the top supervisor gives up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FatalAction {
    /// Clean shutdown, then `reboot(2)` RESTART.
    #[default]
    Reboot,
    /// Clean shutdown, then POWER_OFF.
    Poweroff,
    /// Clean shutdown, then HALT.
    Halt,
    /// Stop every service and stay up (console shell if configured, control socket answers).
    Hang,
}

/// OTP restart strategy of a supervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that died.
    #[default]
    OneForOne,
    /// Stop all other children (reverse order), restart all (in order).
    OneForAll,
    /// Stop the children after the dead one (reverse order), restart them in order.
    RestForOne,
}

/// OTP restart type of a child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always restarted.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (not code 0, not killed by SIGTERM).
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a service is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGKILL at once.
    BrutalKill,
    /// SIGTERM, then SIGKILL after this long.
    Timeout(Duration),
    /// SIGTERM, then wait forever.
    Infinity,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::Timeout(Duration::from_secs(5))
    }
}

/// When a service counts as ready (and the next sibling may start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// As soon as it has been started (exec succeeded).
    Started,
    /// When it sends `READY=1` on `NOTIFY_SOCKET`.
    Notify,
    /// When this path exists; if it is a Unix socket, when it accepts a connection.
    Path(PathBuf),
}

/// A user or group, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    /// Numeric id.
    Id(u32),
    /// Name to look up in /etc/passwd or /etc/group.
    Name(String),
}

/// A resource limit: soft and hard values, `None` = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RLimit {
    /// Soft limit.
    pub soft: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

/// Where the serial number (the hostname's unique id) may come from, in the configured order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialSource {
    /// U-Boot environment keys (`uboot_serial_keys`).
    UbootEnv,
    /// `/sys/firmware/devicetree/base/serial-number`.
    Devicetree,
    /// `Serial` line of `/proc/cpuinfo`.
    Cpuinfo,
    /// `/sys/class/dmi/id/product_serial`, then `product_uuid`.
    Dmi,
    /// The first non-loopback MAC address.
    Mac,
}

/// A mount performed at boot.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Device or pseudo source (`tmpfs`, `/dev/rootdisk0p1`).
    pub source: String,
    /// Mount point (created if missing).
    #[serde(deserialize_with = "de_abs_path")]
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// mount(8)-style options: flag names and filesystem data, comma separated.
    #[serde(default, deserialize_with = "de_mount_options")]
    pub options: String,
}

/// Filesystem of the data partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFs {
    /// ext4, formatted with `mkfs.ext4`.
    #[default]
    Ext4,
    /// f2fs, formatted with `mkfs.f2fs`.
    F2fs,
}

impl DataFs {
    /// The filesystem type name for mount(2).
    pub fn as_str(self) -> &'static str {
        match self {
            DataFs::Ext4 => "ext4",
            DataFs::F2fs => "f2fs",
        }
    }
}

/// The writable data partition.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Block device, e.g. `/dev/rootdisk0p4`.
    #[serde(deserialize_with = "de_abs_path")]
    pub device: String,
    /// Mount point.
    #[serde(default = "default_data_mountpoint", deserialize_with = "de_abs_path")]
    pub mountpoint: String,
    /// `ext4` or `f2fs`.
    #[serde(default)]
    pub fstype: DataFs,
    /// mount(8)-style options.
    #[serde(default, deserialize_with = "de_mount_options")]
    pub options: String,
    /// Format when it cannot be mounted read-write.
    #[serde(default = "yes")]
    pub format: bool,
    /// Take device, fstype and mountpoint from the U-Boot environment when it has them
    /// (`<active slot>.nerves_fw_application_part0_devpath`, `_fstype`, `_target`, as fwup
    /// configurations write them); the values above are the fallback.
    #[serde(default)]
    pub from_uboot_env: bool,
}

fn default_data_mountpoint() -> String {
    "/data".into()
}
fn yes() -> bool {
    true
}

/// `[init]`: PID 1 itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitConfig {
    /// Action when the top supervisor gives up.
    pub fatal_action: FatalAction,
    /// Console shell for safe mode and `hang`.
    pub shell: Option<String>,
    /// Directory of the control socket and the sd_notify sockets.
    pub run_dir: PathBuf,
    /// Cap on stopping all services at shutdown.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
    /// Wait between TERM and KILL to leftover processes.
    #[serde(deserialize_with = "de_duration")]
    pub kill_wait: Duration,
    /// File whose first line is the reboot argument.
    pub reboot_param: PathBuf,
    /// Unmount everything at shutdown.
    pub unmount: bool,
    /// How long the fatal message stays on the console before the fatal action (safe mode).
    #[serde(deserialize_with = "de_duration")]
    pub fatal_delay: Duration,
    /// Environment added to every service.
    pub env: BTreeMap<String, String>,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            fatal_action: FatalAction::Reboot,
            shell: None,
            run_dir: PathBuf::from("/run/myelin"),
            shutdown_timeout: Duration::from_secs(30),
            kill_wait: Duration::from_secs(1),
            reboot_param: PathBuf::from("/run/reboot-param"),
            unmount: true,
            fatal_delay: Duration::from_secs(3),
            env: BTreeMap::new(),
        }
    }
}

impl InitConfig {
    /// Path of the control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join("init.sock")
    }
    /// Directory of the per-service sd_notify sockets.
    pub fn notify_dir(&self) -> PathBuf {
        self.run_dir.join("notify")
    }
}

/// `[boot]`: the boot duties.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// Master switch: `false` skips every duty (containers, tests).
    pub enabled: bool,
    /// /proc, /sys, /dev, /dev/pts, /dev/shm.
    pub pseudo_fs: bool,
    /// /tmp and /run.
    pub tmpfs: bool,
    /// `/dev/rootdisk0[pN]` links.
    pub rootdisk_links: bool,
    /// Console device for stdin/out/err (`ttyS0` or `/dev/ttyS0`).
    pub console: Option<String>,
    /// Resource limits inherited by every service.
    #[serde(deserialize_with = "de_rlimits")]
    pub rlimits: BTreeMap<String, RLimit>,
    /// Keep the clock at or after the build time.
    pub clock_floor: bool,
    /// File holding the build time in seconds (written by the image build); also a floor.
    pub build_time_file: Option<PathBuf>,
    /// Bring the loopback interface up.
    pub loopback: bool,
    /// Hostname pattern; absent: /etc/hostname if it exists.
    #[serde(deserialize_with = "de_hostname")]
    pub hostname: Option<String>,
    /// Serial number sources, in order.
    pub serial_sources: Vec<SerialSource>,
    /// U-Boot environment keys holding the serial number.
    pub uboot_serial_keys: Vec<String>,
    /// File whose mtime is a clock floor, touched at shutdown.
    pub time_file: Option<PathBuf>,
    /// RNG seed file.
    pub rng_seed: Option<PathBuf>,
    /// Extra mounts.
    pub mount: Vec<MountSpec>,
    /// The data partition.
    pub data: Option<DataSpec>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            enabled: true,
            pseudo_fs: true,
            tmpfs: true,
            rootdisk_links: true,
            console: None,
            rlimits: BTreeMap::new(),
            clock_floor: true,
            build_time_file: Some(PathBuf::from("/etc/myelin/build-time")),
            loopback: true,
            hostname: None,
            serial_sources: vec![
                SerialSource::UbootEnv,
                SerialSource::Devicetree,
                SerialSource::Cpuinfo,
                SerialSource::Dmi,
                SerialSource::Mac,
            ],
            uboot_serial_keys: vec!["nerves_serial_number".into(), "serial_number".into()],
            time_file: None,
            rng_seed: None,
            mount: Vec::new(),
            data: None,
        }
    }
}

/// `[watchdog]`: the hardware watchdog.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Device node.
    pub device: PathBuf,
    /// Timeout to program; absent: keep the driver's.
    #[serde(deserialize_with = "de_wd_timeout")]
    pub timeout: Option<Duration>,
    /// Unconditional petting after start.
    #[serde(deserialize_with = "de_duration")]
    pub grace: Duration,
    /// Length of one snooze.
    #[serde(deserialize_with = "de_duration")]
    pub snooze: Duration,
    /// Tests only: `device` is a plain file that records pets; no hardware is touched.
    pub fake: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            device: PathBuf::from("/dev/watchdog0"),
            timeout: None,
            grace: Duration::from_secs(60),
            snooze: Duration::from_secs(15 * 60),
            fake: false,
        }
    }
}

/// `[log]`: service output capture.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Byte budget of the in-memory ring.
    #[serde(deserialize_with = "de_ring_bytes")]
    pub ring_bytes: usize,
    /// Longest line kept; longer lines are cut.
    #[serde(deserialize_with = "de_line_max")]
    pub line_max: usize,
    /// Kernel log device; empty: none.
    pub kmsg: String,
    /// Lines per second copied to kmsg in the long run.
    pub kmsg_rate: u32,
    /// Lines copied to kmsg in a burst.
    pub kmsg_burst: u32,
    /// PID 1's own messages at or above this priority also go to the console (its stderr).
    pub console_level: crate::log::Level,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            ring_bytes: 256 * 1024,
            line_max: 1024,
            kmsg: "/dev/kmsg".into(),
            kmsg_rate: 20,
            kmsg_burst: 200,
            console_level: crate::log::Level::Notice,
        }
    }
}

/// Index of a node in [`Tree::nodes`]; the root supervisor is 0.
pub type NodeId = usize;

/// A supervisor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorSpec {
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restarts allowed within `period`.
    pub intensity: u32,
    /// Window of the intensity count.
    pub period: Duration,
    /// Children in start order.
    pub children: Vec<NodeId>,
}

/// A service: one supervised OS process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// argv; `argv[0]` is what the program sees.
    pub argv: Vec<String>,
    /// Executable actually run (`argv[0]` resolved through PATH by `check_environment`).
    pub program: PathBuf,
    /// Environment (complete: nothing is inherited from PID 1).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// User as written.
    pub user: Option<IdOrName>,
    /// Group as written.
    pub group: Option<IdOrName>,
    /// Resolved uid.
    pub uid: Option<u32>,
    /// Resolved gid.
    pub gid: Option<u32>,
    /// How it is stopped.
    pub shutdown: Shutdown,
    /// When it counts as ready.
    pub readiness: Readiness,
    /// Deadline for readiness.
    pub ready_timeout: Option<Duration>,
    /// WATCHDOG=1 interval.
    pub watchdog: Option<Duration>,
    /// The hardware watchdog depends on it.
    pub critical: bool,
    /// Backoff base.
    pub restart_delay: Duration,
    /// Backoff cap.
    pub restart_delay_max: Duration,
    /// stdin/stdout/stderr on the console terminal (a login shell), not captured.
    pub console: bool,
    /// A missing executable skips the service instead of failing the configuration.
    pub optional: bool,
    /// Set by [`Config::check_environment`]: optional and not installed.
    pub absent: bool,
    /// Directories created (mode 0755, owned by the service's user) before each start.
    pub create_dirs: Vec<PathBuf>,
}

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A supervisor.
    Supervisor(SupervisorSpec),
    /// A service.
    Service(Box<ServiceSpec>),
}

/// A node of the supervision tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// Parent supervisor (`None` for the root).
    pub parent: Option<NodeId>,
    /// How the parent treats its exit.
    pub restart: RestartType,
    /// Nodes that must be ready before this one starts.
    pub after: Vec<NodeId>,
    /// Supervisor or service.
    pub kind: NodeKind,
}

impl NodeSpec {
    /// The service spec, if this node is a service.
    pub fn service(&self) -> Option<&ServiceSpec> {
        match &self.kind {
            NodeKind::Service(s) => Some(s),
            NodeKind::Supervisor(_) => None,
        }
    }
    /// The supervisor spec, if this node is a supervisor.
    pub fn supervisor(&self) -> Option<&SupervisorSpec> {
        match &self.kind {
            NodeKind::Supervisor(s) => Some(s),
            NodeKind::Service(_) => None,
        }
    }
}

/// The supervision tree; `nodes[0]` is the root supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// All nodes; parents before children.
    pub nodes: Vec<NodeSpec>,
}

impl Tree {
    /// Looks a node up by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }
    /// Children of a node (empty for services).
    pub fn children(&self, id: NodeId) -> &[NodeId] {
        match &self.nodes[id].kind {
            NodeKind::Supervisor(s) => &s.children,
            NodeKind::Service(_) => &[],
        }
    }
    /// Ids of all services.
    pub fn services(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].service().is_some())
    }
}

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// File it came from.
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
    source: String,
    node_spans: Vec<NodeSpans>,
}

#[derive(Clone, Debug, Default)]
struct NodeSpans {
    argv: Range<usize>,
    user: Range<usize>,
    group: Range<usize>,
    cwd: Range<usize>,
}

// ----- raw file structure -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    init: InitConfig,
    #[serde(default)]
    boot: BootConfig,
    #[serde(default)]
    watchdog: Option<WatchdogConfig>,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    root: RawRoot,
    #[serde(default)]
    supervisor: Vec<Spanned<RawSupervisor>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(default)]
    strategy: Strategy,
    #[serde(default = "default_intensity")]
    intensity: u32,
    #[serde(default = "default_period", deserialize_with = "de_duration")]
    period: Duration,
}

impl Default for RawRoot {
    fn default() -> Self {
        RawRoot {
            strategy: Strategy::OneForOne,
            intensity: default_intensity(),
            period: default_period(),
        }
    }
}

fn default_intensity() -> u32 {
    3
}
fn default_period() -> Duration {
    Duration::from_secs(5)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    name: Spanned<String>,
    #[serde(default)]
    supervisor: Option<Spanned<String>>,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default = "default_intensity")]
    intensity: u32,
    #[serde(default = "default_period", deserialize_with = "de_duration")]
    period: Duration,
    #[serde(default)]
    restart: RestartType,
    #[serde(default)]
    after: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    #[serde(default)]
    supervisor: Option<Spanned<String>>,
    argv: Spanned<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    user: Option<Spanned<IdOrName>>,
    #[serde(default)]
    group: Option<Spanned<IdOrName>>,
    #[serde(default)]
    restart: RestartType,
    #[serde(default)]
    shutdown: Shutdown,
    #[serde(default)]
    notify: bool,
    #[serde(default)]
    ready_path: Option<Spanned<String>>,
    #[serde(
        default = "default_ready_timeout",
        deserialize_with = "de_opt_duration"
    )]
    ready_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    watchdog: Option<Duration>,
    #[serde(default)]
    critical: bool,
    #[serde(default = "default_restart_delay", deserialize_with = "de_duration")]
    restart_delay: Duration,
    #[serde(
        default = "default_restart_delay_max",
        deserialize_with = "de_duration"
    )]
    restart_delay_max: Duration,
    #[serde(default)]
    console: bool,
    #[serde(default)]
    optional: bool,
    #[serde(default, deserialize_with = "de_abs_paths")]
    create_dirs: Vec<String>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
}

fn default_ready_timeout() -> Option<Duration> {
    Some(Duration::from_secs(60))
}
fn default_restart_delay() -> Duration {
    Duration::from_millis(100)
}
fn default_restart_delay_max() -> Duration {
    Duration::from_secs(5)
}

// ----- value deserializers --------------------------------------------------------------------

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).ok_or_else(|| {
        de::Error::custom(format!(
            "invalid duration \"{s}\": expected a number and a unit, like \"250ms\", \"5s\", \"2m\""
        ))
    })
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "infinity" {
        return Ok(None);
    }
    parse_duration(&s).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "invalid duration \"{s}\": expected a number and a unit, like \"250ms\", \"5s\", or \"infinity\""
        ))
    })
}

impl<'de> Deserialize<'de> for Shutdown {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "brutal_kill" => Ok(Shutdown::BrutalKill),
            "infinity" => Ok(Shutdown::Infinity),
            other => parse_duration(other).map(Shutdown::Timeout).ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid shutdown \"{s}\": expected \"brutal_kill\", \"infinity\" or a duration like \"5s\""
                ))
            }),
        }
    }
}

impl<'de> Deserialize<'de> for IdOrName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdOrName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a numeric id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::custom(format!("id {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::custom(format!("id {v} out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdOrName, E> {
                if v.is_empty() {
                    return Err(E::custom("empty name"));
                }
                Ok(IdOrName::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"unlimited\" or \"soft:hard\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RLimit, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("negative limit"))?;
                Ok(RLimit {
                    soft: Some(v),
                    hard: Some(v),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RLimit, E> {
                Ok(RLimit {
                    soft: Some(v),
                    hard: Some(v),
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RLimit, E> {
                let one = |s: &str| -> Result<Option<u64>, E> {
                    match s {
                        "unlimited" | "infinity" => Ok(None),
                        n => n.parse().map(Some).map_err(|_| {
                            E::custom(format!(
                                "invalid limit \"{n}\": expected a number or \"unlimited\""
                            ))
                        }),
                    }
                };
                match v.split_once(':') {
                    Some((s, h)) => Ok(RLimit {
                        soft: one(s)?,
                        hard: one(h)?,
                    }),
                    None => {
                        let x = one(v)?;
                        Ok(RLimit { soft: x, hard: x })
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn de_abs_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') {
        return Err(de::Error::custom(format!("`{s}` must be an absolute path")));
    }
    Ok(s)
}

fn de_abs_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(p) = v.iter().find(|p| !p.starts_with('/')) {
        return Err(de::Error::custom(format!("`{p}` must be an absolute path")));
    }
    Ok(v)
}

fn de_mount_options<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    crate::sys::parse_mount_options(&s).map_err(de::Error::custom)?;
    Ok(s)
}

fn de_hostname<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    crate::hostname::check_pattern(&s).map_err(de::Error::custom)?;
    Ok(Some(s))
}

fn de_wd_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let t = de_duration(d)?;
    if t < Duration::from_secs(1) || t > Duration::from_secs(3600) {
        return Err(de::Error::custom(
            "the watchdog timeout must be between 1s and 1h",
        ));
    }
    Ok(Some(t))
}

fn de_ring_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n < 4096 {
        return Err(de::Error::custom("ring_bytes must be at least 4096"));
    }
    Ok(n)
}

fn de_line_max<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if !(16..=65536).contains(&n) {
        return Err(de::Error::custom("line_max must be between 16 and 65536"));
    }
    Ok(n)
}

/// Resource names accepted in `[boot] rlimits`.
pub const RLIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn de_rlimits<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, RLimit>, D::Error> {
    let m = BTreeMap::<String, RLimit>::deserialize(d)?;
    for k in m.keys() {
        if !RLIMIT_NAMES.contains(&k.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown resource limit `{k}`, expected one of {}",
                RLIMIT_NAMES.join(", ")
            )));
        }
    }
    Ok(m)
}

// ----- loading ------------------------------------------------------------------------------

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..floor_char_boundary(src, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether `name` is a valid node name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

struct Builder<'a> {
    path: &'a Path,
    src: &'a str,
    diags: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.diags.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }
}

impl Config {
    /// Reads and validates a configuration file (structure only; see
    /// [`Config::check_environment`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&src, path)
    }

    /// Validates configuration text; `path` is only used in diagnostics.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(src).map_err(|e| {
            let (line, column) = line_col(src, e.span().map(|s| s.start).unwrap_or(0));
            ConfigError::Invalid(vec![Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }])
        })?;
        let mut b = Builder {
            path,
            src,
            diags: Vec::new(),
        };
        let (tree, node_spans) =
            build_tree(&mut b, raw.root, raw.supervisor, raw.service, &raw.init);
        if !b.diags.is_empty() {
            return Err(ConfigError::Invalid(b.diags));
        }
        Ok(Config {
            path: path.to_path_buf(),
            init: raw.init,
            boot: raw.boot,
            watchdog: raw.watchdog,
            log: raw.log,
            tree,
            source: src.to_string(),
            node_spans,
        })
    }

    /// Checks what only the running system can tell, once the boot duties have mounted
    /// everything: executables exist (`argv[0]` resolved through the service's PATH), users and
    /// groups exist (resolved to ids, HOME set from the user's entry), working directories exist.
    /// `etc` is the directory holding `passwd` and `group` (normally `/etc`).
    pub fn check_environment(&mut self, etc: &Path) -> Result<(), ConfigError> {
        let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
        let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
        let mut b = Builder {
            path: &self.path,
            src: &self.source,
            diags: Vec::new(),
        };
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
            match resolve_program(&svc.argv[0], &path_var) {
                Some(p) => svc.program = p,
                None if svc.optional => {
                    svc.absent = true;
                    continue;
                }
                None => b.err(
                    spans.argv.clone(),
                    format!(
                        "service `{name}`: `{}` is not an executable file (PATH={path_var})",
                        svc.argv[0]
                    ),
                ),
            }
            if !svc.cwd.is_dir() {
                b.err(
                    spans.cwd.clone(),
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
                    None => b.err(
                        spans.user.clone(),
                        format!("service `{name}`: unknown user `{u}`"),
                    ),
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
                    None => b.err(
                        spans.group.clone(),
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
        if b.diags.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(b.diags))
        }
    }
}

/// Best-effort reading of the sections PID 1 needs in safe mode (when the file as a whole is
/// invalid): each of `[init]`, `[boot]` and `[log]` is taken if it alone is valid, else defaults.
pub fn load_fallback(src: &str) -> (InitConfig, BootConfig, LogConfig) {
    // One lenient parse per section (other keys ignored), reusing the strict parser's code.
    #[derive(Deserialize)]
    struct InitOnly {
        #[serde(default)]
        init: InitConfig,
    }
    #[derive(Deserialize)]
    struct BootOnly {
        #[serde(default)]
        boot: BootConfig,
    }
    #[derive(Deserialize)]
    struct LogOnly {
        #[serde(default)]
        log: LogConfig,
    }
    (
        toml::from_str::<InitOnly>(src)
            .map(|s| s.init)
            .unwrap_or_default(),
        toml::from_str::<BootOnly>(src)
            .map(|s| s.boot)
            .unwrap_or_default(),
        toml::from_str::<LogOnly>(src)
            .map(|s| s.log)
            .unwrap_or_default(),
    )
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

/// Resolves a program name like `execvp` would: names with a `/` as is, others through `path`.
pub fn resolve_program(name: &str, path: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exec(p))
}

enum Pending {
    Sup(RawSupervisor),
    Svc(Box<RawService>),
}

fn build_tree(
    b: &mut Builder<'_>,
    root: RawRoot,
    sups: Vec<Spanned<RawSupervisor>>,
    svcs: Vec<Spanned<RawService>>,
    init: &InitConfig,
) -> (Tree, Vec<NodeSpans>) {
    // Gather every node with its position in the file, so siblings keep the file's order even
    // though services and supervisors live in two different TOML arrays.
    let mut all: Vec<(usize, Pending)> = Vec::new();
    for s in sups {
        let pos = s.span().start;
        all.push((pos, Pending::Sup(s.into_inner())));
    }
    for s in svcs {
        let pos = s.span().start;
        all.push((pos, Pending::Svc(Box::new(s.into_inner()))));
    }
    all.sort_by_key(|(p, _)| *p);

    let mut nodes = vec![NodeSpec {
        name: "root".into(),
        parent: None,
        restart: RestartType::Permanent,
        after: Vec::new(),
        kind: NodeKind::Supervisor(SupervisorSpec {
            strategy: root.strategy,
            intensity: root.intensity,
            period: root.period,
            children: Vec::new(),
        }),
    }];
    let mut spans = vec![NodeSpans::default()];
    let mut name_spans: Vec<Range<usize>> = vec![Range { start: 0, end: 0 }];
    let mut parent_refs: Vec<Option<Spanned<String>>> = vec![None];
    let mut after_refs: Vec<Vec<Spanned<String>>> = vec![Vec::new()];
    let mut by_name: HashMap<String, NodeId> = HashMap::from([("root".to_string(), 0)]);

    for (_, p) in all {
        let (name, parent, after, restart, kind, sp) = match p {
            Pending::Sup(s) => (
                s.name,
                s.supervisor,
                s.after,
                s.restart,
                NodeKind::Supervisor(SupervisorSpec {
                    strategy: s.strategy,
                    intensity: s.intensity,
                    period: s.period,
                    children: Vec::new(),
                }),
                NodeSpans::default(),
            ),
            Pending::Svc(s) => {
                let s = *s;
                let nm = s.name.get_ref().clone();
                if s.argv.get_ref().is_empty() || s.argv.get_ref()[0].is_empty() {
                    b.err(
                        s.argv.span(),
                        format!("service `{nm}`: argv must name a program"),
                    );
                }
                if s.notify && s.ready_path.is_some() {
                    b.err(
                        s.name.span(),
                        format!("service `{nm}`: `notify` and `ready_path` exclude each other"),
                    );
                }
                let readiness = match (&s.ready_path, s.notify) {
                    (Some(p), _) => {
                        if !p.get_ref().starts_with('/') {
                            b.err(
                                p.span(),
                                format!("service `{nm}`: ready_path must be absolute"),
                            );
                        }
                        Readiness::Path(PathBuf::from(p.get_ref()))
                    }
                    (None, true) => Readiness::Notify,
                    (None, false) => Readiness::Started,
                };
                if s.watchdog.is_some_and(|w| w < Duration::from_millis(10)) {
                    b.err(
                        s.name.span(),
                        format!("service `{nm}`: watchdog must be at least 10ms"),
                    );
                }
                let mut env = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
                env.extend(init.env.clone());
                env.extend(s.env.clone());
                for k in env.keys() {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        b.err(
                            s.name.span(),
                            format!("service `{nm}`: invalid environment variable name `{k}`"),
                        );
                    }
                }
                let sp = NodeSpans {
                    argv: s.argv.span(),
                    user: s.user.as_ref().map(|u| u.span()).unwrap_or(s.name.span()),
                    group: s.group.as_ref().map(|u| u.span()).unwrap_or(s.name.span()),
                    cwd: s.cwd.as_ref().map(|u| u.span()).unwrap_or(s.name.span()),
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
                };
                (
                    s.name,
                    s.supervisor,
                    s.after,
                    s.restart,
                    NodeKind::Service(Box::new(spec)),
                    sp,
                )
            }
        };
        let id = nodes.len();
        let nm = name.get_ref().clone();
        if !valid_name(&nm) {
            b.err(
                name.span(),
                format!("invalid name `{nm}`: use letters, digits and _.@- (at most 64)"),
            );
        } else if let Some(&other) = by_name.get(&nm) {
            if other == 0 {
                b.err(
                    name.span(),
                    "the name `root` is reserved for the top supervisor",
                );
            } else {
                let (l, c) = line_col(b.src, name_spans[other].start);
                b.err(
                    name.span(),
                    format!("duplicate name `{nm}` (first defined at line {l}, column {c})"),
                );
            }
        } else {
            by_name.insert(nm.clone(), id);
        }
        nodes.push(NodeSpec {
            name: nm,
            parent: None,
            restart,
            after: Vec::new(),
            kind,
        });
        spans.push(sp);
        name_spans.push(name.span());
        parent_refs.push(parent);
        after_refs.push(after);
    }

    // Parents.
    for id in 1..nodes.len() {
        let parent = match &parent_refs[id] {
            None => 0,
            Some(p) => match by_name.get(p.get_ref()) {
                Some(&pid) if nodes[pid].supervisor().is_some() => pid,
                Some(_) => {
                    b.err(
                        p.span(),
                        format!("`{}` is a service, not a supervisor", p.get_ref()),
                    );
                    0
                }
                None => {
                    b.err(p.span(), format!("unknown supervisor `{}`", p.get_ref()));
                    0
                }
            },
        };
        nodes[id].parent = Some(parent);
        if let NodeKind::Supervisor(s) = &mut nodes[parent].kind {
            s.children.push(id);
        }
    }
    // Supervisors must hang off the root (a parent loop would leave them unreachable).
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
            b.err(
                name_spans[id].clone(),
                format!("`{}` is part of a supervisor cycle", nodes[id].name),
            );
        }
    }
    // `after` references.
    for id in 1..nodes.len() {
        let mut after = Vec::new();
        for a in &after_refs[id] {
            match by_name.get(a.get_ref()) {
                Some(&t) if t == id => b.err(
                    a.span(),
                    format!("`{}` cannot wait for itself", nodes[id].name),
                ),
                Some(&t) => after.push(t),
                None => b.err(
                    a.span(),
                    format!("`after`: unknown service or supervisor `{}`", a.get_ref()),
                ),
            }
        }
        nodes[id].after = after;
    }
    let tree = Tree { nodes };
    if b.diags.is_empty() {
        if let Some(cycle) = find_start_cycle(&tree) {
            let first = cycle[0];
            let span = after_refs[first]
                .first()
                .map(|a| a.span())
                .unwrap_or_else(|| name_spans[first].clone());
            let names: Vec<&str> = cycle.iter().map(|&i| tree.nodes[i].name.as_str()).collect();
            b.err(
                span,
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

/// Finds a set of nodes that can never start because they wait on each other.
///
/// Vertices are "X is ready" (2X) and "X may start" (2X+1). Ready(X) needs start(X) and, for a
/// supervisor, ready(child) for every child; start(X) needs ready(a) for each `after` a,
/// ready(previous sibling) and start(parent). A cycle is a deadlock; the nodes on it are
/// returned in order.
pub fn find_start_cycle(tree: &Tree) -> Option<Vec<NodeId>> {
    let n = tree.nodes.len();
    let ready = |x: NodeId| 2 * x;
    let start = |x: NodeId| 2 * x + 1;
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
    for x in 0..n {
        edges[ready(x)].push(start(x));
        for &c in tree.children(x) {
            edges[ready(x)].push(ready(c));
        }
        for &a in &tree.nodes[x].after {
            edges[start(x)].push(ready(a));
        }
        if let Some(p) = tree.nodes[x].parent {
            edges[start(x)].push(start(p));
            let sib = tree.children(p);
            if let Some(pos) = sib.iter().position(|&c| c == x) {
                if pos > 0 {
                    edges[start(x)].push(ready(sib[pos - 1]));
                }
            }
        }
    }
    // Iterative DFS with colours.
    let mut colour = vec![0u8; 2 * n];
    let mut parent = vec![usize::MAX; 2 * n];
    for s in 0..2 * n {
        if colour[s] != 0 {
            continue;
        }
        let mut stack = vec![(s, 0usize)];
        colour[s] = 1;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if *i < edges[v].len() {
                let w = edges[v][*i];
                *i += 1;
                if colour[w] == 0 {
                    colour[w] = 1;
                    parent[w] = v;
                    stack.push((w, 0));
                } else if colour[w] == 1 {
                    // Cycle w -> ... -> v -> w.
                    let mut verts = vec![v];
                    let mut u = v;
                    while u != w {
                        u = parent[u];
                        verts.push(u);
                    }
                    verts.reverse();
                    let mut nodes: Vec<NodeId> = Vec::new();
                    for v in verts {
                        let x = v / 2;
                        if nodes.last() != Some(&x) && nodes.first() != Some(&x) {
                            nodes.push(x);
                        }
                    }
                    return Some(nodes);
                }
            } else {
                colour[v] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(src, Path::new("/etc/myelin/init.toml"))
    }

    fn errors(src: &str) -> Vec<String> {
        match parse(src) {
            Ok(_) => panic!("accepted invalid config:\n{src}"),
            Err(ConfigError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn empty_file_is_a_valid_default() {
        let c = parse("").unwrap();
        assert_eq!(c.tree.nodes.len(), 1);
        assert_eq!(c.init.fatal_action, FatalAction::Reboot);
        assert!(c.boot.enabled);
        assert!(c.watchdog.is_none());
        assert_eq!(c.log.ring_bytes, 262144);
    }

    #[test]
    fn tree_follows_file_order_across_arrays() {
        let c = parse(
            r#"
[[service]]
name = "a"
argv = ["/bin/true"]

[[supervisor]]
name = "g"
strategy = "rest_for_one"

[[service]]
name = "b"
supervisor = "g"
argv = ["/bin/true"]

[[service]]
name = "c"
argv = ["/bin/true"]
after = ["b"]
"#,
        )
        .unwrap();
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(|&i| c.tree.nodes[i].name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(c.tree.children(0)), ["a", "g", "c"]);
        let g = c.tree.find("g").unwrap();
        assert_eq!(names(c.tree.children(g)), ["b"]);
        assert_eq!(
            c.tree.nodes[g].supervisor().unwrap().strategy,
            Strategy::RestForOne
        );
        let cc = c.tree.find("c").unwrap();
        assert_eq!(c.tree.nodes[cc].after, vec![c.tree.find("b").unwrap()]);
    }

    #[test]
    fn service_fields_and_defaults() {
        let c = parse(
            r#"
[init]
env = { LANG = "C" }
[[service]]
name = "kv"
argv = ["myelin-kv", "daemon"]
env = { RUST_LOG = "info" }
notify = true
shutdown = "brutal_kill"
ready_timeout = "infinity"
watchdog = "2s"
critical = true
restart = "transient"
user = 1000
"#,
        )
        .unwrap();
        let s = c.tree.nodes[1].service().unwrap();
        assert_eq!(s.readiness, Readiness::Notify);
        assert_eq!(s.shutdown, Shutdown::BrutalKill);
        assert_eq!(s.ready_timeout, None);
        assert_eq!(s.watchdog, Some(Duration::from_secs(2)));
        assert_eq!(s.env["PATH"], DEFAULT_PATH);
        assert_eq!(s.env["LANG"], "C");
        assert_eq!(s.env["RUST_LOG"], "info");
        assert_eq!(s.user, Some(IdOrName::Id(1000)));
        assert_eq!(c.tree.nodes[1].restart, RestartType::Transient);
        assert_eq!(s.restart_delay, Duration::from_millis(100));
    }

    #[test]
    fn console_optional_and_directories() {
        let c = parse(
            "[[service]]\nname = \"sh\"\nargv = [\"/bin/sh\"]\nconsole = true\noptional = true\ncreate_dirs = [\"/run/sh\"]\n",
        )
        .unwrap();
        let s = c.tree.nodes[1].service().unwrap();
        assert!(s.console && s.optional && !s.absent);
        assert_eq!(s.create_dirs, [PathBuf::from("/run/sh")]);
        let e = errors(
            "[[service]]\nname = \"sh\"\nargv = [\"/bin/sh\"]\ncreate_dirs = [\"run/sh\"]\n",
        );
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:4:15: `run/sh` must be an absolute path"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn unknown_key_is_located() {
        let e =
            errors("[[service]]\nname = \"a\"\nargv = [\"/bin/true\"]\nrestrat = \"permanent\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:4:1: unknown field `restrat`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn bad_types_and_values_are_located() {
        let e = errors("[init]\nkill_wait = 5\n");
        assert!(e[0].starts_with("/etc/myelin/init.toml:2:13:"), "{}", e[0]);
        let e = errors("[[service]]\nname = \"a\"\nargv = [\"/bin/true\"]\nshutdown = \"soon\"\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:4:12: invalid shutdown \"soon\""),
            "{}",
            e[0]
        );
        let e = errors("[root]\nstrategy = \"one_for_most\"\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:2:12: unknown variant `one_for_most`"),
            "{}",
            e[0]
        );
        let e = errors("[boot]\nrlimits = { cores = 0 }\n");
        assert!(e[0].contains("unknown resource limit `cores`"), "{}", e[0]);
        let e = errors("[[service]]\nname = \"a\"\nargv = []\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:3:8: service `a`: argv must name a program"),
            "{}",
            e[0]
        );
        let e = errors("[boot]\nhostname = \"x-%d\"\n");
        assert!(e[0].starts_with("/etc/myelin/init.toml:2:12:"), "{}", e[0]);
        let e = errors("[boot.data]\ndevice = \"/dev/sda4\"\nfstype = \"btrfs\"\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:3:10: unknown variant `btrfs`"),
            "{}",
            e[0]
        );
        let e = errors(
            "[[boot.mount]]\nsource = \"tmpfs\"\ntarget = \"/x\"\nfstype = \"tmpfs\"\noptions = \"nodev,rw,ro\"\n",
        );
        assert!(e[0].starts_with("/etc/myelin/init.toml:5:11:"), "{}", e[0]);
        let e = errors("[watchdog]\ntimeout = \"100ms\"\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:2:11: the watchdog timeout"),
            "{}",
            e[0]
        );
        let e = errors("[log]\nline_max = 2\n");
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:2:12: line_max"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let e = errors("[init]\nshell = \"/bin/sh\n");
        assert!(e[0].starts_with("/etc/myelin/init.toml:2:"), "{}", e[0]);
    }

    #[test]
    fn duplicate_and_reserved_names() {
        let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\n[[supervisor]]\nname = \"a\"\n");
        assert_eq!(
            e,
            ["/etc/myelin/init.toml:5:8: duplicate name `a` (first defined at line 2, column 8)"]
        );
        let e = errors("[[service]]\nname = \"root\"\nargv = [\"x\"]\n");
        assert!(e[0].contains("reserved"), "{}", e[0]);
        let e = errors("[[service]]\nname = \"a b\"\nargv = [\"x\"]\n");
        assert!(e[0].contains("invalid name"), "{}", e[0]);
    }

    #[test]
    fn bad_references() {
        let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nsupervisor = \"nope\"\n");
        assert_eq!(e, ["/etc/myelin/init.toml:4:14: unknown supervisor `nope`"]);
        let e = errors(
            "[[service]]\nname = \"a\"\nargv = [\"x\"]\n[[service]]\nname = \"b\"\nargv = [\"x\"]\nsupervisor = \"a\"\n",
        );
        assert_eq!(
            e,
            ["/etc/myelin/init.toml:7:14: `a` is a service, not a supervisor"]
        );
        let e = errors("[[service]]\nname = \"a\"\nargv = [\"x\"]\nafter = [\"ghost\"]\n");
        assert_eq!(
            e,
            ["/etc/myelin/init.toml:4:10: `after`: unknown service or supervisor `ghost`"]
        );
        let e = errors(
            "[[supervisor]]\nname = \"g\"\nsupervisor = \"h\"\n[[supervisor]]\nname = \"h\"\nsupervisor = \"g\"\n",
        );
        assert_eq!(e.len(), 2);
        assert!(e[0].contains("supervisor cycle"), "{}", e[0]);
    }

    #[test]
    fn cycles_are_found() {
        // Waiting for a later sibling: the sibling waits for us through the start order.
        let e = errors(
            "[[service]]\nname = \"a\"\nargv = [\"x\"]\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nargv = [\"x\"]\n",
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("/etc/myelin/init.toml:4:10: start order cycle: a -> b -> a"),
            "{}",
            e[0]
        );
        // Waiting for one's own supervisor.
        let e = errors(
            "[[supervisor]]\nname = \"g\"\n[[service]]\nname = \"a\"\nsupervisor = \"g\"\nargv = [\"x\"]\nafter = [\"g\"]\n",
        );
        assert!(e[0].contains("start order cycle"), "{}", e[0]);
        // Across groups: a (in g1, first) waits for b (in g2, started after g1 is ready).
        let e = errors(
            "[[supervisor]]\nname = \"g1\"\n[[supervisor]]\nname = \"g2\"\n\
             [[service]]\nname = \"a\"\nsupervisor = \"g1\"\nargv = [\"x\"]\nafter = [\"b\"]\n\
             [[service]]\nname = \"b\"\nsupervisor = \"g2\"\nargv = [\"x\"]\n",
        );
        assert!(e[0].contains("start order cycle"), "{}", e[0]);
        // Waiting for an earlier node elsewhere is fine.
        parse(
            "[[supervisor]]\nname = \"g1\"\n[[supervisor]]\nname = \"g2\"\n\
             [[service]]\nname = \"a\"\nsupervisor = \"g1\"\nargv = [\"x\"]\n\
             [[service]]\nname = \"b\"\nsupervisor = \"g2\"\nargv = [\"x\"]\nafter = [\"a\", \"g1\"]\n",
        )
        .unwrap();
    }

    #[test]
    fn environment_checks() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\ndbus:x:81:82:dbus:/run/dbus:/bin/false\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\ndbus:x:82:\nnet:x:90:\n").unwrap();
        let mut c = parse(
            "[[service]]\nname = \"a\"\nargv = [\"sh\", \"-c\", \"true\"]\nuser = \"dbus\"\n\
             [[service]]\nname = \"b\"\nargv = [\"/bin/sh\"]\nuser = \"dbus\"\ngroup = \"net\"\n",
        )
        .unwrap();
        c.check_environment(etc).unwrap();
        let a = c.tree.nodes[1].service().unwrap();
        assert!(
            a.program.is_absolute() && a.program.ends_with("sh"),
            "{:?}",
            a.program
        );
        assert_eq!((a.uid, a.gid), (Some(81), Some(82)));
        assert_eq!(a.env["HOME"], "/run/dbus");
        let b = c.tree.nodes[2].service().unwrap();
        assert_eq!((b.uid, b.gid), (Some(81), Some(90)));

        let mut c = parse(
            "[[service]]\nname = \"a\"\nargv = [\"/no/such/program\"]\n\
             [[service]]\nname = \"b\"\nargv = [\"/bin/sh\"]\nuser = \"nobody-here\"\ncwd = \"/no/dir\"\n",
        )
        .unwrap();
        let Err(ConfigError::Invalid(d)) = c.check_environment(etc) else {
            panic!()
        };
        let d: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("/etc/myelin/init.toml:3:8: service `a`: `/no/such/program` is not an executable file"), "{}", d[0]);
        assert!(
            d[1].starts_with("/etc/myelin/init.toml:8:7: service `b`: working directory /no/dir"),
            "{}",
            d[1]
        );
        assert!(
            d[2].starts_with("/etc/myelin/init.toml:7:8: service `b`: unknown user `nobody-here`"),
            "{}",
            d[2]
        );
    }

    #[test]
    fn fallback_keeps_valid_sections() {
        let (init, boot, log) = load_fallback(
            "[init]\nfatal_action = \"hang\"\nshell = \"/bin/sh\"\n[boot]\nenabled = false\n[log]\nkmsg = \"\"\n[[service]]\nbogus = 1\n",
        );
        assert_eq!(init.fatal_action, FatalAction::Hang);
        assert_eq!(init.shell.as_deref(), Some("/bin/sh"));
        assert!(!boot.enabled);
        assert_eq!(log.kmsg, "");
        let (init, boot, _) = load_fallback("[init\n");
        assert_eq!(init, InitConfig::default());
        assert_eq!(boot, BootConfig::default());
        let (init, _, _) = load_fallback("[init]\nfatal_action = 3\n");
        assert_eq!(init, InitConfig::default());
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 10), (1, 1));
    }
}
