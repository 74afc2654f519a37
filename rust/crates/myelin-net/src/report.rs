//! Error reports: an error and its causes on one line (`cannot persist the configuration:
//! /data/myelin/net/interfaces/.eth0.json.tmp12: No space left on device`), for logs,
//! `LastError` and D-Bus error replies. myelin-net's errors leave their cause out of their own
//! message and return it as their `source`, so a report names each cause once.

use std::error::Error;

/// `err` and every cause below it, joined by `": "`.
pub fn report(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_follow_the_error() {
        let e = crate::persist::PersistError::Read {
            path: "/data/x.json".into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!(report(&e), "cannot read /data/x.json: gone");
    }
}
