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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&gauges),
    )
        .into_response()
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
