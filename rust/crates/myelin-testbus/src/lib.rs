//! A private dbus-daemon for tests: the real bus daemon (Debian's `dbus` package) listening on a
//! socket in a temporary directory, stopped when the [`TestBus`] is dropped.
//!
//! Two kinds of bus cover Myelin's tests: [`TestBus::open`], where anyone may own any name and
//! call anything (for tests about a client or a service, not about who may use it), and
//! [`TestBus::system`], the default policy of a system bus (Debian's `system.conf`) plus a policy
//! file the root filesystem ships, so that a test sees exactly what a device allows.
//!
//! [`daemon::Daemon`] starts the daemon under test the way myelin-init does (`NOTIFY_SOCKET`,
//! ready at `READY=1`) and keeps its log; [`env_image::redundant`] writes the environment image
//! myelin-kv serves. [`shared_exe::SharedExe`] is a copy of a program another user can run.

pub mod daemon;
pub mod env_image;
pub mod shared_exe;

pub use daemon::Daemon;
pub use shared_exe::SharedExe;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The default policy of a system bus, as Debian's `/usr/share/dbus-1/system.conf` states it:
/// nobody owns a name or calls a method unless a `system.d` file allows it.
const SYSTEM_DEFAULT_POLICY: &str = r#"<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>"#;

/// A policy that lets every user own every name and send and receive everything.
const OPEN_POLICY: &str = r#"<policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>"#;

/// A running private dbus-daemon.
pub struct TestBus {
    address: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl TestBus {
    /// A bus where anyone may own any name and call anything.
    pub fn open() -> TestBus {
        TestBus::with_policy("session", OPEN_POLICY)
    }

    /// A system bus: Debian's default policy, then the policy file at `policy_file`.
    pub fn system(policy_file: &Path) -> TestBus {
        let include = format!(
            "{SYSTEM_DEFAULT_POLICY}\n  <include>{}</include>",
            policy_file.display()
        );
        TestBus::with_policy("system", &include)
    }

    /// A bus of `kind` (`session`, `system`) with `policy` inside `<busconfig>`.
    ///
    /// Its socket is reachable by every user, so tests can run clients under another uid.
    ///
    /// # Panics
    /// When dbus-daemon cannot be started or does not print its address.
    pub fn with_policy(kind: &str, policy: &str) -> TestBus {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("cannot open the bus directory to other users");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{kind}</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  {policy}
</busconfig>
"#,
                sock = dir.path().join("bus.sock").display(),
            ),
        )
        .expect("cannot write the bus configuration");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nosyslog", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dbus-daemon: install the dbus package (scripts/deps/apt.txt)");
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            // An error leaves the line empty, which the assertion below reports.
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
        TestBus {
            address: line.trim().to_owned(),
            child,
            dir,
        }
    }

    /// The bus's D-Bus address, for `DBUS_SYSTEM_BUS_ADDRESS`, `--bus` or `gdbus --address`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The bus's temporary directory, readable by every user: a place for a test's other files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new connection to the bus.
    ///
    /// # Panics
    /// When the bus does not accept it.
    pub async fn connect(&self) -> zbus::Connection {
        connect(&self.address).await
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new connection to the bus at `address` (for threads that hold only the address, such as
/// one running under another uid).
///
/// # Panics
/// When the bus does not accept it.
pub async fn connect(address: &str) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .build()
        .await
        .expect("cannot connect to the test bus")
}

/// The path of a policy file the root filesystem ships in `/etc/dbus-1/system.d`.
///
/// # Panics
/// When the repository has no such file.
pub fn shipped_policy(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../board/common/rootfs_overlay/etc/dbus-1/system.d")
        .join(name);
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
