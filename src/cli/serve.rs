//! `dmarcd serve`: the long-running process.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::inbox::Inbox;
use crate::smtp::SmtpServer;
use crate::tls::TlsSource;
use crate::web::{AppState, WebListener};
use crate::worker::Worker;

pub(super) async fn serve(mut config: Config) -> anyhow::Result<ExitCode> {
    fit_connections_to_descriptors(&mut config)?;
    let store = super::open_store(&config)
        .await?
        .with_replicas(&config.database.replicas())?
        .with_dashboard_url(&config.outbox.dashboard_url)
        .with_senders_config(config.senders.clone());
    tracing::info!(backend = store.backend(), data_dir = %config.data_dir.display(), "dmarcd started");
    let (stop, stopped) = watch::channel(false);
    let mut listeners = Vec::new();
    if config.smtp.enabled {
        let smtp = SmtpServer::bind(config.smtp.clone(), Inbox::new(store.clone())).await?;
        tracing::info!(address = %smtp.local_addr()?, "SMTP listener ready");
        if config.smtp.recipients.is_empty() {
            tracing::warn!(
                "smtp.recipients is empty: accepting mail for any recipient (loopback only)"
            );
        }
        if let Some(tls) = smtp.tls() {
            Arc::clone(&tls).watch(std::time::Duration::from_secs(30));
            reload_on_sighup(tls);
        }
        let stopped = stopped.clone();
        listeners.push(tokio::spawn(async move { smtp.run(stopped).await }));
    }
    let base = Worker::new(
        store.clone(),
        config.decode.clone(),
        worker_name(0),
        config.worker.clone(),
    );
    let mut tasks = Vec::new();
    let workers = if config.worker.enabled {
        config.worker.concurrency
    } else {
        0
    };
    for index in 0..workers {
        let worker = base.named(worker_name(index));
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { worker.run(stopped).await }));
    }
    if config.retention.enabled {
        let (store, retention, stopped) =
            (store.clone(), config.retention.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            crate::retention::run(store, retention, stopped).await
        }));
    }
    if config.worker.enabled {
        let applier = crate::worker::RollupApplier::new(store.clone(), &config.worker);
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { applier.run(stopped).await }));
    }
    // Enrichment is worker work: an intake-only node leaves it to the others.
    let enricher = crate::enrich::Enricher::from_config(&config.enrich_effective())?;
    let geo = crate::web::GeoStatus {
        databases: enricher.geo_shared(),
        directory: config.geo.directory(&config.data_dir),
        listed: !config.enrich.databases.is_empty(),
    };
    if !config.worker.enabled {
        // The enrichment task reloads changed files; a node without it
        // still shows whether databases are there (the dashboard's banner
        // and the DB-IP attribution).
        let (enricher, stopped) = (enricher.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            super::geo::reload_until_stopped(enricher, stopped).await
        }));
    }
    if config.geo.monthly {
        let (config, stopped) = (config.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            super::geo::monthly(config, stopped).await
        }));
    }
    if config.worker.enabled {
        let enrich = super::enrich::service_with(&config, store.clone(), enricher)?;
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { enrich.run(stopped).await }));
    }
    // Posture checks are worker work too; nodes share the schedule. A
    // resolver that cannot start (no /etc/resolv.conf in a bare container)
    // turns them off with a warning rather than stopping intake.
    let posture = match crate::dns::PostureChecker::from_config(&config) {
        Ok(checker) => Some(crate::dns::PostureSchedule::new(
            store.clone(),
            Arc::new(checker),
            &config.dns,
        )),
        Err(error) => {
            tracing::warn!(%error, "DNS posture checks are off (set dns.name_servers)");
            None
        }
    };
    if let Some(posture) = posture.clone() {
        if config.worker.enabled && config.dns.checks_enabled {
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move { posture.run(stopped).await }));
        }
    }
    // The outbox: any node may send; claims keep two from sending one message.
    if config.outbox.enabled {
        let sender = crate::outbox::OutboxSender::new(
            store.clone(),
            &config.mail_out,
            &config.outbox,
            node_name(),
        )
        .map_err(|error| anyhow::anyhow!("{error}"))?;
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { sender.run(stopped).await }));
    }
    // The timed half of the alert rules (silence, failure and TLS reports,
    // causes gone); nodes take turns (an advisory lock on PostgreSQL).
    if config.worker.enabled {
        let schedule =
            crate::alerts::AlertSchedule::new(store.clone(), std::time::Duration::from_secs(60));
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { schedule.run(stopped).await }));
    }
    // Digests: any node may queue a due one; the schedule's last period
    // and the outbox's dedup key keep it to one.
    if config.worker.enabled && config.digests.enabled {
        let digests =
            crate::digests::DigestSchedule::new(store.clone(), &config.digests, &config.senders);
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { digests.run(stopped).await }));
    }
    // Mailbox pulls are intake: any node may hold a mailbox's lease.
    for mailbox in &config.mailboxes {
        let puller = crate::mailbox::Puller::new(
            Arc::new(mailbox.clone()),
            Inbox::new(store.clone()),
            node_name(),
            config.decode.clone(),
        );
        tracing::info!(mailbox = %mailbox.name, host = %mailbox.host, folder = %mailbox.folder, "pulling a mailbox");
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { puller.run(stopped).await }));
    }
    let hosted = super::serve_hosted::start(&config, &store, &stopped, &mut listeners).await?;
    if config.web.enabled {
        let mut state = AppState::new(store.clone(), config.web.clone(), config.decode.clone())
            .with_geo(geo)
            .with_mailboxes(config.mailboxes.clone())
            .with_senders(config.senders.clone())
            .with_digests(config.digests.clone())
            .with_intake_hints(crate::web::IntakeHints {
                smtp: config
                    .smtp
                    .enabled
                    .then(|| (config.smtp.listen.clone(), config.smtp.recipients.clone())),
            });
        if let Some(posture) = posture {
            state = state.with_posture(posture, config.dns.lookups_per_minute);
        }
        if let Some(hosted) = hosted {
            state = state.with_hosted(hosted);
        }
        if config.oidc.enabled() {
            tracing::info!(issuer = %config.oidc.issuer, "single sign-on through OpenID Connect");
            state = state.with_oidc(crate::oidc::OidcClient::new(config.oidc.clone()));
        }
        if let Some(password) = state.accounts.ensure_first_admin().await? {
            let change = crate::audit::Change::of(crate::audit::Action::UserAdd, "admin")
                .to(&serde_json::json!({ "role": "admin", "first_start": true }));
            crate::audit::record(&store, &crate::audit::Actor::new("system", None), change).await?;
            // The one time this password is shown.
            tracing::warn!(
                "created the first dashboard user: admin / {password} \
                 (change it with 'dmarcd user passwd admin')"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.web.listen)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen on {} (web.listen): {error}",
                    config.web.listen
                )
            })?;
        let mut listener = WebListener::new(listener, &config.web);
        if let (Some(cert), Some(key)) = (&config.web.tls_cert_file, &config.web.tls_key_file) {
            let files = crate::tls::CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let tls = TlsSource::load(Some(files), "")?;
            Arc::clone(&tls).watch(std::time::Duration::from_secs(30));
            reload_on_sighup(Arc::clone(&tls));
            listener = listener.with_tls(tls);
        }
        let scheme = if listener.is_tls() { "https" } else { "http" };
        tracing::info!(address = %listener.local_addr()?, scheme, "web listener ready");
        if let Some(address) = config.web.metrics_listen {
            let metrics = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|error| {
                    anyhow::anyhow!("cannot listen on {address} (web.metrics_listen): {error}")
                })?;
            tracing::info!(%address, "metrics listener ready");
            let router = crate::web::metrics_router(state.clone());
            let stopped = stopped.clone();
            let config_web = config.web.clone();
            listeners.push(tokio::spawn(async move {
                let metrics = WebListener::new(metrics, &config_web);
                if let Err(error) = crate::web::serve(metrics, router, stopped).await {
                    tracing::error!(%error, "metrics listener failed");
                }
            }));
        }
        let router = crate::web::router(state);
        let stopped = stopped.clone();
        listeners.push(tokio::spawn(async move {
            if let Err(error) = crate::web::serve(listener, router, stopped).await {
                tracing::error!(%error, "web listener failed");
            }
        }));
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing the messages in hand");
    let _ = stop.send(true);
    for task in listeners.into_iter().chain(tasks) {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Raises the open-file limit to its hard limit, and lowers the web and
/// SMTP connection caps if together they would not fit under it with
/// descriptors to spare: slow web clients then cannot starve SMTP (or the
/// database) of descriptors.
fn fit_connections_to_descriptors(config: &mut Config) -> anyhow::Result<()> {
    let limit = match crate::connections::raise_descriptor_limit() {
        Ok((before, limit)) => {
            if limit > before {
                tracing::info!(
                    before,
                    limit,
                    "raised the open-file limit to its hard limit"
                );
            } else {
                tracing::info!(limit, "open-file limit");
            }
            limit
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit; connection caps left as configured");
            return Ok(());
        }
    };
    let web = if config.web.enabled {
        config.web.max_connections
    } else {
        0
    };
    let smtp = if config.smtp.enabled {
        config.smtp.max_connections
    } else {
        0
    };
    let (web_fitted, smtp_fitted) = crate::connections::fit_to_descriptors(limit, web, smtp)?;
    if (web_fitted, smtp_fitted) != (web, smtp) {
        tracing::warn!(
            limit,
            reserved = crate::connections::DESCRIPTOR_RESERVE,
            "the open-file limit cannot hold web.max_connections ({web}) and \
             smtp.max_connections ({smtp}): lowered to {web_fitted} and {smtp_fitted} \
             (raise the limit with ulimit -n or LimitNOFILE=, or lower the caps)"
        );
        if config.web.enabled {
            config.web.max_connections = web_fitted;
        }
        if config.smtp.enabled {
            config.smtp.max_connections = smtp_fitted;
        }
    }
    Ok(())
}

/// `kill -HUP` reloads the TLS certificate files (after a renewal).
fn reload_on_sighup(tls: Arc<TlsSource>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            if let Err(error) = tls.reload() {
                tracing::error!(%error, "SIGHUP: kept the previous TLS certificate");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = tls;
}

/// This process, as a mailbox lease names its holder (`host:pid`).
pub(crate) fn node_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// Unique per process and task, readable in the inbox's `claimed_by`.
fn worker_name(index: usize) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}:{index}", std::process::id())
}

/// Ctrl-C, or SIGTERM from systemd or docker.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
