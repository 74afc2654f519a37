//! The kernel's uevent socket (`NETLINK_KOBJECT_UEVENT`, multicast group 1) as an
//! [`EventSource`](crate::service::EventSource) on tokio.
//!
//! Only datagrams from the kernel (netlink port 0) are taken: a message from a user-space
//! port is someone else's and is dropped. When events come faster than they are read, the
//! kernel drops them and the next read fails with `ENOBUFS`; the source reports
//! [`SourceError::Overflow`] so that the daemon walks `/sys` again instead of missing a device.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recvfrom, setsockopt,
    socket, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::event::Uevent;
use crate::service::{EventSource, SourceError};

/// The kernel's multicast group (udev re-broadcasts on group 2, which is not read here).
const KERNEL_GROUP: u32 = 1;
/// One uevent is at most a page of text (`UEVENT_BUFFER_SIZE` is 2048 today).
const MSG_BUF: usize = 8192;
/// Socket buffer: a coldplug burst or a USB hub with many functions must not overflow it.
const RCVBUF: usize = 2 << 20;

/// The uevent socket.
pub struct Netlink {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens and binds the socket. Events from now on are kept until read.
    pub fn open() -> io::Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // RcvBufForce passes rmem_max but needs CAP_NET_ADMIN; without it, ask for what is allowed.
        if setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RCVBUF);
        }
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, which alone holds it: it stays open
        // and the same descriptor until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Netlink {
            fd,
            buf: vec![0; MSG_BUF],
        })
    }

    /// Reads one datagram if one is queued: `Ok(None)` when the queue is empty.
    fn try_read(&mut self) -> Result<Option<Option<Uevent>>, SourceError> {
        match recvfrom::<NetlinkAddr>(self.fd.get_ref().as_raw_fd(), &mut self.buf) {
            Ok((n, from)) => {
                if from.map(|a| a.pid()) != Some(0) {
                    log::debug!("dropped a uevent datagram not sent by the kernel");
                    return Ok(Some(None));
                }
                match Uevent::parse(&self.buf[..n]) {
                    Ok(e) => Ok(Some(Some(e))),
                    Err(e) => {
                        log::warn!("{e}");
                        Ok(Some(None))
                    }
                }
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(Errno::EINTR) => Ok(Some(None)),
            Err(Errno::ENOBUFS) => Err(SourceError::Overflow),
            Err(e) => Err(SourceError::Io(e.into())),
        }
    }
}

impl EventSource for Netlink {
    async fn next_batch(&mut self) -> Result<Vec<Uevent>, SourceError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(SourceError::Io)?;
            guard.clear_ready();
            drop(guard);
            // Everything queued now is one batch: a device's burst of events (a USB device and
            // its interfaces) then costs one modprobe call.
            let mut batch = Vec::new();
            while let Some(read) = self.try_read()? {
                batch.extend(read);
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }
}
