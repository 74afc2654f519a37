//! A disk image that returns EIO for chosen bytes, as a file on a FUSE filesystem: put a loop
//! device on it and the kernel's block layer, filesystems and e2fsck see a disk with bad
//! sectors. (Device-mapper's dm-error/dm-flakey would do the same; this host kernel has no
//! device-mapper.) Reads and writes go straight to a backing file (direct I/O, nothing cached
//! in between), except reads that touch the faulty range while it is set.

use std::ffi::OsStr;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    WriteFlags,
};

const NAME: &str = "disk.img";
const DISK: INodeNo = INodeNo(2);
const TTL: Duration = Duration::ZERO;

struct Fs {
    backing: File,
    size: u64,
    faulty: Arc<Mutex<Option<Range<u64>>>>,
}

impl Fs {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let dir = ino == INodeNo::ROOT;
        FileAttr {
            ino,
            size: if dir { 0 } else { self.size },
            blocks: self.size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o600 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == NAME {
            reply.entry(&TTL, &self.attr(DISK), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == DISK {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Direct I/O: every read reaches this process, none is answered from a cache.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let end = offset + u64::from(size);
        if let Some(bad) = self
            .faulty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if offset < bad.end && bad.start < end {
                reply.error(Errno::EIO);
                return;
            }
        }
        let len = end.min(self.size).saturating_sub(offset) as usize;
        let mut buf = vec![0u8; len];
        match self.backing.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wflags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if offset + data.len() as u64 > self.size {
            reply.error(Errno::ENOSPC);
            return;
        }
        match self.backing.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _l: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        match self.backing.sync_data() {
            Ok(()) => reply.ok(),
            Err(_) => reply.error(Errno::EIO),
        }
    }
}

/// The mounted FUSE filesystem holding `disk.img`.
pub struct FaultyDisk {
    /// Path of the image as the kernel sees it (put a loop device on it).
    pub path: PathBuf,
    faulty: Arc<Mutex<Option<Range<u64>>>>,
    session: Option<fuser::BackgroundSession>,
}

impl FaultyDisk {
    /// Serves `backing` (a disk image) as `<mountpoint>/disk.img`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> FaultyDisk {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(backing)
            .expect("backing image");
        let size = file.metadata().expect("size").len();
        let faulty = Arc::new(Mutex::new(None));
        let fs = Fs {
            backing: file,
            size,
            faulty: faulty.clone(),
        };
        std::fs::create_dir_all(mountpoint).expect("mount point");
        let mut cfg = Config::default();
        cfg.mount_options = vec![fuser::MountOption::FSName("faulty-disk".into())];
        let session =
            fuser::spawn_mount(fs, mountpoint, &cfg).expect("FUSE mount (needs /dev/fuse)");
        FaultyDisk {
            path: mountpoint.join(NAME),
            faulty,
            session: Some(session),
        }
    }

    /// Reads touching `range` (bytes of the image) fail with EIO from now on; `None` heals.
    pub fn fail_reads(&self, range: Option<Range<u64>>) {
        *self.faulty.lock().unwrap_or_else(|e| e.into_inner()) = range;
    }
}

impl Drop for FaultyDisk {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
