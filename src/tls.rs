//! TLS certificates for both listeners, SMTP's STARTTLS and the web
//! listener's HTTPS: from files named in the config (reloaded when they
//! change on disk, or on SIGHUP), or, when none are configured (SMTP
//! only), a self-signed certificate made at start. Senders of reports encrypt
//! opportunistically and do not verify certificates, so a self-signed one
//! still protects reports from passive eavesdropping.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("cannot read the TLS private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(String),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("smtp.tls_cert_file and smtp.tls_key_file must be set together")]
    HalfConfigured,
}

/// The certificate files, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Hands out the current acceptor; replaced on reload.
pub struct TlsSource {
    current: RwLock<TlsAcceptor>,
    files: Option<CertificateFiles>,
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl TlsSource {
    /// Loads the files, or makes a self-signed certificate for `hostname`.
    pub fn load(
        files: Option<CertificateFiles>,
        hostname: &str,
    ) -> Result<Arc<TlsSource>, TlsError> {
        let acceptor = match &files {
            Some(files) => acceptor_from_files(files)?,
            None => {
                tracing::warn!(
                    hostname,
                    "no smtp.tls_cert_file configured: STARTTLS uses a self-signed certificate made at start"
                );
                self_signed(hostname)?
            }
        };
        let seen = files.as_ref().and_then(modified);
        Ok(Arc::new(TlsSource {
            current: RwLock::new(acceptor),
            files,
            seen: Mutex::new(seen),
        }))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files again. A broken new pair is reported and the
    /// current certificate kept: a typo must not take the MX down.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let acceptor = acceptor_from_files(files)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = acceptor;
        *self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = modified(files);
        tracing::info!(cert = %files.cert.display(), "reloaded the TLS certificate");
        Ok(true)
    }

    /// Reloads when either file's modification time changed.
    pub fn reload_if_changed(&self) {
        let Some(files) = &self.files else { return };
        let now = modified(files);
        let before = *self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.is_some() && now != before {
            if let Err(error) = self.reload() {
                tracing::error!(%error, "kept the previous TLS certificate");
            }
        }
    }

    /// Checks the files every `interval` until the process ends.
    pub fn watch(self: Arc<Self>, interval: Duration) {
        if self.files.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                self.reload_if_changed();
            }
        });
    }
}

fn modified(files: &CertificateFiles) -> Option<(SystemTime, SystemTime)> {
    let cert = std::fs::metadata(&files.cert)
        .and_then(|m| m.modified())
        .ok()?;
    let key = std::fs::metadata(&files.key)
        .and_then(|m| m.modified())
        .ok()?;
    Some((cert, key))
}

fn acceptor_from_files(files: &CertificateFiles) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Certificate {
            path: files.cert.display().to_string(),
            message: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: files.cert.display().to_string(),
            message: "no certificate in the file".to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| TlsError::Key {
        path: files.key.display().to_string(),
        message: error.to_string(),
    })?;
    acceptor(certs, key)
}

fn self_signed(hostname: &str) -> Result<TlsAcceptor, TlsError> {
    let certified = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|error| TlsError::SelfSigned(error.to_string()))?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|error| TlsError::SelfSigned(error.to_string()))?;
    acceptor(vec![cert], key)
}

fn acceptor(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|error| TlsError::Config(error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// "TLS1.3 TLS13_AES_256_GCM_SHA384", for Received headers and logs.
pub fn describe(connection: &rustls::ServerConnection) -> String {
    let version = connection
        .protocol_version()
        .map(|v| format!("{v:?}").replace("TLSv1_", "TLS1."))
        .unwrap_or_else(|| "TLS".to_string());
    let cipher = connection
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_default();
    format!("{version} {cipher}").trim().to_string()
}
