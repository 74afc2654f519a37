//! Any bytes as a default environment / fw_setenv script: no panic, and an accepted default
//! environment survives encoding and decoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_ubootenv::format::{self, ImageOptions, Layout};
use myelin_ubootenv::text;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = text::parse(data) else {
        return;
    };
    let Ok(vars) = text::to_vars(&entries) else {
        return;
    };
    let size = data.len() + 16;
    let block = format::encode_with(
        entries.iter().map(|e| (e.name.as_str(), e.value.as_str())),
        size,
        Layout::Redundant,
        1,
        &ImageOptions::default(),
    )
    .expect("an accepted text environment must encode");
    let decoded = format::decode(&block, Layout::Redundant).expect("and decode");
    assert_eq!(decoded.vars, vars);
});
