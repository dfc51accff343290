//! The batch rules that read daily totals beyond the domain's failing sum:
//! failing volume per source, and pass rates (of the domain, of each
//! source) against their own recent median. Each reads, per domain and
//! window, one statement for all the batch's failing sources.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::{json, link, raise, Context, EvaluationSummary, FineRow, StoreResult, Tx};
use crate::alerts::{Finding, Rule, RuleKind};

/// Days of a pass-rate baseline with less mail than this are left out,
/// and a day with less is never compared: a few messages make no rate.
pub const MIN_DAY_MESSAGES: i64 = 20;
/// A baseline needs this many days with enough mail.
pub const MIN_BASELINE_DAYS: usize = 3;

/// The batch's failing sources per domain, with the last day they failed
/// on (the day the rules look at).
fn failing_sources(rows: &[FineRow]) -> BTreeMap<String, BTreeMap<String, DateTime<Utc>>> {
    let mut sources: BTreeMap<String, BTreeMap<String, DateTime<Utc>>> = BTreeMap::new();
    for row in rows.iter().filter(|row| !row.dmarc_pass && row.count > 0) {
        let Some(ip) = &row.source_ip else { continue };
        let day = sources
            .entry(row.policy_domain.clone())
            .or_default()
            .entry(ip.clone())
            .or_insert(row.day);
        *day = (*day).max(row.day);
    }
    sources
}

fn day_text(day: DateTime<Utc>) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Per source of `domain` in `ips`, per day from `first` to `last`:
/// (messages, failing messages).
async fn source_days(
    transaction: &mut Tx,
    domain: &str,
    ips: &BTreeSet<&String>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> StoreResult<BTreeMap<String, BTreeMap<DateTime<Utc>, (i64, i64)>>> {
    let backend = transaction.backend();
    let listed: Vec<&String> = ips.iter().copied().collect();
    let rows: Vec<(String, DateTime<Utc>, i64, i64)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT {ip} AS ip, date_begin, {messages} AS messages, {failing} AS failing \
                 FROM totals_domain_source_day WHERE policy_domain = $1 \
                 AND date_begin >= $2 AND date_begin <= $3 AND {listed} \
                 GROUP BY source_ip, date_begin",
                ip = backend.ip_text("source_ip"),
                messages = backend.sum("count"),
                failing = backend.sum("fail_count"),
                listed = backend.in_ip_list("source_ip", "$4"),
            ),
            vec![domain.into(), first.into(), last.into(), json(&listed)],
        ))
        .await?;
    let mut days: BTreeMap<String, BTreeMap<DateTime<Utc>, (i64, i64)>> = BTreeMap::new();
    for (ip, day, messages, failing) in rows {
        days.entry(ip).or_default().insert(day, (messages, failing));
    }
    Ok(days)
}

/// One source failing DMARC on at least the threshold in the window.
pub(super) async fn source_failing_volume(
    transaction: &mut Tx,
    context: &Context,
    rows: &[FineRow],
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let rules: Vec<&Rule> = context.rules_of(RuleKind::SourceFailingVolume).collect();
    if rules.is_empty() {
        return Ok(summary);
    }
    for (domain, sources) in failing_sources(rows) {
        let applying: Vec<&&Rule> = rules.iter().filter(|r| r.applies_to(&domain)).collect();
        let Some(longest) = applying.iter().map(|rule| rule.window_days.max(1)).max() else {
            continue;
        };
        let last = sources.values().copied().max().unwrap_or_else(Utc::now);
        let first = last - Duration::days(i64::from(longest - 1));
        let ips: BTreeSet<&String> = sources.keys().collect();
        let days = source_days(transaction, &domain, &ips, first, last).await?;
        for rule in applying {
            for (ip, source_last) in &sources {
                let since = *source_last - Duration::days(i64::from(rule.window_days.max(1) - 1));
                let failing: i64 = days.get(ip).map_or(0, |days| {
                    days.range(since..=*source_last)
                        .map(|(_, (_, failing))| failing)
                        .sum()
                });
                if failing < rule.threshold {
                    continue;
                }
                let (since, until) = (day_text(since), day_text(*source_last));
                let finding = Finding {
                    domain: domain.clone(),
                    subject: ip.clone(),
                    title: format!("{ip} failing DMARC on {failing} messages as {domain}"),
                    detail: format!(
                        "{failing} messages from {ip} sent as {domain} failed DMARC from {since} \
                         to {until} (the rule's threshold: {}).",
                        rule.threshold
                    ),
                    link: link(
                        "/aggregate",
                        &[
                            ("domain", &domain),
                            ("source", ip),
                            ("result", "fail"),
                            ("since", &since),
                            ("until", &until),
                        ],
                    ),
                };
                summary.add(raise(transaction, context, rule, &finding).await?);
            }
        }
    }
    Ok(summary)
}

/// A day's pass rate against the median of the days before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateDrop {
    /// Percent of the day's messages passing DMARC.
    pub rate: f64,
    /// The median of the days before (percent).
    pub baseline: f64,
    pub messages: i64,
}

/// The drop of `day`'s pass rate below the median of the other days of
/// `days` ((messages, failing) per day) by at least `points`; `None` when
/// there is no such drop or too little mail to tell.
pub fn rate_drop(
    days: &BTreeMap<DateTime<Utc>, (i64, i64)>,
    day: DateTime<Utc>,
    points: i64,
) -> Option<RateDrop> {
    let rate =
        |(messages, failing): (i64, i64)| (messages - failing) as f64 * 100.0 / messages as f64;
    let &(messages, failing) = days.get(&day)?;
    if messages < MIN_DAY_MESSAGES {
        return None;
    }
    let mut before: Vec<f64> = days
        .range(..day)
        .map(|(_, counts)| *counts)
        .filter(|(messages, _)| *messages >= MIN_DAY_MESSAGES)
        .map(rate)
        .collect();
    if before.len() < MIN_BASELINE_DAYS {
        return None;
    }
    before.sort_by(f64::total_cmp);
    let middle = before.len() / 2;
    let baseline = if before.len() % 2 == 1 {
        before[middle]
    } else {
        (before[middle - 1] + before[middle]) / 2.0
    };
    let today = rate((messages, failing));
    (today <= baseline - points as f64).then_some(RateDrop {
        rate: today,
        baseline,
        messages,
    })
}

fn percent(value: f64) -> String {
    format!("{value:.1}%").replace(".0%", "%")
}

fn drop_finding(domain: &str, ip: Option<&str>, day: DateTime<Utc>, drop: &RateDrop) -> Finding {
    let whose = match ip {
        Some(ip) => format!("{ip} as {domain}"),
        None => domain.to_string(),
    };
    let date = day_text(day);
    let mut pairs = vec![("domain", domain), ("result", "fail")];
    if let Some(ip) = ip {
        pairs.push(("source", ip));
    }
    pairs.extend([("since", date.as_str()), ("until", date.as_str())]);
    Finding {
        domain: domain.to_string(),
        subject: ip.unwrap_or_default().to_string(),
        title: format!(
            "DMARC pass rate of {whose} fell to {} (usually {})",
            percent(drop.rate),
            percent(drop.baseline)
        ),
        detail: format!(
            "On {date}, {} of {} messages of {whose} passed DMARC; the median of the days \
             before is {}.",
            percent(drop.rate),
            drop.messages,
            percent(drop.baseline)
        ),
        link: link("/aggregate", &pairs),
    }
}

/// The domain's pass rate, and each failing source's, against their
/// medians over the rules' windows.
pub(super) async fn pass_rate_drops(
    transaction: &mut Tx,
    context: &Context,
    rows: &[FineRow],
) -> StoreResult<EvaluationSummary> {
    let mut summary = EvaluationSummary::default();
    let domain_rules: Vec<&Rule> = context.rules_of(RuleKind::PassRateDrop).collect();
    let source_rules: Vec<&Rule> = context.rules_of(RuleKind::SourcePassRateDrop).collect();
    if domain_rules.is_empty() && source_rules.is_empty() {
        return Ok(summary);
    }
    for (domain, sources) in failing_sources(rows) {
        let last = sources.values().copied().max().unwrap_or_else(Utc::now);
        let applying: Vec<&&Rule> = domain_rules
            .iter()
            .filter(|rule| rule.applies_to(&domain))
            .collect();
        if let Some(longest) = applying.iter().map(|rule| rule.window_days.max(1)).max() {
            let days = domain_days(
                transaction,
                &domain,
                last - Duration::days(i64::from(longest)),
                last,
            )
            .await?;
            for rule in applying {
                let window: BTreeMap<_, _> = days
                    .range(last - Duration::days(i64::from(rule.window_days.max(1)))..)
                    .map(|(day, counts)| (*day, *counts))
                    .collect();
                if let Some(drop) = rate_drop(&window, last, rule.threshold) {
                    let finding = drop_finding(&domain, None, last, &drop);
                    summary.add(raise(transaction, context, rule, &finding).await?);
                }
            }
        }
        let applying: Vec<&&Rule> = source_rules
            .iter()
            .filter(|rule| rule.applies_to(&domain))
            .collect();
        let Some(longest) = applying.iter().map(|rule| rule.window_days.max(1)).max() else {
            continue;
        };
        let ips: BTreeSet<&String> = sources.keys().collect();
        let days = source_days(
            transaction,
            &domain,
            &ips,
            last - Duration::days(i64::from(longest)),
            last,
        )
        .await?;
        for rule in applying {
            for (ip, day) in &sources {
                let Some(days) = days.get(ip) else { continue };
                let window: BTreeMap<_, _> = days
                    .range(*day - Duration::days(i64::from(rule.window_days.max(1)))..=*day)
                    .map(|(day, counts)| (*day, *counts))
                    .collect();
                if let Some(drop) = rate_drop(&window, *day, rule.threshold) {
                    let finding = drop_finding(&domain, Some(ip), *day, &drop);
                    summary.add(raise(transaction, context, rule, &finding).await?);
                }
            }
        }
    }
    Ok(summary)
}

/// The domain's (messages, failing) per day from `first` to `last`.
async fn domain_days(
    transaction: &mut Tx,
    domain: &str,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> StoreResult<BTreeMap<DateTime<Utc>, (i64, i64)>> {
    let backend = transaction.backend();
    let rows: Vec<(DateTime<Utc>, i64, i64)> = transaction
        .fetch_all(&transaction.statement(
            &format!(
                "SELECT date_begin, {messages} AS messages, {failing} AS failing \
                 FROM rollup_domain_day WHERE policy_domain = $1 \
                 AND date_begin >= $2 AND date_begin <= $3 GROUP BY date_begin",
                messages = backend.sum("count"),
                failing = backend.sum(&format!(
                    "CASE WHEN {} THEN count ELSE 0 END",
                    backend.is_false("dmarc_pass")
                )),
            ),
            vec![domain.into(), first.into(), last.into()],
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(day, messages, failing)| (day, (messages, failing)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::days(n)
    }

    #[test]
    fn a_day_well_below_the_median_of_the_days_before_is_a_drop() {
        let days: BTreeMap<_, _> = [
            (day(0), (100, 2)),
            (day(1), (100, 4)),
            (day(2), (100, 0)),
            (day(3), (100, 60)), // an earlier bad day does not move the median far
            (day(4), (100, 50)),
        ]
        .into();
        let drop = rate_drop(&days, day(4), 15).unwrap();
        assert_eq!(drop.rate, 50.0);
        // Median of 98, 96, 100, 40 = (96 + 98) / 2.
        assert_eq!(drop.baseline, 97.0);
        assert!(
            rate_drop(&days, day(4), 48).is_none(),
            "47 points is not 48"
        );
    }

    #[test]
    fn too_little_mail_or_too_few_days_is_no_evidence() {
        let few_days: BTreeMap<_, _> =
            [(day(0), (100, 0)), (day(1), (100, 0)), (day(2), (100, 90))].into();
        assert!(rate_drop(&few_days, day(2), 10).is_none());
        let small_day: BTreeMap<_, _> = [
            (day(0), (100, 0)),
            (day(1), (100, 0)),
            (day(2), (100, 0)),
            (day(3), (MIN_DAY_MESSAGES - 1, MIN_DAY_MESSAGES - 1)),
        ]
        .into();
        assert!(rate_drop(&small_day, day(3), 10).is_none());
        let thin_baseline: BTreeMap<_, _> = [
            (day(0), (5, 0)),
            (day(1), (100, 0)),
            (day(2), (100, 0)),
            (day(3), (100, 90)),
        ]
        .into();
        assert!(
            rate_drop(&thin_baseline, day(3), 10).is_none(),
            "day 0 has too little mail"
        );
    }
}
