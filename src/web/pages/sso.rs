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
    Query(params): Query<Start>,
) -> Result<Response, PageError> {
    let Some(client) = state.oidc.clone() else {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "single sign-on is not set up here",
        ));
    };
    let next = safe_next(&params.next);
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
            tracing::warn!(%error, "single sign-on could not start");
            login_page(
                &state,
                &next,
                Some(format!("Single sign-on is unavailable: {error}")),
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
    error_description: Option<String>,
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
    let refused = |why: String, status: StatusCode| {
        let state = state.clone();
        async move {
            tracing::info!(ip = %client_ip, reason = %why, "failed single sign-on");
            let change = Change::of(Action::SignInFailed, "single sign-on")
                .to(&serde_json::json!({ "reason": why }));
            audit::record(&state.store, &Actor::new("sso", Some(client_ip)), change).await?;
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
    if let Some(error) = params.error {
        let detail = params.error_description.unwrap_or_default();
        let why: String = format!("the provider said {error} {detail}")
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        return refused(why.trim().to_string(), StatusCode::UNAUTHORIZED).await;
    }
    let (Some(code), Some(given_state)) = (params.code, params.state) else {
        return refused("the provider sent no code".into(), StatusCode::BAD_REQUEST).await;
    };
    let kept = cookie(&headers, SSO_COOKIE);
    let identity = match client
        .finish(&state.store, &code, &given_state, kept.as_deref())
        .await
    {
        Ok(identity) => identity,
        Err(OidcError::Store(error)) => return Err(error.into()),
        Err(error @ OidcError::Provider(_)) => {
            return refused(error.to_string(), StatusCode::BAD_GATEWAY).await
        }
        Err(error) => return refused(error.to_string(), StatusCode::UNAUTHORIZED).await,
    };
    let lifetime = chrono::Duration::hours(state.config.session_hours as i64);
    let from = crate::accounts::SignedInFrom {
        address: Some(client_ip.to_string()),
        user_agent: user_agent(&headers),
    };
    let opened = state
        .accounts
        .sso_login(&identity, lifetime, &from)
        .await
        .map_err(|error| PageError::from(crate::web::ApiError::from(error)));
    let (token, user) = match opened {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            let why = format!(
                "{} is a local user's name here; ask an admin to remove or rename that user",
                identity.username
            );
            return refused(why, StatusCode::CONFLICT).await;
        }
        Err(error) => return Err(error),
    };
    tracing::info!(user = %user.username, ip = %client_ip, role = %user.role, "signed in by single sign-on");
    let change = Change::of(Action::SignIn, &user.username)
        .to(&serde_json::json!({ "via": "single sign-on", "role": user.role }));
    audit::record(
        &state.store,
        &Actor::new(&user.username, Some(client_ip)),
        change,
    )
    .await?;
    let mut response = Redirect::to(&safe_next(&identity.next)).into_response();
    let max_age = state.config.session_hours as i64 * 3600;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, &token, max_age),
    );
    headers.append(header::SET_COOKIE, cookie_header(&state, SSO_COOKIE, "", 0));
    Ok(response)
}
