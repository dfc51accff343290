//! Headers every response carries, set once for every route
//! (tower-http's `SetResponseHeaderLayer`) rather than in each handler.

use axum::http::{header, HeaderValue};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// A year: browsers then reach this host over HTTPS only (RFC 6797).
/// Subdomains are left alone: they may be other people's services.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// `https`: dmarcd serves HTTPS itself (behind a proxy, the proxy says it).
pub(super) fn add(router: Router, https: bool) -> Router {
    let router = router
        // A link followed out of the dashboard must not carry its URL:
        // filters name domains, sources and reporters.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Raw messages and report XML are bytes a stranger wrote: a browser
        // must never sniff them into HTML or script.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Every answer is private report data: kept in no cache, shared or not.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if https {
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        ))
    } else {
        router
    }
}
