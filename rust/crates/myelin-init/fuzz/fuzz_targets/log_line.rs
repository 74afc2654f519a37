//! Any service output, cut into any chunks: split into lines no longer than `line_max`, read
//! for priority prefixes, filtered by a log level and kept in a ring that never holds more than
//! its budget, with sequence numbers that only grow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_init::clock::Instant;
use myelin_init::config::LogConfig;
use myelin_init::log::{Level, LineSplitter, Logger, Stream};

fuzz_target!(|data: &[u8]| {
    let [max, level, cut, rest @ ..] = data else {
        return;
    };
    let line_max = 16 + usize::from(*max);
    let mut log = Logger::new(&LogConfig {
        ring_bytes: 4096,
        line_max,
        kmsg: String::new(),
        ..Default::default()
    });
    let keep = myelin_init::level::Level::from_digit(b'0' + level % 9);
    let mut split = LineSplitter::new(line_max);
    let mut lines = Vec::new();
    for chunk in rest.chunks(usize::from(*cut).max(1)) {
        split.feed(chunk, &mut |l| lines.push(l));
    }
    lines.extend(split.finish());
    let mut last = 0;
    for (i, l) in lines.iter().enumerate() {
        assert!(l.len() <= 3 * line_max, "lossy UTF-8 at most triples a line");
        let stream = if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
        let kept = log.service_line(Instant(i as u64), ("svc", 7, stream), keep, l);
        if kept {
            let e = log.ring.since(0).last().expect("just kept");
            assert!(e.seq > last);
            last = e.seq;
            assert!(keep.is_some_and(|k| e.level <= k));
            assert!(e.text.len() <= line_max);
        }
        assert!(log.ring.bytes() <= 4096);
        let _ = myelin_init::log::split_priority(l);
    }
    let _ = Level::parse(&String::from_utf8_lossy(rest));
});
