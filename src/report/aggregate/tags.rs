//! The element names of the aggregate format, resolved once per tag so the
//! streaming parser compares small integers instead of strings.

/// An element of the aggregate format. Some local names mean different things
/// by position (`dkim` under `policy_evaluated` is a verdict, under
/// `auth_results` a container); `Tag::in_context` picks the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Feedback,
    Version,
    ReportMetadata,
    OrgName,
    Email,
    ExtraContactInfo,
    ReportId,
    DateRange,
    Begin,
    End,
    Error,
    Generator,
    PolicyPublished,
    Domain,
    Adkim,
    Aspf,
    P,
    Sp,
    Np,
    Pct,
    Fo,
    Testing,
    DiscoveryMethod,
    Extension,
    Record,
    Row,
    SourceIp,
    Count,
    PolicyEvaluated,
    Disposition,
    Dkim,
    Spf,
    Reason,
    Type,
    Comment,
    Identifiers,
    HeaderFrom,
    EnvelopeFrom,
    EnvelopeTo,
    AuthResults,
    /// `auth_results/dkim`: one signature's result (a container).
    DkimAuth,
    /// `auth_results/spf`: one SPF check (a container).
    SpfAuth,
    Selector,
    Result,
    HumanResult,
    Scope,
    /// An element this parser does not know; its name is kept in the frame.
    Unknown,
}

impl Tag {
    /// The tag for a local name (namespace prefix already removed), ignoring context.
    pub(super) fn from_local_name(name: &[u8]) -> Tag {
        match name {
            b"feedback" => Tag::Feedback,
            b"version" => Tag::Version,
            b"report_metadata" => Tag::ReportMetadata,
            b"org_name" => Tag::OrgName,
            b"email" => Tag::Email,
            b"extra_contact_info" => Tag::ExtraContactInfo,
            b"report_id" => Tag::ReportId,
            b"date_range" => Tag::DateRange,
            b"begin" => Tag::Begin,
            b"end" => Tag::End,
            b"error" => Tag::Error,
            b"generator" => Tag::Generator,
            b"policy_published" => Tag::PolicyPublished,
            b"domain" => Tag::Domain,
            b"adkim" => Tag::Adkim,
            b"aspf" => Tag::Aspf,
            b"p" => Tag::P,
            b"sp" => Tag::Sp,
            b"np" => Tag::Np,
            b"pct" => Tag::Pct,
            b"fo" => Tag::Fo,
            b"testing" => Tag::Testing,
            b"discovery_method" => Tag::DiscoveryMethod,
            b"extension" => Tag::Extension,
            b"record" => Tag::Record,
            b"row" => Tag::Row,
            b"source_ip" => Tag::SourceIp,
            b"count" => Tag::Count,
            b"policy_evaluated" => Tag::PolicyEvaluated,
            b"disposition" => Tag::Disposition,
            b"dkim" => Tag::Dkim,
            b"spf" => Tag::Spf,
            b"reason" => Tag::Reason,
            b"type" => Tag::Type,
            b"comment" => Tag::Comment,
            b"identifiers" => Tag::Identifiers,
            b"header_from" => Tag::HeaderFrom,
            b"envelope_from" => Tag::EnvelopeFrom,
            b"envelope_to" => Tag::EnvelopeTo,
            b"auth_results" => Tag::AuthResults,
            b"selector" => Tag::Selector,
            b"result" => Tag::Result,
            b"human_result" => Tag::HumanResult,
            b"scope" => Tag::Scope,
            _ => Tag::Unknown,
        }
    }

    /// Resolves a name-based tag against its parent element.
    pub(super) fn in_context(self, parent: Option<Tag>) -> Tag {
        match (self, parent) {
            (Tag::Dkim, Some(Tag::AuthResults)) => Tag::DkimAuth,
            (Tag::Spf, Some(Tag::AuthResults)) => Tag::SpfAuth,
            _ => self,
        }
    }

    /// The name-based tag this contextual tag came from (for matching end tags).
    pub(super) fn base(self) -> Tag {
        match self {
            Tag::DkimAuth => Tag::Dkim,
            Tag::SpfAuth => Tag::Spf,
            other => other,
        }
    }

    /// True for elements whose content is text we read (as opposed to containers).
    pub(super) fn is_leaf(self, parent: Option<Tag>) -> bool {
        use Tag::*;
        match self {
            Feedback | ReportMetadata | DateRange | PolicyPublished | Extension | Record | Row
            | PolicyEvaluated | Reason | Identifiers | AuthResults | DkimAuth | SpfAuth
            | Unknown => false,
            // Only meaningful under a known parent; elsewhere they are noise.
            _ => parent.is_some_and(|p| p != Unknown),
        }
    }

    /// The element's name as written in the format, for paths in messages.
    pub(super) fn name(self) -> &'static str {
        use Tag::*;
        match self {
            Feedback => "feedback",
            Version => "version",
            ReportMetadata => "report_metadata",
            OrgName => "org_name",
            Email => "email",
            ExtraContactInfo => "extra_contact_info",
            ReportId => "report_id",
            DateRange => "date_range",
            Begin => "begin",
            End => "end",
            Error => "error",
            Generator => "generator",
            PolicyPublished => "policy_published",
            Domain => "domain",
            Adkim => "adkim",
            Aspf => "aspf",
            P => "p",
            Sp => "sp",
            Np => "np",
            Pct => "pct",
            Fo => "fo",
            Testing => "testing",
            DiscoveryMethod => "discovery_method",
            Extension => "extension",
            Record => "record",
            Row => "row",
            SourceIp => "source_ip",
            Count => "count",
            PolicyEvaluated => "policy_evaluated",
            Disposition => "disposition",
            Dkim | DkimAuth => "dkim",
            Spf | SpfAuth => "spf",
            Reason => "reason",
            Type => "type",
            Comment => "comment",
            Identifiers => "identifiers",
            HeaderFrom => "header_from",
            EnvelopeFrom => "envelope_from",
            EnvelopeTo => "envelope_to",
            AuthResults => "auth_results",
            Selector => "selector",
            Result => "result",
            HumanResult => "human_result",
            Scope => "scope",
            Unknown => "?",
        }
    }
}
