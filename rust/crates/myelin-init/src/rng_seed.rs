//! The RNG seed file: entropy carried over from one boot to the next, so the kernel's random
//! pool does not start empty on devices without a hardware RNG.
//!
//! File format: one flag byte (1: the seed came from an initialised pool and may be credited;
//! 0: it may not) followed by [`SEED_LEN`] random bytes. At boot the file is read and removed
//! (it must never be used twice), its bytes are given to the kernel (credited if the flag says
//! so), and a fresh seed, drawn after that mixing, is written back durably (temporary file,
//! fsync, rename, fsync of the directory). At shutdown a fresh seed replaces it again.

use crate::log::Level;
use crate::sys::Sys;

/// Random bytes kept.
pub const SEED_LEN: usize = 64;

fn write_new(sys: &mut dyn Sys, path: &str) {
    match sys.random(SEED_LEN) {
        Ok((bytes, creditable)) => {
            let mut data = Vec::with_capacity(SEED_LEN + 1);
            data.push(u8::from(creditable));
            data.extend_from_slice(&bytes);
            if let Err(e) = sys.replace_file(path, &data, 0o600) {
                sys.log(
                    Level::Warning,
                    &format!("cannot save the RNG seed to {path}: {e}"),
                );
            }
        }
        Err(e) => sys.log(
            Level::Warning,
            &format!("no random bytes for the RNG seed: {e}"),
        ),
    }
}

/// Boot: restore the seed, then write a new one.
pub fn restore(sys: &mut dyn Sys, path: &str) {
    match sys.read_file(path) {
        Ok(data) if data.len() > 16 && data[0] <= 1 => {
            let _ = sys.remove_file(path);
            let credit = data[0] == 1;
            if let Err(e) = sys.add_entropy(&data[1..], credit) {
                sys.log(Level::Warning, &format!("RNG seed not credited: {e}"));
            }
        }
        Ok(_) => {
            sys.log(
                Level::Warning,
                &format!("ignoring malformed RNG seed {path}"),
            );
            let _ = sys.remove_file(path);
        }
        Err(_) => sys.log(Level::Info, &format!("no RNG seed at {path} yet")),
    }
    write_new(sys, path);
}

/// Shutdown: save a fresh seed.
pub fn save(sys: &mut dyn Sys, path: &str) {
    write_new(sys, path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn restore_credits_removes_and_rewrites() {
        let mut s = FakeSys::default();
        let mut seed = vec![1u8];
        seed.extend([7u8; SEED_LEN]);
        s.files.insert("/data/seed".into(), seed);
        restore(&mut s, "/data/seed");
        assert_eq!(
            s.take(),
            [
                "remove /data/seed",
                "add_entropy 64 bytes credit=true",
                "random 64",
                "replace /data/seed 65 bytes mode 600"
            ]
        );
        assert_eq!(s.files["/data/seed"][0], 1);
        assert_eq!(s.files["/data/seed"][1], 0x5a);
    }

    #[test]
    fn uncreditable_seeds_stay_uncreditable() {
        let mut s = FakeSys {
            rng_uninitialised: true,
            ..Default::default()
        };
        let mut seed = vec![0u8];
        seed.extend([7u8; SEED_LEN]);
        s.files.insert("/data/seed".into(), seed);
        restore(&mut s, "/data/seed");
        assert_eq!(s.take()[1], "add_entropy 64 bytes credit=false");
        assert_eq!(
            s.files["/data/seed"][0], 0,
            "drawn before the pool was initialised"
        );
    }

    #[test]
    fn first_boot_and_garbage() {
        let mut s = FakeSys::default();
        restore(&mut s, "/data/seed");
        assert_eq!(
            s.take(),
            [
                "log info: no RNG seed at /data/seed yet",
                "random 64",
                "replace /data/seed 65 bytes mode 600"
            ]
        );
        s.file("/data/seed", "short");
        restore(&mut s, "/data/seed");
        assert_eq!(
            s.take()[..2],
            [
                "log warning: ignoring malformed RNG seed /data/seed",
                "remove /data/seed"
            ]
        );
        save(&mut s, "/data/seed");
        assert_eq!(
            s.take(),
            ["random 64", "replace /data/seed 65 bytes mode 600"]
        );
    }
}
