//! The audit log over the API (`GET /api/v1/audit`, JSON pages or every
//! entry as CSV), for admins only. The Audit page (`pages/audit.rs`) reads
//! the same parameters through `AuditParams::filter`. There is no route
//! that changes or deletes an entry.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{ApiToken, FormatParams, Params};
use super::csv::csv_response;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::audit::Action;
use crate::query::filter::parse_time;
use crate::query::RowStream;
use crate::store::audit::{self, AuditFilter, EntryRow};

/// Entries per page unless `limit` says otherwise.
pub const PAGE: i64 = 100;

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new().route("/audit", get(list))
}

/// Which entries, as a query string gives them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Exactly this actor: a user name, `token:NAME` or `cli:USER`.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,200}$")]
    pub actor: Option<String>,
    /// One action (`approval.add`), or a group of them ending in a dot
    /// (`approval.`).
    #[param(value_type = Option<ActionKey>)]
    pub action: Option<String>,
    /// Targets containing this text (a domain, `alert rule 3`, `token:NAME`).
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{0,200}$")]
    pub target: Option<String>,
    /// Entries on or after this day (`YYYY-MM-DD`, UTC) or RFC 3339 instant.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub since: Option<String>,
    /// Entries before the end of this day, or before an RFC 3339 instant.
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    pub until: Option<String>,
    /// Entries older than this id (the `next_before` of the page before).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 9223372036854775807_i64)]
    pub before: Option<String>,
    /// Entries per page (1–1000, default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// The `action` parameter's values in the API document: every action's
/// key and every group, taken from `Action` so the two never differ.
pub struct ActionKey;

impl utoipa::PartialSchema for ActionKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        // Empty: every action (the Audit page's form sends its empty field).
        let mut keys: Vec<&str> = vec![""];
        keys.extend(Action::groups());
        keys.extend(Action::ALL.iter().map(|action| action.key()));
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(keys))
            .description(Some(
                "An action (`approval.add`), every action of a group (`approval.`), or empty for every action.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ActionKey {}

fn given(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

impl AuditParams {
    /// The checked filter and page size; errors name the parameter.
    pub fn filter(&self) -> Result<(AuditFilter, i64), ApiError> {
        let text = |name: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
            match given(value) {
                Some(text) if text.chars().count() > 200 || text.chars().any(char::is_control) => {
                    Err(ApiError::bad_request(format!(
                        "{name}: at most 200 characters, no control characters"
                    )))
                }
                other => Ok(other.map(str::to_string)),
            }
        };
        let action = given(&self.action).map(str::to_string);
        if let Some(key) = &action {
            let group = key.ends_with('.') && Action::groups().contains(&key.as_str());
            if !group && Action::parse(key).is_none() {
                return Err(ApiError::bad_request(format!(
                    "action: {key:?} is no action nor group of actions (such as approval.add or approval.)"
                )));
            }
        }
        let number =
            |name: &str, value: &Option<String>, range: std::ops::RangeInclusive<i64>| match value
                .as_deref()
                .map(str::trim)
            {
                None => Ok(None),
                Some(text) => match text.parse::<i64>() {
                    Ok(number) if range.contains(&number) => Ok(Some(number)),
                    _ => Err(ApiError::bad_request(format!(
                        "{name}: {text:?} is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))),
                },
            };
        let filter = AuditFilter {
            actor: text("actor", &self.actor)?,
            action,
            target: text("target", &self.target)?,
            since: given(&self.since)
                .map(|value| parse_time("since", value, false))
                .transpose()?,
            until: given(&self.until)
                .map(|value| parse_time("until", value, true))
                .transpose()?,
            before_id: number("before", &self.before, 1..=i64::MAX)?,
        };
        let limit = number("limit", &self.limit, 1..=1000)?.unwrap_or(PAGE);
        Ok((filter, limit))
    }
}

/// One page of entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<EntryRow>,
    /// Pass as `before` for the next (older) page; null on the last.
    pub next_before: Option<i64>,
}

/// One page of `filter`'s entries and the id to continue before.
pub async fn page(
    state: &AppState,
    filter: &AuditFilter,
    limit: i64,
) -> Result<AuditList, ApiError> {
    // One more than asked says whether there is a next page.
    let mut entries = audit::list(state.store.db(), filter, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_before = more.then(|| entries.last().map(|entry| entry.id)).flatten();
    Ok(AuditList {
        entries,
        next_before,
    })
}

/// The audit log: who changed what (users, roles, tokens, domains,
/// approvals, alert rules and channels, digests, hosted policies,
/// reprocessing) and every sign-in, failed sign-in and sign-out, with the
/// value before and after as JSON text. Admins only (a session of an
/// admin, an operator's token, or an admin's own token).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditParams, FormatParams),
    responses((status = 200, description = "One page as JSON, or every matching entry as CSV with format=csv",
            content((AuditList = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not an admin's token or session")),
    security(("token" = [])))]
pub(super) async fn list(
    token: ApiToken,
    State(state): State<AppState>,
    Params(params): Params<AuditParams>,
    Params(format): Params<FormatParams>,
) -> Result<Response, ApiError> {
    token.require_admin()?;
    let (filter, limit) = params.filter()?;
    if format.csv()? {
        let db = state.store.db();
        let rows: RowStream<EntryRow> =
            RowStream::new::<EntryRow>(db, audit::select(db, &filter, None));
        return Ok(csv_response("audit.csv", rows));
    }
    Ok(Json(page(&state, &filter, limit).await?).into_response())
}
