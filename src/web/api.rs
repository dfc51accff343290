//! `/api/v1`: JSON (and streamed CSV) over the same queries the dashboard
//! uses, behind bearer tokens. The OpenAPI document is generated from these
//! handlers (`/api/v1/openapi.json`).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};

use crate::audit::{self, Action, Change};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use super::csv::csv_response;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::accounts::{TokenAccess, TokenCheck};
use crate::query::domains::{self, DomainRow};
use crate::query::failures::{self, FailureRow};
use crate::query::inbox::{self, InboxRow};
use crate::query::tls::{
    self, TlsFilter, TlsGroupBy, TlsReportDetail, TlsReportRow, TlsSummaryRow,
};
use crate::query::{
    aggregate, Filter, GroupBy, Page, PageParams, RecordRow, ReportRow, SummaryRow, SummarySort,
};
use crate::store::Requeue;

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/openapi.json", get(openapi))
        .route("/domains", get(domains))
        .route("/aggregate/summary", get(summary))
        .route("/aggregate/records", get(records))
        .route("/aggregate/reports", get(reports))
        .route("/aggregate/reports/{id}", get(report))
        .route("/tls/reports", get(tls_reports))
        .route("/tls/reports/{id}", get(tls_report))
        .route("/tls/summary", get(tls_summary))
        .route("/failure/reports", get(failures))
        .route("/failure/reports/{id}", get(failure))
        .route("/inbox/messages", get(inbox))
        .route("/inbox/messages/{id}", get(inbox_message))
        .route("/inbox/messages/{id}/raw", get(inbox_raw))
        .route("/inbox/messages/{id}/reprocess", post(reprocess))
        .merge(super::posture::routes())
        .merge(super::senders::routes())
        .merge(super::alerts::routes())
        .merge(super::digests::routes())
        .merge(super::hosted::routes())
        .merge(super::audit::routes())
        .merge(super::groups::routes())
}

/// A numeric id from the path; anything else is a JSON 400.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|error| ApiError::bad_request(error.body_text()))?;
        text.parse()
            .map(Id)
            .map_err(|_| ApiError::bad_request(format!("id: {text:?} is not a whole number")))
    }
}

/// The token of an `Authorization: Bearer …` header. The scheme is
/// case-insensitive (RFC 9110 section 11.1): `bearer` too.
pub(super) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// A request that carried a valid API token, or, to read, a signed-in
/// dashboard session (the pages' CSV links export what is on screen).
/// A session never authorizes a change through the API: that would bypass
/// the pages' CSRF check.
pub struct ApiToken {
    /// Who is asking, as changes record it: `token:NAME`, or the user
    /// name of a session.
    pub by: String,
    /// May read what only admins see (the audit log).
    pub admin: bool,
    /// Where the request came from (`client::Address`).
    pub address: Option<std::net::IpAddr>,
    /// The domains it sees, and what it may do with them.
    pub scope: crate::scope::Scope,
}

impl ApiToken {
    /// Who is asking, as the audit log records it.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor::new(self.by.clone(), self.address)
    }

    /// Refuses a caller who is not an admin (403).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{} is not an admin's: only admins may read this", self.by),
            ))
        }
    }
}

impl FromRequestParts<AppState> for ApiToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(super::client::Address(address)) =
            super::client::Address::from_request_parts(parts, state).await;
        let Some(token) = bearer_token(&parts.headers) else {
            let reads = matches!(parts.method, Method::GET | Method::HEAD);
            return match super::pages::session_token(&parts.headers) {
                Some(session) if reads => match state.accounts.session(&session).await? {
                    Some(user) => Ok(ApiToken {
                        admin: user.is_admin(),
                        by: user.username,
                        address,
                        scope: user.scope,
                    }),
                    None => Err(ApiError::unauthorized()),
                },
                _ => Err(ApiError::unauthorized()),
            };
        };
        let reads = matches!(parts.method, Method::GET | Method::HEAD);
        match state.accounts.token_check(token).await? {
            TokenCheck::Valid {
                name,
                access,
                admin,
                scope,
            } if reads || access == TokenAccess::Write => Ok(ApiToken {
                by: format!("token:{name}"),
                admin,
                address,
                scope,
            }),
            TokenCheck::Valid { name, .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {name:?} may only read (GET); a change needs a token made with \
                     'dmarcd token create --name NAME --write'"
                ),
            )),
            TokenCheck::Expired { name, access, at } => {
                let write = if access == TokenAccess::Write {
                    " --write"
                } else {
                    ""
                };
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "token {name:?} expired at {at}; create another with \
                         'dmarcd token create --name NAME{write}'"
                    ),
                ))
            }
            TokenCheck::Unknown => Err(ApiError::unauthorized()),
        }
    }
}

/// Query parameters, with errors as JSON that name the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Params)
            .map_err(|error| ApiError::bad_request(format!("query parameters: {error}")))
    }
}

/// `format=json` (default) or `format=csv` (every row, streamed).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FormatParams {
    /// `json` (one page) or `csv` (every matching row, streamed).
    #[param(pattern = "^(json|csv)?$")]
    pub format: Option<String>,
}

impl FormatParams {
    pub(super) fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("") | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "format: {other:?} is not json or csv"
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// What to group by (default `source`).
    #[param(value_type = Option<GroupBy>)]
    pub group_by: Option<String>,
    /// Order of the groups (default `messages`).
    #[param(value_type = Option<SummarySort>)]
    pub sort: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct TlsSummaryParams {
    /// What to group by (default `domain`).
    #[param(value_type = Option<TlsGroupBy>)]
    pub group_by: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// Only messages with this status.
    #[param(pattern = "^(pending|processing|done|failed|duplicate|ignored)?$")]
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct RecordParams {
    /// Only the records of this stored report (its `id`).
    pub report: Option<i64>,
}

macro_rules! list_type {
    ($name:ident, $row:ty) => {
        /// One page of rows, newest or largest first, with the total.
        #[derive(Debug, Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// Rows matching the filter, on all pages.
            pub total: i64,
            pub limit: i64,
            pub offset: i64,
            pub items: Vec<$row>,
        }
    };
}

list_type!(SummaryList, SummaryRow);
list_type!(RecordList, RecordRow);
list_type!(ReportList, ReportRow);
list_type!(TlsReportList, TlsReportRow);
list_type!(TlsSummaryList, TlsSummaryRow);
list_type!(FailureList, FailureRow);
list_type!(InboxList, InboxRow);

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Checked paging. Unlike a dashboard form, which sends its empty fields,
/// an API call that names `limit` or `offset` must give a number: the
/// OpenAPI document says they are integers.
fn page(params: &PageParams) -> Result<Page, ApiError> {
    for (name, value) in [("limit", &params.limit), ("offset", &params.offset)] {
        if value.as_deref().is_some_and(|text| text.trim().is_empty()) {
            return Err(ApiError::bad_request(format!(
                "{name}: empty; give a whole number or leave the parameter out"
            )));
        }
    }
    Ok(params.page(50)?)
}

#[utoipa::path(get, path = "/api/v1/domains", tag = "domains",
    responses((status = 200, body = Vec<DomainRow>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn domains(
    token: ApiToken,
    State(state): State<AppState>,
) -> Result<Json<Vec<DomainRow>>, ApiError> {
    Ok(Json(domains::domains(&state.store, &token.scope).await?))
}

/// Message counts and DMARC pass rates grouped by source, organization,
/// country, AS, domain, day, disposition or header From.
#[utoipa::path(get, path = "/api/v1/aggregate/summary", tag = "aggregate",
    params(Filter, SummaryParams, PageParams, FormatParams),
    responses(
        (status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((SummaryList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn summary(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<Filter>,
    Params(params): Params<SummaryParams>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let filter = filter.parse(&token.scope)?;
    let group_by = GroupBy::parse(nonempty(&params.group_by).unwrap_or("source"))?;
    let sort = SummarySort::parse(nonempty(&params.sort).unwrap_or("messages"))?;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = aggregate::summary_stream(&state.store, &filter, group_by, sort).await?;
        return Ok(csv_response("summary.csv", rows));
    }
    let (items, total) = aggregate::summary(&state.store, &filter, group_by, sort, page).await?;
    Ok(Json(SummaryList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

/// Aggregate records with their sources' country, AS, PTR and name. In
/// JSON, `dkim_results` and `spf_results` are arrays of objects; in CSV
/// they are compact text, one `domain:selector=result` (DKIM) or
/// `domain:scope=result` (SPF) per check, `; ` between checks, `?` for a
/// value the reporter left out (`example.com:s1=pass; example.net=fail`).
#[utoipa::path(get, path = "/api/v1/aggregate/records", tag = "aggregate",
    params(Filter, RecordParams, PageParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((RecordList = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn records(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<Filter>,
    Params(params): Params<RecordParams>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let mut filter = filter.parse(&token.scope)?;
    filter.report = params.report;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = aggregate::records_stream(&state.store, &filter).await?;
        return Ok(csv_response("records.csv", rows));
    }
    let (items, total) = aggregate::records(&state.store, &filter, page).await?;
    Ok(Json(RecordList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

/// Aggregate reports (domain, org and period filters apply).
#[utoipa::path(get, path = "/api/v1/aggregate/reports", tag = "aggregate",
    params(Filter, PageParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((ReportList = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn reports(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<Filter>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let filter = filter.parse(&token.scope)?;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = aggregate::reports_stream(&state.store, &filter).await?;
        return Ok(csv_response("reports.csv", rows));
    }
    let (items, total) = aggregate::reports(&state.store, &filter, page).await?;
    Ok(Json(ReportList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/v1/aggregate/reports/{id}", tag = "aggregate",
    params(("id" = i64, Path, description = "Stored report id")),
    responses((status = 200, body = ReportRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn report(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<ReportRow>, ApiError> {
    aggregate::report(&state.store, &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no aggregate report {id}")))
}

/// TLS reports with their session totals (sums over the policies the
/// filter selects).
#[utoipa::path(get, path = "/api/v1/tls/reports", tag = "tls",
    params(TlsFilter, PageParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((TlsReportList = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn tls_reports(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<TlsFilter>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let filter = filter.parse(&token.scope)?;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = tls::tls_reports_stream(&state.store, &filter).await?;
        return Ok(csv_response("tls-reports.csv", rows));
    }
    let (items, total) = tls::tls_reports(&state.store, &filter, page).await?;
    Ok(Json(TlsReportList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

/// One TLS report whole: its policies, the sessions under each, and each
/// policy's failure details (result type, hosts, `failure-reason-code`,
/// additional information).
#[utoipa::path(get, path = "/api/v1/tls/reports/{id}", tag = "tls",
    params(("id" = i64, Path, description = "Stored TLS report id")),
    responses((status = 200, body = TlsReportDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn tls_report(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<TlsReportDetail>, ApiError> {
    tls::tls_report(&state.store, &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no TLS report {id}")))
}

/// Successful and failed TLS sessions per policy domain, day or org, or
/// failed sessions per result type, sending MTA or receiving MX.
#[utoipa::path(get, path = "/api/v1/tls/summary", tag = "tls",
    params(TlsFilter, TlsSummaryParams, PageParams, FormatParams),
    responses(
        (status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((TlsSummaryList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn tls_summary(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<TlsFilter>,
    Params(params): Params<TlsSummaryParams>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let filter = filter.parse(&token.scope)?;
    let group_by = TlsGroupBy::parse(nonempty(&params.group_by).unwrap_or("domain"))?;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = tls::tls_summary_stream(&state.store, &filter, group_by).await?;
        return Ok(csv_response("tls-summary.csv", rows));
    }
    let (items, total) = tls::tls_summary_page(&state.store, &filter, group_by, page).await?;
    Ok(Json(TlsSummaryList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/v1/failure/reports", tag = "failure",
    params(Filter, PageParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((FailureList = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn failures(
    token: ApiToken,
    State(state): State<AppState>,
    Params(filter): Params<Filter>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let filter = filter.parse(&token.scope)?;
    let page = page(&paging)?;
    if format.csv()? {
        let rows = failures::failures_stream(&state.store, &filter).await?;
        return Ok(csv_response("failure-reports.csv", rows));
    }
    let (items, total) = failures::failures(&state.store, &filter, page).await?;
    Ok(Json(FailureList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/v1/failure/reports/{id}", tag = "failure",
    params(("id" = i64, Path, description = "Stored failure report id")),
    responses((status = 200, body = FailureRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn failure(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<FailureRow>, ApiError> {
    failures::failure(&state.store, &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no failure report {id}")))
}

#[utoipa::path(get, path = "/api/v1/inbox/messages", tag = "inbox",
    params(InboxParams, PageParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every row as CSV with format=csv", content((InboxList = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn inbox(
    token: ApiToken,
    State(state): State<AppState>,
    Params(params): Params<InboxParams>,
    Params(paging): Params<PageParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    let status = params.status.as_deref();
    let page = page(&paging)?;
    if format.csv()? {
        let rows = inbox::inbox_stream(&state.store, &token.scope, status).await?;
        return Ok(csv_response("inbox.csv", rows));
    }
    let (items, total) = inbox::inbox(&state.store, &token.scope, status, page).await?;
    Ok(Json(InboxList {
        total,
        limit: page.limit,
        offset: page.offset,
        items,
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/v1/inbox/messages/{id}", tag = "inbox",
    params(("id" = i64, Path, description = "Inbox message id")),
    responses((status = 200, body = InboxRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn inbox_message(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<InboxRow>, ApiError> {
    inbox::inbox_message(&state.store, &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no inbox message {id}")))
}

/// A message's bytes, for the OpenAPI document: a string of octets (not
/// the array of numbers a `Vec<u8>` would be described as). Only its
/// schema is used.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawMessage(#[allow(dead_code)] Vec<u8>);

/// The message exactly as it was received (an email, or a POSTed body).
#[utoipa::path(get, path = "/api/v1/inbox/messages/{id}/raw", tag = "inbox",
    params(("id" = i64, Path, description = "Inbox message id")),
    responses((status = 200, content_type = "application/octet-stream", body = RawMessage),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "Retention deleted the raw bytes (the message row and its reports stay)", body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn inbox_raw(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let raw = match inbox::message_raw(&state.store, &token.scope, id).await? {
        Some(raw) => raw,
        None => return Err(missing_raw(&state, &token.scope, id).await?),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"message-{id}.eml\""),
            ),
        ],
        Body::from(raw),
    )
        .into_response())
}

/// Why a message has no raw bytes: there is no such message (404), or
/// retention deleted them (410, saying when).
pub(super) async fn missing_raw(
    state: &AppState,
    scope: &crate::scope::Scope,
    id: i64,
) -> Result<ApiError, ApiError> {
    Ok(match inbox::inbox_message(&state.store, scope, id).await? {
        Some(message) => match message.raw_pruned_at {
            Some(at) => ApiError::new(
                StatusCode::GONE,
                format!(
                    "the raw bytes of inbox message {id} were deleted on {} by retention (retention.raw_days, or retention.redact_failure_reports for a failure report); its reports stay",
                    at
                ),
            ),
            None => ApiError::not_found(format!("inbox message {id} has no raw bytes")),
        },
        None => ApiError::not_found(format!("no inbox message {id}")),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Requeued {
    /// Messages put back in the queue (0 or 1).
    pub requeued: u64,
}

/// Runs a stored message through the parser again.
#[utoipa::path(post, path = "/api/v1/inbox/messages/{id}/reprocess", tag = "inbox",
    params(("id" = i64, Path, description = "Inbox message id")),
    responses((status = 202, body = Requeued), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn reprocess(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    if !inbox::may_reprocess(&state.store, &token.scope, id).await? {
        return Err(ApiError::not_found(format!("no inbox message {id}")));
    }
    let requeued = state.store.requeue(&Requeue::Ids(vec![id])).await?;
    if requeued == 0 {
        return Err(ApiError::not_found(format!("no inbox message {id}")));
    }
    let change = Change::of(Action::MessageReprocess, format!("message {id}"));
    audit::record(&state.store, &token.actor(), change).await?;
    Ok((StatusCode::ACCEPTED, Json(Requeued { requeued })).into_response())
}

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Every change may be refused to a read-only token (ApiToken): said
        // once here rather than on each operation.
        let refused = utoipa::openapi::ResponseBuilder::new()
            .description("The token may only read (made without --write)")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("403".to_string())
                    .or_insert_with(|| refused.clone().into());
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dmarcd API", description = "DMARC aggregate, failure and TLS-RPT reports. \
        Every list takes the same filter parameters as the dashboard; add format=csv to stream \
        every matching row as CSV. Create a token with `dmarcd token create --name NAME`."),
    paths(domains, summary, records, reports, report, tls_reports, tls_report, tls_summary, failures, failure,
          inbox, inbox_message, inbox_raw, reprocess,
          super::posture::checks, super::posture::check_now, super::posture::lookup,
          super::senders::senders, super::senders::sender, super::senders::compliance,
          super::senders::readiness, super::senders::approvals, super::senders::add_approval,
          super::senders::approval, super::senders::revoke_approval,
          super::alerts::list_alerts, super::alerts::resolve_alert, super::alerts::list_rules,
          super::alerts::add_rule, super::alerts::delete_rule, super::alerts::change_rule, super::alerts::list_channels,
          super::alerts::add_channel, super::alerts::delete_channel, super::alerts::test_channel,
          super::digests::list, super::digests::add, super::digests::read, super::digests::change,
          super::digests::remove, super::digests::send_now, super::digests::preview,
          super::hosted::read, super::hosted::change, super::hosted::checks, super::hosted::renew,
          super::hosted::read_dmarc, super::hosted::set_dmarc, super::hosted::remove_dmarc,
          super::audit::list,
          super::groups::list, super::groups::add, super::groups::remove,
          super::groups::assign_domain, super::groups::set_member, super::groups::remove_member),
    // Named by the `group_by` and `sort` parameters: the document must define them.
    components(schemas(GroupBy, SummarySort, TlsGroupBy, super::audit::ActionKey)),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}
