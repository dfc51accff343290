//! Sign-in and sign-out. The session cookie is HttpOnly, SameSite=Lax and
//! (by default) Secure; the sign-in form carries its own CSRF token in a
//! short-lived cookie (double submit), as there is no session yet.

use crate::audit::{self, Action, Actor, Change};
use crate::web::{Address, ClientIp};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{check_csrf, render, Layout, PageError, PageUser};
use crate::accounts::random_secret;
use crate::web::AppState;

pub const SESSION_COOKIE: &str = "dmarcd_session";
const LOGIN_CSRF_COOKIE: &str = "dmarcd_login";

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE).filter(|token| !token.is_empty())
}

pub(super) fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: i64,
) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are URL-safe base64")
}

/// Where to go after signing in: `next` if it is a path on this site,
/// else `/`. An open redirect would hand phishers a trusted link. Browsers
/// drop tabs and newlines from a `Location` and read `\` as `/`, so
/// `/\t/evil.example` would become `//evil.example`, another origin: the
/// path must start with one `/`, hold no control, whitespace or backslash
/// character, and, resolved as a relative URL, stay on this origin.
pub(super) fn safe_next(next: &str) -> String {
    let local_path = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    let base = url::Url::parse("http://dmarcd.invalid/").expect("a valid base URL");
    let same_origin = || {
        base.join(next)
            .is_ok_and(|resolved| resolved.origin() == base.origin())
    };
    if local_path && same_origin() {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// Why the browser sent no sign-in cookie back, and what to change. A
/// Secure cookie is kept only over HTTPS (or on localhost): a dashboard
/// reached as `http://host:8080` on a LAN would otherwise loop on "the
/// sign-in form expired".
fn cookie_refused(state: &AppState, headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let plain_http = state.config.tls_cert_file.is_none() && !forwarded_https;
    if state.config.secure_cookies && plain_http {
        "Your browser did not keep the sign-in cookie: dmarcd marks its cookies Secure, \
         and browsers keep those only over HTTPS or on localhost. Open the dashboard over \
         HTTPS (web.tls_cert_file, or a TLS proxy in front), or, on a trusted network only, \
         set web.secure_cookies = false (DMARCD_WEB_SECURE_COOKIES=false)."
    } else {
        "Your browser did not send the sign-in cookie back: allow cookies for this site \
         and try again."
    }
}

/// The browser's User-Agent as the Account page lists it: printable
/// characters only, at most 200 of them.
pub(super) fn user_agent(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::USER_AGENT)?.to_str().ok()?;
    let kept: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    Some(kept.trim().to_string()).filter(|kept| !kept.is_empty())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    next: String,
    error: Option<String>,
    /// The single sign-on button's label and link, when there is one.
    sso: Option<(String, String)>,
    local_passwords: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct NextParam {
    next: String,
}

pub(super) fn login_page(
    state: &AppState,
    next: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let csrf = random_secret();
    let page = LoginPage {
        layout: Layout::new(state, None, "/login"),
        csrf: csrf.clone(),
        next: safe_next(next),
        error,
        sso: state.oidc.as_ref().map(|client| {
            let next = serde_urlencoded::to_string([("next", safe_next(next))]).unwrap_or_default();
            (
                client.config().button_label.clone(),
                format!("/login/sso?{next}"),
            )
        }),
        local_passwords: state.local_passwords(),
    };
    let mut response = render(page)?;
    *response.status_mut() = status;
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(state, LOGIN_CSRF_COOKIE, &csrf, 3600),
    );
    Ok(response)
}

pub(super) async fn login_form(
    State(state): State<AppState>,
    Query(params): Query<NextParam>,
) -> Result<Response, PageError> {
    login_page(&state, &params.next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    /// The authenticator app's code, for users with two-step sign-in.
    #[serde(default)]
    code: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    if !state.local_passwords() {
        return login_page(
            &state,
            &form.next,
            Some("Sign-in with a password is off here: use single sign-on.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() {
        // No cookie at all is not an old form: the browser refused it.
        return login_page(
            &state,
            &form.next,
            Some(cookie_refused(&state, &headers).into()),
            StatusCode::FORBIDDEN,
        );
    }
    if !crate::web::same_secret(&expected, &form.csrf) {
        return login_page(
            &state,
            &form.next,
            Some("The sign-in form expired; please try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    if !state.login_limiter.allow(client) {
        return login_page(
            &state,
            &form.next,
            Some("Too many sign-in attempts from your address; wait a minute.".into()),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let lifetime = chrono::Duration::hours(state.config.session_hours as i64);
    let from = crate::accounts::SignedInFrom {
        address: Some(client.to_string()),
        user_agent: user_agent(&headers),
    };
    let signed_in = state
        .accounts
        .login_from(
            form.username.trim(),
            &form.password,
            Some(form.code.trim()).filter(|code| !code.is_empty()),
            lifetime,
            &from,
        )
        .await
        .map_err(|error| PageError::from(crate::web::ApiError::from(error)))?;
    let (token, user) = match signed_in {
        Ok(opened) => opened,
        Err(refusal) => return refused(&state, &form, client, refusal).await,
    };
    state.login_limiter.reset(client);
    tracing::info!(user = %user.username, ip = %client, "signed in");
    let change = Change::of(Action::SignIn, &user.username);
    audit::record(
        &state.store,
        &Actor::new(&user.username, Some(client)),
        change,
    )
    .await?;
    let mut response = Redirect::to(&safe_next(&form.next)).into_response();
    let max_age = state.config.session_hours as i64 * 3600;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, &token, max_age),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, LOGIN_CSRF_COOKIE, "", 0),
    );
    Ok(response)
}

/// A refused sign-in: audited (a right password with a wrong code says so,
/// as it means the password is known to someone), and the page again.
async fn refused(
    state: &AppState,
    form: &LoginForm,
    client: std::net::IpAddr,
    refusal: crate::accounts::Refusal,
) -> Result<Response, PageError> {
    use crate::accounts::Refusal;
    {
        tracing::info!(user = %form.username, ip = %client, ?refusal, "failed sign-in");
        // The name as typed (it may be no user's): shortened and printable.
        let typed: String = form
            .username
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let reason = match refusal {
            Refusal::Credentials => None,
            Refusal::SecondFactor => Some("the password was right; the authenticator code was not"),
            Refusal::SecondFactorLocked => Some(
                "the password was right; too many wrong authenticator codes lately, none checked",
            ),
        };
        let mut change = Change::of(Action::SignInFailed, &typed);
        if let Some(reason) = reason {
            change = change.to(&serde_json::json!({ "reason": reason }));
        }
        audit::record(
            &state.store,
            &Actor::new(typed.as_str(), Some(client)),
            change,
        )
        .await?;
        // The same words whichever was wrong: a guesser learns nothing.
        login_page(
            state,
            &form.next,
            Some("Wrong user name or password (or authenticator code).".into()),
            StatusCode::UNAUTHORIZED,
        )
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Address(address): Address,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&user, &form.csrf)?;
    if let Some(token) = session_token(&headers) {
        state
            .accounts
            .end_session(&token)
            .await
            .map_err(|error| PageError::from(crate::web::ApiError::from(error)))?;
    }
    let change = Change::of(Action::SignOut, &user.username);
    audit::record(&state.store, &Actor::new(&user.username, address), change).await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_site_are_followed_after_sign_in() {
        for local in [
            "/",
            "/domains",
            "/aggregate?domain=example.com&group_by=org",
            "/a%2F%2Fb",
        ] {
            assert_eq!(safe_next(local), local);
        }
        for foreign in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/ /evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(foreign), "/", "{foreign:?}");
        }
    }
}
