//! Any bytes as a FAT partition: no panic and bounded work. The reader looks files up, reads
//! them and maps their clusters (as a delta's FAT source is read); then a few changes are made
//! (create and write, mkdir, rename, remove, label, attributes) and written back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_fw::MemTarget;
use myelin_fw::fat::{Fat, VolState};
use myelin_fw::output::Output;

fuzz_target!(|data: &[u8]| {
    let mut target = MemTarget::device(data.len().max(512));
    target.data[..data.len()].copy_from_slice(data);
    let mut out = Output::new(&mut target);
    let mut st = VolState::default();
    let Ok(mut fat) = Fat::open(&mut out, 0, &mut st) else {
        return;
    };
    for name in ["zImage.a", "config.txt", "dir/file", "MLO", "a\\b"] {
        let _ = fat.exists(name);
        let _ = fat.file_extents(name);
        let mut n = 0usize;
        let _ = fat.read_file(name, |c| {
            n += c.len();
            Ok(())
        });
    }
    if let Ok(mut f) = fat.create("new file.bin") {
        let _ = fat.write(&mut f, &data[..data.len().min(3000)]);
        let _ = fat.close(f);
    }
    let _ = fat.mkdir("d");
    let _ = fat.rename("config.txt", "d/c.txt");
    let _ = fat.remove("zImage.a");
    let _ = fat.set_label("LABEL");
    let _ = fat.set_attributes("MLO", "RHS");
    let _ = fat.touch("t");
    let _ = out.flush_cache();
});
