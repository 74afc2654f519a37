//! Where an archive is applied: a block device, an image file, or memory (tests).
//!
//! The applier only needs positioned reads and writes, the size (to grow `expand = true`
//! partitions and place a GPT's backup), a durable flush and an optional discard. Reads past
//! the end of an image file return zeros, as a sparse file would. Block devices are detected
//! with `fstat` and sized with `BLKGETSIZE64`; their flush is `fsync`, which on Linux also
//! flushes the device's volatile write cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

/// Storage an archive is applied to.
pub trait Target: Send {
    /// Fills `buf` from `offset`; bytes past the end read as zeros.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Size in bytes when known (a device's size, an existing image file's length).
    fn size(&self) -> Option<u64>;
    /// The size writes may not go past: a block device's, or `--max-size`. `None` for image
    /// files, which grow (fwup treats their length as a soft limit).
    fn hard_size(&self) -> Option<u64> {
        None
    }
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Tells the storage that a range's contents are no longer needed (TRIM). Optional.
    fn discard(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// A block device or a regular (image) file.
pub struct FileTarget {
    file: File,
    size: Option<u64>,
    block_device: bool,
    max_size: Option<u64>,
}

// `_IOR(0x12, 114, size_t)`: the size field follows the width of size_t.
const BLKGETSIZE64: libc::c_ulong =
    (2 << 30) | ((std::mem::size_of::<usize>() as libc::c_ulong) << 16) | (0x12 << 8) | 114;
// `_IO(0x12, 119)`.
const BLKDISCARD: libc::c_ulong = (0x12 << 8) | 119;

impl FileTarget {
    /// Opens (creating if needed) an image file or opens a block device for writing.
    pub fn open(path: &Path) -> io::Result<FileTarget> {
        let meta = std::fs::metadata(path).ok();
        let block_device = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(!block_device)
            .truncate(false)
            .open(path)?;
        Self::from_file(file)
    }

    /// Wraps an open file or device.
    pub fn from_file(file: File) -> io::Result<FileTarget> {
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            let mut bytes: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
            let rc = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    BLKGETSIZE64 as _,
                    &mut bytes as *mut u64,
                )
            };
            (rc == 0).then_some(bytes)
        } else {
            (meta.len() > 0).then_some(meta.len())
        };
        Ok(FileTarget {
            file,
            size,
            block_device,
            max_size: None,
        })
    }

    /// Limits the target to `bytes` (fwup's `--max-size`): a hard end for an image file, and a
    /// smaller one for a device.
    pub fn set_max_size(&mut self, bytes: u64) {
        self.max_size = Some(match (self.block_device, self.size) {
            (true, Some(s)) => s.min(bytes),
            _ => bytes,
        });
        self.size = self.max_size;
    }

    /// Whether this is a block device (not an image file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }
}

impl Target for FileTarget {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    return Ok(());
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(size) = self.hard_size() {
            if offset.saturating_add(buf.len() as u64) > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "write of {} bytes at offset {offset} goes past the end of the target ({size} bytes)",
                        buf.len()
                    ),
                ));
            }
        }
        self.file.write_all_at(buf, offset)
    }

    fn size(&self) -> Option<u64> {
        self.size
    }

    fn hard_size(&self) -> Option<u64> {
        if self.max_size.is_some() {
            return self.max_size;
        }
        if self.block_device { self.size } else { None }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !self.block_device || len == 0 {
            return Ok(());
        }
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKDISCARD reads two u64 through the pointer, which is valid.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                BLKDISCARD as _,
                range.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A target in memory, for tests and fuzzing.
#[derive(Debug, Clone, Default)]
pub struct MemTarget {
    /// The bytes written so far.
    pub data: Vec<u8>,
    /// Reported size (None: unknown, like a new image file).
    pub size: Option<u64>,
    /// Number of `sync` calls.
    pub syncs: usize,
    /// Every write, in order: (offset, length).
    pub log: Vec<(u64, usize)>,
    /// Whether `size` is a hard end, as a device's (writes past it fail).
    pub device: bool,
}

impl MemTarget {
    /// A zero-filled target of `size` bytes.
    pub fn zeroed(size: usize) -> Self {
        MemTarget {
            data: vec![0; size],
            size: Some(size as u64),
            ..MemTarget::default()
        }
    }
}

impl MemTarget {
    /// A zero-filled device of `size` bytes: writes past its end fail.
    pub fn device(size: usize) -> Self {
        MemTarget {
            device: true,
            ..MemTarget::zeroed(size)
        }
    }
}

impl Target for MemTarget {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        let start = offset.min(self.data.len() as u64) as usize;
        let end = (offset + buf.len() as u64).min(self.data.len() as u64) as usize;
        buf[..end - start].copy_from_slice(&self.data[start..end]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.device && offset.saturating_add(buf.len() as u64) > self.data.len() as u64 {
            return Err(io::Error::other("write past the end of the device"));
        }
        let end = offset as usize + buf.len();
        if end > self.data.len() {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(buf);
        self.log.push((offset, buf.len()));
        Ok(())
    }

    fn size(&self) -> Option<u64> {
        self.size
    }

    fn hard_size(&self) -> Option<u64> {
        self.device.then_some(self.data.len() as u64)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.syncs += 1;
        Ok(())
    }
}

/// fwup's `--minimize-writes`: every write first reads what is there and skips the pieces
/// (128 KiB at a time) that already hold the same bytes, sparing flash.
pub struct MinimizeWrites<T: Target>(pub T);

impl<T: Target> Target for MinimizeWrites<T> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut have = vec![0u8; buf.len().min(128 * 1024)];
        for (i, piece) in buf.chunks(128 * 1024).enumerate() {
            let at = offset + (i * 128 * 1024) as u64;
            let have = &mut have[..piece.len()];
            self.0.read_at(have, at)?;
            if have != piece {
                self.0.write_at(piece, at)?;
            }
        }
        Ok(())
    }
    fn size(&self) -> Option<u64> {
        self.0.size()
    }
    fn hard_size(&self) -> Option<u64> {
        self.0.hard_size()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.0.discard(offset, len)
    }
}

impl<T: Target + ?Sized> Target for Box<T> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn size(&self) -> Option<u64> {
        (**self).size()
    }
    fn hard_size(&self) -> Option<u64> {
        (**self).hard_size()
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
}
