//! The web listener: REST API (`/api/v1`), TLS-RPT intake by HTTPS POST,
//! health and metrics, and the dashboard. One axum router, one state.

mod alerts;
mod api;
mod audit;
mod client;
mod csv;
mod digests;
mod error;
mod groups;
mod headers;
mod hosted;
mod limiter;
mod listener;
mod ops;
mod pages;
mod posture;
mod routes;
pub(super) mod senders;

pub use posture::PostureService;
mod svg;
mod tlsrpt;
mod world_map;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use serde::Deserialize;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use crate::accounts::Accounts;
use crate::decode::Limits;
use crate::store::{KnownNames, Store};
pub use client::{Address, ClientIp, TrustedProxies};
pub use error::ApiError;
use limiter::RateLimiter;
pub use listener::{ClientAddr, ConnectionLimits, WebListener};

/// The `[web]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the dashboard, API, TLS-RPT intake and metrics.
    pub enabled: bool,
    /// Plain HTTP unless `tls_cert_file` is set: then put nothing in front,
    /// or else a TLS-terminating reverse proxy (README, "Web and HTTPS").
    pub listen: SocketAddr,
    /// PEM certificate chain for HTTPS on `listen` (with `tls_key_file`);
    /// reloaded when the files change and on SIGHUP. Unset: plain HTTP.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key for `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Mark the session cookie `Secure` (HTTPS only). True by default: the
    /// dashboard is meant to be reached through HTTPS. Set false only to
    /// sign in over plain HTTP on loopback.
    pub secure_cookies: bool,
    /// How long a dashboard sign-in lasts, in hours.
    pub session_hours: u64,
    /// Failed sign-ins allowed per client IP per minute.
    pub login_attempts_per_minute: u32,
    /// Where TLS-RPT reports are POSTed (RFC 8460 section 3): the path of
    /// the `https:` URI in your `_smtp._tls` record.
    pub tlsrpt_path: String,
    /// Largest TLS-RPT body accepted (compressed size), in bytes.
    pub tlsrpt_max_bytes: usize,
    /// TLS-RPT POSTs accepted per client IP per minute.
    pub tlsrpt_per_minute: u32,
    /// Reverse proxies (IP addresses or CIDR blocks) whose
    /// `X-Forwarded-For` names the client, for the rate limits and logs
    /// (client.rs). Empty: the connection's address is the client's.
    pub trusted_proxies: Vec<String>,
    /// Seconds a request may take before it is answered 503.
    pub request_timeout_seconds: u64,
    /// If set, `/metrics` answers only requests carrying
    /// `Authorization: Bearer <this>` (Prometheus: `authorization:
    /// {credentials: …}`). Unset: anyone who reaches the listener may read it.
    pub metrics_token: Option<String>,
    /// If set, `/metrics` is served on this address (plain HTTP, e.g.
    /// `127.0.0.1:9187`) instead of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Connections served at once; more are answered 503 and closed.
    /// Lowered at start if the open-file limit cannot hold it beside
    /// `smtp.max_connections` (logged).
    pub max_connections: usize,
    /// Connections at once from one address (trusted proxies excepted).
    pub max_connections_per_ip: usize,
    /// Seconds for a request's header to arrive, from the connection's
    /// start or the previous response: also the longest a kept-alive
    /// connection waits idle for its next request.
    pub header_read_timeout_seconds: u64,
    /// Seconds allowed for the TLS handshake (with `tls_cert_file`).
    pub tls_handshake_timeout_seconds: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            secure_cookies: true,
            session_hours: 12,
            login_attempts_per_minute: 10,
            tlsrpt_path: "/tlsrpt".to_string(),
            tlsrpt_max_bytes: 10 * 1024 * 1024,
            tlsrpt_per_minute: 60,
            trusted_proxies: Vec::new(),
            request_timeout_seconds: 60,
            metrics_token: None,
            metrics_listen: None,
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_read_timeout_seconds: 10,
            tls_handshake_timeout_seconds: 10,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub accounts: Accounts,
    pub config: Arc<WebConfig>,
    pub limits: Arc<Limits>,
    login_limiter: Arc<RateLimiter>,
    tlsrpt_limiter: Arc<RateLimiter>,
    trusted_proxies: Arc<TrustedProxies>,
    /// A DB-IP database is in use: its licence requires an attribution link.
    pub dbip_attribution: bool,
    /// The IP databases, when this server has them: a DB-IP one loaded
    /// shows the attribution, none loaded shows how to get them.
    pub geo: Option<Arc<GeoStatus>>,
    /// Domain posture checks (none: the posture routes answer 503).
    pub posture: Option<PostureService>,
    /// The `[[mailbox]]` entries, for the Mailboxes page.
    pub mailboxes: Arc<Vec<crate::mailbox::MailboxConfig>>,
    /// The names the filter form offers, read at most every half minute.
    known_names: Arc<tokio::sync::Mutex<Option<(std::time::Instant, KnownNames)>>>,
    /// Where reports can be sent, for the empty pages' first steps.
    pub intake: Arc<IntakeHints>,
    /// How sources are put in classes (`[senders]`).
    pub senders: Arc<crate::senders::SendersConfig>,
    /// How digests are made (`[digests]`), for "send now" and previews.
    pub digests: Arc<crate::digests::DigestsConfig>,
    /// Hosted MTA-STS and records (none: those routes answer 503).
    pub hosted: Option<Arc<crate::hosted::HostedService>>,
    /// Single sign-on (none: local passwords only).
    pub oidc: Option<Arc<crate::oidc::OidcClient>>,
}

/// The IP databases as the dashboard tells of them.
pub struct GeoStatus {
    pub databases: Arc<crate::enrich::GeoDatabases>,
    /// Where `dmarcd geo update` puts its files (`geo.directory`).
    pub directory: std::path::PathBuf,
    /// `enrich.databases` lists files (rather than the downloads).
    pub listed: bool,
}

/// How reports reach this dmarcd, as the empty dashboard tells a new user.
#[derive(Clone, Debug, Default)]
pub struct IntakeHints {
    /// SMTP's listen address and the recipients it accepts (empty: any
    /// address, which only a loopback listener allows), when SMTP is on.
    pub smtp: Option<(String, Vec<String>)>,
}

impl AppState {
    pub fn new(store: Store, config: WebConfig, limits: Limits) -> Self {
        AppState {
            accounts: Accounts::new(store.clone()),
            store,
            login_limiter: Arc::new(RateLimiter::per_minute(config.login_attempts_per_minute)),
            tlsrpt_limiter: Arc::new(RateLimiter::per_minute(config.tlsrpt_per_minute)),
            trusted_proxies: Arc::new(
                TrustedProxies::parse(&config.trusted_proxies)
                    .expect("web.trusted_proxies is checked with the config"),
            ),
            config: Arc::new(config),
            limits: Arc::new(limits),
            dbip_attribution: false,
            geo: None,
            posture: None,
            mailboxes: Arc::default(),
            known_names: Arc::default(),
            intake: Arc::default(),
            senders: Arc::default(),
            digests: Arc::default(),
            hosted: None,
            oidc: None,
        }
    }

    /// Signs in through this OpenID provider too (`[oidc]`).
    pub fn with_oidc(mut self, client: crate::oidc::OidcClient) -> Self {
        self.oidc = Some(Arc::new(client));
        self
    }

    /// Whether local user names and passwords sign in.
    pub fn local_passwords(&self) -> bool {
        self.oidc
            .as_ref()
            .is_none_or(|client| client.config().local_passwords)
    }

    /// Reporters and source names for the filter form's suggestions: read
    /// again when half a minute old, so a page view costs no query most
    /// of the time.
    pub async fn known_names(
        &self,
        scope: &crate::scope::Scope,
    ) -> Result<KnownNames, crate::store::StoreError> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(30);
        const LIMIT: i64 = 1000;
        if !scope.is_all() {
            // A group's names: read each time (its totals are few rows).
            return self.store.known_names(scope, LIMIT).await;
        }
        let mut cached = self.known_names.lock().await;
        if let Some((read_at, names)) = cached.as_ref() {
            if read_at.elapsed() < FRESH {
                return Ok(names.clone());
            }
        }
        let names = self.store.known_names(scope, LIMIT).await?;
        *cached = Some((std::time::Instant::now(), names.clone()));
        Ok(names)
    }

    /// Shows these mailboxes on the Mailboxes page.
    pub fn with_mailboxes(mut self, mailboxes: Vec<crate::mailbox::MailboxConfig>) -> Self {
        self.mailboxes = Arc::new(mailboxes);
        self
    }

    /// Serves posture checks and lookups with `schedule`.
    pub fn with_posture(
        mut self,
        schedule: crate::dns::PostureSchedule,
        lookups_per_minute: u32,
    ) -> Self {
        self.posture = Some(PostureService::new(schedule, lookups_per_minute));
        self
    }

    /// Serves hosted MTA-STS pages and API with `service`.
    pub fn with_hosted(mut self, service: Arc<crate::hosted::HostedService>) -> Self {
        self.hosted = Some(service);
        self
    }

    pub fn with_senders(mut self, config: crate::senders::SendersConfig) -> Self {
        self.senders = Arc::new(config);
        self
    }

    pub fn with_digests(mut self, config: crate::digests::DigestsConfig) -> Self {
        self.digests = Arc::new(config);
        self
    }

    pub fn with_intake_hints(mut self, hints: IntakeHints) -> Self {
        self.intake = Arc::new(hints);
        self
    }

    pub fn with_dbip_attribution(mut self, shown: bool) -> Self {
        self.dbip_attribution = shown;
        self
    }

    pub fn with_geo(mut self, geo: GeoStatus) -> Self {
        self.geo = Some(Arc::new(geo));
        self
    }

    /// Whether the DB-IP attribution is due now (a database downloaded
    /// while serving counts from when it is loaded).
    pub fn shows_dbip(&self) -> bool {
        self.dbip_attribution
            || self
                .geo
                .as_ref()
                .is_some_and(|geo| geo.databases.includes_dbip())
    }
}

/// Whether two secrets are equal, in a time that does not tell how much of
/// them matched.
pub(crate) fn same_secret(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    // The length is no secret (tokens and CSRF values have one length).
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.request_timeout_seconds.max(1));
    let https = state.config.tls_cert_file.is_some();
    let router = Router::new()
        .merge(ops::routes(&state.config))
        .merge(tlsrpt::routes(&state.config))
        .nest("/api/v1", api::routes().into_router())
        .merge(
            pages::routes()
                .into_router()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    pages::error_pages_keep_navigation,
                )),
        )
        .layer(axum::middleware::from_fn(ops::observe))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        // A span per request (method, URI) for what is logged inside it,
        // and its status and latency at debug level; failures are logged
        // where they happen, so not again here.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state);
    headers::add(router, https)
}

/// Every path of the API and the dashboard (`/api/v1/...`, `/...`), as
/// their routers serve them: what the isolation tests visit. (The health,
/// metrics and TLS-RPT intake routes hold no group's data.)
pub fn route_paths() -> Vec<String> {
    let mut paths = api::routes().paths("/api/v1");
    paths.extend(pages::routes().paths(""));
    paths
}

/// `/metrics` alone, for `web.metrics_listen`.
pub fn metrics_router(state: AppState) -> Router {
    headers::add(ops::metrics_routes().with_state(state), false)
}

/// Serves `router` on `listener` (a `TcpListener`, with the default
/// limits, or a `WebListener`) until `shutdown` turns true; requests in
/// flight finish first.
pub async fn serve(
    listener: impl Into<WebListener>,
    router: Router,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener::serve(listener.into(), router, shutdown).await
}
