//! Any text as a net.toml, a Configure JSON document or a udhcpc hook report: no panic; an
//! accepted interface configuration is a fixed point of validation and survives the JSON round
//! trip it takes through /data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_net::config::{NetConfig, parse_interface_json};
use myelin_net::dhcp::{Lease, Report};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = NetConfig::parse(&text);
    if let Ok(c) = parse_interface_json("wlan0", &text) {
        assert_eq!(c.clone().normalize("wlan0").as_ref(), Ok(&c));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(parse_interface_json("wlan0", &json).as_ref(), Ok(&c));
    }
    if let Ok(r) = serde_json::from_str::<Report>(&text)
        && let Ok(l) = Lease::from_vars(&r.vars)
    {
        assert!(l.address.prefix <= 32);
    }
});
