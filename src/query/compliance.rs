//! A domain's compliance at a glance (messages and sources per class, the
//! biggest problems first, each as a sentence with what fixes it) and its
//! readiness for a stricter policy (what quarantine and reject would have
//! done over the last 30 days, the authorized mail they would lose, and
//! the next record). Both are read from the classed sources of
//! `senders::senders`, so the Senders page, the compliance page and the
//! API agree.

use crate::scope::Scope;
use chrono::{Duration, Utc};
use serde::Serialize;

use super::senders::{self, ClassTotal, SenderReport, SenderRow, SendersQuery};
use super::time::time_text;
use super::QueryError;
use crate::dns::dmarc::is_dmarc_record;
use crate::dns::RecordKind;
use crate::senders::readiness::{
    next_record, Level, PolicyOrigin, PublishedPolicy, Suggestion, Verdict,
};
use crate::senders::{Class, SendersConfig};
use crate::store::{posture, Store};

/// Problems listed at most.
const PROBLEMS: usize = 20;
/// Authorized mail failing below this share of a domain's mail (per
/// thousand) does not block the next step: a forwarded copy here and
/// there fails whatever the domain does.
const BLOCKING_PER_MILLE: i64 = 1;
/// Days the readiness card looks back.
pub const READINESS_DAYS: i64 = 30;

/// One problem, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The sender name, or the IP of a source without one.
    pub source: String,
    pub class: Class,
    pub messages: i64,
    /// Its messages that fail DMARC.
    pub failing: i64,
    /// "Mailchimp fails DMARC on 40 of its 40 messages: signed by mcsv.net, …".
    pub sentence: String,
    /// What fixes it, where the cause says.
    pub fix: Option<String>,
}

/// Messages and sources per class over a period, and the problems.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Compliance {
    pub domain: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub messages: i64,
    pub dmarc_pass: i64,
    /// Sources in the period (the classes count the busiest
    /// `senders.max_sources`).
    pub sources_total: i64,
    pub classes: Vec<ClassTotal>,
    /// Biggest first (most failing messages).
    pub problems: Vec<Problem>,
}

/// Thousands with commas: 12,400.
pub fn grouped(count: i64) -> String {
    let digits = count.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if count < 0 {
        out.insert(0, '-');
    }
    out
}

fn messages(count: i64) -> String {
    match count {
        1 => "1 message".into(),
        n => format!("{} messages", grouped(n)),
    }
}

/// A source's problem, if it has one: a misconfigured source or an
/// authorized one whose mail fails DMARC, or a suspicious source.
pub fn problem_of(row: &SenderRow, domain: &str) -> Option<Problem> {
    let failing = row.messages - row.dmarc_pass;
    let why = |row: &SenderRow| row.cause.clone().unwrap_or_else(|| row.reason.clone());
    let sentence = match row.class {
        Class::Misconfigured if failing > 0 => format!(
            "{} fails DMARC on {} of its {}: {}.",
            row.source,
            grouped(failing),
            messages(row.messages),
            why(row)
        ),
        Class::Authorized if failing > 0 => format!(
            "{} is authorized but fails DMARC on {} of its {}: {}.",
            row.source,
            grouped(failing),
            messages(row.messages),
            why(row)
        ),
        Class::Suspicious => {
            let signals = if row.signals.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.signals.join(", "))
            };
            format!(
                "{}{signals} sent {} as {domain} that fail DKIM and SPF: approve it if it is yours \
                 and have it authenticate; if not, p=reject stops it.",
                row.source,
                messages(row.messages)
            )
        }
        _ => return None,
    };
    Some(Problem {
        source: row.source.clone(),
        class: row.class,
        messages: row.messages,
        failing,
        sentence,
        fix: match row.class {
            Class::Suspicious => None,
            _ => row.fix.clone(),
        },
    })
}

fn problems(report: &SenderReport) -> Vec<Problem> {
    let mut problems: Vec<Problem> = report
        .sources
        .iter()
        .filter_map(|row| problem_of(row, &report.domain))
        .collect();
    problems.sort_by(|a, b| b.failing.cmp(&a.failing).then(a.source.cmp(&b.source)));
    problems.truncate(PROBLEMS);
    problems
}

pub async fn compliance(
    store: &Store,
    scope: &Scope,
    config: &SendersConfig,
    query: &SendersQuery,
) -> Result<Compliance, QueryError> {
    let report = senders::senders(
        store,
        scope,
        config,
        &SendersQuery {
            class: None,
            ..query.clone()
        },
    )
    .await?;
    Ok(compliance_of(report))
}

/// The compliance page's numbers from the classed sources of its period.
fn compliance_of(report: SenderReport) -> Compliance {
    Compliance {
        messages: report.sources.iter().map(|r| r.messages).sum(),
        dmarc_pass: report.sources.iter().map(|r| r.dmarc_pass).sum(),
        sources_total: report.sources_total,
        problems: problems(&report),
        classes: report.classes,
        domain: report.domain,
        since: report.since,
        until: report.until,
    }
}

/// The first day readiness looks at (`YYYY-MM-DD`): 30 days ago.
pub fn readiness_since() -> String {
    (Utc::now().date_naive() - Duration::days(READINESS_DAYS)).to_string()
}

/// The compliance overview of `query`'s period and the readiness card.
/// When the period is readiness's own 30 days (the page's default) the
/// classed sources are read once for both, which halves the page's work.
pub async fn compliance_and_readiness(
    store: &Store,
    scope: &Scope,
    config: &SendersConfig,
    query: &SendersQuery,
) -> Result<(Compliance, Readiness), QueryError> {
    let since = readiness_since();
    let same_period = query.until.is_none() && query.since.as_deref() == Some(since.as_str());
    if same_period {
        let report = senders::senders(
            store,
            scope,
            config,
            &SendersQuery {
                class: None,
                ..query.clone()
            },
        )
        .await?;
        let readiness = readiness_of(store, &report, since).await?;
        return Ok((compliance_of(report), readiness));
    }
    let (compliance, readiness) = tokio::join!(
        compliance(store, scope, config, query),
        readiness(store, scope, config, &query.domain)
    );
    Ok((compliance?, readiness?))
}

/// What a stricter policy would have done to one class's mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClassImpact {
    pub class: Class,
    pub sources: i64,
    pub messages: i64,
    /// Messages failing DMARC: what p=quarantine would have sent to spam
    /// and p=reject refused.
    pub failing: i64,
}

/// Authorized mail a stricter policy would lose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Blocker {
    pub source: String,
    pub class: Class,
    pub messages: i64,
    pub failing: i64,
    pub cause: Option<String>,
    pub fix: Option<String>,
}

/// Whether a domain can move to a stricter policy.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub domain: String,
    /// The start of the 30 days looked at.
    pub since: String,
    /// What the domain publishes: the newest DNS check's DMARC record,
    /// else the newest report's policy_published; null when neither.
    pub policy: Option<PublishedPolicy>,
    /// When that was seen (the check, or the newest report's begin).
    pub policy_seen_at: Option<String>,
    pub reports: i64,
    /// Reports made under test mode (`testing` y: the record's t=y):
    /// receivers evaluated the policy and applied one level less.
    pub test_reports: i64,
    pub test_messages: i64,
    pub messages: i64,
    pub failing: i64,
    pub impact: Vec<ClassImpact>,
    /// Authorized and misconfigured sources (the domain's own mail)
    /// failing DMARC, most failing first.
    pub blockers: Vec<Blocker>,
    pub blocking_messages: i64,
    pub verdict: Verdict,
    /// The verdict in words.
    pub verdict_line: String,
    pub suggestion: Suggestion,
}

#[derive(sqlx::FromRow)]
struct NewestPolicy {
    p: Option<String>,
    sp: Option<String>,
    np: Option<String>,
    pct: Option<i64>,
    testing: Option<String>,
    date_begin: chrono::DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ReportCounts {
    reports: i64,
    test_reports: i64,
    test_messages: i64,
}

/// The policy the domain publishes, and when it was seen.
async fn published(
    store: &Store,
    domain: &str,
) -> Result<Option<(PublishedPolicy, String)>, QueryError> {
    let checks = posture::checks_of(store.reads(), domain, 1).await?;
    if let Some(check) = checks.first() {
        let record = check
            .observations
            .iter()
            .filter(|o| o.kind == RecordKind::Dmarc)
            .flat_map(|o| o.values.iter())
            .find(|value| is_dmarc_record(value));
        if let Some(record) = record {
            return Ok(Some((
                PublishedPolicy::from_record(record),
                time_text(check.checked_at),
            )));
        }
    }
    let db = store.reads();
    let mut sql = db.sql();
    sql.push(
        "SELECT p, sp, np, CAST(pct AS BIGINT) AS pct, testing, date_begin FROM aggregate_reports \
         WHERE policy_domain = ",
    )
    .bind(domain.to_string())
    .push(" ORDER BY date_begin DESC LIMIT 1");
    let newest: Option<NewestPolicy> = db.fetch_optional(&sql).await?;
    Ok(newest.map(|row| {
        let level = |text: &Option<String>| text.as_deref().and_then(Level::parse);
        (
            PublishedPolicy {
                origin: PolicyOrigin::Reports,
                record: None,
                p: level(&row.p).unwrap_or(Level::None),
                sp: level(&row.sp),
                np: level(&row.np),
                pct: row.pct.and_then(|pct| u8::try_from(pct).ok()),
                testing: row
                    .testing
                    .as_deref()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("y")),
            },
            time_text(row.date_begin),
        )
    }))
}

pub async fn readiness(
    store: &Store,
    scope: &Scope,
    config: &SendersConfig,
    domain: &str,
) -> Result<Readiness, QueryError> {
    let since = readiness_since();
    let report = senders::senders(
        store,
        scope,
        config,
        &SendersQuery {
            domain: domain.to_string(),
            since: Some(since.clone()),
            until: None,
            class: None,
        },
    )
    .await?;
    readiness_of(store, &report, since).await
}

/// Readiness from the classed sources of the 30 days since `since`.
async fn readiness_of(
    store: &Store,
    report: &SenderReport,
    since: String,
) -> Result<Readiness, QueryError> {
    let domain = report.domain.clone();
    let policy = published(store, &domain).await?;

    let db = store.reads();
    let backend = db.backend();
    let mut sql = db.sql();
    sql.push(&format!(
        "SELECT count(*) AS reports, {} AS test_reports, {} AS test_messages \
         FROM aggregate_reports WHERE policy_domain = ",
        backend.sum("CASE WHEN lower(testing) = 'y' THEN 1 ELSE 0 END"),
        backend.sum("CASE WHEN lower(testing) = 'y' THEN message_count ELSE 0 END"),
    ))
    .bind(domain.clone());
    let since_time = super::filter::Filter {
        since: Some(since.clone()),
        ..Default::default()
    }
    .parse(&Scope::All)?
    .since;
    if let Some(since) = since_time {
        sql.push(" AND date_begin >= ").bind(since);
    }
    let counts: ReportCounts = db.fetch_one(&sql).await?;

    let failing = |row: &SenderRow| row.messages - row.dmarc_pass;
    let impact: Vec<ClassImpact> = Class::ALL
        .iter()
        .map(|&class| {
            let of: Vec<&SenderRow> = report.sources.iter().filter(|r| r.class == class).collect();
            ClassImpact {
                class,
                sources: of.len() as i64,
                messages: of.iter().map(|r| r.messages).sum(),
                failing: of.iter().map(|r| failing(r)).sum(),
            }
        })
        .collect();
    let mut blockers: Vec<Blocker> = report
        .sources
        .iter()
        .filter(|row| matches!(row.class, Class::Authorized | Class::Misconfigured))
        .filter(|row| failing(row) > 0)
        .map(|row| Blocker {
            source: row.source.clone(),
            class: row.class,
            messages: row.messages,
            failing: failing(row),
            cause: row.cause.clone(),
            fix: row.fix.clone(),
        })
        .collect();
    blockers.sort_by(|a, b| b.failing.cmp(&a.failing).then(a.source.cmp(&b.source)));
    let total: i64 = report.sources.iter().map(|r| r.messages).sum();
    let failing_all: i64 = report.sources.iter().map(failing).sum();
    let blocking: i64 = blockers.iter().map(|b| b.failing).sum();
    let level = policy.as_ref().map(|(p, _)| p);
    let verdict = if total == 0 {
        Verdict::NoData
    } else if blocking > 0 && blocking.saturating_mul(1000) >= total * BLOCKING_PER_MILLE {
        Verdict::Blocked
    } else if level.is_some_and(|p| p.p == Level::Reject && !p.in_test()) {
        Verdict::Enforced
    } else {
        Verdict::Ready
    };
    let share = |part: i64| format!("{:.1}%", part as f64 * 100.0 / total.max(1) as f64);
    let verdict_line = match verdict {
        Verdict::NoData => format!("No reports for {domain} in the last {READINESS_DAYS} days."),
        Verdict::Blocked => format!(
            "Not ready: {} of {domain}'s own mail ({} of all) from {} failed DMARC in the last {READINESS_DAYS} days; \
             p=quarantine would have sent it to spam, p=reject would have refused it.",
            messages(blocking),
            share(blocking),
            sources_of(blockers.len())
        ),
        Verdict::Ready if blocking > 0 => format!(
            "Ready for the next step: only {} of {domain}'s own mail failed DMARC in the last {READINESS_DAYS} days \
             (under 0.1% of its {}).",
            messages(blocking),
            messages(total)
        ),
        Verdict::Ready => format!(
            "Ready for the next step: none of {domain}'s own mail failed DMARC in the last {READINESS_DAYS} days \
             ({} in all; the {} failing are forwarded, unknown or ignored sources).",
            messages(total),
            grouped(failing_all)
        ),
        Verdict::Enforced => format!(
            "p=reject is applied in full: receivers refused {} failing DMARC in the last {READINESS_DAYS} days.",
            messages(failing_all)
        ),
    };
    let suggestion = next_record(&domain, level, verdict, counts.test_reports);
    Ok(Readiness {
        since: report.since.clone().unwrap_or(since),
        policy_seen_at: policy.as_ref().map(|(_, at)| at.clone()),
        policy: policy.map(|(p, _)| p),
        reports: counts.reports,
        test_reports: counts.test_reports,
        test_messages: counts.test_messages,
        messages: total,
        failing: failing_all,
        impact,
        blockers,
        blocking_messages: blocking,
        verdict,
        verdict_line,
        suggestion,
        domain,
    })
}

fn sources_of(count: usize) -> String {
    match count {
        1 => "1 source".into(),
        n => format!("{n} sources"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(12_400), "12,400");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(-1_234), "-1,234");
    }
}
