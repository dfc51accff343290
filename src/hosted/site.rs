//! What the MTA-STS listener serves: `GET /.well-known/mta-sts.txt`,
//! answered by the Host header (`mta-sts.<domain>`, RFC 8461 section
//! 3.3), and ACME HTTP-01 challenges. Nothing else: every other path is
//! a 404, so a stray request learns nothing of the dashboard.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;

use crate::store::{certificates, hosted, Store};

pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

#[derive(Clone)]
struct Site {
    store: Store,
    /// The longest an HTTP cache may keep the policy file (the hosted
    /// zone's TTL): senders fetch again when they see a new id in DNS,
    /// and a cache must not hand them the old file past that.
    cache_seconds: u64,
}

/// The HTTPS router of `[mta_sts] listen`.
pub fn router(store: Store, cache_seconds: u64) -> Router {
    Router::new()
        .route(POLICY_PATH, get(policy_file))
        .route("/.well-known/acme-challenge/{token}", get(http_challenge))
        .fallback(not_found)
        .with_state(Site {
            store,
            cache_seconds,
        })
}

/// The plain-HTTP router of `[mta_sts] http_listen`: challenges only
/// (a policy is valid over HTTPS alone, section 3.3).
pub fn challenge_router(store: Store) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(http_challenge))
        .fallback(not_found)
        .with_state(Site {
            store,
            cache_seconds: 0,
        })
}

/// The policy domain a Host header names: `mta-sts.` and a domain, any
/// case, a final dot and a port allowed.
pub fn policy_domain(host: &str) -> Option<String> {
    let host = host.trim();
    // An IP literal (`[::1]:443`) names no domain.
    if host.starts_with('[') {
        return None;
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let domain = name.strip_prefix("mta-sts.")?;
    crate::hosted::policy::normalize_pattern(domain)
        .ok()
        .filter(|domain| !domain.starts_with("*."))
}

async fn policy_file(State(site): State<Site>, headers: HeaderMap) -> Response {
    let Some(domain) = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(policy_domain)
    else {
        return not_found().await;
    };
    match hosted::policy(site.store.db(), &domain).await {
        Ok(Some(stored)) => {
            let max_age = stored.policy.max_age.min(site.cache_seconds);
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_str(&format!("max-age={max_age}"))
                            .unwrap_or(HeaderValue::from_static("no-cache")),
                    ),
                ],
                stored.policy.text(),
            )
                .into_response()
        }
        Ok(None) => not_found().await,
        Err(error) => {
            tracing::warn!(%error, domain, "mta_sts: cannot read the policy");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

/// RFC 8555 section 8.3: the key authorization, as text.
async fn http_challenge(State(site): State<Site>, Path(token): Path<String>) -> Response {
    let token_ok = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !token_ok {
        return not_found().await;
    }
    match certificates::challenge(site.store.db(), certificates::HTTP_01, &token, Utc::now()).await
    {
        Ok(Some(key_authorization)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_authorization,
        )
            .into_response(),
        Ok(None) => not_found().await,
        Err(error) => {
            tracing::warn!(%error, "mta_sts: cannot read an ACME challenge");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::policy_domain;

    #[test]
    fn host_headers_name_the_policy_domain() {
        for (host, domain) in [
            ("mta-sts.example.com", Some("example.com")),
            ("MTA-STS.Example.COM", Some("example.com")),
            ("mta-sts.example.com.", Some("example.com")),
            ("mta-sts.example.com:443", Some("example.com")),
            ("mta-sts.example.com.:8443", Some("example.com")),
            ("example.com", None),
            ("www.example.com", None),
            ("mta-sts.com", None),
            ("mta-sts.*.example.com", None),
            ("mta-sts.example.com:https", None),
            ("[::1]:443", None),
            ("127.0.0.1:443", None),
            ("mta-sts.exa mple.com", None),
            ("", None),
        ] {
            assert_eq!(policy_domain(host).as_deref(), domain, "{host}");
        }
    }
}
