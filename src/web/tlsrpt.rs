//! TLS-RPT reports by HTTPS POST (RFC 8460 section 3): unauthenticated, as
//! the RFC intends, so limited in size and rate per client. The body is
//! looked at cheaply (JSON, or gzip that starts JSON) and stored in the
//! inbox like a mail before the answer: 200 once committed, 503 if the
//! database cannot take it (the sender retries), 400/413/415 with a reason
//! otherwise. The worker parses it, once: a body stored but unparseable is
//! kept, with its reason, like any failed message.

use std::io::Read;

use crate::web::ClientIp;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::{ApiError, AppState, WebConfig};
use crate::inbox::Inbox;
use crate::inbox::{Envelope, Intake};

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
    if let Err(reason) = looks_like_a_tls_report(&raw) {
        return Err(ApiError::bad_request(format!(
            "not a TLS report: {reason} (RFC 8460 section 3: JSON, or gzip'd JSON)"
        )));
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
    // Whatever kept the inbox from committing (the database down, or
    // refusing connections, or out of space), nothing was stored: the
    // sender must try again later.
    let accepted = Inbox::new(state.store.clone())
        .accept(&raw, &envelope)
        .await
        .map_err(|error| {
            tracing::warn!(%error, %client, "a TLS report POST could not be stored; answered 503");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the report could not be stored; try again later",
            )
        })?;
    // The worker parses it, as it does a mail: a report that turns out
    // to be broken is kept in the inbox as failed, with the reason.
    Ok(Json(Stored {
        status: if accepted.is_new {
            "stored"
        } else {
            "already stored"
        },
        message_id: accepted.id,
    }))
}

/// How much of a gzip body is inflated to see that JSON starts inside.
const GZIP_PEEK_BYTES: usize = 512;

/// A cheap look at the body, so that a stranger's junk is refused before
/// it is stored: a JSON object, or a gzip stream that starts one. Whether
/// it is a valid report is for the worker to find out.
fn looks_like_a_tls_report(body: &[u8]) -> Result<(), &'static str> {
    if body.is_empty() {
        return Err("the body is empty");
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut start = Vec::with_capacity(GZIP_PEEK_BYTES);
        let inflated = flate2::read::GzDecoder::new(body)
            .take(GZIP_PEEK_BYTES as u64)
            .read_to_end(&mut start);
        // A stream shorter than the peek may still be cut short later;
        // only its start is judged here.
        if inflated.is_err() && start.is_empty() {
            return Err("the gzip stream is broken");
        }
        return starts_a_json_object(&start)
            .then_some(())
            .ok_or("the gzip stream does not hold JSON");
    }
    starts_a_json_object(body)
        .then_some(())
        .ok_or("the body is neither JSON nor gzip")
}

/// Whether `bytes` begin (after a byte order mark and white space) with `{`.
fn starts_a_json_object(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{')
}

#[cfg(test)]
mod tests {
    use super::looks_like_a_tls_report;
    use std::io::Write;

    #[test]
    fn json_and_gzipped_json_pass_the_cheap_look_and_junk_does_not() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(b"\n {\"organization-name\": \"x\"}")
            .unwrap();
        let gzip = gzip.finish().unwrap();
        assert_eq!(looks_like_a_tls_report(b"\xef\xbb\xbf {}"), Ok(()));
        assert_eq!(looks_like_a_tls_report(&gzip), Ok(()));
        assert_eq!(looks_like_a_tls_report(&gzip[..gzip.len() / 2]), Ok(()));
        assert!(looks_like_a_tls_report(b"").is_err());
        assert!(looks_like_a_tls_report(b"<feedback/>").is_err());
        assert!(looks_like_a_tls_report(&[0x1f, 0x8b, 0, 0]).is_err());
    }
}
