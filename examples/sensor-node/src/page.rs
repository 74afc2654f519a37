//! The local page: everything a person at the device wants to see, as one HTML document.

use std::fmt::Write;

use serde::Serialize;

use crate::reading::Reading;

/// What the page shows, copied out of the app's state for one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// The latest accepted reading.
    pub current: Option<Reading>,
    /// Earlier readings, oldest first (the current one last).
    pub history: Vec<Reading>,
    /// Values the sensor gave that were rejected, since start.
    pub rejected: u64,
    /// The last problem with the sensor, if the last read failed.
    pub sensor_error: Option<String>,
    /// Whether the MQTT connection is up.
    pub broker_connected: bool,
    /// `host:port` of the broker.
    pub broker: String,
    /// Readings waiting for the broker.
    pub buffered: usize,
    /// Readings the broker acknowledged.
    pub published: u64,
    /// Readings dropped at the buffer's bound.
    pub dropped: u64,
    /// The device's connection (`disconnected`, `lan`, `internet`), if myelin-net answered.
    pub network: Option<String>,
    /// `name: addresses` per interface.
    pub interfaces: Vec<(String, String, Vec<String>)>,
    /// The running firmware's version, slot and whether it is validated.
    pub firmware: Option<(String, String, bool)>,
    /// Seconds since the app started.
    pub uptime_s: u64,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page. Values carry ids (`celsius`, `broker`, `firmware`, ...) so that a test, or
/// a person's script, can find them in the DOM.
pub fn render(s: &Snapshot) -> String {
    let mut h = String::with_capacity(4096);
    // `write!` into a String cannot fail: the results are ignored on purpose.
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>sensor-node</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:0 1em 0 0;text-align:left}\
         .big{font-size:3em}</style></head><body>\n<h1>sensor-node</h1>\n",
    );
    match &s.current {
        Some(r) => {
            let _ = writeln!(
                h,
                "<p class=\"big\"><span id=\"celsius\">{:.2}</span>&nbsp;°C</p>\
                 <p>reading <span id=\"seq\">{}</span></p>",
                r.celsius, r.seq
            );
        }
        None => h.push_str("<p class=\"big\" id=\"celsius\">no reading yet</p>\n"),
    }
    if let Some(e) = &s.sensor_error {
        let _ = writeln!(h, "<p id=\"sensor-error\">sensor: {}</p>", escape(e));
    }
    let _ = writeln!(
        h,
        "<p>rejected values: <span id=\"rejected\">{}</span></p>",
        s.rejected
    );

    h.push_str("<h2>Service</h2>\n<table>\n");
    let broker_state = if s.broker_connected {
        "connected"
    } else {
        "offline"
    };
    let _ = writeln!(
        h,
        "<tr><th>MQTT broker</th><td id=\"broker\">{} ({broker_state})</td></tr>\n\
         <tr><th>published</th><td id=\"published\">{}</td></tr>\n\
         <tr><th>buffered</th><td id=\"buffered\">{}</td></tr>\n\
         <tr><th>dropped</th><td id=\"dropped\">{}</td></tr>\n\
         <tr><th>uptime</th><td id=\"uptime\">{} s</td></tr>",
        escape(&s.broker),
        s.published,
        s.buffered,
        s.dropped,
        s.uptime_s
    );
    let firmware = match &s.firmware {
        Some((version, slot, trial)) => format!(
            "{} (slot {}{})",
            escape(version),
            escape(slot),
            if *trial { ", on trial" } else { "" }
        ),
        None => "unknown".to_string(),
    };
    let _ = writeln!(
        h,
        "<tr><th>firmware</th><td id=\"firmware\">{firmware}</td></tr>\n</table>"
    );

    h.push_str("<h2>Network</h2>\n");
    let _ = writeln!(
        h,
        "<p>connection: <span id=\"network\">{}</span></p>",
        escape(s.network.as_deref().unwrap_or("unknown"))
    );
    if !s.interfaces.is_empty() {
        h.push_str("<table>\n");
        for (name, state, addresses) in &s.interfaces {
            let _ = writeln!(
                h,
                "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                escape(name),
                escape(state),
                escape(&addresses.join(" "))
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>History</h2>\n<table id=\"history\">\n<tr><th>#</th><th>°C</th></tr>\n");
    for r in s.history.iter().rev() {
        let _ = writeln!(h, "<tr><td>{}</td><td>{:.2}</td></tr>", r.seq, r.celsius);
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(seq: u64, celsius: f32) -> Reading {
        Reading {
            seq,
            celsius,
            time_ms: 0,
        }
    }

    #[test]
    fn shows_the_reading_status_and_history() {
        let s = Snapshot {
            current: Some(reading(3, 23.5)),
            history: vec![reading(1, 21.0), reading(2, 22.25), reading(3, 23.5)],
            broker_connected: true,
            broker: "10.0.2.2:1883".into(),
            buffered: 0,
            published: 3,
            network: Some("lan".into()),
            interfaces: vec![("eth0".into(), "lan".into(), vec!["10.0.2.15/24".into()])],
            firmware: Some(("1.0.0".into(), "a".into(), false)),
            ..Snapshot::default()
        };
        let page = render(&s);
        assert!(page.contains("<span id=\"celsius\">23.50</span>"));
        assert!(page.contains("10.0.2.2:1883 (connected)"));
        assert!(page.contains("<td id=\"firmware\">1.0.0 (slot a)</td>"));
        assert!(page.contains("10.0.2.15/24"));
        // Newest first in the history table.
        let newest = page.find("<td>3</td><td>23.50</td>").unwrap();
        let oldest = page.find("<td>1</td><td>21.00</td>").unwrap();
        assert!(newest < oldest);
    }

    #[test]
    fn before_the_first_reading_and_with_an_error() {
        let s = Snapshot {
            sensor_error: Some("no I2C bus <i2c-9>".into()),
            ..Snapshot::default()
        };
        let page = render(&s);
        assert!(page.contains("no reading yet"));
        assert!(page.contains("(offline)"));
        assert!(page.contains("<td id=\"firmware\">unknown</td>"));
        assert!(page.contains("no I2C bus &lt;i2c-9&gt;"), "text is escaped");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
