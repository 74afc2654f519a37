//! Any line on the control socket: decoded without panic; an accepted request encodes back to
//! a line that decodes to the same request. Any line from PID 1 read by a client: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_init::control::{Request, Response, decode_request, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data) {
        let line = encode(&req);
        assert_eq!(line.last(), Some(&b'\n'));
        let again = decode_request(&line[..line.len() - 1]).expect("encoded requests decode");
        assert_eq!(again, req);
        let _: Request = again;
    }
    let _ = serde_json::from_slice::<Response>(data);
});
