//! Any bytes as one copy of each layout, and as a redundant pair: no panic, and whatever decodes
//! re-encodes to a block that decodes to the same variables.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_ubootenv::format::{self, Layout};

fuzz_target!(|data: &[u8]| {
    for layout in [Layout::Single, Layout::Redundant] {
        let Ok(decoded) = format::decode(data, layout) else {
            continue;
        };
        // The decoder reads any name U-Boot would (control characters and blanks included);
        // the encoder refuses those, naming them, since they cannot be read back unchanged by
        // every tool. Every other decoded name and value is acceptable to the encoder, unless
        // the block ran out before a terminator (then the encoder needs one more byte).
        let mut vars = decoded.vars.clone();
        vars.retain(|name, _| format::check_name(name).is_ok());
        match format::encode(&vars, data.len(), layout, decoded.flags.unwrap_or(0)) {
            Ok(block) => {
                let again = format::decode(&block, layout).expect("re-encoded block must decode");
                assert_eq!(again.vars, vars);
                assert_eq!(again.flags, decoded.flags);
            }
            Err(format::EncodeError::TooLarge { .. }) => {}
            Err(e) => panic!("decoded variables refused by the encoder: {e}"),
        }
    }
    // A redundant pair: U-Boot's rule picks a copy that decodes, or none.
    let half = data.len() / 2;
    let (a, b) = data.split_at(half);
    let flags = |copy: &[u8]| format::decode(copy, Layout::Redundant).ok().and_then(|d| d.flags);
    match format::choose_active(flags(a), flags(b)) {
        Some(active) => {
            let copy = [a, b][active.index()];
            assert!(format::decode(copy, Layout::Redundant).is_ok());
        }
        None => assert!(flags(a).is_none() && flags(b).is_none()),
    }
});
