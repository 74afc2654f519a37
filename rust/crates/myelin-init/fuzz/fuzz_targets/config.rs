//! Any text as init.toml, and as a drop-in: no panic, and what is accepted is a tree PID 1 can
//! run (every node below the root, parents before children, no start-order deadlock). Safe
//! mode's lenient reading of the same text never panics either.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use myelin_init::config::{Config, SourceFile, find_start_cycle, load_fallback};

fn check(c: &Config) {
    let t = &c.tree;
    assert_eq!(t.nodes[0].parent, None);
    for (id, n) in t.nodes.iter().enumerate().skip(1) {
        let p = n.parent.expect("every node has a parent");
        assert!(t.children(p).contains(&id), "{id} is its parent's child");
        assert!(n.after.iter().all(|&a| a < t.nodes.len() && a != id));
    }
    assert_eq!(find_start_cycle(t), None, "an accepted tree can start");
    assert!(c.log.ring_bytes <= myelin_init::config::RING_BYTES.1);
    for id in t.services() {
        let s = t.nodes[id].service().expect("service");
        assert!(!s.argv.is_empty() && !s.argv[0].is_empty());
        assert!(s.env.contains_key("PATH") && s.env.contains_key("MYELIN_LOG"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = load_fallback(text);
    if let Ok(c) = Config::parse(text, Path::new("/etc/myelin/init.toml")) {
        check(&c);
    }
    // The same text as a drop-in, next to a main file with an `app` group.
    let main = SourceFile {
        path: "/etc/myelin/init.toml".into(),
        text: "[[supervisor]]\nname = \"app\"\n[[service]]\nname = \"kv\"\nargv = [\"/usr/bin/myelin-kv\"]\n".into(),
    };
    let drop_in = SourceFile {
        path: "/etc/myelin/init.d/app.toml".into(),
        text: text.to_string(),
    };
    if let Ok(c) = Config::from_sources(vec![main, drop_in]) {
        check(&c);
    }
});
