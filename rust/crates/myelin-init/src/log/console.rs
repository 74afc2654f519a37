//! PID 1's own console (its standard error), written so that it can never stall PID 1.

/// Writes to PID 1's stderr (the console) without ever panicking: a console that cannot keep up
/// (non-blocking, see [`console_nonblocking`]) or is gone loses the text, which kmsg and the
/// ring still have.
pub fn console_write(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Makes PID 1's stderr non-blocking, so a slow or flow-controlled serial console can never
/// stall the event loop.
pub fn console_nonblocking() {
    use std::os::fd::BorrowedFd;
    // SAFETY: fd 2 stays open for the life of the process (or the call fails harmlessly).
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}
