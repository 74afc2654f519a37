//! The development-image banner. An image built without firmware public keys accepts unsigned
//! updates from anyone who can reach it; board/common/post-build.sh then writes [`MARKER`], and
//! PID 1 says so at every boot, on the console and in the kernel log, so that such an image is
//! never mistaken for a release.

use std::io;

use crate::level::Level;
use crate::sys::Sys;

/// The marker post-build.sh writes into a development image; it holds the reason, one line.
pub const MARKER: &str = "/etc/myelin/development";

/// Logs the banner when [`MARKER`] exists; returns whether the image is a development image.
pub fn announce(sys: &mut dyn Sys) -> bool {
    let reason = match sys.read_file(MARKER) {
        Ok(text) => String::from_utf8_lossy(&text).trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        // It is there but cannot be read: assume the worse.
        Err(e) => format!("{MARKER} is unreadable: {e}"),
    };
    let reason = if reason.is_empty() {
        "built without firmware public keys".to_string()
    } else {
        reason
    };
    sys.log(
        Level::Warning,
        &format!("DEVELOPMENT IMAGE: updates unsigned ({reason})"),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fw_env::NoEnv;
    use crate::sys::fake::FakeSys;
    use std::path::Path;

    #[test]
    fn a_development_image_says_so() {
        let mut s = FakeSys::default();
        s.file(
            MARKER,
            "built without firmware public keys: updates are not signature-checked\n",
        );
        assert!(announce(&mut s));
        assert_eq!(
            s.take(),
            [
                "log warning: DEVELOPMENT IMAGE: updates unsigned (built without firmware public keys: updates are not signature-checked)"
            ]
        );
    }

    #[test]
    fn an_empty_marker_still_says_so() {
        let mut s = FakeSys::default();
        s.file(MARKER, "");
        assert!(announce(&mut s));
        assert_eq!(
            s.take(),
            [
                "log warning: DEVELOPMENT IMAGE: updates unsigned (built without firmware public keys)"
            ]
        );
    }

    #[test]
    fn a_signed_image_says_nothing() {
        let mut s = FakeSys::default();
        assert!(!announce(&mut s));
        assert!(s.take().is_empty());
    }

    #[test]
    fn boot_announces_it_once_the_console_is_set_up() {
        let cfg = Config::parse(
            "[boot]\nconsole = \"ttyS0\"\npseudo_fs = false\nrootdisk_links = false\ntmpfs = false\nloopback = false\nclock_floor = false\n",
            Path::new("t.toml"),
        )
        .unwrap()
        .boot;
        let mut s = FakeSys::default();
        s.file(MARKER, "no keys\n");
        super::super::run(&cfg, &mut s, &mut NoEnv, 0);
        let trace = s.take();
        let console = trace.iter().position(|l| l.starts_with("console "));
        let banner = trace
            .iter()
            .position(|l| l == "log warning: DEVELOPMENT IMAGE: updates unsigned (no keys)");
        assert!(
            matches!((console, banner), (Some(c), Some(b)) if c < b),
            "{trace:?}"
        );
    }
}
