//! Hosted MTA-STS and hosted records over the API: read a domain's
//! policy (with its text, history, certificate and the records to
//! publish), change it, run the DNS and MX checks, renew its
//! certificate; read, set and remove the hosted DMARC record. Changes
//! need an API token (sessions only read through the API).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::alerts::is_address;
use super::api::ApiToken;
use super::error::ErrorBody;
use super::posture::{DomainName, DomainPath};
use super::senders::JsonBody;
use super::{ApiError, AppState};
use crate::audit::{self, Action, Change};
use crate::hosted::dmarc::HostedDmarc;
use crate::hosted::policy::{is_pattern, Mode, MAX_MX_PATTERNS, MX_PATTERN};
use crate::hosted::probe::MxProbe;
use crate::hosted::records::RecordToPublish;
use crate::hosted::{
    DnsState, EnforceRefusal, HostedError, HostedService, PolicyChanged, PolicyRequest,
};
use crate::scope::Scope;
use crate::store::certificates::{self, CertificateState};
use crate::store::hosted::{self, PolicyChange, StoredDmarcRecord, StoredPolicy};

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/domains/{domain}/mta-sts", get(read).put(change))
        .route("/domains/{domain}/mta-sts/checks", get(checks))
        .route("/domains/{domain}/mta-sts/certificate/renew", post(renew))
        .route(
            "/domains/{domain}/hosted-dmarc",
            get(read_dmarc).put(set_dmarc).delete(remove_dmarc),
        )
}

/// The hosted service, or 503 when this node runs without one.
pub(super) fn service(state: &AppState) -> Result<&Arc<HostedService>, ApiError> {
    state.hosted.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hosted MTA-STS is not available on this node (it needs a DNS resolver)",
        )
    })
}

impl From<HostedError> for ApiError {
    fn from(error: HostedError) -> Self {
        match error {
            HostedError::NotMonitored(_) => ApiError::not_found(error.to_string()),
            HostedError::Policy(_) | HostedError::Dmarc(_) => {
                ApiError::bad_request(error.to_string())
            }
            // The client can say the patterns itself, or force.
            HostedError::NoMx(_) | HostedError::MxLookup { .. } | HostedError::Unsafe { .. } => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            HostedError::Store(error) => error.into(),
        }
    }
}

/// A domain's hosted MTA-STS as served.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MtaStsView {
    pub domain: String,
    /// Null until a policy is set.
    pub policy: Option<StoredPolicy>,
    /// The policy file as served (CRLF lines).
    pub policy_text: Option<String>,
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`
    pub policy_url: String,
    /// The `_mta-sts` TXT record announcing the policy.
    pub sts_record: Option<String>,
    /// This dmarcd answers the hosted zone (CNAME delegation), or the
    /// TXT records are published by hand.
    pub hosted_dns: bool,
    pub records_to_publish: Vec<RecordToPublish>,
    /// The certificate of `mta-sts.<domain>` when ordered by ACME.
    pub certificate: Option<CertificateState>,
    /// Newest first (at most 50).
    pub history: Vec<PolicyChange>,
}

/// Hosted records are changed by those who own the domain's group (and
/// admins); others learn nothing of a domain they do not see.
pub(super) fn require_owner(scope: &Scope, domain: &str) -> Result<(), ApiError> {
    match scope.role_for(domain) {
        Some(crate::scope::GroupRole::Owner) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("changing the hosted records of {domain} needs its group's owner role"),
        )),
        None => Err(ApiError::not_found(format!(
            "{domain} is not a domain dmarcd knows"
        ))),
    }
}

pub(super) async fn view(
    state: &AppState,
    scope: &Scope,
    service: &HostedService,
    domain: &str,
) -> Result<MtaStsView, ApiError> {
    let db = state.store.db();
    if !crate::query::domains::visible(&state.store, scope, domain).await? {
        return Err(HostedError::NotMonitored(domain.to_string()).into());
    }
    let policy = hosted::policy(db, domain).await?;
    let dmarc = hosted::dmarc_record(db, domain).await?;
    let certificate = certificates::certificate(db, &format!("mta-sts.{domain}"))
        .await?
        .map(|stored| stored.state(Utc::now()));
    Ok(MtaStsView {
        policy_text: policy.as_ref().map(|p| p.policy.text()),
        sts_record: policy
            .as_ref()
            .map(|p| crate::hosted::policy::sts_record(&p.policy_id)),
        policy_url: format!(
            "https://mta-sts.{domain}{}",
            crate::hosted::site::POLICY_PATH
        ),
        hosted_dns: service.serves_dns(),
        records_to_publish: service.records_to_publish(
            domain,
            policy.as_ref().map(|p| p.policy_id.as_str()),
            dmarc.as_ref().map(|d| d.record.as_str()),
        ),
        certificate,
        history: hosted::history(db, domain, 50).await?,
        policy,
        domain: domain.to_string(),
    })
}

/// A monitored domain's hosted MTA-STS policy, its history, certificate and records to publish.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/mta-sts", tag = "mta-sts",
    params(DomainPath),
    responses((status = 200, body = MtaStsView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn read(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Json<MtaStsView>, ApiError> {
    let service = service(&state)?;
    Ok(Json(view(&state, &token.scope, service, &domain).await?))
}

/// A policy change. Its schema is written by hand beside the checks in
/// `policy_request`, so that the document allows exactly what is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeRequest {
    pub mode: Mode,
    #[serde(default)]
    pub mx: Option<Vec<String>>,
    #[serde(default)]
    pub max_age: Option<serde_json::Value>,
    #[serde(default)]
    pub force: Option<bool>,
}

impl utoipa::PartialSchema for PolicyChangeRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaType, Type,
        };
        let nullable = |kind: Type| SchemaType::from_iter([kind, Type::Null]);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "mode",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["none", "testing", "enforce"])),
            )
            .required("mode")
            .property(
                "mx",
                ArrayBuilder::new()
                    .schema_type(nullable(Type::Array))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(MX_PATTERN))
                            .max_length(Some(253)),
                    )
                    .min_items(Some(1))
                    .max_items(Some(MAX_MX_PATTERNS))
                    .description(Some(
                        "MX patterns (a host, or *. and a host). Absent: the current ones, \
                         or the domain's live MX hosts for its first policy.",
                    )),
            )
            .property(
                "max_age",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Integer))
                    .minimum(Some(crate::hosted::policy::MAX_AGE_MIN as f64))
                    .maximum(Some(crate::hosted::policy::MAX_AGE_MAX as f64))
                    .description(Some(
                        "Seconds senders keep the policy (default: 86400 testing, 604800 enforce).",
                    )),
            )
            .property(
                "force",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Boolean))
                    .description(Some(
                        "Enforce although an MX host is not covered or fails the STARTTLS probe.",
                    )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for PolicyChangeRequest {}

fn policy_request(request: PolicyChangeRequest) -> Result<PolicyRequest, ApiError> {
    if let Some(mx) = &request.mx {
        if mx.is_empty() || mx.len() > MAX_MX_PATTERNS {
            return Err(ApiError::bad_request(format!(
                "mx: give 1 to {MAX_MX_PATTERNS} patterns, or leave it out"
            )));
        }
        if let Some(bad) = mx.iter().find(|pattern| !is_pattern(pattern)) {
            return Err(ApiError::bad_request(format!(
                "mx: {bad:?} is not a host name or *. and a host name"
            )));
        }
    }
    let max_age = match &request.max_age {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            super::alerts::as_whole(value)
                .and_then(|age| u64::try_from(age).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("max_age: {value} is not a whole number"))
                })?,
        ),
    };
    Ok(PolicyRequest {
        mode: request.mode,
        mx: request.mx,
        max_age,
        force: request.force.unwrap_or(false),
    })
}

/// Changes a monitored domain's hosted policy; every change gets a new id.
/// `enforce` is refused (409, with the probes) while an MX host is not
/// covered or fails STARTTLS, unless `force` is set.
#[utoipa::path(put, path = "/api/v1/domains/{domain}/mta-sts", tag = "mta-sts",
    params(DomainPath),
    request_body = PolicyChangeRequest,
    responses((status = 200, body = PolicyChanged), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = RefusalBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn change(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    JsonBody(request): JsonBody<PolicyChangeRequest>,
) -> Result<Response, ApiError> {
    let service = service(&state)?;
    require_owner(&token.scope, &domain)?;
    let request = policy_request(request)?;
    match service
        .change_policy(&domain, &request, &token.actor())
        .await
    {
        Ok(changed) => Ok(Json(changed).into_response()),
        Err(HostedError::Unsafe { refusal }) => Ok((
            StatusCode::CONFLICT,
            Json(RefusalBody {
                error: format!("not enforced: {}", refusal.reasons.join("; ")),
                refusal: Some(*refusal),
            }),
        )
            .into_response()),
        // The other conflicts: the MX hosts to start from are unknown.
        Err(error @ (HostedError::NoMx(_) | HostedError::MxLookup { .. })) => Ok((
            StatusCode::CONFLICT,
            Json(RefusalBody {
                error: error.to_string(),
                refusal: None,
            }),
        )
            .into_response()),
        Err(error) => Err(error.into()),
    }
}

/// A change refused: `enforce` with the checks that failed, or a policy
/// whose MX patterns cannot be taken from DNS (then `refusal` is null).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefusalBody {
    pub error: String,
    pub refusal: Option<EnforceRefusal>,
}

/// What the DNS publishes and how the MX hosts answer now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MtaStsChecks {
    pub dns: DnsState,
    pub mx_hosts: Vec<String>,
    pub probes: Vec<MxProbe>,
    /// MX hosts no pattern of the served policy matches.
    pub uncovered: Vec<String>,
}

/// Looks up `_mta-sts.<domain>` and probes every MX host for STARTTLS now.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/mta-sts/checks", tag = "mta-sts",
    params(DomainPath),
    responses((status = 200, body = MtaStsChecks), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn checks(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Json<MtaStsChecks>, ApiError> {
    let service = service(&state)?;
    Ok(Json(
        run_checks(&state, &token.scope, service, &domain).await?,
    ))
}

pub(super) async fn run_checks(
    state: &AppState,
    scope: &Scope,
    service: &HostedService,
    domain: &str,
) -> Result<MtaStsChecks, ApiError> {
    let db = state.store.db();
    if !crate::query::domains::visible(&state.store, scope, domain).await? {
        return Err(HostedError::NotMonitored(domain.to_string()).into());
    }
    let policy = hosted::policy(db, domain).await?;
    let (dns, mx_hosts) = tokio::join!(
        service.dns_state(domain, policy.as_ref().map(|p| p.policy_id.as_str())),
        service.live_mx(domain)
    );
    let mx_hosts = mx_hosts?;
    let probes = service.probe(&mx_hosts).await;
    let uncovered = policy
        .as_ref()
        .map(|p| {
            p.policy
                .uncovered(&mx_hosts)
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(MtaStsChecks {
        dns,
        mx_hosts,
        probes,
        uncovered,
    })
}

/// Asks for the certificate of `mta-sts.<domain>` to be ordered again now.
#[utoipa::path(post, path = "/api/v1/domains/{domain}/mta-sts/certificate/renew", tag = "mta-sts",
    params(DomainPath),
    responses((status = 202, body = CertificateState), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn renew(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Response, ApiError> {
    let service = service(&state)?;
    require_owner(&token.scope, &domain)?;
    let host = format!("mta-sts.{domain}");
    let db = state.store.db();
    let now = Utc::now();
    if !certificates::renew_now(db, &host, now).await? {
        return Err(ApiError::not_found(format!(
            "{host} has no ACME certificate (set mta_sts.acme_directory_url and a policy)"
        )));
    }
    service.wake_acme();
    let change = Change::of(Action::MtaStsCertificateRenew, host.as_str());
    audit::record(&state.store, &token.actor(), change).await?;
    let stored = certificates::certificate(db, &host)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{host} has no certificate")))?;
    Ok((StatusCode::ACCEPTED, Json(stored.state(now))).into_response())
}

/// The hosted DMARC record: its fields and text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HostedDmarcView {
    pub fields: HostedDmarc,
    #[serde(flatten)]
    pub stored: StoredDmarcRecord,
}

/// The DMARC record this dmarcd serves for a domain in the hosted zone.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/hosted-dmarc", tag = "mta-sts",
    params(DomainPath),
    responses((status = 200, body = HostedDmarcView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn read_dmarc(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Json<HostedDmarcView>, ApiError> {
    let stored = hosted::dmarc_record(state.store.db(), &domain)
        .await?
        .filter(|_| token.scope.sees(&domain))
        .ok_or_else(|| ApiError::not_found(format!("no hosted DMARC record for {domain}")))?;
    Ok(Json(HostedDmarcView {
        fields: HostedDmarc::from_record(&stored.record),
        stored,
    }))
}

/// Sets (replaces) the hosted DMARC record of a monitored domain.
#[utoipa::path(put, path = "/api/v1/domains/{domain}/hosted-dmarc", tag = "mta-sts",
    params(DomainPath),
    request_body = DmarcRequest,
    responses((status = 200, body = HostedDmarcView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn set_dmarc(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    JsonBody(request): JsonBody<DmarcRequest>,
) -> Result<Json<HostedDmarcView>, ApiError> {
    let service = service(&state)?;
    require_owner(&token.scope, &domain)?;
    let fields = dmarc_fields(request)?;
    let stored = service.set_dmarc(&domain, &fields, &token.actor()).await?;
    Ok(Json(HostedDmarcView { fields, stored }))
}

/// Stops serving the hosted DMARC record of a domain.
#[utoipa::path(delete, path = "/api/v1/domains/{domain}/hosted-dmarc", tag = "mta-sts",
    params(DomainPath),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn remove_dmarc(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<StatusCode, ApiError> {
    require_owner(&token.scope, &domain)?;
    let db = state.store.db();
    let old = hosted::dmarc_record(db, &domain).await?;
    if hosted::remove_dmarc_record(db, &domain).await? {
        let change = Change::of(Action::HostedDmarcChange, domain.as_str()).from(&old);
        audit::record(&state.store, &token.actor(), change).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no hosted DMARC record for {domain}"
        )))
    }
}

/// The hosted DMARC record's fields. Its schema is written by hand
/// beside `dmarc_fields`, so that the document allows what is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmarcRequest {
    pub p: String,
    #[serde(default)]
    pub sp: Option<String>,
    #[serde(default)]
    pub np: Option<String>,
    #[serde(default)]
    pub t: Option<bool>,
    #[serde(default)]
    pub pct: Option<serde_json::Value>,
    #[serde(default)]
    pub rua: Option<Vec<String>>,
    #[serde(default)]
    pub ruf: Option<Vec<String>>,
    #[serde(default)]
    pub adkim: Option<String>,
    #[serde(default)]
    pub aspf: Option<String>,
}

const POLICIES: [&str; 3] = ["none", "quarantine", "reject"];
const ALIGNMENTS: [&str; 2] = ["r", "s"];
/// Report URIs of at most this many (RFC 7489 section 6.2 allows more,
/// receivers read few).
const MAX_REPORT_URIS: usize = 5;

impl utoipa::PartialSchema for DmarcRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaType, Type,
        };
        let nullable = |kind: Type| SchemaType::from_iter([kind, Type::Null]);
        let choice = |values: &[&str], null: bool| {
            let mut listed: Vec<serde_json::Value> =
                values.iter().map(|v| serde_json::json!(v)).collect();
            if null {
                listed.push(serde_json::Value::Null);
            }
            ObjectBuilder::new()
                .schema_type(if null {
                    nullable(Type::String)
                } else {
                    Type::String.into()
                })
                .enum_values(Some(listed))
        };
        let uris = || {
            ArrayBuilder::new()
                .schema_type(nullable(Type::Array))
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!("^mailto:{}$", super::alerts::ADDRESS))),
                )
                .max_items(Some(MAX_REPORT_URIS))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("p", choice(&POLICIES, false))
            .required("p")
            .property("sp", choice(&POLICIES, true))
            .property("np", choice(&POLICIES, true))
            .property(
                "t",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Boolean))
                    .description(Some("Test mode (t=y, RFC 9989).")),
            )
            .property(
                "pct",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Integer))
                    .minimum(Some(0.0))
                    .maximum(Some(100.0)),
            )
            .property(
                "rua",
                uris().description(Some("mailto: URIs for aggregate reports.")),
            )
            .property(
                "ruf",
                uris().description(Some("mailto: URIs for failure reports.")),
            )
            .property("adkim", choice(&ALIGNMENTS, true))
            .property("aspf", choice(&ALIGNMENTS, true))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for DmarcRequest {}

fn dmarc_fields(request: DmarcRequest) -> Result<HostedDmarc, ApiError> {
    let one_of = |field: &str, value: &Option<String>, allowed: &[&str]| match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::bad_request(format!(
            "{field}: give one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    };
    one_of("p", &Some(request.p.clone()), &POLICIES)?;
    one_of("sp", &request.sp, &POLICIES)?;
    one_of("np", &request.np, &POLICIES)?;
    one_of("adkim", &request.adkim, &ALIGNMENTS)?;
    one_of("aspf", &request.aspf, &ALIGNMENTS)?;
    let pct = match &request.pct {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            super::alerts::as_whole(value)
                .and_then(|pct| u8::try_from(pct).ok())
                .filter(|pct| *pct <= 100)
                .ok_or_else(|| ApiError::bad_request("pct: give a whole number from 0 to 100"))?,
        ),
    };
    let uris = |field: &str, list: Option<Vec<String>>| -> Result<Vec<String>, ApiError> {
        let list = list.unwrap_or_default();
        if list.len() > MAX_REPORT_URIS {
            return Err(ApiError::bad_request(format!(
                "{field}: at most {MAX_REPORT_URIS} addresses"
            )));
        }
        for uri in &list {
            if !uri.strip_prefix("mailto:").is_some_and(is_address) {
                return Err(ApiError::bad_request(format!(
                    "{field}: {uri:?} is not mailto:address@domain"
                )));
            }
        }
        Ok(list)
    };
    Ok(HostedDmarc {
        p: request.p,
        sp: request.sp,
        np: request.np,
        t: request.t,
        pct,
        rua: uris("rua", request.rua)?,
        ruf: uris("ruf", request.ruf)?,
        adkim: request.adkim,
        aspf: request.aspf,
    })
}
