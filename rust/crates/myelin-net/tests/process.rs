//! Starting a program that does not exist fails at once (natively; qemu-user, which runs the
//! cross unit tests, reports exec failures late, so this is not a unit test).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use myelin_net::process::spawn;
use myelin_net::tech::{DaemonSpec, When};

#[tokio::test]
async fn a_missing_program_is_an_error() {
    let spec = DaemonSpec {
        name: "udhcpc".into(),
        argv: vec!["/nonexistent/udhcpc".into(), "-f".into()],
        env: vec![],
        when: When::Always,
    };
    let err = spawn("eth0", &spec, Duration::from_secs(1), |_| {})
        .err()
        .expect("spawning a missing program succeeded");
    assert!(err.to_string().contains("/nonexistent/udhcpc"), "{err}");
}
