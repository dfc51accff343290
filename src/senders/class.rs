//! One class per (domain, source), with the line that put it there.
//!
//! The rules are tried in order, and the first that holds decides:
//!
//! 1. an admin's rule (approve or ignore) — the admin knows best;
//! 2. receivers applied an override reason `forwarded`, `mailing_list` or
//!    `trusted_forwarder` to most of its failing mail — their word;
//! 3. most of its mail comes from addresses inside the networks the
//!    domain's published SPF authorizes (newest stored DNS check) —
//!    authorized by the domain's own record;
//! 4. it passes DMARC for at least `authorized_pass_percent` of its mail —
//!    authorized, unless the passes ride on DKIM alone while SPF fails and
//!    it is no sending service (forwarded mail keeps the signature, loses
//!    the SPF path);
//! 5. a forwarder: the source map's mailbox providers, forwarders and
//!    security gateways, the user's list, or DKIM passing for most of its
//!    mail while SPF fails;
//! 6. a named sending service (ESP, marketing, CRM, ticketing, SaaS) that
//!    fails alignment — misconfigured, with the cause;
//! 7. it passes DMARC for some of its mail but not enough — it can
//!    authenticate, so it is the domain's, misconfigured;
//! 8. the rest fails both and is none of the above: suspicious or
//!    unknown, with the signals (no PTR name) shown, not used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::Action;
use super::SendersConfig;

/// Source types of the source map that send mail for others.
pub const SENDING_SERVICE_TYPES: &[&str] = &["esp", "marketing", "crm", "ticketing", "saas"];
/// Source types that relay mail others wrote (so SPF fails there).
pub const FORWARDING_TYPES: &[&str] = &["mailbox_provider", "forwarder", "security_gateway"];
/// Override reasons (RFC 7489 appendix C) that say the mail was relayed.
pub const FORWARDING_REASONS: &[&str] = &["forwarded", "mailing_list", "trusted_forwarder"];

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The domain's own: approved, inside its SPF, or passing DMARC.
    Authorized,
    /// Relayed by a forwarder, a mailing list or a mailbox provider.
    Forwarded,
    /// A known sending service, or a source that sometimes passes, that
    /// fails alignment: fixable in DNS or at the service.
    Misconfigured,
    /// Fails both and is none of the above.
    Suspicious,
    /// An admin said this source is of no concern.
    Ignored,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Authorized,
        Class::Forwarded,
        Class::Misconfigured,
        Class::Suspicious,
        Class::Ignored,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Class::Authorized => "authorized",
            Class::Forwarded => "forwarded",
            Class::Misconfigured => "misconfigured",
            Class::Suspicious => "suspicious",
            Class::Ignored => "ignored",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::Authorized => "Authorized",
            Class::Forwarded => "Forwarded",
            Class::Misconfigured => "Misconfigured",
            Class::Suspicious => "Suspicious / unknown",
            Class::Ignored => "Ignored",
        }
    }

    pub fn parse(text: &str) -> Option<Class> {
        Self::ALL.into_iter().find(|class| class.key() == text)
    }
}

/// Why an aligned DKIM or SPF result failed, read from one failing record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// No DKIM signature at all.
    NotSigned,
    /// A passing DKIM signature of another organization's domain (with
    /// its selector, which the service often asks the domain to publish
    /// a CNAME for).
    SignedByOther(String, Option<String>),
    /// A signature in the domain's own name that does not verify (the result).
    DkimFail(String),
    /// SPF passes for another domain (the envelope sender's bounce domain).
    SpfNotAligned(String),
    /// SPF does not pass (the result).
    SpfFail(String),
}

impl Cause {
    fn is_dkim(&self) -> bool {
        matches!(
            self,
            Cause::NotSigned | Cause::SignedByOther(..) | Cause::DkimFail(_)
        )
    }

    /// What to do about it, for `sender`'s mail as `domain`.
    pub fn fix(&self, domain: &str, sender: &str) -> String {
        match self {
            Cause::NotSigned => format!(
                "have {sender} sign its mail with a DKIM key in {domain}'s name"
            ),
            Cause::SignedByOther(signer, Some(selector)) => format!(
                "set up DKIM for {domain} at {sender} (it signs as {signer} with selector {selector}): \
                 publish the key it gives you, usually a CNAME for {selector}._domainkey.{domain}"
            ),
            Cause::SignedByOther(signer, None) => format!(
                "set up DKIM for {domain} at {sender} (it signs as {signer}) and publish the key it gives you"
            ),
            Cause::DkimFail(_) => format!(
                "its signatures in {domain}'s name do not verify: check that the key published for its selector is the one {sender} signs with"
            ),
            Cause::SpfNotAligned(spf) => format!(
                "set a bounce (Return-Path) domain under {domain} at {sender} instead of {spf}, or have it sign with DKIM as {domain}"
            ),
            Cause::SpfFail(_) => format!(
                "add {sender}'s addresses to {domain}'s SPF record, or have it sign with DKIM as {domain}"
            ),
        }
    }

    /// The cause as a phrase about `domain`.
    pub fn describe(&self, domain: &str) -> String {
        match self {
            Cause::NotSigned => "not DKIM-signed".to_string(),
            Cause::SignedByOther(signer, _) => format!("signed by {signer}, not {domain}"),
            Cause::DkimFail(result) => format!("DKIM signature of {domain} fails ({result})"),
            Cause::SpfNotAligned(spf) => format!("SPF passes for {spf}, not aligned with {domain}"),
            Cause::SpfFail(result) => format!("SPF {result}"),
        }
    }
}

/// Messages per cause, over the sampled failing records of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CauseTally(pub BTreeMap<Cause, i64>);

#[derive(Deserialize)]
struct DkimEntry {
    domain: Option<String>,
    selector: Option<String>,
    result: Option<String>,
}

#[derive(Deserialize)]
struct SpfEntry {
    domain: Option<String>,
    result: Option<String>,
}

/// Whether two domains belong to one organization (relaxed alignment,
/// RFC 7489 section 3.1, by the public suffix list).
fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if a == b {
        return true;
    }
    match (
        crate::enrich::base_domain(&a),
        crate::enrich::base_domain(&b),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

impl CauseTally {
    /// Adds the causes of one failing record of `count` messages whose
    /// From domain is `from`, given its DKIM and SPF results as stored
    /// (JSON arrays). Unreadable results add nothing.
    pub fn add_record(&mut self, from: &str, count: i64, dkim_json: &str, spf_json: &str) {
        if let Ok(dkim) = serde_json::from_str::<Vec<DkimEntry>>(dkim_json) {
            let result = |entry: &DkimEntry| {
                entry
                    .result
                    .clone()
                    .unwrap_or_else(|| "none".to_string())
                    .to_ascii_lowercase()
            };
            let own_failing = dkim.iter().find(|entry| {
                entry.domain.as_deref().is_some_and(|d| aligned(d, from)) && result(entry) != "pass"
            });
            let other = dkim
                .iter()
                .find(|entry| entry.domain.as_deref().is_some_and(|d| !aligned(d, from)));
            let cause = match (own_failing, other) {
                (Some(entry), _) => Some(Cause::DkimFail(result(entry))),
                (None, Some(entry)) => entry
                    .domain
                    .as_deref()
                    .map(|d| Cause::SignedByOther(d.to_ascii_lowercase(), entry.selector.clone())),
                (None, None) if dkim.is_empty() => Some(Cause::NotSigned),
                (None, None) => None,
            };
            if let Some(cause) = cause {
                *self.0.entry(cause).or_default() += count;
            }
        }
        if let Ok(spf) = serde_json::from_str::<Vec<SpfEntry>>(spf_json) {
            let passing_other = spf.iter().find(|entry| {
                entry
                    .result
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case("pass"))
                    && entry.domain.as_deref().is_some_and(|d| !aligned(d, from))
            });
            let cause = match passing_other {
                Some(entry) => Cause::SpfNotAligned(
                    entry
                        .domain
                        .clone()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                ),
                None => Cause::SpfFail(
                    spf.first()
                        .and_then(|entry| entry.result.clone())
                        .unwrap_or_else(|| "none".to_string())
                        .to_ascii_lowercase(),
                ),
            };
            *self.0.entry(cause).or_default() += count;
        }
    }

    /// The commonest DKIM cause (`dkim`) or SPF cause.
    fn top(&self, dkim: bool) -> Option<&Cause> {
        self.0
            .iter()
            .filter(|(cause, _)| cause.is_dkim() == dkim)
            .max_by_key(|(_, count)| **count)
            .map(|(cause, _)| cause)
    }

    /// The commonest DKIM cause and the commonest SPF cause, as one line.
    pub fn line(&self, domain: &str) -> Option<String> {
        let parts: Vec<String> = [self.top(true), self.top(false)]
            .into_iter()
            .flatten()
            .map(|cause| cause.describe(domain))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// What fixes the commonest cause: DKIM first, since an aligned
    /// signature survives forwarding where SPF does not.
    pub fn fix(&self, domain: &str, sender: &str) -> Option<String> {
        self.top(true)
            .or_else(|| self.top(false))
            .map(|cause| cause.fix(domain, sender))
    }
}

/// An admin's rule that matched a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub id: i64,
    pub action: Action,
    /// "approved by alice on 2026-12-03: CIDR block 192.0.2.0/24 (our relay)".
    pub line: String,
}

/// What is known about one source of one domain over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// The policy domain.
    pub domain: String,
    /// The sender name, or the IP of a source without one.
    pub key: String,
    pub is_ip: bool,
    /// From the source map (`esp`, `mailbox_provider`, …).
    pub source_type: Option<String>,
    pub messages: i64,
    pub dmarc_pass: i64,
    pub dkim_aligned_pass: i64,
    pub spf_aligned_pass: i64,
    /// Messages from addresses inside the published SPF's networks and the
    /// first such network; `None` without a stored SPF check.
    pub inside_spf: Option<(i64, Option<String>)>,
    /// Messages of this source among the sampled failing records…
    pub failing_sampled: i64,
    /// …and those with a forwarding override reason (which, first).
    pub forwarding_reasons: i64,
    pub forwarding_reason: Option<String>,
    pub causes: CauseTally,
    pub rule: Option<RuleMatch>,
    /// The PTR name of an IP source, and whether it was looked up.
    pub ptr: Option<String>,
    pub ptr_looked_up: bool,
}

/// A source's class, the line that decided it, the failure cause where
/// there is one and what fixes it, and signals shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub reason: String,
    pub cause: Option<String>,
    pub fix: Option<String>,
    pub signals: Vec<String>,
}

fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0%".to_string();
    }
    let value = part as f64 * 100.0 / whole as f64;
    if value >= 99.95 && part < whole {
        // Never "100%" for a share that is not all.
        return "99.9%".to_string();
    }
    format!("{value:.1}%").replace(".0%", "%")
}

fn at_least(part: i64, whole: i64, percent: u8) -> bool {
    whole > 0 && part.saturating_mul(100) >= whole.saturating_mul(i64::from(percent))
}

fn messages(count: i64) -> String {
    if count == 1 {
        "1 message".to_string()
    } else {
        format!("{count} messages")
    }
}

/// Puts a source in its class.
pub fn classify(facts: &SourceFacts, config: &SendersConfig) -> Classification {
    let majority = config.majority_percent;
    let name = &facts.key;
    let kind = facts.source_type.as_deref().unwrap_or("");
    let sending_service = SENDING_SERVICE_TYPES.contains(&kind);
    let forwarding_type =
        FORWARDING_TYPES.contains(&kind) || (!facts.is_ip && config.is_listed_forwarder(name));
    let failing = facts.messages - facts.dmarc_pass;
    let dkim_carried = at_least(facts.dkim_aligned_pass, facts.messages, majority)
        && !at_least(facts.spf_aligned_pass, facts.messages, majority);
    let cause = (failing > 0)
        .then(|| facts.causes.line(&facts.domain))
        .flatten();
    let fix = (failing > 0)
        .then(|| facts.causes.fix(&facts.domain, name))
        .flatten();
    let mut signals = Vec::new();
    if facts.is_ip {
        match (&facts.ptr, facts.ptr_looked_up) {
            (Some(ptr), _) => signals.push(format!("PTR {ptr}")),
            (None, true) => signals.push("no PTR name".to_string()),
            (None, false) => signals.push("PTR not looked up yet".to_string()),
        }
    }
    let decided = |class: Class, reason: String, cause: Option<String>| Classification {
        class,
        reason,
        cause,
        fix: fix.clone(),
        signals: signals.clone(),
    };
    let what = match (facts.is_ip, kind) {
        (true, _) => name.clone(),
        (false, "") => name.clone(),
        (false, kind) => format!("{name} ({})", kind.replace('_', " ")),
    };

    // 1. An admin's rule.
    if let Some(rule) = &facts.rule {
        let class = match rule.action {
            Action::Approve => Class::Authorized,
            Action::Ignore => Class::Ignored,
        };
        return decided(class, rule.line.clone(), cause);
    }
    // 2. Receivers said it was forwarded.
    if facts.forwarding_reasons > 0
        && at_least(facts.forwarding_reasons, facts.failing_sampled, majority)
    {
        return decided(
            Class::Forwarded,
            format!(
                "receivers applied the override reason {} to {} of its sampled failing messages",
                facts.forwarding_reason.as_deref().unwrap_or("forwarded"),
                percent(facts.forwarding_reasons, facts.failing_sampled)
            ),
            cause,
        );
    }
    // 3. Inside the published SPF.
    if let Some((inside, network)) = &facts.inside_spf {
        if at_least(*inside, facts.messages, majority) {
            let reason = match (facts.is_ip, network) {
                (true, Some(network)) => {
                    format!("{name} is inside {network}, which the published SPF record authorizes")
                }
                _ => format!(
                    "{} of its messages come from addresses the published SPF record authorizes{}",
                    percent(*inside, facts.messages),
                    network
                        .as_deref()
                        .map(|n| format!(" ({n}, …)"))
                        .unwrap_or_default()
                ),
            };
            return decided(Class::Authorized, reason, cause);
        }
    }
    let pass_share = percent(facts.dmarc_pass, facts.messages);
    // 4. Passes DMARC (almost) always.
    if at_least(
        facts.dmarc_pass,
        facts.messages,
        config.authorized_pass_percent,
    ) {
        if dkim_carried && !sending_service {
            return decided(
                Class::Forwarded,
                format!(
                    "DKIM aligned and passing while SPF fails on {} of its {}: forwarded mail keeps the signature, not the SPF path",
                    percent(facts.messages - facts.spf_aligned_pass, facts.messages),
                    messages(facts.messages)
                ),
                cause,
            );
        }
        return decided(
            Class::Authorized,
            format!(
                "DMARC pass for {pass_share} of its {} (at least {}% counts as authorized)",
                messages(facts.messages),
                config.authorized_pass_percent
            ),
            cause,
        );
    }
    // 5. A forwarder.
    if forwarding_type {
        let listed = if FORWARDING_TYPES.contains(&kind) {
            "in the source map"
        } else {
            "in senders.forwarders"
        };
        return decided(
            Class::Forwarded,
            format!("{what} relays mail others wrote ({listed}); DMARC pass for {pass_share}"),
            cause,
        );
    }
    if dkim_carried && !sending_service {
        return decided(
            Class::Forwarded,
            format!(
                "DKIM aligned and passing while SPF fails on {} of its {}",
                percent(facts.messages - facts.spf_aligned_pass, facts.messages),
                messages(facts.messages)
            ),
            cause,
        );
    }
    // 6. A known sending service that fails alignment.
    if sending_service {
        return decided(
            Class::Misconfigured,
            format!(
                "{what}, a known sending service, fails DMARC on {} of its {}",
                percent(failing, facts.messages),
                messages(facts.messages)
            ),
            cause,
        );
    }
    // 7. Passes sometimes.
    if facts.dmarc_pass > 0 {
        return decided(
            Class::Misconfigured,
            format!(
                "passes DMARC for {pass_share} of its {} only (below {}%): it can authenticate, some of its mail does not",
                messages(facts.messages),
                config.authorized_pass_percent
            ),
            cause,
        );
    }
    // 8. The rest.
    decided(
        Class::Suspicious,
        format!(
            "fails DKIM and SPF alignment on all its {} and is no known service, forwarder or approved source",
            messages(facts.messages)
        ),
        cause,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(key: &str, kind: Option<&str>, messages: i64, pass: i64) -> SourceFacts {
        SourceFacts {
            domain: "example.com".into(),
            key: key.into(),
            is_ip: key.parse::<std::net::IpAddr>().is_ok(),
            source_type: kind.map(str::to_string),
            messages,
            dmarc_pass: pass,
            dkim_aligned_pass: pass,
            spf_aligned_pass: pass,
            ptr_looked_up: true,
            ..SourceFacts::default()
        }
    }

    #[test]
    fn causes_name_the_other_signer_and_the_bounce_domain() {
        let mut tally = CauseTally::default();
        tally.add_record(
            "example.com",
            40,
            r#"[{"domain":"mcsv.net","selector":"k1","result":"pass"}]"#,
            r#"[{"domain":"mail.mcsv.net","scope":"mfrom","result":"pass"}]"#,
        );
        tally.add_record(
            "example.com",
            2,
            "[]",
            r#"[{"domain":"example.com","result":"softfail"}]"#,
        );
        assert_eq!(
            tally.line("example.com").unwrap(),
            "signed by mcsv.net, not example.com; SPF passes for mail.mcsv.net, not aligned with example.com"
        );
        assert_eq!(
            tally.fix("example.com", "Mailchimp").unwrap(),
            "set up DKIM for example.com at Mailchimp (it signs as mcsv.net with selector k1): \
             publish the key it gives you, usually a CNAME for k1._domainkey.example.com"
        );
        let mut own = CauseTally::default();
        own.add_record(
            "news.example.com",
            5,
            r#"[{"domain":"example.com","result":"fail"}]"#,
            r#"[{"domain":"example.com","result":"fail"}]"#,
        );
        assert_eq!(
            own.line("example.com").unwrap(),
            "DKIM signature of example.com fails (fail); SPF fail"
        );
    }

    #[test]
    fn each_class_for_its_reason() {
        let config = SendersConfig::default();
        let passing = classify(&facts("Amazon SES", Some("esp"), 1000, 990), &config);
        assert_eq!(passing.class, Class::Authorized);
        assert!(passing.reason.contains("99%"), "{}", passing.reason);

        let mut dkim_only = facts("Groups.io", Some("forwarder"), 100, 100);
        dkim_only.spf_aligned_pass = 0;
        assert_eq!(classify(&dkim_only, &config).class, Class::Forwarded);

        let gmail = facts("Gmail", Some("mailbox_provider"), 50, 10);
        let classed = classify(&gmail, &config);
        assert_eq!(classed.class, Class::Forwarded);
        assert!(classed.reason.contains("source map"), "{}", classed.reason);

        let mut listed = facts("Our List Server", None, 50, 0);
        let mut config_listing = config.clone();
        config_listing.forwarders = vec!["our list server".into()];
        assert_eq!(classify(&listed, &config_listing).class, Class::Forwarded);
        listed.inside_spf = Some((50, Some("192.0.2.0/24".into())));
        assert_eq!(classify(&listed, &config).class, Class::Authorized);

        let mailchimp = facts("Mailchimp", Some("esp"), 200, 0);
        let classed = classify(&mailchimp, &config);
        assert_eq!(classed.class, Class::Misconfigured);
        assert!(classed.reason.contains("known sending service"));

        let mut spoofer = facts("203.0.113.66", None, 12, 0);
        let classed = classify(&spoofer, &config);
        assert_eq!(classed.class, Class::Suspicious);
        assert_eq!(classed.signals, vec!["no PTR name".to_string()]);
        spoofer.rule = Some(RuleMatch {
            id: 1,
            action: Action::Ignore,
            line: "ignored".into(),
        });
        assert_eq!(classify(&spoofer, &config).class, Class::Ignored);

        let mut reasons = facts("198.51.100.7", None, 10, 0);
        reasons.failing_sampled = 10;
        reasons.forwarding_reasons = 8;
        reasons.forwarding_reason = Some("mailing_list".into());
        let classed = classify(&reasons, &config);
        assert_eq!(classed.class, Class::Forwarded);
        assert!(
            classed.reason.contains("mailing_list"),
            "{}",
            classed.reason
        );

        let partial = facts("198.51.100.8", None, 10, 4);
        assert_eq!(classify(&partial, &config).class, Class::Misconfigured);
    }

    #[test]
    fn shares_never_round_up_to_all() {
        assert_eq!(percent(9999, 10000), "99.9%");
        assert_eq!(percent(10, 10), "100%");
        assert_eq!(percent(1, 3), "33.3%");
    }
}
