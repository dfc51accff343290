//! Who sends as a domain: each source (a sender name when the enrichment
//! names one, else its IP) put in one class, with the one line that put
//! it there (`class`), from approvals admins made (`rule`) and thresholds
//! in the config (`SendersConfig`).
//!
//! PURE: facts in, classes out. `query::senders` gathers the facts.

pub mod class;
pub mod readiness;
pub mod rule;

pub use class::{classify, Cause, CauseTally, Class, Classification, RuleMatch, SourceFacts};
pub use rule::{matches_ip, matching_rule, ordered_rules, Action, IpFacts, MatchKind, RuleError};

use serde::Deserialize;

/// The `[senders]` section of the config: what counts as authorized,
/// and how much is read to tell why a source fails.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendersConfig {
    /// A source whose messages pass DMARC at least this often (percent)
    /// is authorized.
    pub authorized_pass_percent: u8,
    /// The share of a source's messages (percent) a signal must cover to
    /// decide its class: addresses inside the published SPF, override
    /// reasons, DKIM passing while SPF fails, approval rules by IP, CIDR,
    /// AS or PTR for a named source.
    pub majority_percent: u8,
    /// Sender names (as the Senders page shows them) that forward mail,
    /// besides the source map's mailbox providers, forwarders and
    /// security gateways.
    pub forwarders: Vec<String>,
    /// Sources listed per domain, most messages first (at most 1000).
    pub max_sources: u32,
    /// The newest failing records of a domain read per request to tell
    /// failure causes and override reasons (a bound on the work a page
    /// does, whatever the database holds).
    pub sample_records: u32,
}

impl Default for SendersConfig {
    fn default() -> Self {
        SendersConfig {
            authorized_pass_percent: 95,
            majority_percent: 50,
            forwarders: Vec::new(),
            max_sources: 500,
            sample_records: 2000,
        }
    }
}

impl SendersConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("authorized_pass_percent", self.authorized_pass_percent),
            ("majority_percent", self.majority_percent),
        ] {
            if !(1..=100).contains(&value) {
                return Err(format!("senders.{name} must be 1 to 100 (got {value})"));
            }
        }
        if !(1..=1000).contains(&self.max_sources) {
            return Err(format!(
                "senders.max_sources must be 1 to 1000 (got {})",
                self.max_sources
            ));
        }
        if !(1..=1_000_000).contains(&self.sample_records) {
            return Err(format!(
                "senders.sample_records must be 1 to 1000000 (got {})",
                self.sample_records
            ));
        }
        Ok(())
    }

    /// Whether `name` is a forwarder the user listed.
    pub fn is_listed_forwarder(&self, name: &str) -> bool {
        self.forwarders
            .iter()
            .any(|listed| listed.trim().eq_ignore_ascii_case(name))
    }
}
