//! Digest schedules over the API: list, add, read, change, delete, send
//! one now and preview its HTML. The page (`pages/digests.rs`) checks its
//! forms with the same function.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::alerts::{is_address, whole_number, Deleted, Queued, ADDRESS, NAME_PATTERN};
use super::api::{ApiToken, Id};
use super::error::ErrorBody;
use super::senders::JsonBody;
use super::{ApiError, AppState};
use crate::audit::{self, Action, Actor, Change};
use crate::digests::period::{parse_weekday, weekday_key};
use crate::digests::{DigestSchedule, Frequency, Schedule};
use crate::scope::Scope;
use crate::store::digests::{self, NewSchedule};

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/digest-schedules", get(list).post(add))
        .route(
            "/digest-schedules/{id}",
            get(read).put(change).delete(remove),
        )
        .route("/digest-schedules/{id}/send", post(send_now))
        .route("/digest-schedules/{id}/preview", get(preview))
}

const DOMAIN_PATTERN: &str =
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A schedule to add, or what to change one to. Its schema is written by
/// hand beside the checks in `new_schedule`, so that the document allows
/// exactly what is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub name: String,
    pub recipients: Vec<String>,
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    pub frequency: Frequency,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "whole_number")]
    pub hour: Option<i64>,
    #[serde(default)]
    pub weekday: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl utoipa::PartialSchema for ScheduleRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, SchemaType, Type,
        };
        let nullable = |kind: Type| SchemaType::from_iter([kind, Type::Null]);
        let zones: Vec<serde_json::Value> = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|zone| serde_json::json!(zone.name()))
            .chain([serde_json::Value::Null])
            .collect();
        let weekdays: Vec<serde_json::Value> = WEEKDAYS
            .iter()
            .map(|day| serde_json::json!(day))
            .chain([serde_json::Value::Null])
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "name",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NAME_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(100)),
            )
            .property(
                "recipients",
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(format!("^{ADDRESS}$"))),
                    )
                    .min_items(Some(1))
                    .max_items(Some(10))
                    .description(Some("Email addresses (1 to 10).")),
            )
            .property(
                "domains",
                ArrayBuilder::new()
                    .schema_type(nullable(Type::Array))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(DOMAIN_PATTERN))
                            .max_length(Some(253)),
                    )
                    .max_items(Some(100))
                    .description(Some(
                        "The domains to report on; empty or absent: every domain.",
                    )),
            )
            .property(
                "frequency",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["daily", "weekly", "monthly"])),
            )
            .property(
                "time_zone",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .enum_values(Some(zones))
                    .description(Some("An IANA time zone (default UTC).")),
            )
            .property(
                "hour",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Integer))
                    .minimum(Some(0))
                    .maximum(Some(23))
                    .description(Some("The local hour it is sent at (default 8).")),
            )
            .property(
                "weekday",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .enum_values(Some(weekdays))
                    .description(Some("Weekly: the day it is sent (default monday).")),
            )
            .property(
                "enabled",
                ObjectBuilder::new().schema_type(nullable(Type::Boolean)),
            )
            .required("name")
            .required("recipients")
            .required("frequency")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "A digest schedule: who, which domains, how often, at what local hour.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ScheduleRequest {}

/// Checks a schedule request.
pub(crate) fn new_schedule(request: ScheduleRequest) -> Result<NewSchedule, String> {
    let name = request.name;
    let control = |c: char| (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32));
    if !(1..=100).contains(&name.chars().count()) || name.chars().any(control) {
        return Err("name: 1 to 100 characters, no control characters".to_string());
    }
    if !(1..=10).contains(&request.recipients.len()) {
        return Err("recipients: 1 to 10 email addresses".to_string());
    }
    if let Some(bad) = request.recipients.iter().find(|a| !is_address(a)) {
        return Err(format!(
            "recipients: {bad:?} is not an email address (name@example.com)"
        ));
    }
    let domains = request.domains.unwrap_or_default();
    if domains.len() > 100 {
        return Err("domains: at most 100".to_string());
    }
    let mut checked = Vec::with_capacity(domains.len());
    for domain in domains {
        if domain.len() > 253 || !super::posture::is_path_domain(&domain) {
            return Err(format!("domains: {domain:?} is not a domain name"));
        }
        let domain = domain.to_ascii_lowercase();
        if !checked.contains(&domain) {
            checked.push(domain);
        }
    }
    let time_zone = request.time_zone.unwrap_or_else(|| "UTC".to_string());
    if time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!(
            "time_zone: {time_zone:?} is not an IANA time zone (Europe/Berlin, UTC)"
        ));
    }
    let hour = request.hour.unwrap_or(8);
    if !(0..=23).contains(&hour) {
        return Err("hour: from 0 to 23".to_string());
    }
    let weekday = match request.weekday.as_deref() {
        None => None,
        Some(day) if WEEKDAYS.contains(&day) => parse_weekday(day),
        Some(other) => return Err(format!("weekday: {other:?} is not monday … sunday")),
    };
    Ok(NewSchedule {
        name,
        recipients: request.recipients,
        domains: checked,
        frequency: request.frequency,
        time_zone,
        hour: hour as i32,
        weekday: (request.frequency == Frequency::Weekly)
            .then(|| weekday_key(weekday.unwrap_or(chrono::Weekday::Mon)).to_string()),
        enabled: request.enabled.unwrap_or(true),
    })
}

fn missing(id: i64) -> ApiError {
    ApiError::not_found(format!("no digest schedule {id}"))
}

/// Digest schedules, in the order they were added.
#[utoipa::path(get, path = "/api/v1/digest-schedules", tag = "digests",
    responses((status = 200, body = Vec<Schedule>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn list(
    token: ApiToken,
    State(state): State<AppState>,
) -> Result<Json<Vec<Schedule>>, ApiError> {
    let now = Utc::now();
    Ok(Json(
        digests::schedules_for(state.store.db(), &token.scope)
            .await?
            .into_iter()
            .map(|schedule| schedule.at(now))
            .collect(),
    ))
}

/// Adds a digest schedule; its first digest goes out at its next send time.
#[utoipa::path(post, path = "/api/v1/digest-schedules", tag = "digests",
    request_body = ScheduleRequest,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn add(
    token: ApiToken,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> Result<Response, ApiError> {
    let new = new_schedule(request).map_err(ApiError::bad_request)?;
    let stored = add_by(&state, &token.actor(), &token.scope, &new).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// Adds a checked schedule and records it.
/// Analysts make digests of their domains; a digest of every domain is
/// for those who see every domain.
pub(crate) fn require_role(scope: &Scope, domains: &[String]) -> Result<(), ApiError> {
    let analyst = |domain: &String| scope.may(domain, crate::scope::GroupRole::Analyst);
    if scope.is_all() || (!domains.is_empty() && domains.iter().all(analyst)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "a digest names domains of groups where you are an analyst or owner (only admins make one of every domain)",
    ))
}

pub(crate) async fn add_by(
    state: &AppState,
    actor: &Actor,
    scope: &Scope,
    new: &NewSchedule,
) -> Result<Schedule, ApiError> {
    require_role(scope, &new.domains)?;
    let now = Utc::now();
    let stored = digests::add(state.store.db(), new, &actor.name, now)
        .await?
        .at(now);
    let change =
        Change::of(Action::DigestAdd, format!("digest schedule {}", stored.id)).to(&stored);
    audit::record(&state.store, actor, change).await?;
    Ok(stored)
}

/// Changes schedule `id` and records it; `None` when there is none.
pub(crate) async fn update_by(
    state: &AppState,
    actor: &Actor,
    scope: &Scope,
    id: i64,
    new: &NewSchedule,
) -> Result<Option<Schedule>, ApiError> {
    let now = Utc::now();
    let db = state.store.db();
    let Some(old) = digests::schedule_for(db, scope, id).await? else {
        return Ok(None);
    };
    require_role(scope, &old.domains)?;
    require_role(scope, &new.domains)?;
    let Some(stored) = digests::update(db, id, new, now).await? else {
        return Ok(None);
    };
    let stored = stored.at(now);
    let change = Change::of(Action::DigestChange, format!("digest schedule {id}"))
        .from(&old)
        .to(&stored);
    audit::record(&state.store, actor, change).await?;
    Ok(Some(stored))
}

/// Deletes schedule `id` and records it; false when there is none.
pub(crate) async fn delete_by(
    state: &AppState,
    actor: &Actor,
    scope: &Scope,
    id: i64,
) -> Result<bool, ApiError> {
    let db = state.store.db();
    let Some(old) = digests::schedule_for(db, scope, id).await? else {
        return Ok(false);
    };
    require_role(scope, &old.domains)?;
    if !digests::delete(db, id).await? {
        return Ok(false);
    }
    let change = Change::of(Action::DigestDelete, format!("digest schedule {id}")).from(&old);
    audit::record(&state.store, actor, change).await?;
    Ok(true)
}

/// One digest schedule.
#[utoipa::path(get, path = "/api/v1/digest-schedules/{id}", tag = "digests",
    params(("id" = i64, Path, description = "Digest schedule id")),
    responses((status = 200, body = Schedule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn read(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Schedule>, ApiError> {
    digests::schedule_for(state.store.db(), &token.scope, id)
        .await?
        .map(|schedule| Json(schedule.at(Utc::now())))
        .ok_or_else(|| missing(id))
}

/// Changes a digest schedule (all its settings; what was sent stays).
/// It starts over: a send time before the change is not caught up.
#[utoipa::path(put, path = "/api/v1/digest-schedules/{id}", tag = "digests",
    params(("id" = i64, Path, description = "Digest schedule id")),
    request_body = ScheduleRequest,
    responses((status = 200, body = Schedule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn change(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
    JsonBody(request): JsonBody<ScheduleRequest>,
) -> Result<Json<Schedule>, ApiError> {
    let new = new_schedule(request).map_err(ApiError::bad_request)?;
    update_by(&state, &token.actor(), &token.scope, id, &new)
        .await?
        .map(Json)
        .ok_or_else(|| missing(id))
}

/// Deletes a digest schedule.
#[utoipa::path(delete, path = "/api/v1/digest-schedules/{id}", tag = "digests",
    params(("id" = i64, Path, description = "Digest schedule id")),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn remove(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Deleted>, ApiError> {
    if delete_by(&state, &token.actor(), &token.scope, id).await? {
        Ok(Json(Deleted { deleted: id }))
    } else {
        Err(missing(id))
    }
}

pub(crate) fn digest_schedule(state: &AppState) -> DigestSchedule {
    DigestSchedule::new(state.store.clone(), &state.digests, &state.senders)
}

/// Queues the schedule's digest of its newest period now, besides the
/// scheduled ones (it does not count as sent for the period).
#[utoipa::path(post, path = "/api/v1/digest-schedules/{id}/send", tag = "digests",
    params(("id" = i64, Path, description = "Digest schedule id")),
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn send_now(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let schedule = digests::schedule_for(state.store.db(), &token.scope, id)
        .await?
        .ok_or_else(|| missing(id))?;
    require_role(&token.scope, &schedule.domains)?;
    let outbox_id = digest_schedule(&state)
        .send_now(&schedule)
        .await?
        .ok_or_else(|| ApiError::bad_request("the schedule's time zone is unknown"))?;
    Ok((StatusCode::ACCEPTED, Json(Queued { outbox_id })).into_response())
}

/// The schedule's digest of its newest period, as the mail's HTML.
#[utoipa::path(get, path = "/api/v1/digest-schedules/{id}/preview", tag = "digests",
    params(("id" = i64, Path, description = "Digest schedule id")),
    responses((status = 200, body = String, content_type = "text/html"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn preview(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let schedule = digests::schedule_for(state.store.db(), &token.scope, id)
        .await?
        .ok_or_else(|| missing(id))?;
    let digest = digest_schedule(&state)
        .preview(&schedule)
        .await?
        .ok_or_else(|| ApiError::bad_request("the schedule's time zone is unknown"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        digest.html(),
    )
        .into_response())
}
