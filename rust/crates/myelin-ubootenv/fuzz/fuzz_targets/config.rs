//! Any text as fw_env.config: no panic; an accepted configuration is one or two copies of one
//! size, each large enough for a redundant header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_ubootenv::{EnvConfig, Layout};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = EnvConfig::parse(&text) else {
        return;
    };
    let copies = config.copies();
    assert!(matches!(copies.len(), 1 | 2));
    assert!(copies.iter().all(|c| c.size == config.size() && c.size >= 6));
    assert_eq!(config.layout() == Layout::Redundant, copies.len() == 2);
});
