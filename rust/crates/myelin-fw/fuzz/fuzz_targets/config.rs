//! Any text as a configuration: no panic. Read as meta.conf (no file access), whatever parses
//! is written back by the meta.conf printer, and that text reads back to a configuration that
//! prints the same bytes (the printer and the reader agree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_fw::Vars;
use myelin_fw::config::Config;
use myelin_fw::config::parser::{Mode, Parser};

fuzz_target!(|data: &[u8]| {
    let mut vars = Vars::from_pairs([("A", "1"), ("B", "two words")]);
    let Ok(nodes) = Parser::new(data.to_vec(), "fuzz.conf", &mut vars, Mode::Meta).parse() else {
        return;
    };
    let Ok(cfg) = Config::from_nodes(&nodes, Mode::Meta) else {
        return;
    };
    let text = myelin_fw::meta::write(&cfg);
    let again = myelin_fw::meta::read(text.as_bytes(), &Vars::default())
        .unwrap_or_else(|e| panic!("printed meta.conf does not read back: {e}\n{text}"));
    assert_eq!(myelin_fw::meta::write(&again), text);
    // The same text as a fwup.conf (include() would read files: leave it out).
    if !data.windows(7).any(|w| w == b"include") {
        let mut vars = Vars::default();
        if let Ok(nodes) = Parser::new(data.to_vec(), "fuzz.conf", &mut vars, Mode::Create).parse()
        {
            if let Ok(mut cfg) = Config::from_nodes(&nodes, Mode::Create) {
                let _ = myelin_fw::funcs::validate_tasks(&mut cfg);
            }
        }
    }
});
