//! Alerts over the API: the alerts that fired (resolve one by hand), the
//! rules that watch domains, and the channels notifications go to (a
//! test message through one). The page (`pages/alerts.rs`) checks its
//! forms with the same functions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{ApiToken, Id, Params};
use super::error::ErrorBody;
use super::senders::JsonBody;
use super::{ApiError, AppState};
use crate::alerts::{Alert, Channel, ChannelKind, Rule, RuleKind};
use crate::audit::{self, Action, Change};
use crate::outbox::{Notification, OutboxConfig, WebhookFormat};
use crate::scope::Scope;
use crate::senders::Class;
use crate::store::alerts::{self, NewChannel, NewRule};

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}/resolve", post(resolve_alert))
        .route("/alert-rules", get(list_rules).post(add_rule))
        .route("/alert-rules/{id}", delete(delete_rule).patch(change_rule))
        .route("/alert-channels", get(list_channels).post(add_channel))
        .route("/alert-channels/{id}", delete(delete_channel))
        .route("/alert-channels/{id}/test", post(test_channel))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AlertsParams {
    /// Only open alerts (default false: all, newest first).
    pub open: Option<bool>,
    /// At most this many (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertsParams),
    responses((status = 200, body = Vec<Alert>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn list_alerts(
    token: ApiToken,
    State(state): State<AppState>,
    Params(params): Params<AlertsParams>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let limit = params.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: from 1 to 1000"));
    }
    Ok(Json(
        alerts::list_for(
            state.store.db(),
            &token.scope,
            params.open.unwrap_or(false),
            limit,
        )
        .await?,
    ))
}

/// Resolves an open alert by hand (its channels are told). It opens
/// again if its cause is still there at the next evaluation.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    responses((status = 200, body = Alert), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn resolve_alert(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Alert>, ApiError> {
    resolve_by(&state, &token.actor(), &token.scope, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no open alert {id}")))
}

/// Resolves open alert `id` by hand and records it; `None` when there is
/// no open alert of that id.
pub(crate) async fn resolve_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    id: i64,
) -> Result<Option<Alert>, ApiError> {
    let Some(alert) = alerts::get(state.store.db(), id).await? else {
        return Ok(None);
    };
    if !scope.sees(&alert.domain) {
        return Ok(None);
    }
    require_role(scope, Some(&alert.domain))?;
    let Some(resolved) = alerts::resolve_by_hand(
        state.store.db(),
        id,
        &actor.name,
        chrono::Utc::now(),
        state.store.dashboard_url(),
    )
    .await?
    else {
        return Ok(None);
    };
    let change = Change::of(Action::AlertResolve, format!("alert {id}")).to(&resolved);
    audit::record(&state.store, actor, change).await?;
    Ok(Some(resolved))
}

/// Adds a checked rule and records it.
pub(crate) async fn add_rule_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    new: &NewRule,
) -> Result<Rule, ApiError> {
    require_role(scope, new.domain.as_deref())?;
    if !scope.is_all() {
        // A group's rule tells its group's channels, named: with none named
        // a rule tells every channel, which are admins' and other groups'.
        if new.channels.is_empty() {
            return Err(ApiError::bad_request(
                "channels: name at least one of your group's alert channels",
            ));
        }
        let mine = alerts::channels_for(state.store.db(), scope).await?;
        if let Some(missing) = new
            .channels
            .iter()
            .find(|id| !mine.iter().any(|channel| channel.id == **id))
        {
            return Err(ApiError::not_found(format!(
                "channels: there is no alert channel {missing}"
            )));
        }
    }
    let stored = alerts::add_rule(state.store.db(), new).await?;
    let change = Change::of(Action::AlertRuleAdd, format!("alert rule {}", stored.id)).to(&stored);
    audit::record(&state.store, actor, change).await?;
    Ok(stored)
}

/// Channel `id` if `scope` sees it; a change to it needs the analyst role
/// in its group (403 otherwise).
async fn channel_for(
    state: &AppState,
    scope: &Scope,
    id: i64,
) -> Result<Option<Channel>, ApiError> {
    let Some(channel) = alerts::channels_for(state.store.db(), scope)
        .await?
        .into_iter()
        .find(|channel| channel.id == id)
    else {
        return Ok(None);
    };
    let analyst = match channel.group_id {
        None => scope.is_all(),
        Some(group) => scope
            .role_in_group(group)
            .is_some_and(|role| role >= crate::scope::GroupRole::Analyst),
    };
    if !analyst {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "changing a channel needs the analyst or owner role in its group",
        ));
    }
    Ok(Some(channel))
}

/// Analysts change their domains' rules, alerts and approvals; what
/// applies to every domain is for those who see every domain.
pub(crate) fn require_role(scope: &Scope, domain: Option<&str>) -> Result<(), ApiError> {
    let allowed = match domain {
        Some(domain) => scope.may(domain, crate::scope::GroupRole::Analyst),
        None => scope.is_all(),
    };
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        match domain {
            Some(domain) => {
                format!("this needs the analyst or owner role in the group of {domain}")
            }
            None => "only admins make or change what applies to every domain: name the domain"
                .to_string(),
        },
    ))
}

/// A channel as the audit log keeps it: a webhook URL's path and query
/// often are its credential (Slack, Teams), so only its origin is kept.
fn logged_channel(channel: &Channel) -> serde_json::Value {
    let mut value = serde_json::to_value(channel).unwrap_or_default();
    if channel.kind == ChannelKind::Webhook {
        let origin = url::Url::parse(&channel.target)
            .map(|url| format!("{}/…", url.origin().ascii_serialization()))
            .unwrap_or_else(|_| "(hidden)".into());
        value["target"] = serde_json::Value::String(origin);
    }
    value
}

/// Adds a checked channel and records it (never its secret).
pub(crate) async fn add_channel_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    new: &NewChannel,
) -> Result<Channel, ApiError> {
    // An admin's channel is shared; an analyst's belongs to their group
    // (the first where they are an analyst or owner).
    let group = match scope {
        Scope::All => None,
        Scope::Groups(memberships) => Some(
            memberships
                .iter()
                .find(|m| m.role >= crate::scope::GroupRole::Analyst)
                .map(|m| m.group_id)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "adding a channel needs the analyst or owner role in a group",
                    )
                })?,
        ),
    };
    let stored = alerts::add_channel_in(state.store.db(), new, group).await?;
    let change = Change::of(
        Action::AlertChannelAdd,
        format!("alert channel {}", stored.id),
    )
    .to(&logged_channel(&stored));
    audit::record(&state.store, actor, change).await?;
    Ok(stored)
}

/// A rule to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    /// The domain to watch; absent, null or empty: every domain, new ones included.
    #[schema(
        pattern = r"^(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)?$",
        max_length = 253
    )]
    #[serde(default)]
    pub domain: Option<String>,
    pub kind: RuleKind,
    /// failing_volume, source_failing_volume: failing messages in the
    /// window; new_source: messages from the source in a report batch;
    /// tlsrpt_failure, tlsrpt_first_failure: failed sessions;
    /// failure_report: reports per pass; pass_rate_drop,
    /// source_pass_rate_drop: percentage points below the median (above
    /// 100 never fires). Default 1, or 100 for the failing volumes, 15 and
    /// 25 for the pass rates.
    #[schema(minimum = 1, maximum = 1000000000000_i64)]
    #[serde(default, deserialize_with = "whole_number")]
    pub threshold: Option<i64>,
    /// The window in days (silence: days without reports; pass rates: the
    /// days of the median). Default 1, or 3 for silence, 7 for new
    /// sources, pass rates, first TLS failures and DNS changes.
    #[schema(minimum = 1, maximum = 366, value_type = Option<i32>)]
    #[serde(default, deserialize_with = "whole_number")]
    pub window_days: Option<i64>,
    /// A resolved alert firing again within this many minutes is reopened
    /// without a new notification (default 360).
    #[schema(minimum = 0, maximum = 525600, value_type = Option<i32>)]
    #[serde(default, deserialize_with = "whole_number")]
    pub cooldown_minutes: Option<i64>,
    /// Channel ids to tell; empty or absent: every channel. An id that
    /// names no channel is refused (404).
    #[schema(value_type = Option<Vec<i64>>)]
    #[serde(default)]
    pub channels: Option<Vec<serde_json::Value>>,
    /// new_source only (other kinds ignore it): fire only for sources of
    /// these classes, as the report that first shows them classes them;
    /// empty or absent: every new source.
    #[serde(default)]
    pub classes: Option<Vec<Class>>,
}

/// A JSON number that is whole (`4` or `4.0`, as JSON allows), within i64.
pub(super) fn as_whole(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15)
            .map(|n| n as i64)
    })
}

pub(super) fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => as_whole(&value)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{value} is not a whole number"))),
    }
}

/// Checks a rule request; `by` is who adds it.
pub(crate) fn new_rule(request: RuleRequest, by: String) -> Result<NewRule, String> {
    let domain = match request.domain {
        Some(domain) if domain.is_empty() => None,
        Some(domain) if super::posture::is_path_domain(&domain) && domain.len() <= 253 => {
            Some(domain.to_ascii_lowercase())
        }
        Some(other) => return Err(format!("domain: {other:?} is not a domain name")),
        None => None,
    };
    let threshold = request
        .threshold
        .unwrap_or(request.kind.default_threshold());
    if !(1..=1_000_000_000_000).contains(&threshold) {
        return Err("threshold: from 1 to 10^12".to_string());
    }

    let window_days = request
        .window_days
        .unwrap_or(i64::from(request.kind.default_window_days()));
    if !(1..=366).contains(&window_days) {
        return Err("window_days: from 1 to 366".to_string());
    }
    let cooldown_minutes = request.cooldown_minutes.unwrap_or(360);
    if !(0..=525_600).contains(&cooldown_minutes) {
        return Err("cooldown_minutes: from 0 to 525600 (a year)".to_string());
    }
    // An id that is no whole number names no channel (-1: refused as missing).
    let channels = request
        .channels
        .unwrap_or_default()
        .iter()
        .map(|id| as_whole(id).unwrap_or(-1))
        .collect();
    Ok(NewRule {
        domain,
        kind: request.kind,
        threshold,
        window_days: window_days as i32,
        cooldown_minutes: cooldown_minutes as i32,
        channels,
        classes: match request.kind {
            RuleKind::NewSource => {
                let mut classes = request.classes.unwrap_or_default();
                classes.sort();
                classes.dedup();
                classes
            }
            _ => Vec::new(),
        },
        created_by: by,
    })
}

/// Alert rules, in the order they were added.
#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "alerts",
    responses((status = 200, body = Vec<Rule>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn list_rules(
    token: ApiToken,
    State(state): State<AppState>,
) -> Result<Json<Vec<Rule>>, ApiError> {
    Ok(Json(
        alerts::rules_for(state.store.db(), &token.scope).await?,
    ))
}

/// Adds an alert rule; it is evaluated from the next report on.
#[utoipa::path(post, path = "/api/v1/alert-rules", tag = "alerts",
    request_body = RuleRequest,
    responses((status = 201, body = Rule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "A channel it names does not exist"),
        (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn add_rule(
    token: ApiToken,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RuleRequest>,
) -> Result<Response, ApiError> {
    let actor = token.actor();
    let new = new_rule(request, token.by).map_err(ApiError::bad_request)?;
    let channels = alerts::channels_for(state.store.db(), &token.scope).await?;
    if let Some(missing) = new
        .channels
        .iter()
        .find(|id| !channels.iter().any(|channel| channel.id == **id))
    {
        return Err(ApiError::not_found(format!(
            "channels: there is no alert channel {missing}"
        )));
    }
    let stored = add_rule_by(&state, &actor, &token.scope, &new).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// What to change of a rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleChange {
    /// Whether the rule is evaluated; a rule switched off keeps its
    /// alerts, and its open ones are resolved when their cause goes.
    pub enabled: bool,
}

/// Switches an alert rule on or off.
#[utoipa::path(patch, path = "/api/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "Alert rule id")),
    request_body = RuleChange,
    responses((status = 200, body = Rule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn change_rule(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
    JsonBody(change): JsonBody<RuleChange>,
) -> Result<Json<Rule>, ApiError> {
    let rule = set_rule_enabled(&state, &token.actor(), &token.scope, id, change.enabled)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert rule {id}")))?;
    Ok(Json(rule))
}

/// Switches rule `id` on or off and records it; `None` when there is none.
pub(crate) async fn set_rule_enabled(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    id: i64,
    enabled: bool,
) -> Result<Option<Rule>, ApiError> {
    let db = state.store.db();
    let Some(old) = alerts::rules_for(db, scope)
        .await?
        .into_iter()
        .find(|rule| rule.id == id)
    else {
        return Ok(None);
    };
    require_role(scope, old.domain.as_deref())?;
    let Some(rule) = alerts::set_rule_enabled(db, id, enabled).await? else {
        return Ok(None);
    };
    let change = Change::of(Action::AlertRuleChange, format!("alert rule {id}"))
        .from(&old)
        .to(&rule);
    audit::record(&state.store, actor, change).await?;
    Ok(Some(rule))
}

/// Deletes rule `id` and records it; false when there is none.
pub(crate) async fn delete_rule_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    id: i64,
) -> Result<bool, ApiError> {
    let db = state.store.db();
    let Some(old) = alerts::rules_for(db, scope)
        .await?
        .into_iter()
        .find(|rule| rule.id == id)
    else {
        return Ok(false);
    };
    require_role(scope, old.domain.as_deref())?;
    if !alerts::delete_rule(db, id).await? {
        return Ok(false);
    }
    let change = Change::of(Action::AlertRuleDelete, format!("alert rule {id}")).from(&old);
    audit::record(&state.store, actor, change).await?;
    Ok(true)
}

/// Deletes channel `id` and records it; false when there is none.
pub(crate) async fn delete_channel_by(
    state: &AppState,
    actor: &audit::Actor,
    scope: &Scope,
    id: i64,
) -> Result<bool, ApiError> {
    let db = state.store.db();
    let Some(channel) = channel_for(state, scope, id).await? else {
        return Ok(false);
    };
    let old = Some(logged_channel(&channel));
    if !alerts::delete_channel(db, id).await? {
        return Ok(false);
    }
    let change = Change::of(Action::AlertChannelDelete, format!("alert channel {id}")).from(&old);
    audit::record(&state.store, actor, change).await?;
    Ok(true)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: i64,
}

/// Deletes an alert rule and its alerts.
#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "Alert rule id")),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn delete_rule(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Deleted>, ApiError> {
    if delete_rule_by(&state, &token.actor(), &token.scope, id).await? {
        Ok(Json(Deleted { deleted: id }))
    } else {
        Err(ApiError::not_found(format!("no alert rule {id}")))
    }
}

/// A channel to add: `kind` email with `target` a list of addresses, or
/// webhook with `target` a URL (and optionally `format` and `secret`).
/// Its schema is written by hand (a oneOf on `kind`) beside the checks
/// below, so that the document allows exactly what is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    pub name: String,
    pub kind: ChannelKind,
    pub target: String,
    #[serde(default)]
    pub format: Option<WebhookFormat>,
    #[serde(default)]
    pub secret: Option<String>,
}

pub(super) const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]{1,100}$";
pub(super) const ADDRESS: &str = r"[A-Za-z0-9_%+-]{1,20}(\.[A-Za-z0-9_%+-]{1,20}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,40}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,24}";
const HOST: &str =
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,40}[A-Za-z0-9])?\.){0,5}[A-Za-z]([A-Za-z0-9-]{0,40}[A-Za-z0-9])?";
const PATH_AND_QUERY: &str = r"(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?(\?[A-Za-z0-9._~%&=+/-]*)?";

fn addresses_pattern() -> String {
    format!("^{ADDRESS}(, ?{ADDRESS}){{0,9}}$")
}

fn url_pattern() -> String {
    format!(r"^(https://{HOST}|http://(127\.0\.0\.1|localhost|\[::1\])){PATH_AND_QUERY}$")
}

impl utoipa::PartialSchema for ChannelRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let text = |pattern: String| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
        };
        let variant = |kind: &str, target: ObjectBuilder, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "name",
                    text(NAME_PATTERN.to_string())
                        .min_length(Some(1))
                        .max_length(Some(100)),
                )
                .property(
                    "kind",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .property("target", target.description(Some(description)))
                .property(
                    "format",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .enum_values(Some([
                            serde_json::json!("json"),
                            serde_json::json!("slack"),
                            serde_json::json!("mattermost"),
                            serde_json::json!("teams"),
                            serde_json::Value::Null,
                        ]))
                        .description(Some("Webhooks: the body's layout (default json).")),
                )
                .property(
                    "secret",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .max_length(Some(200))
                        .description(Some(
                            "Webhooks: sign each call with this secret (X-Dmarcd-Signature).",
                        )),
                )
                .required("name")
                .required("kind")
                .required("target")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(variant(
                "email",
                text(addresses_pattern()),
                "Email addresses separated by commas (at most 10).",
            ))
            .item(variant(
                "webhook",
                text(url_pattern()),
                "An https:// URL (plain http:// only to loopback).",
            ))
            .description(Some("A channel: email addresses or a webhook."))
            .into()
    }
}

impl utoipa::ToSchema for ChannelRequest {}

/// `[A-Za-z0-9-]` labels of 1 to 42 characters, starting and ending with a
/// letter or digit (HOST's and ADDRESS's labels).
fn is_label(label: &str) -> bool {
    (1..=42).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// ADDRESS, checked as its pattern reads.
pub(super) fn is_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let atoms: Vec<&str> = local.split('.').collect();
    let local_ok = (1..=3).contains(&atoms.len())
        && atoms.iter().all(|atom| {
            (1..=20).contains(&atom.len())
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_%+-".contains(&b))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((top, rest)) = labels.split_last() else {
        return false;
    };
    local_ok
        && (1..=4).contains(&rest.len())
        && rest.iter().all(|label| is_label(label))
        && (2..=24).contains(&top.len())
        && top.bytes().all(|b| b.is_ascii_alphabetic())
}

/// The addresses of an email target, checked as its pattern reads.
fn addresses(target: &str) -> Option<Vec<String>> {
    let mut list = Vec::new();
    for (index, piece) in target.split(',').enumerate() {
        let piece = match index {
            0 => piece,
            _ => piece.strip_prefix(' ').unwrap_or(piece),
        };
        if !is_address(piece) {
            return None;
        }
        list.push(piece.to_string());
    }
    (1..=10).contains(&list.len()).then_some(list)
}

/// A webhook URL, checked as its pattern reads.
fn is_webhook_url(url: &str) -> bool {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        let end = rest.find([':', '/', '?']).unwrap_or(rest.len());
        let labels: Vec<&str> = rest[..end].split('.').collect();
        let Some((last, others)) = labels.split_last() else {
            return false;
        };
        if others.len() > 5
            || !others.iter().all(|label| is_label(label))
            || !is_label(last)
            || !last.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return false;
        }
        &rest[end..]
    } else if let Some(rest) = url.strip_prefix("http://") {
        match ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .find_map(|host| rest.strip_prefix(host))
        {
            Some(rest) => rest,
            None => return false,
        }
    } else {
        return false;
    };
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix(':') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) {
            return false;
        }
        rest = &after[digits..];
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path_ok = path.is_empty()
        || (path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~%/-".contains(&b)));
    let query_ok = query.is_none_or(|query| {
        query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~%&=+/-".contains(&b))
    });
    path_ok && query_ok
}

/// Checks a channel request; `by` is who adds it.
pub(crate) fn new_channel(request: ChannelRequest, by: String) -> Result<NewChannel, String> {
    let name = request.name;
    let control = |c: char| (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32));
    if !(1..=100).contains(&name.chars().count()) || name.chars().any(control) {
        return Err("name: 1 to 100 characters, no control characters".to_string());
    }
    let target = request.target;
    match request.kind {
        ChannelKind::Email => {
            if addresses(&target).is_none() {
                return Err(
                    "target: 1 to 10 email addresses (name@example.com) separated by commas"
                        .to_string(),
                );
            }
        }
        ChannelKind::Webhook => {
            if !is_webhook_url(&target) {
                return Err(
                    "target: an https:// URL (plain http:// only to 127.0.0.1, localhost or [::1])"
                        .to_string(),
                );
            }
        }
    }
    if request
        .secret
        .as_ref()
        .is_some_and(|secret| secret.chars().count() > 200)
    {
        return Err("secret: at most 200 characters".to_string());
    }
    Ok(NewChannel {
        name,
        kind: request.kind,
        target,
        format: request.format.unwrap_or(WebhookFormat::Json),
        secret: request.secret.filter(|secret| !secret.is_empty()),
        created_by: by,
    })
}

/// Notification channels (secrets are never shown: `signed` says whether
/// there is one).
#[utoipa::path(get, path = "/api/v1/alert-channels", tag = "alerts",
    responses((status = 200, body = Vec<Channel>), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn list_channels(
    token: ApiToken,
    State(state): State<AppState>,
) -> Result<Json<Vec<Channel>>, ApiError> {
    Ok(Json(
        alerts::channels_for(state.store.db(), &token.scope).await?,
    ))
}

/// Adds a channel: email addresses or a webhook.
#[utoipa::path(post, path = "/api/v1/alert-channels", tag = "alerts",
    request_body = ChannelRequest,
    responses((status = 201, body = Channel), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn add_channel(
    token: ApiToken,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ChannelRequest>,
) -> Result<Response, ApiError> {
    let actor = token.actor();
    let new = new_channel(request, token.by).map_err(ApiError::bad_request)?;
    let stored = add_channel_by(&state, &actor, &token.scope, &new).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// Deletes a channel (rules naming it then tell their other channels).
#[utoipa::path(delete, path = "/api/v1/alert-channels/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "Channel id")),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn delete_channel(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<Deleted>, ApiError> {
    if delete_channel_by(&state, &token.actor(), &token.scope, id).await? {
        Ok(Json(Deleted { deleted: id }))
    } else {
        Err(ApiError::not_found(format!("no alert channel {id}")))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// The outbox id of the test message.
    pub outbox_id: i64,
}

/// Queues a test message through a channel; the outbox sends it within
/// seconds (`dmarcd outbox list` shows how it went).
#[utoipa::path(post, path = "/api/v1/alert-channels/{id}/test", tag = "alerts",
    params(("id" = i64, Path, description = "Channel id")),
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(super) async fn test_channel(
    token: ApiToken,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let outbox_id = queue_test(&state, &token.scope, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert channel {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(Queued { outbox_id })).into_response())
}

/// Queues a test through channel `id`; `None` when there is none.
pub(crate) async fn queue_test(
    state: &AppState,
    scope: &Scope,
    id: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(channel) = channel_for(state, scope, id).await? else {
        return Ok(None);
    };
    let config = OutboxConfig {
        dashboard_url: state.store.dashboard_url().to_string(),
        ..OutboxConfig::default()
    };
    let notification = Notification::test(&config);
    let item = match channel.kind {
        ChannelKind::Email => crate::outbox::OutboxItem::Mail(
            notification.mail(
                channel
                    .target
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
                None,
            ),
        ),
        ChannelKind::Webhook => crate::outbox::OutboxItem::Webhook(notification.webhook(
            &channel.target,
            channel.format,
            channel.secret.clone(),
        )),
    };
    let ids = state
        .store
        .enqueue_outbox(&[item.queued(None)], chrono::Utc::now())
        .await?;
    Ok(ids.first().copied())
}
