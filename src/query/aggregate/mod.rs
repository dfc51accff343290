//! Aggregate data as the dashboard and the API show it: grouped summaries
//! (`summary`), records (`records`) and reports (`reports`), and what they
//! share: the groupings, where the rows are read from and what is summed.

mod records;
mod reports;
mod summary;

use serde::{Deserialize, Serialize};

pub use records::{
    records, records_stream, records_total, DkimCheck, PolicyOverride, RecordCsvRow, RecordRow,
    SpfCheck,
};
pub use reports::{
    implausible_dates, report, report_location, reports, reports_stream, ReportCsvRow, ReportRow,
};
pub use summary::{
    busiest_sources, summary, summary_from, summary_stream, top_groups, SummaryRow, SummarySort,
};

use super::filter::{ParsedFilter, SourceMatch};
use super::plan::Plan;
use super::QueryError;
use crate::store::{Backend, Sql, Store};

/// What a summary groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Source IP.
    #[default]
    Source,
    /// Named sending source (falls back to the IP).
    SourceName,
    /// Reporting organization.
    Org,
    Country,
    Asn,
    /// Policy domain.
    Domain,
    /// Day the report period began (UTC).
    Day,
    Disposition,
    HeaderFrom,
}

impl GroupBy {
    pub const ALL: [GroupBy; 9] = [
        GroupBy::Source,
        GroupBy::SourceName,
        GroupBy::Org,
        GroupBy::Country,
        GroupBy::Asn,
        GroupBy::Domain,
        GroupBy::Day,
        GroupBy::Disposition,
        GroupBy::HeaderFrom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Source => "source",
            GroupBy::SourceName => "source_name",
            GroupBy::Org => "org",
            GroupBy::Country => "country",
            GroupBy::Asn => "asn",
            GroupBy::Domain => "domain",
            GroupBy::Day => "day",
            GroupBy::Disposition => "disposition",
            GroupBy::HeaderFrom => "header_from",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GroupBy::Source => "Source IP",
            GroupBy::SourceName => "Source",
            GroupBy::Org => "Reporting organization",
            GroupBy::Country => "Country",
            GroupBy::Asn => "AS",
            GroupBy::Domain => "Domain",
            GroupBy::Day => "Day",
            GroupBy::Disposition => "Disposition",
            GroupBy::HeaderFrom => "Header From",
        }
    }

    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Self::ALL
            .into_iter()
            .find(|group| group.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|g| g.as_str()).collect();
                QueryError::Invalid(format!(
                    "group_by: {text:?} is not one of {}",
                    known.join(", ")
                ))
            })
    }

    /// The grouping key (text) and a display label, as SQL. `sources` is
    /// the alias the source descriptions are read from: `s` (ip_sources,
    /// joined) or `r` (totals that carry them).
    fn key_and_label(self, backend: Backend, sources: &str) -> (String, String) {
        let s = sources;
        let (key, label) = match self {
            // Labelled after grouping (`outer_label`), for the page's rows only.
            GroupBy::Source => (backend.ip_text("r.source_ip"), "NULL".into()),
            GroupBy::SourceName => (
                format!(
                    "coalesce({s}.source_name, {}, r.invalid_source_ip)",
                    backend.ip_text("r.source_ip")
                ),
                format!("max({s}.source_type)"),
            ),
            GroupBy::Org => ("r.org_name".into(), "NULL".into()),
            GroupBy::Country => (format!("{s}.country"), "NULL".into()),
            GroupBy::Asn => (
                format!("CAST({s}.asn AS TEXT)"),
                format!("max({s}.as_name)"),
            ),
            GroupBy::Domain => ("r.policy_domain".into(), "NULL".into()),
            GroupBy::Day => (backend.day_text("r.date_begin"), "NULL".into()),
            GroupBy::Disposition => ("r.disposition".into(), "NULL".into()),
            GroupBy::HeaderFrom => ("r.header_from".into(), "NULL".into()),
        };
        (key, label)
    }

    /// The label as the outer query over the groups `g` selects it.
    fn outer_label(self, backend: Backend) -> String {
        match self {
            GroupBy::Source => format!(
                "(SELECT coalesce(s.source_name, s.ptr) FROM ip_sources s WHERE s.ip = {})",
                backend.inet("g.key")
            ),
            _ => "g.label".to_string(),
        }
    }

    /// The outer query's columns: the groups, labelled.
    fn outer_columns(self, backend: Backend) -> String {
        format!(
            "g.key, {} AS label, g.messages, g.passed, g.dkim, g.spf, g.none, g.quarantine, g.reject",
            self.outer_label(backend)
        )
    }

    /// What the rows are grouped by: the key itself, except that an IP is
    /// grouped as an address and turned into text once per group.
    fn grouping(self, backend: Backend, sources: &str) -> String {
        match self {
            GroupBy::Source => "r.source_ip".into(),
            other => other.key_and_label(backend, sources).0,
        }
    }

    pub fn uses_sources(self) -> bool {
        matches!(
            self,
            GroupBy::Source | GroupBy::SourceName | GroupBy::Country | GroupBy::Asn
        )
    }

    /// Whether the key or label reads `ip_sources` (a source IP alone is
    /// labelled after grouping, for the page's rows only).
    fn reads_source_details(self) -> bool {
        matches!(self, GroupBy::SourceName | GroupBy::Country | GroupBy::Asn)
    }
}

/// The rollup a query over `filter` grouped by `group_by` reads (the day
/// grain of a family of totals), or `None` for the records themselves.
pub fn rollup_for(filter: &ParsedFilter, group_by: Option<GroupBy>) -> Option<&'static str> {
    Plan::for_query(filter, group_by).table()
}

/// `FROM aggregate_records r [LEFT JOIN ip_sources s] WHERE 1=1 AND …`.
pub(super) async fn push_from_where(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    join_sources: bool,
) -> Result<(), QueryError> {
    push_from_where_in(store, sql, filter, join_sources, Plan::Records, None).await
}

/// `FROM <relation> r [LEFT JOIN ip_sources s] WHERE 1=1 AND …` over the
/// rows `plan` names. Totals take the DMARC result as a choice of columns
/// (`Measures`), so its condition is left out here.
pub(super) async fn push_from_where_in(
    store: &Store,
    sql: &mut Sql,
    filter: &ParsedFilter,
    join_sources: bool,
    plan: Plan,
    group_by: Option<GroupBy>,
) -> Result<(), QueryError> {
    sql.push(" FROM ");
    let period_read = plan.push_relation(sql, filter, group_by);
    let sender_on = if plan.reads_descriptions() { "r" } else { "s" };
    if join_sources || filter.uses_sources() || (filter.sender.is_some() && sender_on == "s") {
        sql.push(" LEFT JOIN ip_sources s ON s.ip = r.source_ip");
    }
    sql.push(" WHERE 1 = 1");
    let network = match &filter.source {
        Some(SourceMatch::Network(network)) => Some(
            store
                .reads()
                .in_network(sql, "r.source_ip", *network)
                .await?,
        ),
        _ => None,
    };
    let mut conditions = match plan {
        Plan::Totals(_) => ParsedFilter {
            result: None,
            ..filter.clone()
        },
        _ => filter.clone(),
    };
    if period_read {
        // The relation holds the period and nothing else; some of its rows
        // (a month that days are taken from) begin before it.
        conditions.since = None;
        conditions.until = None;
    }
    conditions.push_conditions(sql, network.as_deref());
    if let Some(sender) = &filter.sender {
        sender.push_condition(sql, sender_on);
    }
    if let (Plan::Totals(_), Some(passing)) = (plan, filter.result) {
        // A row without a record of that result adds nothing to its
        // counters: it is skipped before it is summed. Most rows of a
        // source's day hold one result only (on the load seed, three day
        // rows in four have no failing record).
        sql.push(match passing {
            true => " AND r.records <> r.fail_records",
            false => " AND r.fail_records <> 0",
        });
    }
    Ok(())
}

/// The sums a summary row is made of, as SQL over the rows `plan` names.
pub(super) struct Measures {
    messages: String,
    passed: String,
    dkim: String,
    spf: String,
    none: String,
    quarantine: String,
    reject: String,
    /// Records behind the rows (for totals of the records list).
    records: String,
    /// What a group needs to exist (totals hold rows for either result).
    having: Option<String>,
}

impl Measures {
    fn new(plan: Plan, backend: Backend, result: Option<bool>) -> Self {
        Self::over(plan, backend, result, true, false)
    }

    /// The measures of rows that are groups already (`aggregate` false):
    /// the same expressions without the sums. `signed`: some rows count
    /// negatively (`Plan::signed_rows`), so a group may hold no records.
    fn over(
        plan: Plan,
        backend: Backend,
        result: Option<bool>,
        aggregate: bool,
        signed: bool,
    ) -> Self {
        let sum = |expression: &str| match aggregate {
            true => backend.sum(expression),
            false => format!("coalesce({expression}, 0)"),
        };
        if let Plan::Totals(_) = plan {
            // All, failing only, or passing only (all minus failing).
            let column = |name: &str| match result {
                None => format!("r.{name}"),
                Some(false) => format!("r.fail_{name}"),
                Some(true) => format!("r.{name} - r.fail_{name}"),
            };
            let records = sum(&column("records"));
            return Measures {
                messages: sum(&column("count")),
                passed: match result {
                    None => sum("r.count - r.fail_count"),
                    // A bigint, as the sums are (PostgreSQL reads a bare 0 as int4).
                    Some(false) => "CAST(0 AS BIGINT)".into(),
                    Some(true) => sum(&column("count")),
                },
                dkim: sum(&column("dkim_pass")),
                spf: sum(&column("spf_pass")),
                none: sum(&column("disp_none")),
                quarantine: sum(&column("disp_quarantine")),
                reject: sum(&column("disp_reject")),
                // A result's rows without a record of it are left out
                // before summing (`push_from_where_in`), so only rows that
                // count negatively can leave a group with none.
                having: signed.then(|| format!("{records} > 0")),
                records,
            };
        }
        let pass = backend.is_true("r.dmarc_pass");
        let when = |condition: &str| sum(&format!("CASE WHEN {condition} THEN r.count END"));
        Measures {
            messages: sum("r.count"),
            passed: when(&pass),
            dkim: when("r.dkim_aligned = 'pass'"),
            spf: when("r.spf_aligned = 'pass'"),
            none: when("r.disposition = 'none'"),
            quarantine: when("r.disposition = 'quarantine'"),
            reject: when("r.disposition = 'reject'"),
            records: match plan {
                Plan::Records => "count(*)".into(),
                _ => sum("r.records"),
            },
            having: None,
        }
    }
}
