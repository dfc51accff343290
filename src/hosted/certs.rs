//! Certificates of the MTA-STS listener, chosen per connection from the
//! TLS ClientHello: the ACME certificate stored for the SNI host (every
//! node reads the same table), else the configured files, and, for a
//! CA's TLS-ALPN-01 validation (RFC 8737), the challenge certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::store::{certificates, Store};
use crate::tls::{CertificateFiles, TlsError};

/// RFC 8737 section 6.2: the ALPN protocol of TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How long a host's configuration is reused before the table is read
/// again (a renewal on another node reaches this one within it).
const CACHE_FOR: Duration = Duration::from_secs(30);

/// Picks the server configuration for each handshake.
pub struct HostCertificates {
    store: Store,
    files: Option<FileCertificate>,
    cache: Mutex<HashMap<String, CachedConfig>>,
}

/// When a host's configuration was read, and what it was (none: no
/// certificate stored for it).
type CachedConfig = (Instant, Option<Arc<ServerConfig>>);

/// The configured files, loaded again when they change on disk.
struct FileCertificate {
    files: CertificateFiles,
    loaded: Mutex<Option<(FileStamp, Arc<ServerConfig>)>>,
}

type FileStamp = (std::time::SystemTime, std::time::SystemTime);

impl HostCertificates {
    /// With the certificate `files` as the fallback, checked now so that
    /// a broken pair stops the start with its reason.
    pub fn new(store: Store, files: Option<CertificateFiles>) -> Result<Self, TlsError> {
        let files = files.map(|files| FileCertificate {
            files,
            loaded: Mutex::new(None),
        });
        if let Some(files) = &files {
            files.config()?;
        }
        Ok(HostCertificates {
            store,
            files,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration for a ClientHello naming `server_name` and
    /// offering `alpn`; `None` refuses the handshake.
    pub async fn config_for(
        &self,
        server_name: Option<&str>,
        alpn: &[&[u8]],
    ) -> Option<Arc<ServerConfig>> {
        let host = server_name.map(|name| name.trim_end_matches('.').to_ascii_lowercase());
        if alpn.contains(&ACME_TLS_ALPN) {
            // Only the challenge answers on this protocol (section 3).
            return self.challenge_config(host.as_deref()?).await;
        }
        if let Some(host) = &host {
            if let Some(config) = self.stored_config(host).await {
                return Some(config);
            }
        }
        let files = self.files.as_ref()?;
        match files.config() {
            Ok(config) => Some(config),
            Err(error) => {
                tracing::error!(%error, "mta_sts: the certificate files cannot be used");
                None
            }
        }
    }

    /// Forgets what was read for `host` (its certificate just changed here).
    pub fn forget(&self, host: &str) {
        lock(&self.cache).remove(host);
    }

    async fn stored_config(&self, host: &str) -> Option<Arc<ServerConfig>> {
        if let Some((read_at, config)) = lock(&self.cache).get(host) {
            if read_at.elapsed() < CACHE_FOR {
                return config.clone();
            }
        }
        let config = match certificates::certificate(self.store.db(), host).await {
            Ok(Some(stored)) => match (&stored.cert_pem, &stored.key_pem) {
                (Some(cert), Some(key)) => match server_config(cert, key, &[]) {
                    Ok(config) => Some(config),
                    Err(error) => {
                        tracing::error!(host, %error, "mta_sts: the stored certificate cannot be used");
                        None
                    }
                },
                _ => None,
            },
            Ok(None) => None,
            Err(error) => {
                // Keep serving what was read before rather than nothing.
                tracing::warn!(host, %error, "mta_sts: cannot read the certificate");
                return lock(&self.cache).get(host).and_then(|(_, c)| c.clone());
            }
        };
        lock(&self.cache).insert(host.to_string(), (Instant::now(), config.clone()));
        config
    }

    async fn challenge_config(&self, host: &str) -> Option<Arc<ServerConfig>> {
        let key_authorization =
            certificates::challenge(self.store.db(), certificates::TLS_ALPN_01, host, Utc::now())
                .await
                .ok()??;
        match challenge_certificate(host, &key_authorization) {
            Ok(config) => Some(config),
            Err(error) => {
                tracing::error!(host, %error, "mta_sts: cannot make the TLS-ALPN-01 certificate");
                None
            }
        }
    }
}

impl FileCertificate {
    fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let stamp = stamp(&self.files);
        let mut loaded = lock(&self.loaded);
        if let (Some((seen, config)), Some(now)) = (loaded.as_ref(), stamp) {
            if *seen == now {
                return Ok(Arc::clone(config));
            }
        }
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|error| TlsError::Certificate {
                path: path.display().to_string(),
                message: error.to_string(),
            })
        };
        let config = server_config(&read(&self.files.cert)?, &read(&self.files.key)?, &[])
            .map_err(TlsError::Config)?;
        if let Some(stamp) = stamp {
            *loaded = Some((stamp, Arc::clone(&config)));
        }
        Ok(config)
    }
}

fn stamp(files: &CertificateFiles) -> Option<FileStamp> {
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((modified(&files.cert)?, modified(&files.key)?))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server configuration for a PEM chain and key.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| format!("the certificate does not read: {error}"))?;
    if chain.is_empty() {
        return Err("no certificate in the PEM text".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|error| format!("the private key does not read: {error}"))?;
    single_cert_config(chain, key, alpn)
}

fn single_cert_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, String> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| format!("the certificate and key do not fit together: {error}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// RFC 8737 section 3: a self-signed certificate for `host` whose
/// critical acmeIdentifier extension holds SHA-256 of the key authorization.
/// rustls refuses to load a certificate with an extension it does not
/// know (`with_single_cert` checks it), so the key is handed over as it
/// is: only the CA's validator ever sees this certificate.
fn challenge_certificate(host: &str, key_authorization: &str) -> Result<Arc<ServerConfig>, String> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing_key);
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}
