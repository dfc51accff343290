//! Everything dmarcd sends (mail through `[mail_out]`, webhooks) goes
//! through the outbox: rendered and committed to the `outbox` table first
//! (`Store::enqueue_outbox`, or inside the transaction that decided it),
//! then sent by `OutboxSender`, which claims due rows (several nodes never
//! take the same one), retries temporary failures with a doubling wait and
//! gives up after `outbox.give_up_hours`, keeping the reason.
//!
//! Delivery is at least once: a node that dies between sending and
//! recording it leaves the row claimed until its lease runs out, and then
//! it is sent again. Each message carries its outbox id for the receiver
//! to drop such a repeat: `Message-ID: <dmarcd.outbox.ID@from-domain>`,
//! `X-Dmarcd-Delivery: ID`.
//!
//! A node asked to stop sends nothing new and gives back what it had
//! claimed but not sent within `SHUTDOWN_GRACE` (`deliver_until`).

pub mod config;
mod mail;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{ClaimedOutboxItem, NewOutboxItem, OutboxResult, Store, StoreResult};
pub use config::{MailOutConfig, MailTls, OutboxConfig};
pub use mail::{MailMessage, MailSender};
pub use webhook::{WebhookFormat, WebhookRequest};

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutboxItem {
    Mail(MailMessage),
    Webhook(WebhookRequest),
}

impl OutboxItem {
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxItem::Mail(_) => "mail",
            OutboxItem::Webhook(_) => "webhook",
        }
    }

    /// The row to store; `dedup_key` stores it once however often queued.
    pub fn queued(&self, dedup_key: Option<String>) -> NewOutboxItem {
        NewOutboxItem {
            kind: self.kind(),
            dedup_key,
            payload: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// Something to tell people, before it is shaped for a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// What happened, as a fixed word (`alert.opened`, `test`).
    pub event: String,
    pub title: String,
    /// A sentence or a few lines of plain text.
    pub text: String,
    /// The dashboard page that shows the cause.
    pub link: Option<String>,
    /// The facts, for receivers that read JSON.
    pub details: serde_json::Value,
}

#[derive(Template)]
#[template(path = "mail/notification.txt")]
struct NotificationText<'a> {
    notification: &'a Notification,
    settings_link: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/notification.html")]
struct NotificationHtml<'a> {
    notification: &'a Notification,
    settings_link: Option<&'a str>,
}

impl Notification {
    /// A message that says the way out works.
    pub fn test(config: &OutboxConfig) -> Notification {
        Notification {
            event: "test".to_string(),
            title: "dmarcd test message".to_string(),
            text: "This is a test from dmarcd: alerts and digests will reach you here.".to_string(),
            link: config.link("/"),
            details: serde_json::json!({}),
        }
    }

    /// The notification as a mail to `to` (plain text and HTML from the
    /// templates in templates/mail/).
    pub fn mail(&self, to: Vec<String>, settings_link: Option<String>) -> MailMessage {
        let settings = settings_link.as_deref();
        let text = NotificationText {
            notification: self,
            settings_link: settings,
        }
        .render()
        .unwrap_or_else(|_| self.text.clone());
        let html = NotificationHtml {
            notification: self,
            settings_link: settings,
        }
        .render()
        .unwrap_or_else(|_| self.text.clone());
        MailMessage {
            to,
            subject: self.title.clone(),
            text,
            html,
            settings_link,
        }
    }

    /// The notification as a call to a webhook in `format`.
    pub fn webhook(
        &self,
        url: &str,
        format: WebhookFormat,
        secret: Option<String>,
    ) -> WebhookRequest {
        WebhookRequest {
            url: url.to_string(),
            secret,
            event: self.event.clone(),
            body: format.render(self),
        }
    }
}

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Trying again cannot help (a 5xx from the relay, a 4xx from a webhook).
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            permanent: true,
            message: message.into(),
        }
    }

    pub fn temporary(message: impl Into<String>) -> Self {
        SendError {
            permanent: false,
            message: message.into(),
        }
    }
}

/// How long the sends under way may still take once the server is asked
/// to stop (SIGTERM), before they are abandoned and given back.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
}

/// Sends what the outbox holds.
#[derive(Clone)]
pub struct OutboxSender {
    store: Store,
    config: Arc<OutboxConfig>,
    mail: Option<Arc<MailSender>>,
    owner: String,
    /// How long a claim lasts: longer than any one send can take.
    lease: Duration,
}

impl OutboxSender {
    /// A sender named `owner` (this process, in the claims it takes).
    pub fn new(
        store: Store,
        mail_out: &MailOutConfig,
        config: &OutboxConfig,
        owner: String,
    ) -> Result<OutboxSender, String> {
        let mail = MailSender::from_config(mail_out)?.map(Arc::new);
        let slowest = mail_out.timeout_seconds.max(config.webhook_timeout_seconds);
        Ok(OutboxSender {
            store,
            config: Arc::new(config.clone()),
            mail,
            owner,
            // lettre's timeout is per command: a message takes several.
            lease: Duration::from_secs(slowest.saturating_mul(6).max(10)),
        })
    }

    /// Sends every row due at `now`, a batch at a time, the rows of a batch
    /// at once (a webhook that hangs holds up only itself).
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> StoreResult<DeliveryPass> {
        let (_never, running) = watch::channel(false);
        self.deliver_until(now, running).await
    }

    /// `deliver_due`, until `stopped` turns true: then no further batch is
    /// claimed, the sends under way get `SHUTDOWN_GRACE` to finish, and
    /// the rest are abandoned and given back (`Store::release_outbox`:
    /// pending again, for the next pass of any node, without waiting for
    /// the lease). A relay that does not answer (minutes of timeouts per
    /// batch) never holds up a shutdown. Delivery stays at least once: a
    /// send cut off after the relay had the whole message is sent again
    /// later, with the same Message-ID for the receiver to drop it.
    pub async fn deliver_until(
        &self,
        now: DateTime<Utc>,
        mut stopped: watch::Receiver<bool>,
    ) -> StoreResult<DeliveryPass> {
        let mut pass = DeliveryPass::default();
        loop {
            if *stopped.borrow() {
                return Ok(pass);
            }
            let claimed = self
                .store
                .claim_outbox(&self.owner, self.config.batch, self.lease, now)
                .await?;
            if claimed.is_empty() {
                return Ok(pass);
            }
            let mut unfinished: std::collections::BTreeSet<i64> =
                claimed.iter().map(|item| item.id).collect();
            let mut sends = tokio::task::JoinSet::new();
            for item in claimed {
                let sender = self.clone();
                sends.spawn(async move {
                    let result = sender.send(&item, now).await;
                    (item, result)
                });
            }
            // Armed once `stopped` turns true.
            let mut give_up_at: Option<tokio::time::Instant> = None;
            let mut watching = true;
            loop {
                let grace_over = async move {
                    match give_up_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let joined = tokio::select! {
                    joined = sends.join_next() => joined,
                    changed = stopped.changed(), if watching => {
                        match changed {
                            Ok(()) if *stopped.borrow() => {
                                give_up_at = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                                watching = false;
                            }
                            Ok(()) => {}
                            Err(_) => watching = false,
                        }
                        continue;
                    }
                    () = grace_over => {
                        sends.abort_all();
                        let ids: Vec<i64> = unfinished.into_iter().collect();
                        let released = self.store.release_outbox(&ids, &self.owner).await?;
                        tracing::info!(released, "outbox: stopping; messages not sent yet are pending again");
                        return Ok(pass);
                    }
                };
                let Some(joined) = joined else {
                    break;
                };
                let Ok((item, result)) = joined else {
                    continue;
                };
                unfinished.remove(&item.id);
                let outcome = self.outcome(&item, result, now);
                let label = match &outcome {
                    OutboxResult::Sent => {
                        pass.sent += 1;
                        "sent"
                    }
                    OutboxResult::Retry { error, .. } => {
                        pass.retried += 1;
                        tracing::warn!(id = item.id, kind = %item.kind, attempts = item.attempts, %error, "outbox: will try again");
                        "retried"
                    }
                    OutboxResult::Failed(reason) => {
                        pass.failed += 1;
                        tracing::error!(id = item.id, kind = %item.kind, %reason, "outbox: gave up");
                        "failed"
                    }
                };
                crate::metrics::count(
                    "dmarcd_outbox_attempts_total",
                    &[("kind", item.kind.as_str()), ("result", label)],
                    1,
                );
                self.store
                    .finish_outbox(item.id, &self.owner, &outcome, now)
                    .await?;
            }
        }
    }

    async fn send(&self, item: &ClaimedOutboxItem, now: DateTime<Utc>) -> Result<(), SendError> {
        let queued: OutboxItem = serde_json::from_str(&item.payload).map_err(|error| {
            SendError::permanent(format!("the queued message cannot be read: {error}"))
        })?;
        match queued {
            OutboxItem::Mail(message) => match &self.mail {
                Some(mail) => mail.send(item.id, &message).await,
                None => Err(SendError::permanent(
                    "mail is off: set mail_out.relay or mail_out.sendmail",
                )),
            },
            OutboxItem::Webhook(request) => {
                let timeout = Duration::from_secs(self.config.webhook_timeout_seconds);
                webhook::send(item.id, &request, timeout, now).await
            }
        }
    }

    /// What to record for a send that ended with `result` at `now`.
    fn outcome(
        &self,
        item: &ClaimedOutboxItem,
        result: Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> OutboxResult {
        let error = match result {
            Ok(()) => return OutboxResult::Sent,
            Err(error) if error.permanent => return OutboxResult::Failed(error.message),
            Err(error) => error.message,
        };
        let give_up_at = item.created_at
            + chrono::Duration::hours(i64::try_from(self.config.give_up_hours).unwrap_or(i64::MAX));
        let next_attempt_at = now
            + chrono::Duration::from_std(self.config.backoff(item.attempts))
                .unwrap_or(chrono::Duration::MAX);
        if next_attempt_at > give_up_at {
            return OutboxResult::Failed(format!(
                "gave up after {} attempts over {} h; the last: {error}",
                item.attempts, self.config.give_up_hours
            ));
        }
        OutboxResult::Retry {
            next_attempt_at,
            error,
        }
    }

    /// Delivers every `interval_seconds` until `stopped`.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.interval_seconds);
        loop {
            if let Err(error) = self.deliver_until(Utc::now(), stopped.clone()).await {
                tracing::warn!(%error, "outbox: cannot read the queue");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
        }
    }
}
