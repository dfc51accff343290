//! Alerts: rules that watch each domain (a new source sending as it,
//! failing mail over a threshold, reporters or the whole domain falling
//! silent, failure reports, TLS-RPT failures), channels that say where to
//! tell (mail, webhooks), and the alerts that fired, open until their cause
//! goes.
//!
//! Rules are evaluated where the facts arrive, not by scanning records:
//! new sources and failing volume on the rollup applier's batch of deltas
//! (`store::alerts::on_batch`, in the applier's transaction), the rest by
//! `AlertSchedule` on a timer (failure and TLS reports read past a
//! cursor, silence from the reports' arrival times, causes that have gone).
//! Notifications are queued in the outbox in the transaction that opens
//! or resolves the alert.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::outbox::{Notification, OutboxItem, WebhookFormat};
use crate::senders::Class;
use crate::store::{NewOutboxItem, Store};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A source IP sending as the domain that was never seen before
    /// (`threshold`: messages from it in the batch, at least).
    NewSource,
    /// At least `threshold` messages failing DMARC in `window_days` days
    /// of reports.
    FailingVolume,
    /// No aggregate report for the domain arrived for `window_days` days.
    DomainSilent,
    /// A reporter that reported the domain daily has not for `window_days` days.
    ReporterSilent,
    /// New failure reports (ruf), one alert per domain and batch.
    FailureReport,
    /// TLS-RPT reports with at least `threshold` failed sessions.
    TlsrptFailure,
    /// One source failing DMARC on at least `threshold` messages in
    /// `window_days` days of reports.
    SourceFailingVolume,
    /// The domain's DMARC pass rate on a day at least `threshold` points
    /// below its median over the `window_days` days before.
    PassRateDrop,
    /// The same for one source of the domain.
    SourcePassRateDrop,
    /// Failed TLS sessions after `window_days` days of TLS reports with none.
    TlsrptFirstFailure,
    /// A published DNS record of the domain changed (DMARC, SPF, DKIM, MX,
    /// MTA-STS, TLS-RPT); one alert per record.
    DnsChanged,
    /// The domain's latest DNS check found an error (a broken record); one
    /// alert per finding, resolved by the first check without it.
    DnsBroken,
}

impl RuleKind {
    pub const ALL: [RuleKind; 12] = [
        RuleKind::NewSource,
        RuleKind::FailingVolume,
        RuleKind::SourceFailingVolume,
        RuleKind::PassRateDrop,
        RuleKind::SourcePassRateDrop,
        RuleKind::DomainSilent,
        RuleKind::ReporterSilent,
        RuleKind::FailureReport,
        RuleKind::TlsrptFailure,
        RuleKind::TlsrptFirstFailure,
        RuleKind::DnsChanged,
        RuleKind::DnsBroken,
    ];

    pub fn key(self) -> &'static str {
        match self {
            RuleKind::NewSource => "new_source",
            RuleKind::FailingVolume => "failing_volume",
            RuleKind::DomainSilent => "domain_silent",
            RuleKind::ReporterSilent => "reporter_silent",
            RuleKind::FailureReport => "failure_report",
            RuleKind::TlsrptFailure => "tlsrpt_failure",
            RuleKind::SourceFailingVolume => "source_failing_volume",
            RuleKind::PassRateDrop => "pass_rate_drop",
            RuleKind::SourcePassRateDrop => "source_pass_rate_drop",
            RuleKind::TlsrptFirstFailure => "tlsrpt_first_failure",
            RuleKind::DnsChanged => "dns_changed",
            RuleKind::DnsBroken => "dns_broken",
        }
    }

    pub fn parse(text: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|kind| kind.key() == text)
    }

    /// In words, for pages and messages.
    pub fn label(self) -> &'static str {
        match self {
            RuleKind::NewSource => "New source",
            RuleKind::FailingVolume => "Failing volume",
            RuleKind::DomainSilent => "No reports for the domain",
            RuleKind::ReporterSilent => "A daily reporter went silent",
            RuleKind::FailureReport => "New failure reports",
            RuleKind::TlsrptFailure => "TLS-RPT failures",
            RuleKind::SourceFailingVolume => "Failing volume of one source",
            RuleKind::PassRateDrop => "Pass rate below its baseline",
            RuleKind::SourcePassRateDrop => "Pass rate of one source below its baseline",
            RuleKind::TlsrptFirstFailure => "First TLS failures after a clean period",
            RuleKind::DnsChanged => "DNS record changed",
            RuleKind::DnsBroken => "DNS record broken",
        }
    }

    /// What `threshold` counts, for pages and the API document.
    pub fn threshold_meaning(self) -> &'static str {
        match self {
            RuleKind::NewSource => "messages from the new source in one batch",
            RuleKind::FailingVolume | RuleKind::SourceFailingVolume => "failing messages",
            RuleKind::PassRateDrop | RuleKind::SourcePassRateDrop => {
                "percentage points below the median"
            }
            RuleKind::TlsrptFailure | RuleKind::TlsrptFirstFailure => "failed TLS sessions",
            RuleKind::FailureReport => "failure reports",
            RuleKind::DomainSilent
            | RuleKind::ReporterSilent
            | RuleKind::DnsChanged
            | RuleKind::DnsBroken => "(not used)",
        }
    }

    /// The threshold a new rule gets when none is given.
    pub fn default_threshold(self) -> i64 {
        match self {
            RuleKind::FailingVolume | RuleKind::SourceFailingVolume => 100,
            RuleKind::PassRateDrop => 15,
            RuleKind::SourcePassRateDrop => 25,
            _ => 1,
        }
    }

    /// The window a new rule gets when none is given: the days the cause
    /// is counted over (silence: days quiet; baselines: days before).
    pub fn default_window_days(self) -> i32 {
        match self {
            RuleKind::NewSource
            | RuleKind::PassRateDrop
            | RuleKind::SourcePassRateDrop
            | RuleKind::TlsrptFirstFailure
            | RuleKind::DnsChanged => 7,
            RuleKind::DomainSilent | RuleKind::ReporterSilent => 3,
            _ => 1,
        }
    }

    /// Whether the cause is an event that goes by itself: the alert
    /// resolves once the rule has not fired for its window. The others
    /// (silence) resolve when their condition is false again.
    pub fn resolves_after_window(self) -> bool {
        !matches!(
            self,
            RuleKind::DomainSilent | RuleKind::ReporterSilent | RuleKind::DnsBroken
        )
    }
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: i64,
    /// The domain it watches; null: every domain, new ones included.
    pub domain: Option<String>,
    pub kind: RuleKind,
    pub threshold: i64,
    pub window_days: i32,
    pub cooldown_minutes: i32,
    /// Channel ids to tell; empty: every channel.
    pub channels: Vec<i64>,
    /// New-source rules: only sources of these classes (as the batch that
    /// first reports them shows them); empty: every new source.
    pub classes: Vec<Class>,
    pub enabled: bool,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

impl Rule {
    pub fn applies_to(&self, domain: &str) -> bool {
        self.enabled
            && self
                .domain
                .as_deref()
                .is_none_or(|own| own.eq_ignore_ascii_case(domain))
    }
}

/// Where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Webhook,
}

/// A channel as stored (its secret never leaves the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub kind: ChannelKind,
    /// Email: addresses separated by commas; webhook: the URL.
    pub target: String,
    pub format: WebhookFormat,
    #[serde(skip)]
    pub secret: Option<String>,
    /// Whether webhook calls are signed.
    pub signed: bool,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// The domain group it belongs to (made by one of its analysts);
    /// null: an admin's.
    pub group_id: Option<i64>,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: i64,
    pub rule_id: i64,
    pub kind: RuleKind,
    pub domain: String,
    /// What in the domain: a source IP, a reporter, or empty.
    pub subject: String,
    /// `open` or `resolved`.
    pub state: String,
    pub title: String,
    pub detail: String,
    /// The dashboard page (path and query) that shows the cause.
    pub link: String,
    /// Times the rule fired while the alert was open.
    pub occurrences: i64,
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it by hand; null when its cause went.
    pub resolved_by: Option<String>,
}

/// A rule that fired: what the alert will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub domain: String,
    pub subject: String,
    pub title: String,
    pub detail: String,
    pub link: String,
}

/// The notification that an alert opened or resolved.
pub fn notification(alert: &Alert, opened: bool, dashboard_url: &str) -> Notification {
    let link = (!dashboard_url.is_empty())
        .then(|| format!("{}{}", dashboard_url.trim_end_matches('/'), alert.link));
    let (event, title, text) = if opened {
        ("alert.opened", alert.title.clone(), alert.detail.clone())
    } else {
        (
            "alert.resolved",
            format!("Resolved: {}", alert.title),
            format!("The cause has gone.\n{}", alert.detail),
        )
    };
    Notification {
        event: event.to_string(),
        title,
        text,
        link,
        details: serde_json::json!({
            "alert_id": alert.id,
            "rule_id": alert.rule_id,
            "kind": alert.kind,
            "domain": alert.domain,
            "subject": alert.subject,
            "occurrences": alert.occurrences,
            "opened_at": alert.opened_at,
            "resolved_at": alert.resolved_at,
        }),
    }
}

/// The outbox rows that tell `channels` about `alert`, each queued once
/// (the dedup key names the alert, the change and the channel).
pub fn outbox_items(
    alert: &Alert,
    opened: bool,
    channels: &[Channel],
    dashboard_url: &str,
) -> Vec<NewOutboxItem> {
    let notification = notification(alert, opened, dashboard_url);
    let change = if opened {
        format!("opened:{}", alert.last_seen_at.timestamp())
    } else {
        format!(
            "resolved:{}",
            alert.resolved_at.map_or(0, |at| at.timestamp())
        )
    };
    let settings = (!dashboard_url.is_empty())
        .then(|| format!("{}/alerts", dashboard_url.trim_end_matches('/')));
    channels
        .iter()
        .map(|channel| {
            let item = match channel.kind {
                ChannelKind::Email => OutboxItem::Mail(
                    notification.mail(
                        channel
                            .target
                            .split(',')
                            .map(str::trim)
                            .filter(|address| !address.is_empty())
                            .map(str::to_string)
                            .collect(),
                        settings.clone(),
                    ),
                ),
                ChannelKind::Webhook => OutboxItem::Webhook(notification.webhook(
                    &channel.target,
                    channel.format,
                    channel.secret.clone(),
                )),
            };
            item.queued(Some(format!(
                "alert:{}:{change}:channel:{}",
                alert.id, channel.id
            )))
        })
        .collect()
}

/// The timed half of the evaluation, every `interval`.
pub struct AlertSchedule {
    store: Store,
    interval: Duration,
}

impl AlertSchedule {
    pub fn new(store: Store, interval: Duration) -> Self {
        AlertSchedule { store, interval }
    }

    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.store.evaluate_alerts(Utc::now()).await {
                tracing::warn!(%error, "alerts: the scheduled evaluation failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
        }
    }
}
