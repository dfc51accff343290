//! TLS-RPT reports by HTTPS POST (RFC 8460 section 3): unauthenticated, as
//! the RFC intends, so limited in size and rate per client. The body is
//! stored in the inbox like a mail before the answer: 200 once committed,
//! 503 if the database cannot take it (the sender retries), 400/413/415
//! with a reason otherwise. A body stored but unparseable is kept, with its
//! reason, like any failed message.

use crate::web::ClientIp;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::{ApiError, AppState, WebConfig};
use crate::inbox::Inbox;
use crate::store::{Envelope, Intake, StoreError};

/// The media types of RFC 8460 section 3.
const ACCEPTED_TYPES: [&str; 2] = ["application/tlsrpt+json", "application/tlsrpt+gzip"];

pub(super) fn routes(config: &WebConfig) -> Router<AppState> {
    Router::new()
        .route(&config.tlsrpt_path, post(receive))
        // The limit is applied below, with an answer that says what it is.
        .layer(DefaultBodyLimit::disable())
}

#[derive(Debug, Serialize)]
struct Stored {
    status: &'static str,
    message_id: i64,
}

async fn receive(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Stored>, ApiError> {
    if !state.tlsrpt_limiter.allow(client) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} reports a minute from {}; try again later",
                state.config.tlsrpt_per_minute, client
            ),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !ACCEPTED_TYPES.contains(&content_type.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not a TLS report: send {} (RFC 8460 section 3)",
                ACCEPTED_TYPES.join(" or ")
            ),
        ));
    }
    let limit = state.config.tlsrpt_max_bytes;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the report is larger than {limit} bytes (web.tlsrpt_max_bytes)"),
        )
    })?;
    if raw.is_empty() {
        return Err(ApiError::bad_request("the body is empty"));
    }

    let envelope = Envelope {
        intake: Intake::Http,
        source_name: Some(format!("POST {}", state.config.tlsrpt_path)),
        peer_ip: Some(client),
        helo: None,
        mail_from: None,
        rcpt_to: Vec::new(),
        tls: false,
    };
    let accepted = Inbox::new(state.store.clone())
        .accept(&raw, &envelope)
        .await
        .map_err(|error| match error {
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the report could not be stored; try again later",
            ),
            other => ApiError::from(other),
        })?;

    // Stored: now tell the sender whether it was a TLS report at all.
    let limits = state.limits.clone();
    let name = format!("message {}", accepted.id);
    let check = tokio::task::spawn_blocking(move || {
        crate::extract::extract_reports_from_bytes(&raw, &name, &limits)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)"))?;
    match check {
        Ok(reports)
            if reports
                .iter()
                .all(|r| matches!(r.report, crate::Report::Tlsrpt(_))) =>
        {
            Ok(Json(Stored {
                status: if accepted.is_new {
                    "stored"
                } else {
                    "already stored"
                },
                message_id: accepted.id,
            }))
        }
        Ok(_) => Err(ApiError::bad_request(
            "this is a report, but not a TLS report (kept in the inbox)",
        )),
        Err(error) => Err(ApiError::bad_request(format!(
            "not a valid TLS report (kept in the inbox as message {}): {error}",
            accepted.id
        ))),
    }
}
