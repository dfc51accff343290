//! What a digest says, and the mail it becomes: a subject, a plain text
//! and an HTML body from templates/mail/digest.{txt,html}. PURE: the
//! facts are gathered elsewhere (`gather.rs`).

use askama::Template;
use chrono::{DateTime, Utc};

use super::period::{Frequency, Period};
use crate::outbox::MailMessage;
use crate::query::compliance::grouped;

/// Messages and how many passed DMARC, in a period and the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: i64,
    pub passing: i64,
    /// Aggregate reports received for the period's days.
    pub reports: i64,
    pub previous_messages: i64,
    pub previous_passing: i64,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.messages += other.messages;
        self.passing += other.passing;
        self.reports += other.reports;
        self.previous_messages += other.previous_messages;
        self.previous_passing += other.previous_passing;
    }

    /// Nothing arrived: no report, no message.
    pub fn is_quiet(&self) -> bool {
        self.messages == 0 && self.reports == 0
    }

    pub fn failing(&self) -> i64 {
        self.messages - self.passing
    }

    pub fn messages_text(&self) -> String {
        grouped(self.messages)
    }

    pub fn failing_text(&self) -> String {
        grouped(self.failing())
    }

    pub fn pass_rate(&self) -> String {
        rate(self.passing, self.messages)
    }

    pub fn previous_pass_rate(&self) -> String {
        rate(self.previous_passing, self.previous_messages)
    }

    /// "+25% on the period before (800)", "the period before had none".
    pub fn change(&self) -> String {
        if self.previous_messages == 0 {
            return "none in the period before".to_string();
        }
        let change =
            (self.messages - self.previous_messages) as f64 * 100.0 / self.previous_messages as f64;
        format!(
            "{}{:.0}% on the period before ({})",
            if change >= 0.0 { "+" } else { "" },
            change,
            grouped(self.previous_messages)
        )
    }
}

/// "95.0%", or "n/a" without messages.
fn rate(passing: i64, messages: i64) -> String {
    if messages == 0 {
        return "n/a".to_string();
    }
    format!("{:.1}%", passing as f64 * 100.0 / messages as f64)
}

/// A source first seen sending as the domain in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSource {
    pub source: String,
    pub messages: i64,
    pub failing: i64,
}

/// A source whose mail failed DMARC, with the class the Senders page
/// puts it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingSource {
    pub source: String,
    pub class: String,
    pub failing: i64,
    pub messages: i64,
    pub reason: String,
}

/// TLS-RPT sessions delivering to the domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTotals {
    pub successful: i64,
    pub failed: i64,
    /// Failed sessions by result type, most first.
    pub result_types: Vec<(String, i64)>,
}

/// An alert still open when the digest was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub title: String,
    pub link: Option<String>,
    pub opened_at: DateTime<Utc>,
}

/// What the newest DNS check found wrong (`warning`, `error`), or a
/// record change in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsNote {
    pub severity: String,
    pub message: String,
}

/// One domain's part of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDigest {
    pub domain: String,
    pub totals: Totals,
    pub new_sources: Vec<NewSource>,
    /// New sources in all (more than are listed).
    pub new_sources_total: i64,
    pub failing: Vec<FailingSource>,
    pub tls: TlsTotals,
    pub alerts: Vec<OpenAlert>,
    pub dns: Vec<DnsNote>,
    /// The explorer over the period, when the dashboard's address is set.
    pub link: Option<String>,
    pub senders_link: Option<String>,
}

/// A digest, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub schedule: String,
    pub frequency: Frequency,
    pub period: Period,
    pub totals: Totals,
    /// Busiest first; quiet domains too (the silence is the news).
    pub domains: Vec<DomainDigest>,
    /// Domains in the set beyond `digests.max_domains`, not shown.
    pub more_domains: usize,
    pub tls_failed: i64,
    pub open_alerts: usize,
    /// Where the recipients change what they receive.
    pub settings_link: Option<String>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Template)]
#[template(path = "mail/digest.txt")]
struct DigestText<'a> {
    digest: &'a Digest,
}

#[derive(Template)]
#[template(path = "mail/digest.html")]
struct DigestHtml<'a> {
    digest: &'a Digest,
}

impl Digest {
    pub fn is_quiet(&self) -> bool {
        self.totals.is_quiet()
    }

    /// "Weekly DMARC digest, 2026-03-02 to 2026-03-08: 1,200 messages,
    /// 95.0% passed", or "…: no reports received".
    pub fn subject(&self) -> String {
        let head = format!(
            "{} DMARC digest, {}",
            self.frequency.label(),
            self.period.describe()
        );
        if self.is_quiet() {
            format!("{head}: no reports received")
        } else {
            format!(
                "{head}: {} messages, {} passed",
                self.totals.messages_text(),
                self.totals.pass_rate()
            )
        }
    }

    pub fn text(&self) -> String {
        DigestText { digest: self }
            .render()
            .unwrap_or_else(|error| format!("{}\n\n(cannot render: {error})", self.subject()))
    }

    pub fn html(&self) -> String {
        DigestHtml { digest: self }
            .render()
            .unwrap_or_else(|error| format!("<p>cannot render the digest: {error}</p>"))
    }

    /// The digest as a mail to `to`.
    pub fn mail(&self, to: Vec<String>) -> MailMessage {
        MailMessage {
            to,
            subject: self.subject(),
            text: self.text(),
            html: self.html(),
            settings_link: self.settings_link.clone(),
        }
    }
}

/// A count as templates hold it: by value or behind references.
pub trait Count {
    fn count(&self) -> i64;
}

impl Count for i64 {
    fn count(&self) -> i64 {
        *self
    }
}

impl<T: Count + ?Sized> Count for &T {
    fn count(&self) -> i64 {
        (**self).count()
    }
}

/// Thousands with commas, for templates.
pub fn number(count: impl Count) -> String {
    grouped(count.count())
}
