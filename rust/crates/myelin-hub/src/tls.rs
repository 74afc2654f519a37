//! The TLS side of the device socket: rustls with ring (as the rest of Myelin), the server
//! checked against a CA bundle, and the device certificate presented for mTLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Auth, Config, ConfigError, read_secret};

fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        message,
    }
}

/// Certificates of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in the file".into()));
    }
    Ok(certs)
}

/// A private key from a PEM file that must be mode 0600.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = read_secret(path)?;
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| invalid(path, format!("no usable PEM private key: {e}")))
}

/// The client configuration the configuration asks for.
pub fn client_config(config: &Config) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&config.server_ca)? {
        roots
            .add(cert)
            .map_err(|e| invalid(&config.server_ca, format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Missing(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let mut tls = match &config.auth {
        Auth::Certificate { certificate, key } => {
            let chain = load_certs(certificate)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(key, format!("does not match the certificate: {e}")))?
        }
        Auth::SharedSecret { .. } => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}
