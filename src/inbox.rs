//! Durable intake shared by every path in (SMTP, HTTP, the CLI): a message
//! is acknowledged only after `Inbox::accept` returned, that is after its
//! raw bytes are committed. Everything else is derived from them later.

use std::net::IpAddr;

use crate::store::{Accepted, Store, StoreResult};

#[derive(Clone)]
pub struct Inbox {
    store: Store,
}

impl Inbox {
    pub fn new(store: Store) -> Self {
        Inbox { store }
    }

    /// Stores `raw` and returns its inbox id once committed. The same bytes
    /// accepted twice (Google re-sends) are stored once; the second call
    /// returns the first id with `is_new = false`. An error means nothing
    /// was stored: the caller must tell its sender to retry (SMTP 451,
    /// HTTP 503).
    pub async fn accept(&self, raw: &[u8], envelope: &Envelope) -> StoreResult<Accepted> {
        let intake = envelope.intake.as_str();
        let accepted = match self.store.insert_message(raw, envelope).await {
            Ok(accepted) => accepted,
            Err(error) => {
                crate::metrics::count(
                    "dmarcd_messages_received_total",
                    &[("intake", intake), ("outcome", "error")],
                    1,
                );
                return Err(error);
            }
        };
        let outcome = if accepted.is_new { "new" } else { "duplicate" };
        crate::metrics::count(
            "dmarcd_messages_received_total",
            &[("intake", intake), ("outcome", outcome)],
            1,
        );
        tracing::debug!(
            id = accepted.id,
            new = accepted.is_new,
            size = raw.len(),
            intake = envelope.intake.as_str(),
            "message accepted"
        );
        Ok(accepted)
    }

    /// `accept` for several messages, committed together (one fsync): for
    /// bulk intake such as `dmarcd import`, where nobody waits on each one.
    /// Counted in `dmarcd_messages_received_total` as `accept` counts.
    pub async fn accept_many(&self, messages: &[(&[u8], &Envelope)]) -> StoreResult<Vec<Accepted>> {
        let result = self.store.insert_messages(messages).await;
        for (index, (_, envelope)) in messages.iter().enumerate() {
            let outcome = match &result {
                Ok(accepted) if accepted.get(index).is_some_and(|a| a.is_new) => "new",
                Ok(_) => "duplicate",
                Err(_) => "error",
            };
            crate::metrics::count(
                "dmarcd_messages_received_total",
                &[("intake", envelope.intake.as_str()), ("outcome", outcome)],
                1,
            );
        }
        result
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// How a message reached the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    Smtp,
    Http,
    Import,
    /// Pulled from a mailbox (`[[mailbox]]`).
    Imap,
}

impl Intake {
    pub fn as_str(self) -> &'static str {
        match self {
            Intake::Smtp => "smtp",
            Intake::Http => "http",
            Intake::Import => "import",
            Intake::Imap => "imap",
        }
    }
}

/// Who handed the message over, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub intake: Intake,
    /// A file path for imports, a request path for HTTP.
    pub source_name: Option<String>,
    pub peer_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub tls: bool,
}

impl Envelope {
    /// An import from a file.
    pub fn import(source_name: impl Into<String>) -> Self {
        Envelope {
            intake: Intake::Import,
            source_name: Some(source_name.into()),
            peer_ip: None,
            helo: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            tls: false,
        }
    }
}

/// The lifecycle of an inbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageStatus {
    Pending,
    Processing,
    Done,
    Failed,
    /// Every report in it was already stored from another message.
    Duplicate,
    /// Not a report (a bounce, spam, a human's mail), kept with the reason.
    Ignored,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Processing => "processing",
            MessageStatus::Done => "done",
            MessageStatus::Failed => "failed",
            MessageStatus::Duplicate => "duplicate",
            MessageStatus::Ignored => "ignored",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => MessageStatus::Pending,
            "processing" => MessageStatus::Processing,
            "done" => MessageStatus::Done,
            "failed" => MessageStatus::Failed,
            "duplicate" => MessageStatus::Duplicate,
            "ignored" => MessageStatus::Ignored,
            _ => return None,
        })
    }

    /// Whether processing has finished with this message (for now).
    pub fn is_final(self) -> bool {
        !matches!(self, MessageStatus::Pending | MessageStatus::Processing)
    }
}

/// How much of a message is read to find its Subject: a header is rarely
/// longer, and intake must not parse whole 20 MB messages for it.
const SUBJECT_HEAD_BYTES: usize = 16 * 1024;

/// The decoded Subject (RFC 2047) of a message, from its first
/// `SUBJECT_HEAD_BYTES` (a header cut short there still gives the lines
/// before the cut).
pub fn subject_of(raw: &[u8]) -> Option<String> {
    let head = &raw[..raw.len().min(SUBJECT_HEAD_BYTES)];
    let message = mail_parser::MessageParser::default().parse_headers(head)?;
    // One line: the listing re-reads it as a header.
    let subject = message.subject()?.replace(['\r', '\n'], " ");
    let subject = subject.trim();
    (!subject.is_empty()).then(|| subject.to_string())
}
