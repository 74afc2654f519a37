//! Any bytes as a delta and its source: the decoder never panics and stays within its bounds
//! (each window is checked before it is handed out); and the same bytes, as a target, survive
//! the encoder and the decoder unchanged. The first two bytes give the source's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_fw::vcdiff::{self, Decoder, EncodeOptions, MAX_WINDOW};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let len = usize::from(u16::from_le_bytes([data[0], data[1]])) % (data.len() - 1);
    let (mut source, patch) = data[2..].split_at(len);
    let mut decoder = Decoder::new();
    let mut reader = patch;
    let mut window = Vec::new();
    let mut total = 0u64;
    // Windows are decoded one by one and dropped: memory stays at one window.
    while let Ok(true) = decoder.next_window(&mut reader, &mut source, &mut window) {
        assert!(window.len() as u64 <= MAX_WINDOW);
        total += window.len() as u64;
        if total > 4 * MAX_WINDOW {
            break;
        }
    }
    let opts = EncodeOptions {
        window: 1 << 14,
        block: 4,
    };
    let delta = vcdiff::encode(source, patch, &opts);
    let back = vcdiff::decode_all(&delta, source).expect("an encoded delta decodes");
    assert!(back == patch, "the delta does not rebuild the target");
});
