//! Domain posture over the API: a monitored domain's checks and record
//! changes, a check run now, and a lookup of any domain (not stored,
//! rate-limited per client).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{ApiToken, Params};
use super::client::ClientIp;
use super::error::ErrorBody;
use super::limiter::RateLimiter;
use super::{ApiError, AppState};
use crate::dns::{PostureReport, PostureSchedule};
use crate::store::posture::{self, RecordEvent, StoredCheck};

/// What the web needs for posture: the schedule (which holds the checker)
/// and the lookup rate limit.
#[derive(Clone)]
pub struct PostureService {
    pub schedule: PostureSchedule,
    lookups: Arc<RateLimiter>,
    lookups_per_minute: u32,
}

impl PostureService {
    pub fn new(schedule: PostureSchedule, lookups_per_minute: u32) -> Self {
        PostureService {
            schedule,
            lookups: Arc::new(RateLimiter::per_minute(lookups_per_minute)),
            lookups_per_minute,
        }
    }

    /// Counts a lookup for `client`; the 429 to answer when over the limit.
    pub fn allow_lookup(&self, client: std::net::IpAddr) -> Result<(), ApiError> {
        if self.lookups.allow(client) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} lookups a minute from {client} (dns.lookups_per_minute); try again later",
                    self.lookups_per_minute
                ),
            ))
        }
    }
}

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/domains/{domain}/checks", get(checks).post(check_now))
        .route("/lookup/{domain}", get(lookup))
}

/// The domain name of a posture path, as the OpenAPI document states
/// it: ASCII labels (an internationalised name as its `xn--` A-labels), no
/// trailing dot, a top-level label that begins with a letter. The
/// extractor accepts exactly what the pattern matches, so that a client
/// generating requests from the document is never surprised.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DomainPath {
    /// A domain name (`example.com`). Only its schema is used; the
    /// `DomainName` extractor reads the path.
    #[allow(dead_code)]
    #[param(
        pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )]
    pub domain: String,
}

/// Whether `text` matches `DomainPath`'s pattern: a host name as MTA-STS
/// patterns take it (`hosted::policy::is_host_name`), wildcards aside.
pub(super) fn is_path_domain(text: &str) -> bool {
    crate::hosted::policy::is_host_name(text)
}

/// A domain name from the path (see `DomainPath`), lower-cased.
pub struct DomainName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for DomainName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|error| ApiError::bad_request(error.body_text()))?;
        if is_path_domain(&text) {
            Ok(DomainName(text.to_ascii_lowercase()))
        } else {
            Err(ApiError::bad_request(format!(
                "{text:?} is not a domain name (ASCII labels, IDNs as xn--, no trailing dot)"
            )))
        }
    }
}

/// The posture service, or 503 when this node runs without it.
pub(super) fn service(state: &AppState) -> Result<&PostureService, ApiError> {
    state.posture.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "posture checks are not set up on this node",
        )
    })
}

/// The time a check in a web request may take: the posture limit, and
/// well inside the request's own deadline.
pub(super) fn request_budget(state: &AppState, service: &PostureService) -> Duration {
    let request = Duration::from_secs(state.config.request_timeout_seconds.max(10));
    let configured = service.schedule.checker().domain_timeout();
    configured.min(request.saturating_sub(Duration::from_secs(5)))
}

async fn require_monitored(
    state: &AppState,
    scope: &crate::scope::Scope,
    domain: &str,
) -> Result<(), ApiError> {
    if crate::query::domains::visible(&state.store, scope, domain).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "{domain} is not a monitored domain (add it under Domains, or use /api/v1/lookup/{domain})"
        )))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ChecksParams {
    /// Checks and record changes to return, newest first (default 10, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A monitored domain's checks and record changes, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DomainChecks {
    pub domain: String,
    pub checks: Vec<StoredCheck>,
    pub events: Vec<RecordEvent>,
}

/// A check just run, and the records it found changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub report: PostureReport,
    pub events: Vec<RecordEvent>,
}

/// The stored posture checks of a monitored domain and the record changes they found.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/checks", tag = "posture",
    params(DomainPath, ChecksParams),
    responses((status = 200, body = DomainChecks), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn checks(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    Params(params): Params<ChecksParams>,
) -> Result<Json<DomainChecks>, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit: give a number from 1 to 100"));
    }
    require_monitored(&state, &token.scope, &domain).await?;
    let db = state.store.db();
    Ok(Json(DomainChecks {
        checks: posture::checks_of(db, &domain, limit).await?,
        events: posture::events_of(db, &domain, limit).await?,
        domain,
    }))
}

/// Checks a monitored domain now; the check is stored like a scheduled one.
#[utoipa::path(post, path = "/api/v1/domains/{domain}/checks", tag = "posture",
    params(DomainPath),
    responses((status = 200, body = CheckResult), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn check_now(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Json<CheckResult>, ApiError> {
    let service = service(&state)?;
    require_monitored(&state, &token.scope, &domain).await?;
    if !token.scope.may(&domain, crate::scope::GroupRole::Analyst) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "checking now needs the analyst or owner role in the domain's group",
        ));
    }
    let budget = request_budget(&state, service);
    let (report, events) = service.schedule.check_now_within(&domain, budget).await?;
    Ok(Json(CheckResult { report, events }))
}

/// Looks up the records of any domain name (not stored), rate-limited per client.
#[utoipa::path(get, path = "/api/v1/lookup/{domain}", tag = "posture",
    params(DomainPath),
    responses((status = 200, body = PostureReport), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn lookup(
    token: ApiToken,
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    DomainName(domain): DomainName,
) -> Result<Json<PostureReport>, ApiError> {
    let service = service(&state)?;
    service.allow_lookup(client)?;
    let budget = request_budget(&state, service);
    let selectors = lookup_selectors(&state, &token.scope, &domain).await?;
    Ok(Json(
        service
            .schedule
            .checker()
            .check_within(&domain, &selectors, budget)
            .await,
    ))
}

/// The DKIM selectors a lookup tries: those the reports of `domain` show,
/// for a caller who sees it (another group's reports stay theirs).
pub(super) async fn lookup_selectors(
    state: &AppState,
    scope: &crate::scope::Scope,
    domain: &str,
) -> Result<Vec<String>, ApiError> {
    if !scope.sees(domain) {
        return Ok(Vec::new());
    }
    Ok(posture::selectors_for(state.store.db(), domain, 30, 10_000).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_domains_are_what_the_pattern_says() {
        for name in [
            "example.com",
            "Mail-1.Example.CO.uk",
            "xn--bcher-kva.de",
            "a.b",
        ] {
            assert!(super::is_path_domain(name), "{name}");
        }
        for text in [
            "0",
            "example",
            "example.com.",
            "a.1b",
            "-a.com",
            "a-.com",
            "a..com",
            "bücher.de",
            "a b.com",
            "",
        ] {
            assert!(!super::is_path_domain(text), "{text:?}");
        }
    }
}
