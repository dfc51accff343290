//! The Account page: a signed-in user changes their own password and sees
//! their sessions (when, from where, which browser), signing out the ones
//! they do not recognize. Only ever the asking user's own account.

use crate::scope::GroupRole;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::auth::session_token;
use super::notice::Notice;
use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::accounts::{AccountError, SessionInfo, TokenAccess, TokenInfo, TotpState};
use crate::audit::{self, Action, Actor, Change};
use crate::web::{Address, AppState, ClientIp};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    username: String,
    role: String,
    csrf: String,
    is_admin: bool,
    sessions: Vec<SessionInfo>,
    totp: TotpState,
    tokens: Vec<TokenInfo>,
    /// (name, token) of a token just made: shown this once.
    created_token: Option<(String, String)>,
    /// The groups a token may be limited to, with the user's role there.
    groups: Vec<(String, &'static str)>,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct NoticeParams {
    notice: Option<String>,
    n: Option<String>,
}

/// The asking session's token (the page is reached only signed in).
fn current_token(headers: &HeaderMap) -> String {
    session_token(headers).unwrap_or_default()
}

async fn page(
    state: &AppState,
    user: crate::accounts::SessionUser,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
) -> Result<AccountPage, PageError> {
    let sessions = state
        .accounts
        .sessions_of(user.user_id, &current_token(headers))
        .await
        .map_err(account_error)?;
    let tokens = state
        .accounts
        .own_tokens(user.user_id)
        .await
        .map_err(account_error)?;
    let totp = state
        .accounts
        .totp_state(user.user_id)
        .await
        .map_err(account_error)?;
    let groups = crate::groups::list(&state.store, &user.scope)
        .await?
        .into_iter()
        .map(|group| (group.name, group.your_role.key()))
        .collect();
    Ok(AccountPage {
        groups,
        totp,
        username: user.username.clone(),
        role: user.role.clone(),
        csrf: user.csrf_token.clone(),
        // Analysts' and owners' tokens may change their domains too.
        is_admin: user.scope.may_somewhere(crate::scope::GroupRole::Analyst),
        tokens,
        created_token: None,
        layout: Layout::new(state, Some(user), "/account"),
        sessions,
        notice,
        error,
    })
}

fn account_error(error: AccountError) -> PageError {
    PageError::from(crate::web::ApiError::from(error))
}

pub(super) async fn account(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    Query(params): Query<NoticeParams>,
) -> Result<Response, PageError> {
    let (notice, error) = match Notice::shown(params.notice.as_deref(), params.n.as_deref()) {
        Some((notice, text)) if notice.is_error() => (None, Some(text)),
        Some((_, text)) => (Some(text), None),
        None => (None, None),
    };
    render(page(&state, user, &headers, notice, error).await?)
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    repeat: String,
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    // The current password is a guess like a sign-in's: whoever holds a
    // stolen session must not try it without end (and each try is an
    // argon2 hash), so tries count against the sign-in limit.
    if !state.login_limiter.allow(client) {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many password attempts from your address; wait a minute.",
        ));
    }
    let refused = |text: String| (StatusCode::BAD_REQUEST, text);
    let outcome = if form.new != form.repeat {
        Err(refused("the two new passwords differ".into()))
    } else {
        match state
            .accounts
            .change_own_password(
                user.user_id,
                &current_token(&headers),
                &form.current,
                &form.new,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(AccountError::Invalid(text)) => Err(refused(text)),
            Err(error) => return Err(account_error(error)),
        }
    };
    match outcome {
        Ok(()) => {
            state.login_limiter.reset(client);
            tracing::info!(user = %user.username, "changed their password");
            let change = Change::of(Action::AccountPassword, &user.username);
            audit::record(
                &state.store,
                &Actor::new(&user.username, Some(client)),
                change,
            )
            .await?;
            Ok(Notice::PasswordChanged.redirect("/account", 0))
        }
        Err((status, text)) => {
            let mut response = render(
                page(
                    &state,
                    user,
                    &headers,
                    None,
                    Some(format!("Your password is not changed: {text}.")),
                )
                .await?,
            )?;
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct EndForm {
    csrf: String,
    /// One session's handle, or `others` for every session but this one.
    session: String,
}

pub(super) async fn end_sessions(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    headers: HeaderMap,
    Form(form): Form<EndForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let current = current_token(&headers);
    let actor = Actor::new(&user.username, address);
    let record = |ended: u64| {
        let change = Change::of(Action::AccountSessionsEnd, &user.username)
            .to(&serde_json::json!({ "ended": ended }));
        audit::record(&state.store, &actor, change)
    };
    if form.session == "others" {
        let ended = state
            .accounts
            .end_other_sessions(user.user_id, &current)
            .await
            .map_err(account_error)?;
        record(ended).await?;
        return Ok(Notice::SessionsEnded.redirect("/account", ended));
    }
    let ended = state
        .accounts
        .end_session_of(user.user_id, &form.session)
        .await
        .map_err(account_error)?;
    if ended {
        record(1).await?;
    }
    Ok(match ended {
        true => Notice::SessionsEnded.redirect("/account", 1),
        false => Notice::NoSuchSession.redirect("/account", 0),
    })
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    csrf: String,
    name: String,
    /// `read` or `write`.
    access: String,
    /// Days until it expires; empty for never.
    #[serde(default)]
    expires_days: String,
    /// Limit it to this group (empty: everything the user sees).
    #[serde(default)]
    group: String,
    /// Its role in that group.
    #[serde(default)]
    group_role: String,
}

/// A user makes an API token for themselves; the page shows it this once.
pub(super) async fn create_token(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let access = match form.access.as_str() {
        "write" => Ok(TokenAccess::Write),
        "read" => Ok(TokenAccess::Read),
        _ => Err("the access is read or write".to_string()),
    };
    let expires_days = match form.expires_days.trim() {
        "" => Ok(None),
        days => days
            .parse::<u32>()
            .map(Some)
            .map_err(|_| "the days until it expires are a whole number".to_string()),
    };
    let name = form.name.trim();
    let group = match form.group.trim() {
        "" => Ok(None),
        group => {
            let role = GroupRole::parse(&form.group_role).unwrap_or(GroupRole::Viewer);
            match crate::store::groups::group_named(state.store.db(), group).await? {
                Some(found) => Ok(Some((found.id, role))),
                None => Err(format!("there is no group {group:?}")),
            }
        }
    };
    // A group token's access is its role's: a viewer's only reads.
    let access = match &group {
        Ok(Some((_, role))) if *role >= GroupRole::Analyst => Ok(TokenAccess::Write),
        Ok(Some(_)) => Ok(TokenAccess::Read),
        _ => access,
    };
    let made = match (access, expires_days, group) {
        (Ok(access), Ok(days), Ok(group)) => {
            match state
                .accounts
                .create_own_token(&user, name, access, days, group)
                .await
            {
                Ok(token) => Ok(token),
                Err(AccountError::Invalid(text)) => Err(text),
                Err(error) => return Err(account_error(error)),
            }
        }
        (Err(text), _, _) | (_, Err(text), _) | (_, _, Err(text)) => Err(text),
    };
    match made {
        Ok(token) => {
            tracing::info!(user = %user.username, token = %name, "made an API token");
            let info = state
                .accounts
                .own_tokens(user.user_id)
                .await
                .map_err(account_error)?
                .into_iter()
                .find(|token| token.name == name);
            let change = Change::of(Action::TokenCreate, format!("token:{name}")).to(&info);
            audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
            let mut shown = page(&state, user, &headers, None, None).await?;
            shown.created_token = Some((name.to_string(), token));
            render(shown)
        }
        Err(text) => {
            let message = format!("No token was made: {text}.");
            let mut response = render(page(&state, user, &headers, None, Some(message)).await?)?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeTokenForm {
    csrf: String,
    name: String,
}

/// A user revokes one of their own tokens.
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    headers: HeaderMap,
    Form(form): Form<RevokeTokenForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    match state
        .accounts
        .revoke_own_token(user.user_id, &form.name)
        .await
    {
        Ok(()) => {
            let change = Change::of(Action::TokenRevoke, format!("token:{}", form.name));
            audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
            Ok(Notice::TokenRevoked.redirect("/account", 0))
        }
        Err(AccountError::Invalid(text)) => {
            let message = format!("Nothing was revoked: {text}.");
            let mut response = render(page(&state, user, &headers, None, Some(message)).await?)?;
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok(response)
        }
        Err(error) => Err(account_error(error)),
    }
}

#[derive(Deserialize)]
pub(super) struct TotpForm {
    csrf: String,
    /// `start`, `confirm` (with `password` and `code`) or `off` (with `password`).
    step: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

/// Two-step sign-in: set it up (a new key), confirm it with a code from
/// the app, or turn it off (the password confirms). Codes and passwords
/// tried here count against the sign-in limit, as on the sign-in page.
pub(super) async fn totp(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<TotpForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let guesses = matches!(form.step.as_str(), "confirm" | "off");
    if guesses && !state.login_limiter.allow(client) {
        return Err(PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from your address; wait a minute.",
        ));
    }
    let accounts = &state.accounts;
    let done = match form.step.as_str() {
        "start" => accounts.start_totp(user.user_id).await.map(|()| None),
        "confirm" => accounts
            .confirm_totp(user.user_id, &form.password, &form.code)
            .await
            .map(|()| Some((Notice::TotpOn, Action::AccountTotpOn))),
        "off" => accounts
            .disable_own_totp(user.user_id, &form.password)
            .await
            .map(|()| Some((Notice::TotpOff, Action::AccountTotpOff))),
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("{other:?} is not a step of two-step sign-in"),
            ))
        }
    };
    match done {
        Ok(None) => Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to("/account"),
        )),
        Ok(Some((notice, action))) => {
            state.login_limiter.reset(client);
            let change = Change::of(action, &user.username);
            audit::record(
                &state.store,
                &Actor::new(&user.username, Some(client)),
                change,
            )
            .await?;
            Ok(notice.redirect("/account", 0))
        }
        Err(AccountError::Invalid(text)) => {
            let message = format!("Two-step sign-in is not changed: {text}.");
            let mut response = render(page(&state, user, &headers, None, Some(message)).await?)?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            Ok(response)
        }
        Err(error) => Err(account_error(error)),
    }
}
