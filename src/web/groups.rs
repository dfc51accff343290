//! `/api/v1/groups`: domain groups (tenants) over the API, as the CLI's
//! `dmarcd group` and the Groups page manage them (`crate::groups` decides
//! who may do what and records it).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::ApiToken;
use super::error::ErrorBody;
use super::posture::is_path_domain;
use super::senders::JsonBody;
use super::{ApiError, AppState};
use crate::groups::{self, GroupError, GroupInfo};
use crate::scope::GroupRole;

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/groups", get(list).post(add))
        .route("/groups/{group}", axum::routing::delete(remove))
        .route("/groups/{group}/domains/{domain}", put(assign_domain))
        .route(
            "/groups/{group}/members/{user}",
            put(set_member).delete(remove_member),
        )
}

impl From<GroupError> for ApiError {
    fn from(error: GroupError) -> Self {
        match error {
            GroupError::Invalid(message) => ApiError::bad_request(message),
            GroupError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            GroupError::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, message),
            GroupError::NotFound(message) => ApiError::not_found(message),
            GroupError::Store(error) => error.into(),
        }
    }
}

/// Group names (`crate::groups`) and, with `@` too, user names.
/// (The first character is no dot or dash: `.` and `..` are no path.)
fn is_name(text: &str, more: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || more.contains(c))
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c) || more.contains(c))
}

/// The path's group name, user name and domain, each checked against the
/// pattern the document gives it.
pub(super) struct GroupPath {
    group: String,
    user: Option<String>,
    domain: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(values) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|error| ApiError::bad_request(error.body_text()))?;
        let group = values.get("group").cloned().unwrap_or_default();
        if !is_name(&group, "") {
            return Err(ApiError::bad_request(format!(
                "group: {group:?} is not a group name (1–64 letters, digits, '.', '_', '-', beginning with a letter or digit)"
            )));
        }
        let user = values.get("user").cloned();
        if let Some(user) = user.as_deref().filter(|user| !is_name(user, "@")) {
            return Err(ApiError::bad_request(format!(
                "user: {user:?} is not a user name"
            )));
        }
        let domain = values.get("domain").cloned();
        if let Some(domain) = domain.as_deref().filter(|d| !is_path_domain(d)) {
            return Err(ApiError::bad_request(format!(
                "domain: {domain:?} is not a domain name"
            )));
        }
        Ok(GroupPath {
            group,
            user,
            domain: domain.map(|d| d.to_ascii_lowercase()),
        })
    }
}

/// The groups the caller belongs to (admins: every group), with their
/// domains, and their members where the caller manages them.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = Vec<GroupInfo>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn list(
    token: ApiToken,
    State(state): State<AppState>,
) -> Result<Json<Vec<GroupInfo>>, ApiError> {
    Ok(Json(groups::list(&state.store, &token.scope).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    pub id: i64,
    pub name: String,
}

/// Makes a group (admins).
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups",
    request_body = GroupRequest,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "A group of that name exists"),
        (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn add(
    token: ApiToken,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<GroupRequest>,
) -> Result<Response, ApiError> {
    let id = groups::create(&state.store, &token.actor(), &token.scope, &request.name).await?;
    let created = Created {
        id,
        name: request.name.trim().to_string(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct GroupParam {
    /// A group name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    group: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct MemberParams {
    /// A group name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    group: String,
    /// A user name.
    #[param(pattern = r"^[A-Za-z0-9@][A-Za-z0-9._@-]{0,63}$")]
    user: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct DomainParams {
    /// A group name.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    group: String,
    /// A domain name.
    #[param(
        pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
    )]
    domain: String,
}

/// Removes a group (admins): its domains go back to the default group.
#[utoipa::path(delete, path = "/api/v1/groups/{group}", tag = "groups",
    params(GroupParam),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The default group stays")),
    security(("token" = [])))]
pub(super) async fn remove(
    token: ApiToken,
    State(state): State<AppState>,
    path: GroupPath,
) -> Result<StatusCode, ApiError> {
    groups::remove(&state.store, &token.actor(), &token.scope, &path.group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts a domain in a group (admins; a domain is in one group).
#[utoipa::path(put, path = "/api/v1/groups/{group}/domains/{domain}", tag = "groups",
    params(DomainParams),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn assign_domain(
    token: ApiToken,
    State(state): State<AppState>,
    path: GroupPath,
) -> Result<StatusCode, ApiError> {
    let domain = path.domain.unwrap_or_default();
    groups::assign_domain(
        &state.store,
        &token.actor(),
        &token.scope,
        &path.group,
        &domain,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// `owner` (manages members), `analyst` (approves sources, changes
    /// alert rules and digests, reprocesses) or `viewer` (reads).
    #[schema(value_type = GroupRole)]
    pub role: String,
}

/// Makes a user a member of a group with a role, or changes their role
/// (admins, and the group's owners).
#[utoipa::path(put, path = "/api/v1/groups/{group}/members/{user}", tag = "groups",
    params(MemberParams),
    request_body = MemberRequest,
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn set_member(
    token: ApiToken,
    State(state): State<AppState>,
    path: GroupPath,
    JsonBody(request): JsonBody<MemberRequest>,
) -> Result<StatusCode, ApiError> {
    let role = GroupRole::parse(&request.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role: {:?} is not owner, analyst or viewer",
            request.role
        ))
    })?;
    let user = path.user.unwrap_or_default();
    groups::set_member(
        &state.store,
        &token.actor(),
        &token.scope,
        &path.group,
        &user,
        role,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a user out of a group (admins, and the group's owners).
#[utoipa::path(delete, path = "/api/v1/groups/{group}/members/{user}", tag = "groups",
    params(MemberParams),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn remove_member(
    token: ApiToken,
    State(state): State<AppState>,
    path: GroupPath,
) -> Result<StatusCode, ApiError> {
    let user = path.user.unwrap_or_default();
    groups::remove_member(
        &state.store,
        &token.actor(),
        &token.scope,
        &path.group,
        &user,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
