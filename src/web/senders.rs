//! Senders over the API: a domain's sources in classes with the line that
//! put each there, and the approval rules admins make (list, add, revoke).

use crate::scope::Scope;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::api::{ApiToken, Id, Params};
use super::error::ErrorBody;
use super::posture::{is_path_domain, DomainName, DomainPath};
use super::{ApiError, AppState};
use crate::audit::{self, Action as AuditAction, Change};
use crate::query::compliance::{self, Compliance, Readiness};
use crate::query::senders::{self, SenderDetail, SenderReport, SendersQuery};
use crate::senders::{Action, Class, MatchKind};
use crate::store::approvals::{self, Approval, NewApproval};

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/domains/{domain}/senders", get(senders))
        .route("/domains/{domain}/senders/source", get(sender))
        .route("/domains/{domain}/compliance", get(compliance))
        .route("/domains/{domain}/readiness", get(readiness))
        .route("/approvals", get(approvals).post(add_approval))
        .route("/approvals/{id}", get(approval).delete(revoke_approval))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SendersParams {
    /// Reports beginning on or after this day (`YYYY-MM-DD`, UTC).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub since: Option<String>,
    /// Reports beginning before the end of this day (`YYYY-MM-DD`).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub until: Option<String>,
    /// Only the sources of this class (the class totals still count all).
    #[param(pattern = "^(authorized|forwarded|misconfigured|suspicious|ignored)?$")]
    pub class: Option<String>,
}

/// The class a `class` parameter names (empty: any).
pub(super) fn class_param(text: Option<&str>) -> Result<Option<Class>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => Class::parse(text).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "class: {text:?} is not one of authorized, forwarded, misconfigured, suspicious, ignored"
            ))
        }),
    }
}

/// A domain's sources over a period (default all time), each in its class
/// (authorized, forwarded, misconfigured, suspicious, ignored) with the
/// line that put it there, the failure cause and the thresholds used.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/senders", tag = "senders",
    params(DomainPath, SendersParams),
    responses((status = 200, body = SenderReport), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn senders(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    Params(params): Params<SendersParams>,
) -> Result<Json<SenderReport>, ApiError> {
    let class = class_param(params.class.as_deref())?;
    known(&state, &token.scope, &domain).await?;
    let query = SendersQuery {
        domain,
        since: params.since,
        until: params.until,
        class,
    };
    Ok(Json(
        senders::senders(&state.store, &token.scope, &state.senders, &query).await?,
    ))
}

async fn known(state: &AppState, scope: &Scope, domain: &str) -> Result<(), ApiError> {
    Ok(crate::query::domains::require_visible(&state.store, scope, domain).await?)
}

/// `name` is required (no struct-wide serde default, which would make
/// the document say it is optional).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SenderParams {
    /// The sender name as the senders list gives it (`source`), or the IP
    /// of a source without one.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub name: String,
    /// Reports beginning on or after this day (`YYYY-MM-DD`, UTC).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    #[serde(default)]
    pub since: Option<String>,
    /// Reports beginning before the end of this day (`YYYY-MM-DD`).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    #[serde(default)]
    pub until: Option<String>,
}

/// One sender of a domain (all its IPs together): its class and reason,
/// totals, IPs, countries, days, and from its newest records its DKIM and
/// SPF results and reporters.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/senders/source", tag = "senders",
    params(DomainPath, SenderParams),
    responses((status = 200, body = SenderDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn sender(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    Params(params): Params<SenderParams>,
) -> Result<Json<SenderDetail>, ApiError> {
    // Taken as given (the pattern allows spaces): a name that is all
    // spaces names no sender, which is a 404.
    let name = params.name;
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name: a sender name or IP as the senders list gives it",
        ));
    }
    known(&state, &token.scope, &domain).await?;
    let query = SendersQuery {
        domain,
        since: params.since,
        until: params.until,
        class: None,
    };
    let detail = senders::sender(&state.store, &token.scope, &state.senders, &query, &name).await?;
    if detail.row.is_none() {
        return Err(ApiError::not_found(format!(
            "{name} sent no mail as {} in this period",
            detail.domain
        )));
    }
    Ok(Json(detail))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct PeriodParams {
    /// Reports beginning on or after this day (`YYYY-MM-DD`, UTC).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub since: Option<String>,
    /// Reports beginning before the end of this day (`YYYY-MM-DD`).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub until: Option<String>,
}

/// A domain's compliance over a period (default all time): messages and
/// sources per class, and the biggest problems first, each a sentence
/// with its fix.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/compliance", tag = "senders",
    params(DomainPath, PeriodParams),
    responses((status = 200, body = Compliance), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn compliance(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
    Params(params): Params<PeriodParams>,
) -> Result<Json<Compliance>, ApiError> {
    known(&state, &token.scope, &domain).await?;
    let query = SendersQuery {
        domain,
        since: params.since,
        until: params.until,
        class: None,
    };
    Ok(Json(
        compliance::compliance(&state.store, &token.scope, &state.senders, &query).await?,
    ))
}

/// Whether a domain can move to a stricter policy: the published policy,
/// what quarantine and reject would have done over the last 30 days per
/// class, the authorized mail they would lose (blockers), the verdict and
/// the next record to publish.
#[utoipa::path(get, path = "/api/v1/domains/{domain}/readiness", tag = "senders",
    params(DomainPath),
    responses((status = 200, body = Readiness), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn readiness(
    token: ApiToken,
    State(state): State<AppState>,
    DomainName(domain): DomainName,
) -> Result<Json<Readiness>, ApiError> {
    known(&state, &token.scope, &domain).await?;
    Ok(Json(
        compliance::readiness(&state.store, &token.scope, &state.senders, &domain).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsParams {
    /// Only the rules that apply to this domain (its own and those for every domain).
    #[param(
        pattern = r"^(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)?$",
        max_length = 253
    )]
    pub domain: Option<String>,
    /// Include revoked rules (default false).
    pub revoked: Option<bool>,
}

/// Approval rules, newest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "senders",
    params(ApprovalsParams),
    responses((status = 200, body = Vec<Approval>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn approvals(
    token: ApiToken,
    State(state): State<AppState>,
    Params(params): Params<ApprovalsParams>,
) -> Result<Json<Vec<Approval>>, ApiError> {
    let domain = match params.domain.as_deref().filter(|d| !d.is_empty()) {
        Some(domain) if is_path_domain(domain) && domain.len() <= 253 => {
            Some(domain.to_ascii_lowercase())
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "domain: {other:?} is not a domain name"
            )))
        }
        None => None,
    };
    Ok(Json(
        approvals::list(
            state.store.db(),
            &token.scope,
            domain.as_deref(),
            params.revoked.unwrap_or(false),
        )
        .await?,
    ))
}

/// What a rule matches: an object with exactly one of `name`, `ip`,
/// `cidr`, `asn` or `ptr`. Its schema and its reading are written here,
/// side by side, so that the document allows exactly what is accepted (a
/// derived untagged enum lets other keys through in the document).
#[derive(Debug)]
pub enum Matcher {
    Name(String),
    Ip(String),
    Cidr(String),
    Asn(u32),
    Ptr(String),
}

const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]+$";
const IP_PATTERN: &str = r"^(?:(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))$";
const CIDR_PATTERN: &str = r"^(?:(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])|(?:([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$";
const DOMAIN_PATTERN: &str =
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

impl utoipa::PartialSchema for Matcher {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let text = |pattern: &str, max: Option<usize>| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .min_length(Some(1))
                .max_length(max)
        };
        let one = |key: &str, description: &str, value: ObjectBuilder| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(key, value)
                .required(key)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .description(Some(description))
        };
        OneOfBuilder::new()
            .item(one(
                "name",
                "A sender name as the Senders list shows it, ignoring case.",
                text(NAME_PATTERN, Some(200)),
            ))
            .item(one("ip", "One IP address.", text(IP_PATTERN, None)))
            .item(one(
                "cidr",
                "A CIDR block (host bits are cleared).",
                text(CIDR_PATTERN, None),
            ))
            .item(one(
                "asn",
                "An AS number.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            ))
            .item(one(
                "ptr",
                "The base domain of the PTR name.",
                text(DOMAIN_PATTERN, Some(253)),
            ))
            .description(Some(
                "What the rule matches: exactly one of name, ip, cidr, asn, ptr.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Matcher {}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut entries = object.into_iter();
        let (Some((key, value)), None) = (entries.next(), entries.next()) else {
            return Err(D::Error::custom(
                "match: give exactly one of name, ip, cidr, asn, ptr",
            ));
        };
        let text = || {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| D::Error::custom(format!("match.{key}: a string")))
        };
        Ok(match key.as_str() {
            "name" => Matcher::Name(text()?),
            "ip" => Matcher::Ip(text()?),
            "cidr" => Matcher::Cidr(text()?),
            "ptr" => Matcher::Ptr(text()?),
            // A JSON integer may be written 64500.0.
            "asn" => Matcher::Asn(
                value
                    .as_f64()
                    .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        D::Error::custom("match.asn: a whole number from 0 to 4294967295")
                    })?,
            ),
            other => {
                return Err(D::Error::custom(format!(
                    "match: {other:?} is not one of name, ip, cidr, asn, ptr"
                )))
            }
        })
    }
}

/// A rule to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The policy domain it applies to; left out or null: every domain.
    #[schema(
        pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
        max_length = 253
    )]
    #[serde(default)]
    pub domain: Option<String>,
    pub action: Action,
    #[serde(rename = "match")]
    #[schema(rename = "match")]
    pub matcher: Matcher,
    /// Why (shown with the rule).
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", max_length = 500)]
    #[serde(default)]
    pub note: Option<String>,
}

/// A JSON request body; anything else is a JSON 400 (or 415 for another
/// media type), as the OpenAPI document says.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|error| ApiError::bad_request(error.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| ApiError::bad_request(format!("request body: {error}")))
    }
}

fn new_approval(request: ApprovalRequest, by: String) -> Result<NewApproval, ApiError> {
    let domain = match request.domain {
        Some(domain) if is_path_domain(&domain) && domain.len() <= 253 => {
            Some(domain.to_ascii_lowercase())
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "domain: {other:?} is not a domain name"
            )))
        }
        None => None,
    };
    let (kind, value) = match request.matcher {
        Matcher::Name(name) => (MatchKind::Name, name),
        Matcher::Ip(ip) => (MatchKind::Ip, ip),
        Matcher::Cidr(cidr) => (MatchKind::Cidr, cidr),
        Matcher::Asn(asn) => (MatchKind::Asn, asn.to_string()),
        Matcher::Ptr(ptr) => (MatchKind::Ptr, ptr),
    };
    if kind == MatchKind::Ptr && !(is_path_domain(&value) && value.len() <= 253) {
        return Err(ApiError::bad_request(format!(
            "match.ptr: {value:?} is not a domain name"
        )));
    }
    let value = kind
        .canonical(&value)
        .map_err(|error| ApiError::bad_request(format!("match.{}: {error}", kind.key())))?;
    let note = request.note.unwrap_or_default();
    if note.chars().count() > 500 || note.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "note: at most 500 characters, no control characters",
        ));
    }
    Ok(NewApproval {
        domain,
        action: request.action,
        match_kind: kind,
        value,
        note: note.trim().to_string(),
        created_by: by,
    })
}

/// Adds an approval rule; the classes use it at once.
#[utoipa::path(post, path = "/api/v1/approvals", tag = "senders",
    request_body = ApprovalRequest,
    responses((status = 201, body = Approval), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn add_approval(
    token: ApiToken,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ApprovalRequest>,
) -> Result<Response, ApiError> {
    let actor = token.actor();
    let new = new_approval(request, token.by)?;
    let stored = add_approval_by(&state, &actor, &token.scope, &new).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// Adds a checked approval rule and records it.
pub(crate) async fn add_approval_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    new: &NewApproval,
) -> Result<Approval, ApiError> {
    may_approve(scope, new.domain.as_deref())?;
    let stored = approvals::add(state.store.db(), new).await?;
    let change = Change::of(AuditAction::ApprovalAdd, approval_target(&stored)).to(&stored);
    audit::record(&state.store, actor, change).await?;
    Ok(stored)
}

/// Revokes active approval rule `id` and records it; `None` when there is
/// no active rule of that id.
pub(crate) async fn revoke_approval_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    id: i64,
) -> Result<Option<Approval>, ApiError> {
    let db = state.store.db();
    let Some(old) = approvals::get(db, scope, id).await? else {
        return Ok(None);
    };
    may_approve(scope, old.domain.as_deref())?;
    let Some(revoked) = approvals::revoke(db, id, &actor.name).await? else {
        return Ok(None);
    };
    let change = Change::of(AuditAction::ApprovalRevoke, approval_target(&revoked))
        .from(&old)
        .to(&revoked);
    audit::record(&state.store, actor, change).await?;
    Ok(Some(revoked))
}

/// Analysts approve sources of their domains; rules for every domain are
/// for those who see every domain (the same rule as alert rules').
fn may_approve(scope: &Scope, domain: Option<&str>) -> Result<(), ApiError> {
    super::alerts::require_role(scope, domain)
}

/// "approval 7 (example.com)", as the audit log names a rule.
fn approval_target(rule: &Approval) -> String {
    format!(
        "approval {} ({})",
        rule.id,
        rule.domain.as_deref().unwrap_or("every domain")
    )
}

/// One active approval rule (revoked rules are listed with `revoked=true`).
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "senders",
    params(("id" = i64, Path, description = "Approval rule id")),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn approval(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Approval>, ApiError> {
    approvals::get(state.store.db(), &token.scope, id)
        .await?
        .filter(|rule| rule.revoked_at.is_none())
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no active approval rule {id} (GET /api/v1/approvals?revoked=true lists revoked ones)"
            ))
        })
}

/// Revokes an approval rule (kept, with who revoked it and when); the
/// classes stop using it at once.
#[utoipa::path(delete, path = "/api/v1/approvals/{id}", tag = "senders",
    params(("id" = i64, Path, description = "Approval rule id")),
    responses((status = 200, body = Approval), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn revoke_approval(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Approval>, ApiError> {
    revoke_approval_by(&state, &token.actor(), &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no active approval rule {id}")))
}
