//! The Mailboxes page: each `[[mailbox]]`, how its pull stands (last
//! success, last error in plain words, messages pulled), from the
//! database, so every node shows what the node holding the lease did.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{render, Layout, PageError, PageUser};
use crate::store::MailboxState;
use crate::web::AppState;

/// One row of the page.
pub struct MailboxRow {
    pub name: String,
    /// `user@host:port/folder`, or empty for a mailbox no longer configured here.
    pub server: String,
    pub after: &'static str,
    pub state: Option<MailboxState>,
}

impl MailboxRow {
    pub fn failing(&self) -> bool {
        self.state.as_ref().is_some_and(MailboxState::is_failing)
    }

    pub fn last_success(&self) -> String {
        self.state
            .as_ref()
            .and_then(|state| state.last_success_at)
            .map_or_else(
                || "never".to_string(),
                |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            )
    }

    pub fn waiting(&self) -> &str {
        self.state
            .as_ref()
            .and_then(|state| state.waiting.as_deref())
            .map_or("not running", |waiting| match waiting {
                "idle" => "IDLE (new mail at once)",
                "poll" => "polling",
                other => other,
            })
    }
}

#[derive(Template)]
#[template(path = "mailboxes.html")]
struct MailboxesPage {
    layout: Layout,
    rows: Vec<MailboxRow>,
}

pub(super) async fn mailboxes(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, PageError> {
    // Mailboxes are the server's, shared by every group.
    if !user.scope.is_all() {
        return Err(PageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "the mailboxes are the server's: only those who see every domain see them",
        ));
    }
    let mut states = state.store.mailbox_states().await?;
    let mut rows: Vec<MailboxRow> = state
        .mailboxes
        .iter()
        .map(|config| MailboxRow {
            name: config.name.clone(),
            server: format!(
                "{}@{}:{}/{}",
                config.user,
                config.host,
                config.port(),
                config.folder
            ),
            after: config.after.as_str(),
            state: states
                .iter()
                .position(|s| s.name == config.name)
                .map(|index| states.remove(index)),
        })
        .collect();
    // Pulled before, by this node or another, but not configured here.
    rows.extend(states.into_iter().map(|state| MailboxRow {
        name: state.name.clone(),
        server: String::new(),
        after: "",
        state: Some(state),
    }));
    render(MailboxesPage {
        layout: Layout::new(&state, Some(user), "/mailboxes"),
        rows,
    })
}
