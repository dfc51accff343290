//! What went wrong with a mailbox, in words a person can act on. The kind
//! is a fixed word (a metrics label, a column); the message says what to
//! check.

use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MailboxErrorKind {
    /// The server cannot be reached (DNS, refused, timed out).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The server refused the credentials.
    Auth,
    /// No access token could be had (token command, token URL).
    Token,
    /// The watched folder, or a folder to move to, does not exist or
    /// cannot be created.
    Folder,
    /// The account is over its quota (moving needs room).
    Quota,
    /// The server answered something unexpected, or hung up.
    Protocol,
    /// dmarcd's own database failed: nothing was moved or deleted.
    Database,
    /// Another node holds the mailbox's lease.
    Leased,
}

impl MailboxErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxErrorKind::Connect => "connect",
            MailboxErrorKind::Tls => "tls",
            MailboxErrorKind::Auth => "auth",
            MailboxErrorKind::Token => "token",
            MailboxErrorKind::Folder => "folder",
            MailboxErrorKind::Quota => "quota",
            MailboxErrorKind::Protocol => "protocol",
            MailboxErrorKind::Database => "database",
            MailboxErrorKind::Leased => "leased",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MailboxError {
    pub kind: MailboxErrorKind,
    pub message: String,
}

impl MailboxError {
    pub fn new(kind: MailboxErrorKind, message: impl Into<String>) -> Self {
        MailboxError {
            kind,
            message: message.into(),
        }
    }

    /// An IMAP error while doing `doing` ("selecting INBOX"), classified by
    /// the response codes servers send (RFC 5530: AUTHENTICATIONFAILED,
    /// OVERQUOTA, NONEXISTENT, TRYCREATE).
    pub fn imap(doing: &str, error: async_imap::error::Error) -> Self {
        use async_imap::error::Error;
        let text = error.to_string();
        let upper = text.to_ascii_uppercase();
        let kind = match &error {
            Error::Io(_) | Error::ConnectionLost => MailboxErrorKind::Protocol,
            _ if upper.contains("OVERQUOTA") || upper.contains("QUOTA") => MailboxErrorKind::Quota,
            _ if upper.contains("NONEXISTENT")
                || upper.contains("TRYCREATE")
                || upper.contains("DOESN'T EXIST")
                || upper.contains("NO SUCH MAILBOX") =>
            {
                MailboxErrorKind::Folder
            }
            _ => MailboxErrorKind::Protocol,
        };
        let detail = server_text(&text);
        let message = match kind {
            MailboxErrorKind::Quota => format!(
                "the mailbox is over its quota while {doing}: make room on the server, or use after = \"delete\" ({detail})"
            ),
            MailboxErrorKind::Folder => {
                format!("the folder does not exist or cannot be used while {doing} ({detail})")
            }
            _ if matches!(error, Error::ConnectionLost) => {
                format!("the server closed the connection while {doing}")
            }
            _ => format!("the server refused {doing}: {detail}"),
        };
        MailboxError::new(kind, message)
    }

    /// The server refused the sign-in.
    pub fn auth(user: &str, method: &str, error: async_imap::error::Error) -> Self {
        use async_imap::error::Error;
        if matches!(error, Error::Io(_) | Error::ConnectionLost) {
            return MailboxError::imap("signing in", error);
        }
        let detail = server_text(&error.to_string());
        MailboxError::new(
            MailboxErrorKind::Auth,
            format!(
                "the server refused to sign in {user:?} with {method}: check the user name and the {} ({detail})",
                if method == "a password" { "password" } else { "token and its scopes" }
            ),
        )
    }

    pub fn timeout(doing: &str, seconds: u64) -> Self {
        MailboxError::new(
            MailboxErrorKind::Connect,
            format!("no answer from the server within {seconds} s while {doing} (timeout_seconds)"),
        )
    }

    pub fn store(error: StoreError) -> Self {
        MailboxError::new(
            MailboxErrorKind::Database,
            format!(
                "the inbox could not store the messages, so none was moved or deleted: {error}"
            ),
        )
    }

    /// Worth trying again at once on a new connection (the server hung up).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            MailboxErrorKind::Protocol | MailboxErrorKind::Connect | MailboxErrorKind::Database
        )
    }
}

/// The readable part of async-imap's error text (`no response: code:
/// None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")`).
fn server_text(text: &str) -> String {
    match text.split_once("info: Some(\"") {
        Some((head, info)) => {
            let info = info.trim_end_matches("\")");
            let code = head
                .split_once("code: Some(")
                .map(|(_, code)| code.trim_end_matches([',', ' ', ')']))
                .filter(|code| !code.is_empty());
            match code {
                Some(code) => format!("{code}: {info}"),
                None => info.to_string(),
            }
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_words_are_kept_without_the_debug_noise() {
        assert_eq!(
            server_text(
                "no response: code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            server_text(
                "no response: code: Some(TryCreate), info: Some(\"Mailbox doesn't exist: X\")"
            ),
            "TryCreate: Mailbox doesn't exist: X"
        );
    }

    #[test]
    fn quota_and_missing_folders_are_told_apart() {
        let quota = MailboxError::imap(
            "moving",
            async_imap::error::Error::No(
                "code: None, info: Some(\"[OVERQUOTA] Quota exceeded (mailbox for user is full)\")"
                    .to_string(),
            ),
        );
        assert_eq!(quota.kind, MailboxErrorKind::Quota);
        let missing = MailboxError::imap(
            "selecting Reports",
            async_imap::error::Error::No(
                "code: None, info: Some(\"[NONEXISTENT] Mailbox doesn't exist: Reports\")"
                    .to_string(),
            ),
        );
        assert_eq!(missing.kind, MailboxErrorKind::Folder);
        assert!(
            missing.message.contains("selecting Reports"),
            "{}",
            missing.message
        );
    }
}
