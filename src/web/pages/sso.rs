//! Single sign-on over the browser: `/login/sso` sends it to the OpenID
//! provider (a cookie binds the sign-in to this browser), and the
//! provider sends it back to `/login/sso/callback`, where `crate::oidc`
//! checks everything before a session is opened. Failures show the
//! sign-in page with the reason and are audited.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{cookie, cookie_header, login_page, safe_next, user_agent, SESSION_COOKIE};
use super::PageError;
use crate::audit::{self, Action, Actor, Change};
use crate::oidc::OidcError;
use crate::web::{AppState, ClientIp};

const SSO_COOKIE: &str = "dmarcd_sso";

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Start {
    next: String,
}

pub(super) async fn start(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    Query(params): Query<Start>,
) -> Result<Response, PageError> {
    let Some(client) = state.oidc.clone() else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "single sign-on is not set up here",
        ));
    };
    let next = safe_next(&params.next);
    // Each start stores a sign-in under way: counted like sign-in attempts.
    if !state.login_limiter.allow(client_ip) {
        return login_page(
            &state,
            &next,
            Some("Too many sign-in attempts from your address; wait a minute.".into()),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match client.begin(&state.store, &next).await {
        Ok(begun) => {
            let max_age = client.config().login_timeout_seconds as i64;
            let mut response = Redirect::to(&begun.redirect).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&state, SSO_COOKIE, &begun.state, max_age),
            );
            Ok(response)
        }
        Err(error) => {
            // The detail (internal URLs, TLS errors) is for the log only.
            tracing::warn!(%error, "single sign-on could not start");
            login_page(
                &state,
                &next,
                Some("Single sign-on is unavailable right now; the server log says why.".into()),
                StatusCode::BAD_GATEWAY,
            )
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// An OAuth error code as the page may show it: a short word of letters
/// and underscores, never free text from the URL.
fn error_code(error: &str) -> &str {
    let word = error.len() <= 40 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if word {
        error
    } else {
        "unknown"
    }
}

pub(super) async fn callback(
    State(state): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    Query(params): Query<Callback>,
) -> Result<Response, PageError> {
    let Some(client) = state.oidc.clone() else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "single sign-on is not set up here",
        ));
    };
    // `audited`: only a callback for a sign-in this browser started is
    // worth an audit entry; anything else costs no write.
    let refused = |why: String, status: StatusCode, audited: bool| {
        let state = state.clone();
        async move {
            tracing::info!(ip = %client_ip, reason = %why, "failed single sign-on");
            if audited {
                let change = Change::of(Action::SignInFailed, "single sign-on")
                    .to(&serde_json::json!({ "reason": why }));
                audit::record(&state.store, &Actor::new("sso", Some(client_ip)), change).await?;
            }
            let mut response = login_page(
                &state,
                "/",
                Some(format!("Single sign-on failed: {why}")),
                status,
            )?;
            // The sign-in under way is over either way.
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie_header(&state, SSO_COOKIE, "", 0));
            Ok::<Response, PageError>(response)
        }
    };
    if !state.login_limiter.allow(client_ip) {
        let why = "too many sign-in attempts from your address; wait a minute".to_string();
        return refused(why, StatusCode::TOO_MANY_REQUESTS, false).await;
    }
    let kept = cookie(&headers, SSO_COOKIE);
    let ours = match (&kept, &params.state) {
        (Some(kept), Some(given)) => crate::web::same_secret(kept, given),
        _ => false,
    };
    if let Some(error) = &params.error {
        let why = format!("the provider refused the sign-in ({})", error_code(error));
        return refused(why, StatusCode::UNAUTHORIZED, ours).await;
    }
    let (Some(code), Some(given_state)) = (params.code, params.state) else {
        return refused(
            "the provider sent no code".into(),
            StatusCode::BAD_REQUEST,
            false,
        )
        .await;
    };
    if !ours {
        let why = "this sign-in was not started in this browser (its state does not match)";
        return refused(why.into(), StatusCode::UNAUTHORIZED, false).await;
    }
    let identity = match client
        .finish(&state.store, &code, &given_state, kept.as_deref())
        .await
    {
        Ok(identity) => identity,
        Err(OidcError::Store(error)) => return Err(error.into()),
        Err(error @ OidcError::Provider(_)) => {
            tracing::warn!(%error, "single sign-on: the provider failed");
            let why = "the sign-in provider could not be reached or answered wrongly (the server log says more)";
            return refused(why.into(), StatusCode::BAD_GATEWAY, true).await;
        }
        Err(error) => return refused(error.to_string(), StatusCode::UNAUTHORIZED, true).await,
    };
    let Some(role) = identity.role else {
        // No longer let in: a user an earlier sign-in made goes, with
        // their sessions and tokens.
        let removed = state
            .accounts
            .sso_remove(&identity.subject)
            .await
            .map_err(|error| PageError::from(crate::web::ApiError::from(error)))?;
        if let Some((name, role)) = removed {
            let change = Change::of(Action::UserRemove, &name)
                .from(&serde_json::json!({ "role": role, "via": "single sign-on" }));
            audit::record(&state.store, &Actor::new("sso", Some(client_ip)), change).await?;
        }
        let why = format!(
            "{} is in none of the groups allowed in (oidc.admin_groups, oidc.viewer_groups)",
            identity.username
        );
        return refused(why, StatusCode::FORBIDDEN, true).await;
    };
    let lifetime = chrono::Duration::hours(state.config.session_hours as i64);
    let from = crate::accounts::SignedInFrom {
        address: Some(client_ip.to_string()),
        user_agent: user_agent(&headers),
    };
    let opened = state
        .accounts
        .sso_login(&identity, role, lifetime, &from)
        .await
        .map_err(|error| PageError::from(crate::web::ApiError::from(error)))?;
    let Some(signed_in) = opened else {
        let why = format!(
            "{} is a local user's name here; ask an admin to remove or rename that user",
            identity.username
        );
        return refused(why, StatusCode::CONFLICT, true).await;
    };
    let user = &signed_in.user;
    let actor = Actor::new(&user.username, Some(client_ip));
    if signed_in.created {
        let change = Change::of(Action::UserAdd, &user.username)
            .to(&serde_json::json!({ "role": user.role, "via": "single sign-on" }));
        audit::record(&state.store, &actor, change).await?;
    }
    if let Some(old_role) = &signed_in.old_role {
        let change = Change::of(Action::UserRole, &user.username)
            .from(&serde_json::json!({ "role": old_role }))
            .to(&serde_json::json!({ "role": user.role, "via": "single sign-on" }));
        audit::record(&state.store, &actor, change).await?;
    }
    state.login_limiter.reset(client_ip);
    tracing::info!(user = %user.username, ip = %client_ip, role = %user.role, "signed in by single sign-on");
    let change = Change::of(Action::SignIn, &user.username)
        .to(&serde_json::json!({ "via": "single sign-on", "role": user.role }));
    audit::record(&state.store, &actor, change).await?;
    let mut response = Redirect::to(&safe_next(&identity.next)).into_response();
    let max_age = state.config.session_hours as i64 * 3600;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, &signed_in.token, max_age),
    );
    headers.append(header::SET_COOKIE, cookie_header(&state, SSO_COOKIE, "", 0));
    Ok(response)
}
