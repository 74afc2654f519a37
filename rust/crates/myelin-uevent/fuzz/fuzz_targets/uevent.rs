//! Anything the uevent socket or a sysfs `uevent` file can hold: no panic; a parsed event is
//! consistent (header and keys agree), survives a round trip through the wire format, and the
//! planner asks for each alias at most once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_uevent::Uevent;
use myelin_uevent::plan::Planner;

fuzz_target!(|data: &[u8]| {
    let mut events = Vec::new();
    if let Ok(e) = Uevent::parse(data) {
        assert!(e.devpath.starts_with('/'));
        assert_eq!(e.get("ACTION"), Some(e.action.as_str()));
        assert_eq!(e.get("DEVPATH"), Some(e.devpath.as_str()));
        let mut wire = format!("{}@{}\0", e.action, e.devpath).into_bytes();
        for (k, v) in &e.vars {
            wire.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        assert_eq!(Uevent::parse(&wire).as_ref(), Ok(&e));
        events.push(e);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = Uevent::from_sysfs("/devices/fuzz", Some("fuzz"), &text) {
        assert_eq!(e.subsystem(), "fuzz");
        events.push(e);
    }
    let mut planner = Planner::new();
    let mut seen = std::collections::HashSet::new();
    for call in planner.plan(&events).into_iter().chain(planner.plan(&events)) {
        for alias in call {
            assert!(seen.insert(alias), "an alias was asked for twice");
        }
    }
});
