//! The dashboard: server-rendered pages (askama templates in `templates/`),
//! plain GET forms for filters, SVG charts drawn here, no script and no
//! asset from the internet. Query strings are the API's parameters.

mod account;
mod aggregate;
mod alerts;
mod audit;
mod auth;
mod compliance;
mod digests;
mod domains;
mod failures;
mod groups;
mod inbox;
mod mailboxes;
mod mta_sts;
mod notice;
mod posture;
mod senders;
mod sso;
mod tls;

pub(super) use auth::session_token;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use crate::accounts::SessionUser;
use crate::query::{Filter, QueryError, SummaryRow};

pub(super) fn routes() -> crate::web::routes::Routes {
    crate::web::routes::Routes::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/login/sso", get(sso::start))
        .route("/login/sso/callback", get(sso::callback))
        .route("/", get(aggregate::overview))
        .route("/aggregate", get(aggregate::explorer))
        .route("/records", get(aggregate::records))
        .route("/sources/{ip}", get(aggregate::source))
        .route("/reports/{id}", get(aggregate::report))
        .route("/reports/{id}/xml", get(aggregate::report_xml))
        .route("/tls", get(tls::tls))
        .route("/tls/reports/{id}", get(tls::tls_report))
        .route("/failures", get(failures::failures))
        .route("/failures/{id}", get(failures::failure))
        .route("/inbox", get(inbox::inbox))
        .route("/inbox/{id}/raw", get(inbox::inbox_raw))
        .route("/inbox/{id}/reprocess", post(inbox::reprocess))
        .route("/inbox/reprocess-failed", post(inbox::reprocess_failed))
        .route("/mailboxes", get(mailboxes::mailboxes))
        .route("/alerts", get(alerts::alerts_page).post(alerts::change))
        .route("/alerts/rules", post(alerts::add_rule))
        .route("/alerts/channels", post(alerts::add_channel))
        .route(
            "/alerts/digests",
            get(digests::digests_page).post(digests::save),
        )
        .route("/alerts/digests/change", post(digests::change))
        .route("/alerts/digests/{id}/preview", get(digests::preview))
        .route("/account", get(account::account))
        .route("/audit", get(audit::audit))
        .route("/groups", get(groups::groups_page).post(groups::change))
        .route("/account/password", post(account::change_password))
        .route("/account/sessions/end", post(account::end_sessions))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/revoke", post(account::revoke_token))
        .route("/account/totp", post(account::totp))
        .route("/domains", get(domains::domains).post(domains::add_domain))
        .route("/domains/remove", post(domains::remove_domain))
        .route("/domains/check", post(posture::check_now))
        .route("/domains/selectors", post(posture::add_selector))
        .route("/domains/{name}", get(posture::domain))
        .route(
            "/domains/{name}/mta-sts",
            get(mta_sts::page).post(mta_sts::change),
        )
        .route("/domains/{name}/hosted-dmarc", post(mta_sts::set_dmarc))
        .route("/lookup", get(posture::lookup))
        .route("/senders", get(senders::senders))
        .route("/compliance", get(compliance::compliance))
        .route("/senders/source", get(senders::sender))
        .route("/senders/rules", post(senders::add_rule))
        .route("/senders/revoke", post(senders::revoke_rule))
}

/// The section of the navigation a page belongs to: the nav entry whose
/// path is the longest prefix of the page's (a source or report page
/// belongs to Records, where they are reached from).
pub(super) fn section_of(path: &str) -> &'static str {
    if path.starts_with("/sources/") || path.starts_with("/reports/") {
        return "/records";
    }
    NAV.iter()
        .map(|(href, _)| *href)
        .filter(|href| *href != "/")
        .filter(|href| path == *href || path.starts_with(&format!("{href}/")))
        .max_by_key(|href| href.len())
        .unwrap_or("/")
}

/// What an empty dashboard tells a new user: where to send reports.
pub struct FirstSteps {
    /// SMTP's address, when SMTP is on.
    pub smtp_listen: Option<String>,
    /// An address SMTP accepts (the first configured recipient).
    pub recipient: String,
    /// Every accepted recipient, or a note that any address is taken.
    pub recipients: String,
    pub tlsrpt_path: String,
}

impl FirstSteps {
    fn new(state: &AppState) -> Self {
        let (smtp_listen, recipients) = match &state.intake.smtp {
            Some((listen, recipients)) => (Some(listen.clone()), recipients.clone()),
            None => (None, Vec::new()),
        };
        FirstSteps {
            smtp_listen,
            recipient: recipients
                .first()
                .cloned()
                .unwrap_or_else(|| "dmarc@localhost".into()),
            recipients: if recipients.is_empty() {
                "any address (smtp.recipients is empty, allowed on loopback only)".into()
            } else {
                recipients.join(", ")
            },
            tlsrpt_path: state.config.tlsrpt_path.clone(),
        }
    }
}

/// What the base template needs.
pub struct Layout {
    pub user: Option<SessionUser>,
    pub active: &'static str,
    pub nav: &'static [(&'static str, &'static str)],
    pub version: &'static str,
    /// Show the DB-IP attribution its licence requires.
    pub dbip: bool,
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/aggregate", "Explorer"),
    ("/senders", "Senders"),
    ("/compliance", "Compliance"),
    ("/records", "Records"),
    ("/tls", "TLS-RPT"),
    ("/failures", "Failures"),
    ("/inbox", "Inbox"),
    ("/mailboxes", "Mailboxes"),
    ("/alerts", "Alerts"),
    ("/domains", "Domains"),
    ("/lookup", "Lookup"),
];

impl Layout {
    /// The signed-in user's scope (none signed in: sees nothing).
    fn scope(&self) -> crate::scope::Scope {
        self.user
            .as_ref()
            .map(|user| user.scope.clone())
            .unwrap_or_default()
    }

    fn new(state: &AppState, user: Option<SessionUser>, active: &'static str) -> Self {
        Layout {
            user,
            active,
            nav: NAV,
            version: env!("CARGO_PKG_VERSION"),
            dbip: state.shows_dbip(),
        }
    }
}

/// A signed-in dashboard user; anyone else is sent to the sign-in page.
pub struct PageUser(pub SessionUser);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = auth::session_token(&parts.headers);
        let user =
            match token {
                Some(token) => state.accounts.session(&token).await.map_err(|error| {
                    PageError::from(super::ApiError::from(error)).into_response()
                })?,
                None => None,
            };
        match user {
            Some(user) => Ok(PageUser(user)),
            None => {
                let next = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or_else(|| parts.uri.to_string(), |uri| uri.0.to_string());
                let next = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                Err(Redirect::to(&format!("/login?{next}")).into_response())
            }
        }
    }
}

/// An error page (the API answers JSON; the dashboard answers HTML).
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<super::ApiError> for PageError {
    fn from(error: super::ApiError) -> Self {
        PageError::new(error.status, error.message)
    }
}

impl From<QueryError> for PageError {
    fn from(error: QueryError) -> Self {
        super::ApiError::from(error).into()
    }
}

impl From<crate::query::FilterError> for PageError {
    fn from(error: crate::query::FilterError) -> Self {
        super::ApiError::from(error).into()
    }
}

impl From<crate::groups::GroupError> for PageError {
    fn from(error: crate::groups::GroupError) -> Self {
        super::ApiError::from(error).into()
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        super::ApiError::from(error).into()
    }
}

impl IntoResponse for PageError {
    /// A bare page; `error_pages_keep_navigation` renders it again inside
    /// the layout, with the signed-in user's navigation, on its way out.
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Error · dmarcd</title></head><body style=\"font-family: system-ui, sans-serif; padding: 1rem\">\
             <h1>{}</h1><p role=\"alert\">{}</p><p><a href=\"/\">Overview</a></p></body></html>",
            self.status,
            html_escape(&self.message)
        );
        let mut response = (self.status, Html(body)).into_response();
        response.extensions_mut().insert(ErrorMessage(self.message));
        response
    }
}

/// What a `PageError` said, kept on its response for the layer below.
#[derive(Clone)]
struct ErrorMessage(String);

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: StatusCode,
    message: String,
}

/// Error pages keep the navigation and the sign-out button: the handler
/// that failed may have failed before it knew its user, so the session
/// is looked up here, from the request's cookie.
pub(super) async fn error_pages_keep_navigation(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = auth::session_token(request.headers());
    let section = section_of(request.uri().path());
    let response = next.run(request).await;
    let Some(ErrorMessage(message)) = response.extensions().get::<ErrorMessage>().cloned() else {
        return response;
    };
    let user = match token {
        Some(token) => state.accounts.session(&token).await.ok().flatten(),
        None => None,
    };
    let status = response.status();
    let page = ErrorPage {
        layout: Layout::new(&state, user, section),
        status,
        message,
    };
    match render(page) {
        Ok(mut rendered) => {
            *rendered.status_mut() = status;
            rendered
        }
        Err(_) => response,
    }
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn render(template: impl askama::Template) -> Result<Response, PageError> {
    let html = template.render().map_err(|error| {
        tracing::error!(%error, "template failed");
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
    })?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response())
}

/// A form POST must carry the session's CSRF token.
fn check_csrf(user: &SessionUser, submitted: &str) -> Result<(), PageError> {
    if super::same_secret(&user.csrf_token, submitted) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "the form was stale or forged (CSRF check failed); reload the page and try again",
        ))
    }
}

fn require_admin(user: &SessionUser) -> Result<(), PageError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "only admins can do this",
        ))
    }
}

/// One row of a summary table, ready to show.
pub struct SummaryLine {
    pub key: String,
    pub label: Option<String>,
    pub href: Option<String>,
    pub messages: i64,
    pub pass: i64,
    pub fail: i64,
    pub rate: String,
    pub dkim: i64,
    pub spf: i64,
    pub quarantine: i64,
    pub reject: i64,
}

pub struct SummaryTable {
    pub heading: &'static str,
    /// The overview's cards: messages, failures, pass rate and the aligned
    /// DKIM and SPF passes only, so every column shows at desktop width.
    pub compact: bool,
    pub rows: Vec<SummaryLine>,
}

/// "1 record", "2 records".
pub fn plural(count: i64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

pub fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "–".to_string();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

impl SummaryLine {
    pub fn new(row: &SummaryRow, href: Option<String>) -> Self {
        SummaryLine {
            key: row.key.clone().unwrap_or_else(|| "(unknown)".to_string()),
            label: row.label.clone(),
            href,
            messages: row.messages,
            pass: row.dmarc_pass,
            fail: row.dmarc_fail,
            rate: percent(row.dmarc_pass, row.messages),
            dkim: row.dkim_aligned_pass,
            spf: row.spf_aligned_pass,
            quarantine: row.disposition_quarantine,
            reject: row.disposition_reject,
        }
    }
}

/// A `<select>` added to the filter form.
pub struct Select {
    pub label: &'static str,
    pub name: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
}

/// The filter form: the values set, and the choices it offers.
pub struct FilterForm {
    pub filter: Filter,
    pub domains: Vec<String>,
    /// Reporters and source names seen, offered as suggestions.
    pub names: crate::store::KnownNames,
    pub source_types: Vec<String>,
    pub pass_fail: Vec<(&'static str, &'static str)>,
    pub dispositions: Vec<&'static str>,
    /// Page-specific selects (group by, sort).
    pub selects: Vec<Select>,
}

async fn filter_form(
    state: &AppState,
    scope: &crate::scope::Scope,
    filter: Filter,
    selects: Vec<Select>,
) -> Result<FilterForm, PageError> {
    Ok(FilterForm {
        filter,
        domains: state.store.domains(scope).await?,
        names: state.known_names(scope).await?,
        source_types: crate::enrich::SOURCE_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        pass_fail: vec![("", "any"), ("pass", "pass"), ("fail", "fail")],
        dispositions: vec!["", "none", "quarantine", "reject"],
        selects,
    })
}

/// Links to the previous and next page, keeping every other parameter.
fn pager(
    path: &str,
    query: &str,
    offset: i64,
    limit: i64,
    total: i64,
) -> (Option<String>, Option<String>) {
    let base: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !pair.is_empty() && !pair.starts_with("offset=") && !pair.starts_with("limit=")
        })
        .collect();
    let link = |offset: i64| {
        let mut parts = base.clone();
        let paging = format!("offset={offset}&limit={limit}");
        parts.push(&paging);
        format!("{path}?{}", parts.join("&"))
    };
    let previous = (offset > 0).then(|| link((offset - limit).max(0)));
    let next = (offset + limit < total).then(|| link(offset + limit));
    (previous, next)
}

/// The API's CSV export of what a page shows, with the same parameters
/// (the session authorizes it: `api::ApiToken`).
fn csv_link(api_path: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{api_path}?format=csv")
    } else {
        format!("{api_path}?{query}&format=csv")
    }
}

fn query_of(filter: &Filter) -> String {
    filter.query_string()
}
