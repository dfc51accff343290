//! The hosted MTA-STS half of `dmarcd serve`: the policy listener (HTTPS
//! by SNI, and plain HTTP for ACME challenges), the certificate orders,
//! and the authoritative DNS listener of the hosted zone.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::hosted::acme::AcmeIssuer;
use crate::hosted::certs::HostCertificates;
use crate::hosted::dns_server::{DnsListener, HostedZone};
use crate::hosted::HostedService;
use crate::store::Store;
use crate::web::WebListener;

/// Starts what `[mta_sts]` and `[dns_server]` ask for; returns the
/// service the dashboard uses (none when no resolver can be made).
pub(super) async fn start(
    config: &Config,
    store: &Store,
    stopped: &watch::Receiver<bool>,
    listeners: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<Arc<HostedService>>> {
    let mut service = match HostedService::from_config(store.clone(), config) {
        Ok(service) => Some(service),
        Err(error) => {
            tracing::warn!(%error, "hosted MTA-STS is off (it needs a DNS resolver: set dns.name_servers)");
            None
        }
    };
    let mta_sts = &config.mta_sts;
    let files = match (&mta_sts.cert_file, &mta_sts.key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::CertificateFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let certificates = Arc::new(
        HostCertificates::new(store.clone(), files)
            .map_err(|error| anyhow::anyhow!("mta_sts.cert_file: {error}"))?,
    );
    if mta_sts.acme_directory_url.is_some() && config.worker.enabled {
        let issuer = AcmeIssuer::new(store.clone(), mta_sts, Arc::clone(&certificates))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        service = service.map(|service| service.with_acme_wakeup(issuer.wakeup()));
        let stopped = stopped.clone();
        listeners.push(tokio::spawn(async move { issuer.run(stopped).await }));
    }
    if let Some(address) = &mta_sts.listen {
        let tcp = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot listen on {address} (mta_sts.listen): {error}")
            })?;
        tracing::info!(address = %tcp.local_addr()?, "MTA-STS policy listener ready (HTTPS)");
        let listener = WebListener::new(tcp, &config.web).with_host_certificates(certificates);
        let router = crate::hosted::site::router(store.clone(), u64::from(config.dns_server.ttl));
        listeners.push(spawn_web(listener, router, stopped, "mta_sts.listen"));
    }
    if let Some(address) = &mta_sts.http_listen {
        let tcp = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot listen on {address} (mta_sts.http_listen): {error}")
            })?;
        tracing::info!(address = %tcp.local_addr()?, "ACME HTTP-01 listener ready");
        let listener = WebListener::new(tcp, &config.web);
        let router = crate::hosted::site::challenge_router(store.clone());
        listeners.push(spawn_web(listener, router, stopped, "mta_sts.http_listen"));
    }
    if let Some(address) = &config.dns_server.listen {
        let tlsrpt = service
            .as_ref()
            .and_then(|service| service.tlsrpt_record().map(str::to_string));
        let zone = HostedZone::new(store.clone(), &config.dns_server, tlsrpt)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let dns = DnsListener::start(address, zone).await.map_err(|error| {
            anyhow::anyhow!("cannot listen on {address} (dns_server.listen): {error}")
        })?;
        let mut stopped = stopped.clone();
        listeners.push(tokio::spawn(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
            drop(dns);
        }));
    }
    Ok(service.map(Arc::new))
}

fn spawn_web(
    listener: WebListener,
    router: axum::Router,
    stopped: &watch::Receiver<bool>,
    setting: &'static str,
) -> JoinHandle<()> {
    let stopped = stopped.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::web::serve(listener, router, stopped).await {
            tracing::error!(%error, setting, "listener failed");
        }
    })
}
