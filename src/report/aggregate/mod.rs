//! DMARC aggregate (rua) reports: RFC 7489 Appendix C, the pre-RFC draft
//! shape and RFC 9990 (namespace `urn:ietf:params:xml:ns:dmarc-2.0`).
//!
//! `parse` streams the XML with quick-xml: memory grows with the records
//! read, never with a tree of the whole document.

mod encoding;
mod intern;
mod parse;
mod state;
mod tags;
mod values;
mod write;

pub use parse::{parse, parse_bytes, parse_streaming, parse_with, AggregateError, RecordSink};

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::keyword::keyword_enum;

keyword_enum!(
    /// `DispositionType`: the policy published, or the action applied.
    /// RFC 9990 adds `pass` for the applied action.
    Disposition { None => "none", Quarantine => "quarantine", Reject => "reject", Pass => "pass" }
);

keyword_enum!(
    /// `AlignmentType`: relaxed or strict identifier alignment.
    Alignment { Relaxed => "r", Strict => "s" }
);

keyword_enum!(
    /// `DMARCResultType`: the *aligned* DKIM or SPF verdict of a row.
    DmarcResult { Pass => "pass", Fail => "fail" }
);

keyword_enum!(
    /// `DKIMResultType` of one signature in `auth_results`.
    DkimResult {
        None => "none", Pass => "pass", Fail => "fail", Policy => "policy",
        Neutral => "neutral", TempError => "temperror", PermError => "permerror",
    }
);

keyword_enum!(
    /// `SPFResultType` in `auth_results`. RFC 9990 adds `policy`. The RFC 7489
    /// XSD notes `unknown` and `error` as common spellings of temperror and
    /// permerror; they are kept as sent (`Unknown`) rather than rewritten.
    SpfResult {
        None => "none", Neutral => "neutral", Pass => "pass", Fail => "fail",
        SoftFail => "softfail", TempError => "temperror", PermError => "permerror",
        Policy => "policy",
    }
);

keyword_enum!(
    /// SPF identity checked: `mfrom` (MAIL FROM) or `helo`.
    SpfScope { Mfrom => "mfrom", Helo => "helo" }
);

keyword_enum!(
    /// `PolicyOverrideType`: why the applied disposition differs from the
    /// policy. RFC 7489 and RFC 9990 values together.
    OverrideType {
        Forwarded => "forwarded", SampledOut => "sampled_out",
        TrustedForwarder => "trusted_forwarder", MailingList => "mailing_list",
        LocalPolicy => "local_policy", PolicyTestMode => "policy_test_mode",
        Other => "other",
    }
);

/// Which shape of the aggregate format a document follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaFamily {
    /// No `<version>` element: the pre-RFC draft shape many reporters still send.
    Draft,
    /// RFC 7489 (`<version>1.0</version>`, no DMARCbis elements).
    Rfc7489,
    /// RFC 9990 / DMARCbis: its namespace, `<version>2.0</version>`, or one of
    /// `np`, `testing`, `discovery_method`, `generator`.
    Rfc9990,
}

/// One aggregate report: metadata, the policy the reporter found and one
/// record per (source IP, result, identifiers) tuple.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateReport {
    pub schema: SchemaFamily,
    /// `<version>` as written, when present.
    pub version: Option<String>,
    /// The namespace of the root element, when declared.
    pub namespace: Option<String>,
    pub metadata: ReportMetadata,
    pub policy_published: PolicyPublished,
    /// RFC 9990 `<extension>` elements, as raw XML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    pub records: Vec<Record>,
    /// What the parser had to tolerate to read this document (stray text,
    /// invalid bytes, unclosed elements…). Empty for a clean document.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportMetadata {
    /// The reporting organisation. When `<org_name>` is empty, the domain of
    /// `<email>` (what parsedmarc does too).
    pub org_name: String,
    pub email: Option<String>,
    pub extra_contact_info: Option<String>,
    pub report_id: String,
    /// Start of the reporting period, Unix seconds UTC.
    pub begin: i64,
    /// End of the reporting period, Unix seconds UTC.
    pub end: i64,
    /// `<error>` elements: problems the reporter met evaluating the policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// RFC 9990: name and version of the software that made the report.
    pub generator: Option<String>,
}

/// The DMARC record the reporter found. Missing elements stay `None`:
/// defaults are applied by whoever interprets the policy, not invented here.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PolicyPublished {
    pub domain: String,
    pub adkim: Option<Alignment>,
    pub aspf: Option<Alignment>,
    pub p: Option<Disposition>,
    pub sp: Option<Disposition>,
    /// RFC 9990: policy for non-existent subdomains.
    pub np: Option<Disposition>,
    /// RFC 7489 only (removed by RFC 9990).
    pub pct: Option<u8>,
    pub fo: Option<String>,
    /// RFC 9990: the `t` tag, `y` or `n`.
    pub testing: Option<String>,
    /// RFC 9990: `psl` or `treewalk`.
    pub discovery_method: Option<String>,
}

/// One `<record>`: a source, how many messages, and how they fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The connecting IP; `None` when the report's value is not an address.
    pub source_ip: Option<IpAddr>,
    /// The raw `<source_ip>` text when it could not be read as an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_source_ip: Option<Box<str>>,
    pub count: u64,
    pub policy_evaluated: PolicyEvaluated,
    pub identifiers: Identifiers,
    pub auth_results: AuthResults,
    /// RFC 9990 record-level extension elements, as raw XML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

impl Record {
    /// DMARC passes when either aligned mechanism passed (RFC 7489 §6.6.2).
    pub fn dmarc_pass(&self) -> bool {
        self.policy_evaluated.dkim == Some(DmarcResult::Pass)
            || self.policy_evaluated.spf == Some(DmarcResult::Pass)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PolicyEvaluated {
    pub disposition: Option<Disposition>,
    pub dkim: Option<DmarcResult>,
    pub spf: Option<DmarcResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<OverrideReason>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OverrideReason {
    #[serde(rename = "type")]
    pub kind: Option<OverrideType>,
    pub comment: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Identifiers {
    pub header_from: Option<Arc<str>>,
    pub envelope_from: Option<Arc<str>>,
    pub envelope_to: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AuthResults {
    pub dkim: Vec<DkimAuthResult>,
    pub spf: Vec<SpfAuthResult>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DkimAuthResult {
    pub domain: Option<Arc<str>>,
    pub selector: Option<Arc<str>>,
    pub result: Option<DkimResult>,
    pub human_result: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SpfAuthResult {
    pub domain: Option<Arc<str>>,
    pub scope: Option<SpfScope>,
    pub result: Option<SpfResult>,
    pub human_result: Option<Arc<str>>,
}

impl AggregateReport {
    /// Total number of messages the report covers.
    pub fn message_count(&self) -> u64 {
        self.records.iter().map(|r| r.count).sum()
    }
}
