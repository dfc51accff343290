//! What a check found: one finding per fact worth telling, with how much it
//! matters, why in one sentence, and where a record fixes it, that record.

use serde::{Deserialize, Serialize};

/// The record types a posture check looks at, in the order pages show them.
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
pub enum RecordKind {
    Dmarc,
    Spf,
    Dkim,
    Mx,
    MtaSts,
    TlsRpt,
    Bimi,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Dmarc,
        RecordKind::Spf,
        RecordKind::Dkim,
        RecordKind::Mx,
        RecordKind::MtaSts,
        RecordKind::TlsRpt,
        RecordKind::Bimi,
    ];

    /// The name people use for it (DMARC, MTA-STS…).
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Dmarc => "DMARC",
            RecordKind::Spf => "SPF",
            RecordKind::Dkim => "DKIM",
            RecordKind::Mx => "MX",
            RecordKind::MtaSts => "MTA-STS",
            RecordKind::TlsRpt => "TLS-RPT",
            RecordKind::Bimi => "BIMI",
        }
    }

    /// The snake_case name used in JSON and URLs.
    pub fn key(self) -> &'static str {
        match self {
            RecordKind::Dmarc => "dmarc",
            RecordKind::Spf => "spf",
            RecordKind::Dkim => "dkim",
            RecordKind::Mx => "mx",
            RecordKind::MtaSts => "mta_sts",
            RecordKind::TlsRpt => "tls_rpt",
            RecordKind::Bimi => "bimi",
        }
    }
}

/// How much a finding matters. `Unknown` is "could not check" (a lookup
/// failed or timed out): neither good nor bad, and the next run retries.
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
pub enum Severity {
    Ok,
    Unknown,
    Warning,
    Error,
}

impl Severity {
    pub fn key(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A DNS record to publish, exactly: name, type and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordFix {
    /// Owner name, without the trailing dot (`_dmarc.example.com`).
    pub name: String,
    /// `TXT`, `MX`…
    pub record_type: String,
    /// The record's value as a zone file or DNS console takes it.
    pub value: String,
}

impl std::fmt::Display for RecordFix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.record_type == "TXT" {
            write!(f, "{}. IN TXT \"{}\"", self.name, self.value)
        } else {
            write!(f, "{}. IN {} {}", self.name, self.record_type, self.value)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub kind: RecordKind,
    pub severity: Severity,
    /// A stable identifier (`spf.too_many_lookups`) for alerts and tests.
    pub code: String,
    /// One sentence: what was found and why it matters.
    pub message: String,
    /// The record that fixes it, where a record does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Box<RecordFix>>,
}

impl Finding {
    pub fn new(
        kind: RecordKind,
        severity: Severity,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            kind,
            severity,
            code: code.to_string(),
            message: message.into(),
            fix: None,
        }
    }

    pub fn ok(kind: RecordKind, code: &str, message: impl Into<String>) -> Self {
        Self::new(kind, Severity::Ok, code, message)
    }

    pub fn warning(kind: RecordKind, code: &str, message: impl Into<String>) -> Self {
        Self::new(kind, Severity::Warning, code, message)
    }

    pub fn error(kind: RecordKind, code: &str, message: impl Into<String>) -> Self {
        Self::new(kind, Severity::Error, code, message)
    }

    /// "Could not check": the lookup failed, the next run asks again.
    pub fn unchecked(kind: RecordKind, what: &str, reason: &str) -> Self {
        Self::new(
            kind,
            Severity::Unknown,
            &format!("{}.could_not_check", kind.key()),
            format!("Could not check {what}: {reason}; the next check asks again."),
        )
    }

    pub fn with_fix(mut self, name: &str, record_type: &str, value: impl Into<String>) -> Self {
        self.fix = Some(Box::new(RecordFix {
            name: name.trim_end_matches('.').to_string(),
            record_type: record_type.to_string(),
            value: value.into(),
        }));
        self
    }
}

/// The grade of one record type: its worst finding, where an error
/// outweighs a warning and a warning outweighs "could not check" (a
/// warning is known to need work, an unknown is not). No finding at all:
/// unknown.
pub fn grade(findings: &[Finding], kind: RecordKind) -> Severity {
    let mut worst = Severity::Ok;
    let mut any = false;
    for finding in findings.iter().filter(|finding| finding.kind == kind) {
        any = true;
        worst = match (worst, finding.severity) {
            (Severity::Error, _) | (_, Severity::Error) => Severity::Error,
            (Severity::Warning, _) | (_, Severity::Warning) => Severity::Warning,
            (Severity::Unknown, _) | (_, Severity::Unknown) => Severity::Unknown,
            _ => Severity::Ok,
        };
    }
    if any {
        worst
    } else {
        Severity::Unknown
    }
}
