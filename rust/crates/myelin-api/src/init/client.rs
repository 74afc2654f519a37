//! The blocking client side of the control protocol, as `myelinctl` and myelin-update use it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Body, Op, PROTOCOL_VERSION, Request, Response, encode};

/// A connection to PID 1.
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the control socket.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let s = UnixStream::connect(path)?;
        Ok(Client {
            reader: BufReader::new(s),
        })
    }

    /// Limits how long one answer may take (`None`: forever, for `log --follow`).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }

    /// Sends a request without reading the answer.
    pub fn send(&mut self, op: Op) -> io::Result<()> {
        self.reader.get_mut().write_all(&encode(&Request {
            v: PROTOCOL_VERSION,
            op,
        }))
    }

    /// Reads the next message; `None` when PID 1 closed the connection.
    pub fn receive(&mut self) -> io::Result<Option<Body>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let r: Response = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad response from init: {e}"),
            )
        })?;
        Ok(Some(r.body))
    }

    /// Sends a request and reads one answer; an `error` answer becomes an `Err`.
    pub fn call(&mut self, op: Op) -> io::Result<Body> {
        self.send(op)?;
        match self.receive()? {
            Some(Body::Error { message }) => Err(io::Error::other(message)),
            Some(b) => Ok(b),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "init closed the connection",
            )),
        }
    }
}
