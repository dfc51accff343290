//! Failure report pages: the list and one report with the headers of
//! the failed message.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{
    csv_link, filter_form, pager, query_of, render, FilterForm, Layout, PageError, PageUser,
};
use crate::query::failures::{self, FailureRow};
use crate::query::{Filter, PageParams};
use crate::report::encoded_words::decode_encoded_words;
use crate::web::api::Params;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "failures.html")]
struct FailuresPage {
    layout: Layout,
    form: FilterForm,
    total: i64,
    rows: Vec<FailureRow>,
    csv: String,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn failures(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Params(filter): Params<Filter>,
    Params(paging): Params<PageParams>,
) -> Result<Response, PageError> {
    let parsed = filter.parse(&user.scope)?;
    let page = paging.page(50)?;
    let (rows, total) = failures::failures(&state.store, &parsed, page).await?;
    let query = query_of(&filter);
    let (previous, next) = pager("/failures", &query, page.offset, page.limit, total);
    render(FailuresPage {
        layout: Layout::new(&state, Some(user.clone()), "/failures"),
        form: filter_form(&state, &user.scope, filter, Vec::new()).await?,
        total,
        rows,
        csv: csv_link("/api/v1/failure/reports", &query),
        previous,
        next,
    })
}

/// One line of a failure report's page: what, its value, and where it leads.
struct Field {
    name: &'static str,
    value: String,
    href: Option<String>,
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage {
    layout: Layout,
    report: FailureRow,
    fields: Vec<Field>,
    headers: String,
}

/// The header block of the failed message inside a stored ARF report:
/// after the `message/rfc822` or `text/rfc822-headers` part's own headers,
/// up to the first blank line. At most 32 KiB.
fn original_headers(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(512 * 1024)]).replace("\r\n", "\n");
    let lower = text.to_ascii_lowercase();
    let Some(start) = ["text/rfc822-headers", "message/rfc822", "message/rfc-822"]
        .iter()
        .filter_map(|kind| lower.find(kind))
        .min()
    else {
        return String::new();
    };
    let Some(part_headers_end) = text[start..].find("\n\n").map(|i| start + i + 2) else {
        return String::new();
    };
    let block = &text[part_headers_end..];
    let end = floor_char_boundary(
        block,
        block.find("\n\n").unwrap_or(block.len()).min(32 * 1024),
    );
    readable_headers(&block[..end])
}

/// The largest index at most `at` that starts a character.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// A header block for reading: each field on one line (folded lines
/// joined, RFC 5322 §2.2.3) with its encoded words decoded (RFC 2047).
fn readable_headers(block: &str) -> String {
    let mut fields: Vec<String> = Vec::new();
    for line in block.lines() {
        match fields.last_mut() {
            Some(field) if line.starts_with([' ', '\t']) => {
                field.push(' ');
                field.push_str(line.trim());
            }
            _ => fields.push(line.to_string()),
        }
    }
    fields
        .iter()
        .map(|field| decode_encoded_words(field).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) async fn failure(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let report = failures::failure(&state.store, &user.scope, id)
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("no failure report {id}")))?;
    let headers = match report.message_id {
        Some(message) => state
            .store
            .message_raw(message)
            .await?
            .map(|raw| original_headers(&raw))
            .unwrap_or_default(),
        None => String::new(),
    };
    let field = |name, value: &Option<String>| Field {
        name,
        value: value.clone().unwrap_or_else(|| "-".into()),
        href: None,
    };
    let fields = vec![
        Field {
            name: "Format",
            value: report.format.clone(),
            href: None,
        },
        field("Feedback type", &report.feedback_type),
        field("Failure type", &report.auth_failure),
        field(ARRIVED, &report.arrival_date),
        Field {
            name: RECEIVED,
            value: report.received_at.clone(),
            href: None,
        },
        Field {
            href: report.source_ip.as_ref().map(|ip| format!("/sources/{ip}")),
            ..field("Source IP", &report.source_ip)
        },
        field("Reported domain", &report.reported_domain),
        field("Delivery result", &report.delivery_result),
        field("DKIM domain", &report.dkim_domain),
        field("Original envelope sender", &report.original_mail_from),
        field("Original From", &report.original_from),
        field("Original subject", &report.original_subject),
        field("Reporting MTA", &report.reporting_mta),
        field("User agent", &report.user_agent),
    ];
    render(FailurePage {
        layout: Layout::new(&state, Some(user.clone()), "/failures"),
        report,
        fields,
        headers,
    })
}

/// The two times of a failure report, named the same on every page.
const ARRIVED: &str = "Arrived at receiver";
const RECEIVED: &str = "Received by dmarcd";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_read_unfolded_and_decoded() {
        let raw = "Content-Type: text/rfc822-headers\r\n\r\n\
                   From: \"=?utf-8?B?SW50ZXJha3RpdmUgV2V0dGJld2VyYmVyLcOcYmVyc2ljaHQ=?=\"\r\n \
                   <sharepoint@domain.de>\r\n\
                   Subject: =?ISO-8859-1?Q?Andr=E9?=\r\n\r\nbody";
        assert_eq!(
            original_headers(raw.as_bytes()),
            "From: \"Interaktive Wettbewerber-Übersicht\" <sharepoint@domain.de>\nSubject: André"
        );
    }
}
