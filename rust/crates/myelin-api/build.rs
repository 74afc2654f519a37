//! Records the build time that `src/floor.rs` exposes: `SOURCE_DATE_EPOCH` (reproducible builds,
//! Buildroot sets it) wins; otherwise the time of the build script's run. Either way the value
//! only moves forward with each build.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=MYELIN_BUILD_TIME={secs}");
}
