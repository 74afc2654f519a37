//! Any bytes as a .fw archive: no panic and bounded work. The streaming reader walks every
//! entry, `verify` checks it, and `apply` runs its `complete` task against a 4 MiB in-memory
//! target that refuses writes past its end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_fw::archive::{MAX_CHUNK, ZipReader};
use myelin_fw::{ApplyOptions, Fixed, Target, Vars};
use std::io;

struct Bounded(Vec<u8>);

impl Target for Bounded {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        let start = offset.min(self.0.len() as u64) as usize;
        let end = offset.saturating_add(buf.len() as u64).min(self.0.len() as u64) as usize;
        buf[..end - start].copy_from_slice(&self.0[start..end]);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.0.len() as u64)
            .ok_or_else(|| io::Error::other("past the end"))?;
        self.0[offset as usize..end as usize].copy_from_slice(buf);
        Ok(())
    }
    fn size(&self) -> Option<u64> {
        Some(self.0.len() as u64)
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = ZipReader::new(data);
    let mut chunk = vec![0u8; MAX_CHUNK];
    while let Ok(Some(_)) = r.next_entry() {
        while let Ok(n) = r.read_chunk(&mut chunk) {
            if n == 0 {
                break;
            }
        }
    }
    let _ = myelin_fw::verify(data, &[], &Vars::default());
    let sys = Fixed::default();
    let opts = ApplyOptions {
        task: "complete",
        public_keys: &[],
        vars: Vars::default(),
        system: &sys,
        enable_trim: false,
        progress_range: (0, 100),
    };
    let mut target = Bounded(vec![0u8; 4 << 20]);
    let _ = myelin_fw::apply(data, &mut target, &opts, None);
});
