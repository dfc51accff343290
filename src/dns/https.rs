//! The MTA-STS policy fetch (RFC 8461 section 3.3): HTTPS only, a
//! certificate valid for `mta-sts.<domain>` under the trusted roots, no
//! redirects, `text/plain`, and a size limit. The host name is resolved
//! by the checks' own resolver, so tests and production ask the same DNS.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::DnsConfig;
use super::resolver::{Answer, DnsClient};

/// RFC 8461 section 3.2: the policy's path on the policy host.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// A TLS client that verifies certificates as an MTA-STS sender does:
/// Mozilla's roots and those of `dns.mta_sts_ca_file`.
pub fn trusted_connector(config: &DnsConfig) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.mta_sts_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("dns.mta_sts_ca_file {}: {error}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "dns.mta_sts_ca_file {} holds no certificate",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|error| format!("dns.mta_sts_ca_file {}: {error}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("cannot set up TLS: {error}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

pub struct PolicyFetcher {
    tls: TlsConnector,
    port: u16,
    max_bytes: usize,
    timeout: Duration,
}

impl PolicyFetcher {
    /// A fetcher trusting Mozilla's roots and `dns.mta_sts_ca_file`'s.
    pub fn new(config: &DnsConfig) -> Result<Self, String> {
        let tls = trusted_connector(config)?;
        Ok(PolicyFetcher {
            tls,
            port: config.mta_sts_https_port,
            max_bytes: config.mta_sts_max_bytes,
            timeout: config.mta_sts_timeout(),
        })
    }

    /// The policy text of `domain`, or why it could not be had (a
    /// sentence fragment: "the certificate is not valid: …").
    pub async fn fetch(&self, dns: &DnsClient, domain: &str) -> Result<String, String> {
        let host = format!("mta-sts.{domain}");
        match tokio::time::timeout(self.timeout, self.fetch_from(dns, &host)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "https://{host}{POLICY_PATH} gave no answer within {:?}",
                self.timeout
            )),
        }
    }

    async fn fetch_from(&self, dns: &DnsClient, host: &str) -> Result<String, String> {
        let url = format!("https://{host}{POLICY_PATH}");
        let addresses = match dns.addresses(host).await {
            Answer::Found(addresses) => addresses,
            Answer::Missing => {
                return Err(format!(
                    "{host} has no address, so the policy cannot be fetched"
                ))
            }
            Answer::Failed(reason) => return Err(format!("could not look up {host}: {reason}")),
        };
        let mut last_error = String::new();
        let mut stream = None;
        for address in addresses {
            match TcpStream::connect((address, self.port)).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last_error = format!("cannot connect to {address}: {error}"),
            }
        }
        let stream = stream.ok_or_else(|| format!("{url}: {last_error}"))?;
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host} is not a valid TLS server name"))?;
        let tls = self
            .tls
            .connect(server_name, stream)
            .await
            .map_err(|error| format!("{url}: the TLS handshake failed: {error}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
                .await
                .map_err(|error| format!("{url}: {error}"))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(POLICY_PATH)
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::USER_AGENT,
                concat!("dmarcd/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|error| format!("{url}: {error}"))?;
        let result = self
            .read_response(&url, sender.send_request(request).await)
            .await;
        driver.abort();
        result
    }

    async fn read_response(
        &self,
        url: &str,
        response: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
    ) -> Result<String, String> {
        let response = response.map_err(|error| format!("{url}: {error}"))?;
        let status = response.status();
        if status.is_redirection() {
            // RFC 8461 section 3.3: senders must not follow redirects.
            return Err(format!(
                "{url} answered {status} (a redirect), which senders must not follow"
            ));
        }
        if status != hyper::StatusCode::OK {
            return Err(format!("{url} answered {status}"));
        }
        let media_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        if media_type.as_deref() != Some("text/plain") {
            return Err(format!(
                "{url} is served as {}, where RFC 8461 requires text/plain",
                media_type.as_deref().unwrap_or("no content type")
            ));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| format!("{url}: {error}"))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > self.max_bytes {
                    return Err(format!(
                        "{url} is larger than {} bytes (dns.mta_sts_max_bytes)",
                        self.max_bytes
                    ));
                }
                bytes.extend_from_slice(data);
            }
        }
        String::from_utf8(bytes).map_err(|_| format!("{url} is not UTF-8 text"))
    }
}
