//! Anything wpa_supplicant (or an access point's SSID, which reaches the daemon through scan
//! results and events) can send: no panic, and every parsed access point is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myelin_net::wpa;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = wpa::parse_event(&text);
    let _ = wpa::parse_kv(&text);
    let _ = wpa::unescape(&text);
    let aps = wpa::parse_scan_results(&text);
    for ap in aps.iter().chain(wpa::parse_bss(&text).iter()) {
        assert!(ap.signal_percent <= 100);
        assert_eq!(ap.bssid.len(), 17);
        assert_eq!(ap.channel, wpa::channel(ap.frequency));
    }
    assert!(aps.windows(2).all(|w| w[0].signal_dbm >= w[1].signal_dbm));
});
