//! The local web server: `GET /` is the page, `GET /status.json` the same data for scripts.
//! A std `TcpListener` on a thread of its own, one request per connection: a page a person
//! looks at now and then needs no more.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use myelin::log::{debug, info};

use crate::page::{self, Snapshot};

/// Binds `addr` and serves snapshots of `state` from a thread.
pub fn start(addr: &str, state: Arc<Mutex<Snapshot>>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    info!("serving the page on http://{}", listener.local_addr()?);
    thread::Builder::new().name("web".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    if let Err(e) = serve(s, &state) {
                        debug!("web client: {e}");
                    }
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
    })?;
    Ok(())
}

fn serve(stream: TcpStream, state: &Mutex<Snapshot>) -> std::io::Result<()> {
    // A client that sends nothing does not hold the server.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are read and ignored (bounded: a line at a time, up to the blank one).
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let snapshot = match state.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let mut parts = request.split_whitespace();
    let (status, kind, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/")) => (
            "200 OK",
            "text/html; charset=utf-8",
            page::render(&snapshot),
        ),
        (Some("GET"), Some("/status.json")) => (
            "200 OK",
            "application/json",
            serde_json::to_string(&snapshot).unwrap_or_default(),
        ),
        (Some("GET"), _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
