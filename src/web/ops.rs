//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the
//! database answers and its schema is current), `/metrics` (Prometheus),
//! and the middleware that times every request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{AppState, WebConfig};
use crate::metrics;
use crate::query::tls::{self, TlsGroupBy};
use crate::query::{aggregate, Filter, GroupBy, Page, QueryError, SummaryRow, SummarySort};

pub(super) fn routes(config: &WebConfig) -> Router<AppState> {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    // With a listener of its own, /metrics stays off this one.
    match config.metrics_listen {
        Some(_) => routes,
        None => routes.merge(metrics_routes()),
    }
}

pub(super) fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_text))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.schema_is_current().await {
        Ok(true) => Json(json!({"status": "ready"})).into_response(),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "migrations pending: run 'dmarcd migrate' or restart dmarcd"})),
        )
            .into_response(),
        // The error names hosts and databases: it goes to the log, not to
        // whoever asks.
        Err(error) => {
            tracing::warn!(%error, "readiness check: the database is unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "database unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let given = super::api::bearer_token(&headers).unwrap_or("");
        if !super::same_secret(expected, given) {
            return super::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "/metrics needs 'Authorization: Bearer <web.metrics_token>'",
            )
            .into_response();
        }
    }
    let mut gauges = Vec::new();
    if let Ok(counts) = state.store.status_counts().await {
        let series = counts
            .iter()
            .map(|(status, count)| (vec![("status", status.as_str().to_string())], *count as f64))
            .collect();
        gauges.push((
            "dmarcd_inbox_messages",
            "Inbox messages by status (pending and processing are the queue).",
            series,
        ));
    }
    if let Ok(lag) = state.store.rollup_lag().await {
        gauges.push((
            "dmarcd_rollup_pending_reports",
            "Stored aggregate reports the dashboard totals do not count yet.",
            vec![(Vec::new(), lag.reports as f64)],
        ));
        gauges.push((
            "dmarcd_rollup_pending_records",
            "Records of those reports.",
            vec![(Vec::new(), lag.records as f64)],
        ));
    }
    if let Ok(counts) = state.store.enrichment_counts().await {
        let series = counts
            .dns
            .iter()
            .map(|(dns_state, count)| {
                (
                    vec![("dns_state", dns_state.as_str().to_string())],
                    *count as f64,
                )
            })
            .collect();
        gauges.push((
            "dmarcd_enrich_sources",
            "Known source IPs by PTR lookup state.",
            series,
        ));
    }
    match domain_gauges(&state).await {
        Ok(per_domain) => gauges.extend(per_domain),
        Err(error) => tracing::warn!(%error, "/metrics: per-domain gauges left out"),
    }
    if let Ok(states) = state.store.mailbox_states().await {
        gauges.extend(mailbox_gauges(&states));
    }
    gauges.extend(replica_gauges(&state.store.replica_status()));
    if let Ok(certificates) = crate::store::certificates::certificates(state.store.db()).await {
        gauges.extend(certificate_gauges(&certificates, chrono::Utc::now()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&gauges),
    )
        .into_response()
}

/// The hosted MTA-STS certificates: time left, and failed orders in a
/// row (an alert on `> 0` catches a renewal that keeps failing).
fn certificate_gauges(
    certificates: &[crate::store::certificates::StoredCertificate],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<metrics::Gauge<'static>> {
    if certificates.is_empty() {
        return Vec::new();
    }
    let label = |host: &str| vec![("host", host.to_string())];
    vec![
        (
            "dmarcd_mta_sts_certificate_expiry_seconds",
            "Seconds until the hosted MTA-STS host's certificate expires (negative: expired).",
            certificates
                .iter()
                .filter(|stored| stored.cert_pem.is_some())
                .filter_map(|stored| {
                    let left = (stored.not_after? - now).num_seconds() as f64;
                    Some((label(&stored.host), left))
                })
                .collect(),
        ),
        (
            "dmarcd_mta_sts_certificate_failures",
            "Failed ACME orders in a row for the host (0 after a success).",
            certificates
                .iter()
                .map(|stored| (label(&stored.host), f64::from(stored.failures)))
                .collect(),
        ),
    ]
}

/// Whether each read replica is in use, and how far it may trail.
fn replica_gauges(replicas: &[crate::store::ReplicaStatus]) -> Vec<metrics::Gauge<'static>> {
    if replicas.is_empty() {
        return Vec::new();
    }
    let label = |replica: &crate::store::ReplicaStatus| vec![("replica", replica.name.clone())];
    vec![
        (
            "dmarcd_replica_in_use",
            "1 while the read replica takes dashboard and API reads, 0 while they go to the primary.",
            replicas
                .iter()
                .map(|replica| (label(replica), f64::from(u8::from(replica.in_use))))
                .collect(),
        ),
        (
            "dmarcd_replica_staleness_seconds",
            "Upper bound of how far the replica trails the primary (since it was last seen caught up).",
            replicas
                .iter()
                .filter_map(|replica| Some((label(replica), replica.staleness_seconds?)))
                .collect(),
        ),
    ]
}

/// Days of report time the per-domain gauges cover: receivers report the
/// previous day, a day or two late, so one day would often read zero.
const DOMAIN_WINDOW_DAYS: i64 = 7;
/// Domains the per-domain gauges list at most (the busiest first), so that
/// a scrape stays small whatever the domain count.
const MAX_GAUGE_DOMAINS: i64 = 500;

/// Per-domain gauges over the last `DOMAIN_WINDOW_DAYS` days, read from
/// the same totals as the dashboard (`domain` label, like Grafana's).
async fn domain_gauges(state: &AppState) -> Result<Vec<metrics::Gauge<'static>>, QueryError> {
    let since = chrono::Utc::now().date_naive() - chrono::Duration::days(DOMAIN_WINDOW_DAYS);
    let filter = Filter {
        since: Some(since.to_string()),
        ..Filter::default()
    }
    // /metrics is the operator's (metrics_token): every domain.
    .parse(&crate::scope::Scope::All)?;
    let page = Page::new(Some(MAX_GAUGE_DOMAINS), None, MAX_GAUGE_DOMAINS)?;
    let (domains, _) = aggregate::summary(
        &state.store,
        &filter,
        GroupBy::Domain,
        SummarySort::Messages,
        page,
    )
    .await?;
    let tls_filter = tls::ParsedTlsFilter::from_dmarc(&filter);
    let tls = tls::tls_summary(&state.store, &tls_filter, TlsGroupBy::Domain).await?;
    let label = |key: &Option<String>| vec![("domain", key.clone().unwrap_or_default())];
    let per_domain = |value: fn(&SummaryRow) -> f64| {
        domains
            .iter()
            .map(|row| (label(&row.key), value(row)))
            .collect::<Vec<_>>()
    };
    Ok(vec![
        (
            "dmarcd_domain_messages_7d",
            "Messages reported for the domain, report dates in the last 7 days.",
            per_domain(|row| row.messages as f64),
        ),
        (
            "dmarcd_domain_dmarc_fail_messages_7d",
            "Of those, messages that failed DMARC.",
            per_domain(|row| row.dmarc_fail as f64),
        ),
        (
            "dmarcd_domain_dmarc_pass_ratio_7d",
            "DMARC pass ratio (0-1) of those messages.",
            per_domain(|row| row.pass_rate),
        ),
        (
            "dmarcd_domain_tls_failed_sessions_7d",
            "TLS-RPT failed sessions for the policy domain, report dates in the last 7 days.",
            tls.iter()
                .map(|row| (label(&row.key), row.failed_sessions as f64))
                .collect(),
        ),
        (
            "dmarcd_domain_tls_successful_sessions_7d",
            "TLS-RPT successful sessions for the policy domain, report dates in the last 7 days.",
            tls.iter()
                .map(|row| (label(&row.key), row.successful_sessions as f64))
                .collect(),
        ),
    ])
}

/// Each mailbox's pull as stored (whichever node pulls it).
fn mailbox_gauges(states: &[crate::store::MailboxState]) -> Vec<metrics::Gauge<'static>> {
    let by_name = |value: &dyn Fn(&crate::store::MailboxState) -> f64| {
        states
            .iter()
            .map(|state| (vec![("mailbox", state.name.clone())], value(state)))
            .collect::<Vec<_>>()
    };
    let mut messages = Vec::new();
    for state in states {
        for (outcome, count) in [
            ("new", state.messages_new),
            ("duplicate", state.messages_duplicate),
            ("skipped", state.messages_skipped),
        ] {
            messages.push((
                vec![
                    ("mailbox", state.name.clone()),
                    ("outcome", outcome.to_string()),
                ],
                count as f64,
            ));
        }
    }
    vec![
        (
            "dmarcd_mailbox_last_success_timestamp_seconds",
            "When each mailbox was last pulled without error (Unix time; 0: never).",
            by_name(&|s| s.last_success_at.map_or(0.0, |at| at.timestamp() as f64)),
        ),
        (
            "dmarcd_mailbox_failing",
            "1 when a mailbox's last pull failed (see the Mailboxes page for why).",
            by_name(&|s| f64::from(u8::from(s.is_failing()))),
        ),
        (
            "dmarcd_mailbox_consecutive_failures",
            "Failed pulls of a mailbox in a row.",
            by_name(&|s| f64::from(s.consecutive_failures)),
        ),
        (
            "dmarcd_mailbox_backlog",
            "Messages found in a mailbox and not yet pulled by the pass under way.",
            by_name(&|s| s.backlog as f64),
        ),
        (
            "dmarcd_mailbox_messages",
            "Messages pulled from each mailbox since its first pull, by outcome, across nodes.",
            messages,
        ),
    ]
}

/// Counts and times every request by route template (never by raw path:
/// that would make a series per URL).
pub(super) async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::count(
        "dmarcd_http_requests_total",
        &[("route", &route), ("status", &status)],
        1,
    );
    metrics::observe(
        "dmarcd_http_request_duration_seconds",
        &[("route", &route)],
        started.elapsed().as_secs_f64(),
    );
    response
}
