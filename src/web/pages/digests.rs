//! The Digests page (under Alerts): the schedules, which admins add,
//! change, delete and send now here (the API's checks), and a preview of
//! a schedule's digest as its mail's HTML.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::audit::Actor;
use crate::digests::{Digest, Frequency, Schedule};
use crate::store::digests;
use crate::web::digests::{
    add_by, delete_by, digest_schedule, new_schedule, update_by, ScheduleRequest,
};
use crate::web::{Address, AppState};

#[derive(Template)]
#[template(path = "digests.html")]
struct DigestsPage {
    layout: Layout,
    is_admin: bool,
    csrf: String,
    schedules: Vec<Schedule>,
    /// The schedule the form changes; none: the form adds one.
    editing: Option<Schedule>,
    frequencies: Vec<(&'static str, &'static str)>,
    weekdays: [&'static str; 7],
    notice: Option<String>,
}

impl DigestsPage {
    fn domains_text(&self, schedule: &Schedule) -> String {
        if schedule.domains.is_empty() {
            "every domain".to_string()
        } else {
            schedule.domains.join(", ")
        }
    }

    fn when(&self, schedule: &Schedule) -> String {
        let day = match schedule.frequency {
            Frequency::Daily => "every day".to_string(),
            Frequency::Weekly => {
                format!("every {}", schedule.weekday.as_deref().unwrap_or("monday"))
            }
            Frequency::Monthly => "on the 1st".to_string(),
        };
        format!("{day} at {:02}:00 {}", schedule.hour, schedule.time_zone)
    }

    fn editing_is(&self, field: &str, value: &str) -> bool {
        let Some(editing) = &self.editing else {
            return match field {
                "frequency" => value == "weekly",
                "weekday" => value == "monday",
                _ => false,
            };
        };
        match field {
            "frequency" => editing.frequency.key() == value,
            "weekday" => editing.weekday.as_deref().unwrap_or("monday") == value,
            _ => false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DigestsParams {
    edit: Option<i64>,
    sent: Option<i64>,
}

pub(super) async fn digests_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(params): Query<DigestsParams>,
) -> Result<Response, PageError> {
    let now = chrono::Utc::now();
    let schedules: Vec<Schedule> = digests::schedules_for(state.store.db(), &user.scope)
        .await?
        .into_iter()
        .map(|schedule| schedule.at(now))
        .collect();
    let editing = params
        .edit
        .and_then(|id| schedules.iter().find(|s| s.id == id).cloned());
    render(DigestsPage {
        layout: Layout::new(&state, Some(user.clone()), "/alerts"),
        is_admin: user.scope.may_somewhere(crate::scope::GroupRole::Analyst),
        csrf: user.csrf_token.clone(),
        schedules,
        editing,
        frequencies: Frequency::ALL
            .iter()
            .map(|f| (f.key(), f.label()))
            .collect(),
        weekdays: [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ],
        notice: params.sent.map(|id| {
            format!("Digest queued (outbox id {id}); the outbox sends it within seconds.")
        }),
    })
}

fn bad(message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, message)
}

#[derive(Deserialize)]
pub(super) struct ScheduleForm {
    csrf: String,
    /// Set when changing a schedule.
    #[serde(default)]
    id: Option<String>,
    name: String,
    recipients: String,
    #[serde(default)]
    domains: String,
    frequency: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    hour: String,
    #[serde(default)]
    weekday: String,
    #[serde(default)]
    enabled: Option<String>,
}

/// Items separated by commas, spaces or new lines.
fn items(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) async fn save(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<ScheduleForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let frequency = Frequency::parse(&form.frequency)
        .ok_or_else(|| bad(format!("{:?} is not a frequency", form.frequency)))?;
    let hour = match form.hour.trim() {
        "" => None,
        text => Some(
            text.parse::<i64>()
                .map_err(|_| bad(format!("hour: {text:?} is not a whole number")))?,
        ),
    };
    let request = ScheduleRequest {
        name: form.name,
        recipients: items(&form.recipients),
        domains: Some(items(&form.domains)),
        frequency,
        time_zone: Some(form.time_zone.trim().to_string()).filter(|zone| !zone.is_empty()),
        hour,
        weekday: Some(form.weekday.trim().to_string()).filter(|day| !day.is_empty()),
        enabled: Some(form.enabled.is_some()),
    };
    let new = new_schedule(request).map_err(bad)?;
    let actor = Actor::new(&user.username, address);
    match form
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        Some(id) => {
            let id: i64 = id
                .parse()
                .map_err(|_| bad(format!("id: {id:?} is not a whole number")))?;
            update_by(&state, &actor, &user.scope, id, &new)
                .await?
                .ok_or_else(|| {
                    PageError::new(StatusCode::NOT_FOUND, format!("no digest schedule {id}"))
                })?;
        }
        None => {
            add_by(&state, &actor, &user.scope, &new).await?;
        }
    }
    Ok(Redirect::to("/alerts/digests").into_response())
}

#[derive(Deserialize)]
pub(super) struct IdForm {
    csrf: String,
    id: i64,
    /// `delete` or `send`.
    action: String,
}

pub(super) async fn change(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<IdForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let db = state.store.db();
    let missing = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("no digest schedule {}", form.id),
        )
    };
    let target = match form.action.as_str() {
        "delete" => {
            if !delete_by(
                &state,
                &Actor::new(&user.username, address),
                &user.scope,
                form.id,
            )
            .await?
            {
                return Err(missing());
            }
            "/alerts/digests".to_string()
        }
        "send" => {
            let schedule = digests::schedule_for(db, &user.scope, form.id)
                .await?
                .ok_or_else(missing)?;
            crate::web::digests::require_role(&user.scope, &schedule.domains)?;
            let id = digest_schedule(&state)
                .send_now(&schedule)
                .await?
                .ok_or_else(|| bad("the schedule's time zone is unknown".to_string()))?;
            format!("/alerts/digests?sent={id}")
        }
        other => return Err(bad(format!("{other:?} is not something this page does"))),
    };
    Ok(Redirect::to(&target).into_response())
}

#[derive(Template)]
#[template(path = "digest_preview.html")]
struct PreviewPage {
    layout: Layout,
    schedule: Schedule,
    digest: Digest,
}

pub(super) async fn preview(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let missing = || PageError::new(StatusCode::NOT_FOUND, format!("no digest schedule {id}"));
    let Ok(number) = id.parse::<i64>() else {
        return Err(missing());
    };
    let schedule = digests::schedule_for(state.store.db(), &user.scope, number)
        .await?
        .ok_or_else(missing)?;
    let digest = digest_schedule(&state)
        .preview(&schedule)
        .await?
        .ok_or_else(|| bad("the schedule's time zone is unknown".to_string()))?;
    render(PreviewPage {
        layout: Layout::new(&state, Some(user), "/alerts"),
        schedule,
        digest,
    })
}
