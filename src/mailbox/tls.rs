//! The TLS client a mailbox connects with (IMAP and its token endpoint):
//! Mozilla's roots, as mail clients trust, plus the mailbox's `ca_file`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use super::error::{MailboxError, MailboxErrorKind};

pub fn connector(ca_file: Option<&Path>) -> Result<TlsConnector, MailboxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |why: String| {
            MailboxError::new(
                MailboxErrorKind::Tls,
                format!("ca_file {}: {why}", path.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| bad(error.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no certificate".to_string()));
        }
        for cert in certs {
            roots.add(cert).map_err(|error| bad(error.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| {
        MailboxError::new(MailboxErrorKind::Tls, format!("cannot set up TLS: {error}"))
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
