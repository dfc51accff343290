//! The Groups page: the groups the user belongs to (admins: every group)
//! with their domains; owners manage members, admins make groups and move
//! domains between them. `crate::groups` decides and records each change.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::audit::Actor;
use crate::groups::{self, GroupError, GroupInfo};
use crate::scope::GroupRole;
use crate::web::api::Params;
use crate::web::{Address, AppState};

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    layout: Layout,
    error: Option<String>,
    is_admin: bool,
    csrf: String,
    groups: Vec<GroupInfo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GroupsParams {
    error: Option<String>,
}

pub(super) async fn groups_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(params): Params<GroupsParams>,
) -> Result<Response, PageError> {
    let groups = groups::list(&state.store, &user.scope).await?;
    render(GroupsPage {
        layout: Layout::new(&state, Some(user.clone()), "/groups"),
        error: params.error.filter(|e| !e.is_empty()),
        is_admin: user.scope.is_all(),
        csrf: user.csrf_token,
        groups,
    })
}

#[derive(Deserialize)]
pub(super) struct GroupForm {
    csrf: String,
    /// `add`, `remove`, `domain`, `member` or `leave`.
    action: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn change(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<GroupForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let actor = Actor::new(&user.username, address);
    let (store, scope) = (&state.store, &user.scope);
    let done = match form.action.as_str() {
        "add" => groups::create(store, &actor, scope, &form.group)
            .await
            .map(|_| ()),
        "remove" => groups::remove(store, &actor, scope, &form.group).await,
        "domain" => groups::assign_domain(store, &actor, scope, &form.group, &form.domain).await,
        "member" => match GroupRole::parse(&form.role) {
            Some(role) => {
                groups::set_member(store, &actor, scope, &form.group, &form.user, role).await
            }
            None => Err(GroupError::Invalid(format!(
                "{:?} is not owner, analyst or viewer",
                form.role
            ))),
        },
        "leave" => groups::remove_member(store, &actor, scope, &form.group, &form.user).await,
        other => Err(GroupError::Invalid(format!(
            "{other:?} is not something this page does"
        ))),
    };
    let target = match done {
        Ok(()) => "/groups".to_string(),
        // A refusal the user can act on is shown on the page; the rest
        // (a database failure) is an error page.
        Err(GroupError::Store(error)) => return Err(error.into()),
        Err(refused) => format!(
            "/groups?{}",
            serde_urlencoded::to_string([("error", refused.to_string())]).unwrap_or_default()
        ),
    };
    Ok(Redirect::to(&target).into_response())
}
