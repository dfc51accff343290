//! The notices the inbox and domains pages show after an action. The
//! redirect names a key and at most a number; the words are ours. Free text
//! from the URL would let a crafted link make a trusted page say anything
//! ("Your password expired: sign in at …").

use axum::response::{IntoResponse, Redirect, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The message numbered `n` is queued to be processed again.
    Requeued,
    /// There is no message `n`.
    NoSuchMessage,
    /// `n` failed messages were queued again.
    FailedRequeued,
    DomainAdded,
    DomainAlreadyMonitored,
    DomainRemoved,
    DomainNotMonitored,
    NotADomainName,
    PasswordChanged,
    /// `n` other sessions were signed out.
    SessionsEnded,
    /// The session to end was not (or no longer) one of the user's.
    NoSuchSession,
    TokenRevoked,
    TotpOn,
    TotpOff,
}

impl Notice {
    const ALL: [Notice; 14] = [
        Notice::Requeued,
        Notice::NoSuchMessage,
        Notice::FailedRequeued,
        Notice::DomainAdded,
        Notice::DomainAlreadyMonitored,
        Notice::DomainRemoved,
        Notice::DomainNotMonitored,
        Notice::NotADomainName,
        Notice::PasswordChanged,
        Notice::SessionsEnded,
        Notice::NoSuchSession,
        Notice::TokenRevoked,
        Notice::TotpOn,
        Notice::TotpOff,
    ];

    fn key(self) -> &'static str {
        match self {
            Notice::Requeued => "requeued",
            Notice::NoSuchMessage => "no_such_message",
            Notice::FailedRequeued => "failed_requeued",
            Notice::DomainAdded => "domain_added",
            Notice::DomainAlreadyMonitored => "domain_already_monitored",
            Notice::DomainRemoved => "domain_removed",
            Notice::DomainNotMonitored => "domain_not_monitored",
            Notice::NotADomainName => "not_a_domain_name",
            Notice::PasswordChanged => "password_changed",
            Notice::SessionsEnded => "sessions_ended",
            Notice::NoSuchSession => "no_such_session",
            Notice::TokenRevoked => "token_revoked",
            Notice::TotpOn => "totp_on",
            Notice::TotpOff => "totp_off",
        }
    }

    fn text(self, n: u64) -> String {
        match self {
            Notice::Requeued => format!("Message {n} is queued to be processed again."),
            Notice::NoSuchMessage => format!("There is no message {n}."),
            Notice::FailedRequeued => {
                let messages = super::plural(n as i64, "failed message", "failed messages");
                format!("{messages} queued to be processed again.")
            }
            Notice::DomainAdded => "The domain is added.".to_string(),
            Notice::DomainAlreadyMonitored => "That domain is already monitored.".to_string(),
            Notice::DomainRemoved => "The domain is removed; its reports stay.".to_string(),
            Notice::DomainNotMonitored => "That domain was not monitored.".to_string(),
            Notice::NotADomainName => {
                "That is not a domain name (letters, digits and hyphens, in labels separated by dots)."
                    .to_string()
            }
            Notice::PasswordChanged => {
                "Your password is changed; your other sessions are signed out.".to_string()
            }
            Notice::SessionsEnded => {
                let sessions = super::plural(n as i64, "session", "sessions");
                format!("{sessions} signed out.")
            }
            Notice::NoSuchSession => {
                "That session had ended already (or was not yours).".to_string()
            }
            Notice::TokenRevoked => {
                "The token is revoked: requests with it get 401 from now on.".to_string()
            }
            Notice::TotpOn => {
                "Two-step sign-in is on: signing in now asks for your app's code too.".to_string()
            }
            Notice::TotpOff => "Two-step sign-in is off.".to_string(),
        }
    }

    /// Whether the page shows it as an error.
    pub fn is_error(self) -> bool {
        matches!(self, Notice::NotADomainName | Notice::NoSuchSession)
    }

    /// A redirect to `path` that shows this notice there.
    pub fn redirect(self, path: &str, n: u64) -> Response {
        Redirect::to(&format!("{path}?notice={}&n={n}", self.key())).into_response()
    }

    /// The notice a query string names, with its words; an unknown key
    /// shows nothing.
    pub fn shown(key: Option<&str>, n: Option<&str>) -> Option<(Notice, String)> {
        let notice = Self::ALL
            .into_iter()
            .find(|notice| Some(notice.key()) == key)?;
        let n = n.and_then(|n| n.parse().ok()).unwrap_or(0);
        Some((notice, notice.text(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn only_known_keys_show_and_only_in_our_words() {
        assert_eq!(
            Notice::shown(Some("requeued"), Some("7")).map(|(_, text)| text),
            Some("Message 7 is queued to be processed again.".to_string())
        );
        assert_eq!(
            Notice::shown(Some("requeued"), Some("<script>")).map(|(_, text)| text),
            Some("Message 0 is queued to be processed again.".to_string())
        );
        assert_eq!(Notice::shown(Some("Your password expired"), None), None);
        assert_eq!(Notice::shown(None, Some("1")), None);
    }
}
