//! The Alerts page: what fired (open first, then history), each with a
//! link to the dashboard view that shows its cause; the rules and the
//! channels, which admins add, delete and test here (the same checks as
//! the API).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::alerts::{Alert, Channel, ChannelKind, Rule, RuleKind};
use crate::audit::Actor;
use crate::outbox::WebhookFormat;
use crate::senders::Class;
use crate::store::alerts;
use crate::web::alerts::{
    add_channel_by, add_rule_by, delete_channel_by, delete_rule_by, new_channel, new_rule,
    queue_test, resolve_by, set_rule_enabled, ChannelRequest, RuleRequest,
};
use crate::web::{Address, AppState};

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    is_admin: bool,
    csrf: String,
    alerts: Vec<Alert>,
    rules: Vec<Rule>,
    channels: Vec<Channel>,
    kinds: Vec<(&'static str, &'static str)>,
    notice: Option<String>,
}

impl AlertsPage {
    fn kind_label(&self, kind: &RuleKind) -> &'static str {
        kind.label()
    }

    /// "only suspicious / unknown, misconfigured" for a rule that watches
    /// some classes; empty otherwise.
    fn classes_note(&self, rule: &Rule) -> String {
        if rule.classes.is_empty() {
            return String::new();
        }
        let labels: Vec<&str> = rule.classes.iter().map(|class| class.label()).collect();
        format!("only {}", labels.join(", ").to_lowercase())
    }

    fn channel_names(&self, rule: &Rule) -> String {
        if rule.channels.is_empty() {
            return "every channel".to_string();
        }
        rule.channels
            .iter()
            .map(|id| {
                self.channels
                    .iter()
                    .find(|channel| channel.id == *id)
                    .map_or_else(|| format!("#{id} (deleted)"), |c| c.name.clone())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AlertsParams {
    tested: Option<i64>,
}

pub(super) async fn alerts_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    axum::extract::Query(params): axum::extract::Query<AlertsParams>,
) -> Result<Response, PageError> {
    let db = state.store.db();
    let mut alerts = alerts::list_for(db, &user.scope, false, 500).await?;
    // Open ones first, each group newest first.
    alerts.sort_by_key(|alert| alert.state != "open");
    render(AlertsPage {
        layout: Layout::new(&state, Some(user.clone()), "/alerts"),
        // Analysts change their domains' rules too.
        is_admin: user.scope.may_somewhere(crate::scope::GroupRole::Analyst),
        csrf: user.csrf_token.clone(),
        alerts,
        rules: alerts::rules_for(db, &user.scope).await?,
        channels: alerts::channels_for(db, &user.scope).await?,
        kinds: RuleKind::ALL
            .iter()
            .map(|kind| (kind.key(), kind.label()))
            .collect(),
        notice: params.tested.map(|id| {
            format!("Test message queued (outbox id {id}); the outbox sends it within seconds.")
        }),
    })
}

fn bad(message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, message)
}

#[derive(Deserialize)]
pub(super) struct RuleForm {
    csrf: String,
    kind: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    threshold: Option<String>,
    #[serde(default)]
    window_days: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    /// New-source rules: a class key, or several joined by `+`; empty: all.
    #[serde(default)]
    classes: Option<String>,
}

fn number<T: std::str::FromStr>(field: &str, text: Option<&str>) -> Result<Option<T>, PageError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{field}: {text:?} is not a whole number"))),
    }
}

pub(super) async fn add_rule(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<RuleForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let kind = RuleKind::parse(&form.kind)
        .ok_or_else(|| bad(format!("{:?} is not a kind of rule", form.kind)))?;
    let channel: Option<i64> = number("channel", form.channel.as_deref())?;
    let request = RuleRequest {
        domain: form.domain,
        kind,
        threshold: number("threshold", form.threshold.as_deref())?,
        window_days: number("window_days", form.window_days.as_deref())?,
        cooldown_minutes: None,
        channels: channel.map(|id| vec![serde_json::json!(id)]),
        classes: Some(
            form.classes
                .as_deref()
                .unwrap_or_default()
                .split('+')
                .filter(|key| !key.trim().is_empty())
                .map(|key| {
                    Class::parse(key.trim())
                        .ok_or_else(|| bad(format!("{key:?} is not a class of source")))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let new = new_rule(request, user.username.clone()).map_err(bad)?;
    add_rule_by(
        &state,
        &Actor::new(&user.username, address),
        &user.scope,
        &new,
    )
    .await?;
    Ok(Redirect::to("/alerts#rules").into_response())
}

#[derive(Deserialize)]
pub(super) struct ChannelForm {
    csrf: String,
    name: String,
    kind: String,
    target: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

pub(super) async fn add_channel(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<ChannelForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let kind = match form.kind.as_str() {
        "email" => ChannelKind::Email,
        "webhook" => ChannelKind::Webhook,
        other => return Err(bad(format!("{other:?} is not a kind of channel"))),
    };
    let format = match form.format.as_deref().filter(|f| !f.is_empty()) {
        Some(format) => Some(WebhookFormat::parse(format).map_err(bad)?),
        None => None,
    };
    let request = ChannelRequest {
        name: form.name,
        kind,
        target: form.target,
        format,
        secret: form.secret,
    };
    let new = new_channel(request, user.username.clone()).map_err(bad)?;
    add_channel_by(
        &state,
        &Actor::new(&user.username, address),
        &user.scope,
        &new,
    )
    .await?;
    Ok(Redirect::to("/alerts#channels").into_response())
}

#[derive(Deserialize)]
pub(super) struct IdForm {
    csrf: String,
    id: i64,
    /// `delete_rule`, `delete_channel`, `test_channel` or `resolve`.
    action: String,
}

pub(super) async fn change(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    Form(form): Form<IdForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let actor = Actor::new(&user.username, address);
    let scope = &user.scope;
    let missing = || {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("nothing with id {}", form.id),
        )
    };
    let target = match form.action.as_str() {
        "delete_rule" => {
            if !delete_rule_by(&state, &actor, scope, form.id).await? {
                return Err(missing());
            }
            "/alerts#rules".to_string()
        }
        "enable_rule" | "disable_rule" => {
            let enabled = form.action == "enable_rule";
            set_rule_enabled(&state, &actor, scope, form.id, enabled)
                .await?
                .ok_or_else(missing)?;
            "/alerts#rules".to_string()
        }
        "delete_channel" => {
            if !delete_channel_by(&state, &actor, scope, form.id).await? {
                return Err(missing());
            }
            "/alerts#channels".to_string()
        }
        "test_channel" => {
            let id = queue_test(&state, scope, form.id)
                .await?
                .ok_or_else(missing)?;
            format!("/alerts?tested={id}#channels")
        }
        "resolve" => {
            resolve_by(&state, &actor, scope, form.id)
                .await?
                .ok_or_else(missing)?;
            "/alerts".to_string()
        }
        other => return Err(bad(format!("{other:?} is not something this page does"))),
    };
    Ok(Redirect::to(&target).into_response())
}
