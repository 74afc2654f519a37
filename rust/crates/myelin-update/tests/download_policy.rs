//! Download policy (issue 9, item 5): an `https` download never follows a redirect to plain
//! `http`, and a download that stalls is aborted after the configured idle time.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::HttpsServer;
use myelin_update::config::HttpConfig;
use myelin_update::source::{self, Source};

fn http_config(dir: &std::path::Path, ca_pem: &str) -> HttpConfig {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    HttpConfig {
        ca_file: Some(ca),
        read_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    }
}

#[test]
fn https_never_follows_a_redirect_to_http() {
    let dir = tempfile::tempdir().unwrap();
    // Where the redirect points: it must never be contacted.
    let clear = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}/x.fw?token=s3cr3t", clear.local_addr().unwrap());
    let server = HttpsServer::redirecting(&target);
    let http = http_config(dir.path(), &server.ca_pem);
    let err = match source::open(Source::Url(server.url.clone()), &http) {
        Ok(_) => panic!("the https download followed a redirect to http"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not https"), "{err}");
    assert!(
        !err.contains("s3cr3t"),
        "the token leaked into the error: {err}"
    );
    clear.set_nonblocking(true).unwrap();
    assert!(
        clear.accept().is_err(),
        "the plain http server was contacted"
    );
}

#[test]
fn a_stalled_download_is_aborted_after_the_idle_time() {
    // A plain HTTP server that sends the head and part of the body, then nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x.fw", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial")
            .unwrap();
        // Hold the connection open, silent, until the client gives up and closes it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let http = HttpConfig {
        read_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    };
    let mut opened = source::open(Source::Url(url), &http).unwrap();
    let mut body = Vec::new();
    let err = opened.reader.read_to_end(&mut body).unwrap_err();
    assert!(err.to_string().contains("download interrupted"), "{err}");
    assert_eq!(body, b"partial");
    drop(opened);
    server.join().unwrap();
}
