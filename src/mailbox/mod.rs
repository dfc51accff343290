//! Mailbox pull: reports read from IMAP mailboxes (`[[mailbox]]`), for
//! domains whose `rua=` address is an existing mailbox (Microsoft 365,
//! Google Workspace, a Dovecot) rather than dmarcd's own SMTP listener.
//!
//! A mailbox is one more way into the inbox: each message is committed
//! there (SHA-256 deduplicated, as SMTP does) before it is moved, marked
//! or deleted on the server; the folder's UIDVALIDITY and the last UID
//! handled are kept in the database, with a lease so that of several nodes
//! sharing PostgreSQL only one pulls a mailbox.

mod auth;
mod check;
pub mod config;
mod connect;
mod error;
pub(crate) mod http;
mod pull;
mod sort;
mod tls;
mod watch;

pub use check::MailboxCheck;
pub use config::{AfterPull, AuthMethod, MailboxConfig, TlsMode};
pub use error::{MailboxError, MailboxErrorKind};
pub use pull::{uid_set, PassSummary, PullEvent, Puller};
pub use sort::holds_report;
