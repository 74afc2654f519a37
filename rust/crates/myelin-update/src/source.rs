//! Where an update comes from: a file on the device, a file descriptor (a client's stdin, passed
//! over D-Bus), or an `http://` / `https://` URL. Every source is a blocking [`Read`] that the
//! synchronous applier pulls from, so the archive streams through bounded memory and is never
//! stored whole.
//!
//! HTTP(S) uses `ureq` (rustls with the ring provider, the Mozilla roots built in, or a CA file
//! from the configuration): connect and per-read timeouts, a bounded number of redirects, 4xx
//! and 5xx answers as errors. A body shorter than its `Content-Length` is an error, not a short
//! archive.
//!
//! [`Tracked`] wraps a source to count bytes (progress when the length is known) and to stop the
//! apply on [`Cancel`]: the next read fails, the applier aborts before switching slots.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::HttpConfig;

/// What to install from.
#[derive(Debug)]
pub enum Source {
    /// A file (or device) on the device; absolute path.
    Path(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
    /// An open file descriptor (pipe, socket or file) passed by a client.
    Fd(OwnedFd),
}

/// A source that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The string is neither an absolute path nor an HTTP(S) URL.
    #[error("{0:?} is neither an absolute path nor an http:// or https:// URL")]
    Invalid(String),
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The server could not be reached or answered with an error.
    #[error("cannot download {url}: {message}")]
    Http {
        /// The URL, without credentials.
        url: String,
        /// Why.
        message: String,
    },
    /// The configured CA file cannot be used.
    #[error("CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl Source {
    /// Parses what a client passed to `Install`.
    pub fn parse(text: &str) -> Result<Source, SourceError> {
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Source::Url(text.to_owned()));
        }
        if text.starts_with('/') {
            return Ok(Source::Path(PathBuf::from(text)));
        }
        Err(SourceError::Invalid(text.to_owned()))
    }

    /// A description for messages and the `Source` property (a URL without its user, password
    /// and query-string values).
    pub fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Url(u) => redact(u),
            Source::Fd(_) => "the stream passed by the client".into(),
        }
    }
}

/// What replaces a secret in a redacted URL.
pub const REDACTED: &str = "REDACTED";

/// A URL fit for logs and the `Source` property: `user:password@` removed, and every
/// query-string value (pre-signed URLs carry their token there: `X-Amz-Signature=`,
/// `token=`, `sig=`...) and the fragment replaced by [`REDACTED`]. Parameter names are kept,
/// they help debugging and are not secret.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((b, _)) => (b, Some(REDACTED)),
        None => (tail, None),
    };
    let mut out = format!("{scheme}://{host}");
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((name, _)) => format!("{name}={REDACTED}"),
                    // A bare token (`?abcdef`) is a value too.
                    None if p.is_empty() => String::new(),
                    None => REDACTED.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// An opened source.
pub struct Opened {
    /// The bytes of the archive.
    pub reader: Box<dyn Read + Send>,
    /// Its length, when known (file size, `Content-Length`).
    pub length: Option<u64>,
}

/// Opens a source for reading.
pub fn open(source: Source, http: &HttpConfig) -> Result<Opened, SourceError> {
    match source {
        Source::Path(path) => {
            let file = File::open(&path).map_err(|source| SourceError::Open {
                path: path.clone(),
                source,
            })?;
            let length = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            Ok(Opened {
                reader: Box::new(file),
                length,
            })
        }
        Source::Fd(fd) => {
            let file = File::from(fd);
            let length = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            Ok(Opened {
                reader: Box::new(file),
                length,
            })
        }
        Source::Url(url) => download(&url, http),
    }
}

/// Builds the HTTP agent the configuration describes. With `https_only`, every URL it is
/// sent to (a redirect's included) must be `https`: an update asked for over TLS never
/// continues in clear text.
pub fn agent(http: &HttpConfig, https_only: bool) -> Result<ureq::Agent, SourceError> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = &http.ca_file {
        let ca_err = |message: String| SourceError::CaFile {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item.map_err(|e| ca_err(e.to_string()))? {
                ureq::tls::PemItem::Certificate(c) => certs.push(c),
                _ => continue,
            }
        }
        if certs.is_empty() {
            return Err(ca_err("holds no certificate".into()));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_resolve(Some(http.connect_timeout))
        .timeout_connect(Some(http.connect_timeout))
        .timeout_send_request(Some(http.connect_timeout))
        .timeout_recv_response(Some(http.read_timeout))
        .timeout_per_read(Some(http.read_timeout))
        .max_redirects(http.max_redirects)
        .max_redirects_will_error(true)
        .https_only(https_only)
        .accept_encoding("identity")
        .user_agent(concat!("myelin-update/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.new_agent())
}

fn download(url: &str, http: &HttpConfig) -> Result<Opened, SourceError> {
    let shown = redact(url);
    let http_err = |message: String| SourceError::Http {
        url: shown.clone(),
        message,
    };
    let https = url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    let agent = agent(http, https)?;
    let response = agent.get(url).call().map_err(|e| {
        http_err(match e {
            ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
            ureq::Error::TooManyRedirects => {
                format!("more than {} redirects", http.max_redirects)
            }
            ureq::Error::RequireHttpsOnly(to) => format!(
                "refusing a redirect from https to a URL that is not https ({})",
                redact(&to)
            ),
            other => other.to_string(),
        })
    })?;
    let body = response.into_body();
    let length = body.content_length();
    Ok(Opened {
        reader: Box::new(HttpBody {
            inner: body.into_reader(),
        }),
        length,
    })
}

/// The response body; errors say they come from the download.
struct HttpBody {
    inner: ureq::BodyReader<'static>,
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("download interrupted: {e}")))
    }
}

/// Stops a [`Tracked`] reader from another thread.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Makes every later read fail.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A reader that counts what it read and fails once cancelled.
pub struct Tracked<R> {
    inner: R,
    read: Arc<AtomicU64>,
    cancel: Cancel,
}

impl<R: Read> Tracked<R> {
    /// Wraps `inner`; `read` receives the running byte count.
    pub fn new(inner: R, read: Arc<AtomicU64>, cancel: Cancel) -> Self {
        Tracked {
            inner,
            read,
            cancel,
        }
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled by request"));
        }
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn sources_parse() {
        assert!(
            matches!(Source::parse("/data/x.fw"), Ok(Source::Path(p)) if p == Path::new("/data/x.fw"))
        );
        assert!(matches!(
            Source::parse("http://10.0.2.2:8000/x.fw"),
            Ok(Source::Url(_))
        ));
        assert!(matches!(
            Source::parse("HTTPS://host/x.fw"),
            Ok(Source::Url(_))
        ));
        for bad in ["x.fw", "", "ftp://host/x.fw", "file:///x.fw", "http:/x"] {
            let e = Source::parse(bad).unwrap_err();
            assert!(e.to_string().contains("neither"), "{e}");
        }
    }

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(redact("https://user:pw@host/x.fw"), "https://host/x.fw");
        assert_eq!(redact("http://host/a@b.fw"), "http://host/a@b.fw");
        assert_eq!(
            redact("http://host:80/x?u=a@b"),
            "http://host:80/x?u=REDACTED"
        );
        // Pre-signed URLs: every query value is a possible token.
        assert_eq!(
            redact(
                "https://bucket.s3.amazonaws.com/fw/1.2.fw?X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeef&token=s3cr3t"
            ),
            "https://bucket.s3.amazonaws.com/fw/1.2.fw?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&token=REDACTED"
        );
        assert_eq!(
            redact("https://u:p@h/x.fw?s3cr3t#frag"),
            "https://h/x.fw?REDACTED#REDACTED"
        );
        assert_eq!(redact("https://h/x.fw"), "https://h/x.fw");
        let shown = redact("https://h/x?a=1&&b=two&c");
        assert!(!shown.contains("two") && !shown.contains('1'), "{shown}");
        assert_eq!(
            Source::Url("http://u:p@h/x".into()).describe(),
            "http://h/x"
        );
    }

    #[test]
    fn tracked_counts_and_cancels() {
        let read = Arc::new(AtomicU64::new(0));
        let cancel = Cancel::new();
        let mut r = Tracked::new(&[7u8; 100][..], read.clone(), cancel.clone());
        let mut buf = [0u8; 30];
        assert_eq!(r.read(&mut buf).unwrap(), 30);
        assert_eq!(read.load(Ordering::Relaxed), 30);
        cancel.cancel();
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("cancelled"));
        assert_eq!(read.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn a_missing_file_names_itself() {
        let e = open(
            Source::Path("/nonexistent/x.fw".into()),
            &HttpConfig::default(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/x.fw"), "{e}");
    }

    #[test]
    fn a_bad_ca_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let http = HttpConfig {
            ca_file: Some(path.clone()),
            ..HttpConfig::default()
        };
        let e = agent(&http, false).err().unwrap();
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }
}
