//! The Account page: a signed-in user changes their own password and sees
//! their sessions (when, from where, which browser), signing out the ones
//! they do not recognize. Only ever the asking user's own account.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::auth::session_token;
use super::notice::Notice;
use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::accounts::{AccountError, SessionInfo};
use crate::web::{AppState, ClientIp};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    username: String,
    role: String,
    csrf: String,
    sessions: Vec<SessionInfo>,
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
    Ok(AccountPage {
        username: user.username.clone(),
        role: user.role.clone(),
        csrf: user.csrf_token.clone(),
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
    headers: HeaderMap,
    Form(form): Form<EndForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    let current = current_token(&headers);
    if form.session == "others" {
        let ended = state
            .accounts
            .end_other_sessions(user.user_id, &current)
            .await
            .map_err(account_error)?;
        return Ok(Notice::SessionsEnded.redirect("/account", ended));
    }
    let ended = state
        .accounts
        .end_session_of(user.user_id, &form.session)
        .await
        .map_err(account_error)?;
    Ok(match ended {
        true => Notice::SessionsEnded.redirect("/account", 1),
        false => Notice::NoSuchSession.redirect("/account", 0),
    })
}
