//! Durable intake shared by every path in (SMTP, HTTP, the CLI): a message
//! is acknowledged only after `Inbox::accept` returned, that is after its
//! raw bytes are committed. Everything else is derived from them later.

use crate::store::{Accepted, Envelope, Store, StoreResult};

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
    pub async fn accept_many(&self, messages: &[(&[u8], &Envelope)]) -> StoreResult<Vec<Accepted>> {
        self.store.insert_messages(messages).await
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
