//! Certificates for the `mta-sts.<domain>` hosts from an ACME CA (RFC
//! 8555, with `instant-acme`): the account and every certificate are kept
//! in the database so that all nodes serve them and any node answers the
//! CA's validation. One node orders a host at a time (a claim with a
//! lease); a certificate is renewed at two thirds of its lifetime, and a
//! failed order is retried with a growing pause, its reason shown on the
//! MTA-STS page and counted in `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsConnector;

use super::certs::HostCertificates;
use super::config::MtaStsConfig;
use crate::store::{certificates, Store};

/// The counter of orders, by result.
const ORDERS: &str = "dmarcd_acme_orders_total";
/// A node holds an order this long before another may take it over.
const ORDER_LEASE: TimeDelta = TimeDelta::minutes(10);
/// The first pause after a failure; doubled each time, up to a day.
const FIRST_RETRY: TimeDelta = TimeDelta::minutes(5);
const LONGEST_RETRY: TimeDelta = TimeDelta::days(1);
/// How long a challenge may wait for the CA.
const CHALLENGE_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// A response from the CA larger than this is refused (a chain is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Orders and renews certificates until stopped.
pub struct AcmeIssuer {
    store: Store,
    directory_url: String,
    contact: Option<String>,
    challenge: ChallengeType,
    check_every: Duration,
    tls: TlsConnector,
    certificates: Arc<HostCertificates>,
    wakeup: Arc<Notify>,
}

impl AcmeIssuer {
    /// From `[mta_sts]` (its `acme_directory_url` set).
    pub fn new(
        store: Store,
        config: &MtaStsConfig,
        certificates: Arc<HostCertificates>,
    ) -> Result<AcmeIssuer, String> {
        let directory_url = config
            .acme_directory_url
            .clone()
            .ok_or("mta_sts.acme_directory_url is not set")?;
        Ok(AcmeIssuer {
            store,
            directory_url,
            contact: config.acme_contact.clone(),
            challenge: if config.acme_challenge == "http-01" {
                ChallengeType::Http01
            } else {
                ChallengeType::TlsAlpn01
            },
            check_every: Duration::from_secs(config.acme_check_seconds),
            tls: acme_tls(config)?,
            certificates,
            wakeup: Arc::new(Notify::new()),
        })
    }

    /// Notified when a policy is added: look for orders at once.
    pub fn wakeup(&self) -> Arc<Notify> {
        Arc::clone(&self.wakeup)
    }

    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            self.work_due().await;
            tokio::select! {
                _ = tokio::time::sleep(self.check_every) => {}
                _ = self.wakeup.notified() => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
        }
    }

    /// Orders every certificate that is due (new, to renew, or to retry).
    pub async fn work_due(&self) {
        loop {
            let now = Utc::now();
            let host = match certificates::claim_due(self.store.db(), now, now + ORDER_LEASE).await
            {
                Ok(Some(host)) => host,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "acme: cannot look for certificates to order");
                    return;
                }
            };
            self.order_or_record_failure(&host).await;
        }
    }

    async fn order_or_record_failure(&self, host: &str) {
        let db = self.store.db();
        match self.order(host).await {
            Ok(not_after) => {
                crate::metrics::count(ORDERS, &[("result", "issued")], 1);
                self.certificates.forget(host);
                tracing::info!(host, %not_after, "acme: certificate issued");
            }
            Err(error) => {
                crate::metrics::count(ORDERS, &[("result", "failed")], 1);
                let failures = certificates::certificate(db, host)
                    .await
                    .ok()
                    .flatten()
                    .map_or(0, |stored| stored.failures);
                let retry_at = Utc::now() + retry_pause(failures);
                tracing::warn!(host, %error, %retry_at, "acme: the order failed");
                if let Err(store_error) = certificates::failed(db, host, &error, retry_at).await {
                    tracing::warn!(host, %store_error, "acme: cannot record the failure");
                }
            }
        }
    }

    /// The account for the directory: stored, or made and stored.
    async fn account(&self) -> Result<Account, String> {
        let db = self.store.db();
        let builder = || Account::builder_with_http(Box::new(AcmeHttp(self.tls.clone())));
        let stored = certificates::acme_account(db, &self.directory_url)
            .await
            .map_err(|error| error.to_string())?;
        let credentials = match stored {
            Some(text) => text,
            None => {
                let contact: Vec<&str> = self.contact.as_deref().into_iter().collect();
                let (_, credentials) = builder()
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory_url.clone(),
                        None,
                    )
                    .await
                    .map_err(|error| format!("cannot create the ACME account: {error}"))?;
                let text = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
                // Two nodes creating at once: both use the one stored first.
                certificates::save_acme_account(db, &self.directory_url, &text, Utc::now())
                    .await
                    .map_err(|error| error.to_string())?
            }
        };
        let credentials: AccountCredentials = serde_json::from_str(&credentials)
            .map_err(|error| format!("the stored ACME account is unreadable: {error}"))?;
        builder()
            .from_credentials(credentials)
            .await
            .map_err(|error| format!("the ACME account cannot be used: {error}"))
    }

    /// One order for `host`, stored when issued.
    async fn order(&self, host: &str) -> Result<DateTime<Utc>, String> {
        let db = self.store.db();
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|error| format!("the CA refused the order: {error}"))?;
        let mut published = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|error| format!("cannot read an authorization: {error}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("the authorization is {other:?}")),
            }
            let kind = self.challenge.clone();
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let key_authorization = challenge.key_authorization();
            let (kind_key, name) = match kind {
                ChallengeType::Http01 => (certificates::HTTP_01, challenge.token.clone()),
                _ => (certificates::TLS_ALPN_01, host.to_string()),
            };
            let expires = Utc::now() + CHALLENGE_LIFETIME;
            certificates::put_challenge(db, kind_key, &name, key_authorization.as_str(), expires)
                .await
                .map_err(|error| error.to_string())?;
            published.push((kind_key, name));
            challenge
                .set_ready()
                .await
                .map_err(|error| format!("cannot start the validation: {error}"))?;
        }
        let retries = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retries).await;
        for (kind, name) in &published {
            let _ = certificates::drop_challenge(db, kind, name, Utc::now()).await;
        }
        match status {
            Ok(OrderStatus::Ready) => {}
            Ok(other) => {
                return Err(format!(
                    "the CA did not validate {host}: the order is {other:?}"
                ))
            }
            Err(error) => return Err(format!("the CA did not validate {host}: {error}")),
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|error| format!("cannot finalize the order: {error}"))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|error| format!("the certificate was not issued: {error}"))?;
        let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or("the CA sent no certificate")?;
        let (not_before, not_after) =
            super::validity::validity(&leaf).ok_or("the certificate's validity cannot be read")?;
        // Checked before it is served: a broken pair must not replace a good one.
        super::certs::server_config(&chain_pem, &key_pem, &[])?;
        let now = Utc::now();
        certificates::issued(
            db,
            host,
            &chain_pem,
            &key_pem,
            not_before,
            not_after,
            renewal_time(not_before, not_after),
            now,
        )
        .await
        .map_err(|error| error.to_string())?;
        Ok(not_after)
    }
}

/// Two thirds into the certificate's life (Let's Encrypt's advice: a 90
/// day certificate is renewed with 30 days left).
pub fn renewal_time(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    not_before + (not_after - not_before) * 2 / 3
}

/// The pause before trying again after `failures` earlier failures.
pub fn retry_pause(failures: i32) -> TimeDelta {
    let doublings = u32::try_from(failures.clamp(0, 16)).unwrap_or(0);
    (FIRST_RETRY * 2i32.pow(doublings)).min(LONGEST_RETRY)
}

/// TLS to the CA: Mozilla's roots and `mta_sts.acme_ca_file`'s.
fn acme_tls(config: &MtaStsConfig) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.acme_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| format!("mta_sts.acme_ca_file {}: {error}", path.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|error| format!("mta_sts.acme_ca_file {}: {error}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// instant-acme's HTTP client: one HTTPS/1.1 connection per request on
/// the crates dmarcd already has (hyper, tokio-rustls), with our roots.
struct AcmeHttp(TlsConnector);

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.0.clone();
        Box::pin(async move {
            send(tls, request)
                .await
                .map_err(|error| instant_acme::Error::Other(error.into()))
        })
    }
}

async fn send(
    tls: TlsConnector,
    mut request: http::Request<BodyWrapper<bytes::Bytes>>,
) -> Result<BytesResponse, String> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri}: the ACME server must be reached over https"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{uri} has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| format!("cannot connect to {host}:{port}: {error}"))?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|_| format!("{host} is not a server name"))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|error| format!("TLS to {host}:{port} failed: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or(host);
    if let Ok(value) = http::HeaderValue::from_str(&authority) {
        request.headers_mut().insert(http::header::HOST, value);
    }
    // HTTP/1.1 wants the path alone in the request line.
    *request.uri_mut() = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|error: http::uri::InvalidUri| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("the ACME request failed: {error}"))?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|error| format!("the ACME answer could not be read: {error}"))?
        .to_bytes();
    Ok(BytesResponse::from(http::Response::from_parts(
        parts,
        http_body_util::Full::new(body),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_and_retries_back_off() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = start + TimeDelta::days(90);
        assert_eq!(renewal_time(start, end), start + TimeDelta::days(60));
        assert_eq!(retry_pause(0), TimeDelta::minutes(5));
        assert_eq!(retry_pause(1), TimeDelta::minutes(10));
        assert_eq!(retry_pause(3), TimeDelta::minutes(40));
        assert_eq!(retry_pause(30), TimeDelta::days(1));
    }
}
