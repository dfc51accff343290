//! Whether a domain can move to a stricter DMARC policy, and the record
//! to publish next: one step at a time, each new level first in test
//! mode (RFC 9989's `t=y`, with `pct=0` so that receivers still on
//! RFC 7489, which ignore `t`, apply one level less too), and `np=reject`
//! as soon as it is missing (names that do not exist send no mail).
//!
//! PURE: the published policy and the verdict in, the suggestion out.

use serde::Serialize;

/// A DMARC policy level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    None,
    Quarantine,
    Reject,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Level::None),
            "quarantine" => Some(Level::Quarantine),
            "reject" => Some(Level::Reject),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Quarantine => "quarantine",
            Level::Reject => "reject",
        }
    }
}

/// Where the published policy was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOrigin {
    /// The DMARC record the newest DNS check found.
    Dns,
    /// The `policy_published` of the newest report (no DNS check yet).
    Reports,
}

/// The policy a domain publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublishedPolicy {
    pub origin: PolicyOrigin,
    /// The TXT record as published (from DNS only).
    pub record: Option<String>,
    /// `p` (missing counts as none, RFC 9989).
    pub p: Level,
    pub sp: Option<Level>,
    pub np: Option<Level>,
    /// `pct` (historic in RFC 9989, still read by RFC 7489 receivers).
    pub pct: Option<u8>,
    /// `t=y`: test mode.
    pub testing: bool,
}

impl PublishedPolicy {
    /// A DMARC record's policy tags.
    pub fn from_record(text: &str) -> PublishedPolicy {
        let tags = tags_of(text);
        let value = |name: &str| {
            tags.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        PublishedPolicy {
            origin: PolicyOrigin::Dns,
            record: Some(text.trim().to_string()),
            p: value("p").and_then(Level::parse).unwrap_or(Level::None),
            sp: value("sp").and_then(Level::parse),
            np: value("np").and_then(Level::parse),
            pct: value("pct").and_then(|v| v.trim().parse().ok()),
            testing: value("t").is_some_and(|v| v.trim().eq_ignore_ascii_case("y")),
        }
    }

    /// Whether the level is applied in part only: `t=y`, or `pct` below 100.
    pub fn in_test(&self) -> bool {
        self.testing || self.pct.is_some_and(|pct| pct < 100)
    }

    /// The policy as a short phrase: "p=quarantine; t=y".
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("p={}", self.p.key())];
        if let Some(sp) = self.sp {
            parts.push(format!("sp={}", sp.key()));
        }
        if let Some(np) = self.np {
            parts.push(format!("np={}", np.key()));
        }
        // 100 is the default, said only when it is less.
        if let Some(pct) = self.pct.filter(|pct| *pct < 100) {
            parts.push(format!("pct={pct}"));
        }
        if self.testing {
            parts.push("t=y".into());
        }
        parts.join("; ")
    }
}

/// What the last 30 days say about enforcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No reports in the period: nothing to go by.
    NoData,
    /// Authorized mail fails DMARC: a stricter policy would lose it.
    Blocked,
    /// Nothing of the domain's own would be lost: the next step is safe.
    Ready,
    /// `p=reject` applied in full already.
    Enforced,
}

/// The record to publish next and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    /// The whole TXT record for `_dmarc.<domain>`.
    pub record: String,
    /// Whether it differs from what is published.
    pub changes: bool,
    /// Why, one line per change.
    pub why: Vec<String>,
}

/// The tags of a record, in order, as (name, value).
fn tags_of(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|part| {
            let (key, value) = part.split_once('=')?;
            Some((key.trim().to_string(), value.trim().to_string()))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// `record` with `changes` made: a tag set in place (or added after the
/// others), or removed (`None`). `v` stays first.
fn with_tags(record: &str, changes: &[(&str, Option<String>)]) -> String {
    let mut tags = tags_of(record);
    if !tags
        .first()
        .is_some_and(|(key, _)| key.eq_ignore_ascii_case("v"))
    {
        tags.insert(0, ("v".into(), "DMARC1".into()));
    }
    for (name, value) in changes {
        let at = tags
            .iter()
            .position(|(key, _)| key.eq_ignore_ascii_case(name));
        match (at, value) {
            (Some(i), Some(value)) => tags[i].1 = value.clone(),
            (Some(i), None) => {
                tags.remove(i);
            }
            // p goes right after v, as receivers and people expect it.
            (None, Some(value)) if *name == "p" => {
                tags.insert(1, (name.to_string(), value.clone()))
            }
            (None, Some(value)) => tags.push((name.to_string(), value.clone())),
            (None, None) => {}
        }
    }
    tags.iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The next record for `domain` given what it publishes and the verdict
/// over the last 30 days; `test_reports` is how many reports of the
/// period receivers made under `t=y` (their evidence for leaving test
/// mode).
pub fn next_record(
    domain: &str,
    policy: Option<&PublishedPolicy>,
    verdict: Verdict,
    test_reports: i64,
) -> Suggestion {
    let current = policy
        .and_then(|p| p.record.clone())
        .unwrap_or_else(|| match policy {
            Some(policy) => format!("v=DMARC1; {}", policy.summary()),
            None => "v=DMARC1; p=none".to_string(),
        });
    let level = policy.map_or(Level::None, |p| p.p);
    let in_test = policy.is_some_and(PublishedPolicy::in_test);
    let mut changes: Vec<(&str, Option<String>)> = Vec::new();
    let mut why = Vec::new();
    let test_mode = |changes: &mut Vec<(&str, Option<String>)>| {
        changes.push(("t", Some("y".into())));
        changes.push(("pct", Some("0".into())));
    };
    let leave_test = |changes: &mut Vec<(&str, Option<String>)>| {
        changes.push(("t", None));
        changes.push(("pct", None));
    };
    match verdict {
        Verdict::NoData => why.push(format!(
            "No reports for {domain} in the last 30 days: keep the policy until receivers report its mail."
        )),
        Verdict::Blocked if level == Level::None || in_test => why.push(format!(
            "Keep p={} until the blockers are fixed: a stricter policy would lose authorized mail.",
            level.key()
        )),
        Verdict::Blocked => why.push(format!(
            "At p={} receivers already act on the blockers' failing mail: fix them first.",
            level.key()
        )),
        Verdict::Ready | Verdict::Enforced => match (level, in_test) {
            (Level::None, _) => {
                changes.push(("p", Some("quarantine".into())));
                test_mode(&mut changes);
                why.push(
                    "No authorized mail failed DMARC in 30 days: move to quarantine in test mode. \
                     t=y makes RFC 9989 receivers apply none and report what quarantine would do; \
                     pct=0 makes RFC 7489 receivers do the same."
                        .into(),
                );
            }
            (Level::Quarantine, true) | (Level::Reject, true) => {
                leave_test(&mut changes);
                let evidence = if test_reports > 0 {
                    let reports = match test_reports {
                        1 => "1 report".to_string(),
                        n => format!("{n} reports"),
                    };
                    format!("{reports} made under t=y show no authorized mail failing")
                } else {
                    "reports over 30 days show no authorized mail failing (none was made under t=y yet)".to_string()
                };
                why.push(format!(
                    "{}: apply p={} in full (t and pct removed).",
                    capitalize(&evidence),
                    level.key()
                ));
            }
            (Level::Quarantine, false) => {
                changes.push(("p", Some("reject".into())));
                test_mode(&mut changes);
                why.push(
                    "Quarantine is applied and no authorized mail failed DMARC in 30 days: \
                     move to reject in test mode (receivers quarantine instead and report)."
                        .into(),
                );
            }
            (Level::Reject, false) => {
                if let Some(sp) = policy.and_then(|p| p.sp).filter(|sp| *sp < Level::Reject) {
                    changes.push(("sp", None));
                    why.push(format!(
                        "sp={} leaves existing subdomains weaker than {domain}: remove it so they follow p=reject.",
                        sp.key()
                    ));
                }
            }
        },
    }
    if policy.is_none_or(|p| p.np.is_none()) && verdict != Verdict::NoData {
        changes.push(("np", Some("reject".into())));
        why.push(format!(
            "np=reject: names under {domain} that do not exist send no mail, so mail from them is forged (RFC 9989)."
        ));
    }
    if changes.is_empty() && why.is_empty() {
        why.push(format!("{domain} is fully enforced: nothing to change."));
    }
    let record = with_tags(&current, &changes);
    Suggestion {
        changes: record != current,
        record,
        why,
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_is_tested_first_and_np_is_added() {
        let none = PublishedPolicy::from_record("v=DMARC1; p=none; rua=mailto:dmarc@example.com");
        let step = next_record("example.com", Some(&none), Verdict::Ready, 0);
        assert_eq!(
            step.record,
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com; t=y; pct=0; np=reject"
        );
        assert!(step.changes);
        let testing = PublishedPolicy::from_record(&step.record);
        assert_eq!(testing.p, Level::Quarantine);
        assert!(testing.in_test());
        let step = next_record("example.com", Some(&testing), Verdict::Ready, 3);
        assert_eq!(
            step.record,
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com; np=reject"
        );
        assert!(
            step.why[0].starts_with("3 reports made under t=y"),
            "{:?}",
            step.why
        );
        let full = PublishedPolicy::from_record(&step.record);
        let step = next_record("example.com", Some(&full), Verdict::Ready, 0);
        assert_eq!(
            step.record,
            "v=DMARC1; p=reject; rua=mailto:dmarc@example.com; np=reject; t=y; pct=0"
        );
        let done = PublishedPolicy::from_record("v=DMARC1; p=reject; sp=none; np=reject");
        let step = next_record("example.com", Some(&done), Verdict::Enforced, 0);
        assert_eq!(step.record, "v=DMARC1; p=reject; np=reject");
        let done = PublishedPolicy::from_record("v=DMARC1; p=reject; np=reject");
        let step = next_record("example.com", Some(&done), Verdict::Enforced, 0);
        assert!(!step.changes);
        assert!(step.why[0].contains("fully enforced"));
    }

    #[test]
    fn blockers_keep_the_level_and_no_data_changes_nothing() {
        let none = PublishedPolicy::from_record("v=DMARC1; p=none");
        let step = next_record("example.com", Some(&none), Verdict::Blocked, 0);
        assert_eq!(step.record, "v=DMARC1; p=none; np=reject");
        assert!(step.why[0].starts_with("Keep p=none"));
        let step = next_record("example.com", Some(&none), Verdict::NoData, 0);
        assert_eq!(step.record, "v=DMARC1; p=none");
        assert!(!step.changes);
    }
}
