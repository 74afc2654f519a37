//! The clock floor: the image's build time, below which myelin-init (PID 1) never lets the clock
//! start and myelin-time never sets it. Both take it from here, so the two agree on it.
//!
//! `build.rs` records it: `SOURCE_DATE_EPOCH` when set (reproducible builds; Buildroot sets it),
//! else the time of the build.

/// Build time (seconds since the epoch).
pub const BUILD_TIME: i64 = match i64::from_str_radix(env!("MYELIN_BUILD_TIME"), 10) {
    Ok(t) => t,
    Err(_) => panic!("build.rs recorded a MYELIN_BUILD_TIME that is not a number"),
};
