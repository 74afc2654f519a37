//! `ready_path` readiness: a path that exists, and for a Unix socket, one that accepts.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::errno::Errno;

/// Whether a readiness path is there: it exists, and if it is a socket, something listens.
pub fn path_ready(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_socket() {
        return true;
    }
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    // A full backlog (EAGAIN) still means someone listens; a stale socket file refuses.
    matches!(
        connect(fd.as_raw_fd(), &addr),
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn readiness_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flag");
        assert!(!path_ready(&file));
        std::fs::write(&file, "").unwrap();
        assert!(path_ready(&file));
        let sock = dir.path().join("s.sock");
        let l = UnixListener::bind(&sock).unwrap();
        assert!(path_ready(&sock));
        drop(l);
        // The socket file is still there, but nobody listens: not ready.
        assert!(sock.exists());
        assert!(!path_ready(&sock));
    }
}
