//! Rollups of aggregate records, kept exact as reports are stored and
//! requeued, so that dashboards over millions of records read thousands of
//! rows.
//!
//! Two kinds:
//! - **result rollups** (`rollup_*_day`) keep the DMARC results
//!   (disposition, aligned DKIM and SPF, pass) as dimensions, one row per
//!   combination and day; they answer filters on those results.
//! - **totals** (`totals_*`) keep one row per key and period, with the
//!   results as counter columns (messages, DKIM passes, quarantines … and
//!   the same for the failing messages alone). A source that sends every
//!   combination of results is one row instead of a dozen, which is what
//!   makes source, country and AS views over millions of records fast.
//!   They come at three grains (day, month, all time), so that a long
//!   period reads a few coarse rows and only its ragged ends read days.
//!
//! Column names match `aggregate_records` (`date_begin` is the start of the
//! day or month, `count` the messages), so a query reads a rollup by naming
//! it in place of the records.

use super::Dialect;

/// The period one row of a rollup covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Month,
    /// Everything stored: no `date_begin` column.
    All,
}

/// How a rollup keeps the DMARC results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measures {
    /// Results are dimensions; the values are `count` and `records`.
    ResultDimensions,
    /// Results are counter columns (`COUNTERS`).
    Counters,
}

/// One rollup table.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollup {
    pub table: &'static str,
    pub grain: Grain,
    pub measures: Measures,
    /// The record columns it keeps besides the period.
    pub dimensions: &'static [&'static str],
    /// Whether each row also carries its source's `DESCRIPTION`, copied
    /// from `ip_sources` (kept by triggers, migration 6).
    pub described: bool,
}

/// What a described rollup copies from `ip_sources` for its source.
pub const DESCRIPTION: [&str; 5] = ["country", "asn", "as_name", "source_name", "source_type"];

/// The counter columns of the totals, each the sum of an expression over
/// the records. `fail_*` count the messages that failed DMARC alone, so that
/// `result=fail` (and `pass`, by difference) is answered from the totals.
pub const COUNTERS: [(&str, &str); 14] = [
    ("count", "count"),
    ("records", "1"),
    (
        "dkim_pass",
        "CASE WHEN dkim_aligned = 'pass' THEN count ELSE 0 END",
    ),
    (
        "spf_pass",
        "CASE WHEN spf_aligned = 'pass' THEN count ELSE 0 END",
    ),
    (
        "disp_none",
        "CASE WHEN disposition = 'none' THEN count ELSE 0 END",
    ),
    (
        "disp_quarantine",
        "CASE WHEN disposition = 'quarantine' THEN count ELSE 0 END",
    ),
    (
        "disp_reject",
        "CASE WHEN disposition = 'reject' THEN count ELSE 0 END",
    ),
    (
        "fail_count",
        "CASE WHEN NOT dmarc_pass THEN count ELSE 0 END",
    ),
    ("fail_records", "CASE WHEN NOT dmarc_pass THEN 1 ELSE 0 END"),
    (
        "fail_dkim_pass",
        "CASE WHEN NOT dmarc_pass AND dkim_aligned = 'pass' THEN count ELSE 0 END",
    ),
    (
        "fail_spf_pass",
        "CASE WHEN NOT dmarc_pass AND spf_aligned = 'pass' THEN count ELSE 0 END",
    ),
    (
        "fail_disp_none",
        "CASE WHEN NOT dmarc_pass AND disposition = 'none' THEN count ELSE 0 END",
    ),
    (
        "fail_disp_quarantine",
        "CASE WHEN NOT dmarc_pass AND disposition = 'quarantine' THEN count ELSE 0 END",
    ),
    (
        "fail_disp_reject",
        "CASE WHEN NOT dmarc_pass AND disposition = 'reject' THEN count ELSE 0 END",
    ),
];

const RESULTS: [&str; 4] = ["disposition", "dkim_aligned", "spf_aligned", "dmarc_pass"];

pub const DOMAIN_DAY: Rollup = Rollup {
    table: "rollup_domain_day",
    grain: Grain::Day,
    measures: Measures::ResultDimensions,
    dimensions: &[
        "policy_domain",
        RESULTS[0],
        RESULTS[1],
        RESULTS[2],
        RESULTS[3],
    ],
    described: false,
};

pub const ORG_DAY: Rollup = Rollup {
    table: "rollup_org_day",
    grain: Grain::Day,
    measures: Measures::ResultDimensions,
    dimensions: &[
        "policy_domain",
        RESULTS[0],
        RESULTS[1],
        RESULTS[2],
        RESULTS[3],
        "org_name",
    ],
    described: false,
};

const ORG: &[&str] = &["policy_domain", "org_name"];
const SOURCE: &[&str] = &["source_ip", "invalid_source_ip"];
const DOMAIN_SOURCE: &[&str] = &["policy_domain", "source_ip", "invalid_source_ip"];

const fn totals(table: &'static str, grain: Grain, dimensions: &'static [&'static str]) -> Rollup {
    Rollup {
        table,
        grain,
        measures: Measures::Counters,
        dimensions,
        described: false,
    }
}

/// Totals per source, with the source's description.
const fn described(
    table: &'static str,
    grain: Grain,
    dimensions: &'static [&'static str],
) -> Rollup {
    Rollup {
        described: true,
        ..totals(table, grain, dimensions)
    }
}

pub const TOTALS_ORG_DAY: Rollup = totals("totals_org_day", Grain::Day, ORG);
pub const TOTALS_SOURCE_DAY: Rollup = described("totals_source_day", Grain::Day, SOURCE);
pub const TOTALS_SOURCE_MONTH: Rollup = described("totals_source_month", Grain::Month, SOURCE);
pub const TOTALS_SOURCE_ALL: Rollup = described("totals_source_all", Grain::All, SOURCE);
pub const TOTALS_DOMAIN_SOURCE_DAY: Rollup =
    described("totals_domain_source_day", Grain::Day, DOMAIN_SOURCE);
pub const TOTALS_DOMAIN_SOURCE_MONTH: Rollup =
    described("totals_domain_source_month", Grain::Month, DOMAIN_SOURCE);
pub const TOTALS_DOMAIN_SOURCE_ALL: Rollup =
    described("totals_domain_source_all", Grain::All, DOMAIN_SOURCE);

/// A set of totals with the same dimensions at the grains there are.
pub struct Family {
    pub day: &'static Rollup,
    pub month: Option<&'static Rollup>,
    pub all: Option<&'static Rollup>,
    /// Whether what a source is (its country, its name) is part of the
    /// key rather than a copy beside it (derived.rs).
    pub keyed_by_description: bool,
}

impl Family {
    pub fn dimensions(&self) -> &'static [&'static str] {
        self.day.dimensions
    }
}

/// Per domain and reporting organization (no source).
pub const ORG_TOTALS: Family = Family {
    day: &TOTALS_ORG_DAY,
    month: None,
    all: None,
    keyed_by_description: false,
};
/// Per source IP, all domains together.
pub const SOURCE_TOTALS: Family = Family {
    day: &TOTALS_SOURCE_DAY,
    month: Some(&TOTALS_SOURCE_MONTH),
    all: Some(&TOTALS_SOURCE_ALL),
    keyed_by_description: false,
};
/// Per domain and source IP.
pub const DOMAIN_SOURCE_TOTALS: Family = Family {
    day: &TOTALS_DOMAIN_SOURCE_DAY,
    month: Some(&TOTALS_DOMAIN_SOURCE_MONTH),
    all: Some(&TOTALS_DOMAIN_SOURCE_ALL),
    keyed_by_description: false,
};

/// Every rollup, in the order the save transaction updates them.
pub const ALL: [Rollup; 9] = [
    DOMAIN_DAY,
    ORG_DAY,
    TOTALS_ORG_DAY,
    TOTALS_SOURCE_DAY,
    TOTALS_SOURCE_MONTH,
    TOTALS_SOURCE_ALL,
    TOTALS_DOMAIN_SOURCE_DAY,
    TOTALS_DOMAIN_SOURCE_MONTH,
    TOTALS_DOMAIN_SOURCE_ALL,
];

/// The start of the record's period (UTC), in the column's own type.
fn period(dialect: Dialect, grain: Grain) -> Option<&'static str> {
    match (grain, dialect) {
        (Grain::All, _) => None,
        (Grain::Day, Dialect::Postgres) => Some("date_trunc('day', date_begin, 'UTC')"),
        (Grain::Month, Dialect::Postgres) => Some("date_trunc('month', date_begin, 'UTC')"),
        (Grain::Day, Dialect::Sqlite) => Some("substr(date_begin, 1, 10) || 'T00:00:00+00:00'"),
        (Grain::Month, Dialect::Sqlite) => Some("substr(date_begin, 1, 7) || '-01T00:00:00+00:00'"),
    }
}

impl Rollup {
    /// The key columns: the period (unless all time) and the dimensions.
    pub fn key_columns(&self) -> Vec<&'static str> {
        let period = (self.grain != Grain::All).then_some("date_begin");
        period
            .into_iter()
            .chain(self.dimensions.iter().copied())
            .collect()
    }

    /// The value columns and the expression each sums over the records.
    fn value_columns(&self) -> Vec<(&'static str, &'static str)> {
        match self.measures {
            Measures::ResultDimensions => vec![("count", "count"), ("records", "1")],
            Measures::Counters => COUNTERS.to_vec(),
        }
    }

    /// The names of the value columns.
    pub fn value_names(&self) -> Vec<&'static str> {
        self.value_columns()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// `SELECT <key>, <sums> FROM the records of <reports> GROUP BY <key>`,
    /// sorted so that concurrent transactions lock rows in one order.
    fn grouped(&self, dialect: Dialect, reports: &str) -> String {
        let period = period(dialect, self.grain);
        let mut select: Vec<String> = Vec::new();
        let mut group: Vec<String> = Vec::new();
        if let Some(period) = period {
            select.push(format!("{period} AS date_begin"));
            group.push(period.to_string());
        }
        for dimension in self.dimensions {
            select.push(dimension.to_string());
            group.push(dimension.to_string());
        }
        for (column, expression) in self.value_columns() {
            select.push(format!("sum({expression}) AS {column}"));
        }
        let order: Vec<String> = (1..=group.len()).map(|i| i.to_string()).collect();
        format!(
            "SELECT {} FROM aggregate_records WHERE report_id IN \
             (SELECT id FROM aggregate_reports WHERE {reports}) GROUP BY {} ORDER BY {}",
            select.join(", "),
            group.join(", "),
            order.join(", "),
        )
    }

    /// The columns an insert names: key, values, and the description.
    fn insert_columns(&self) -> String {
        let description = if self.described {
            &DESCRIPTION[..]
        } else {
            &[]
        };
        self.key_columns()
            .into_iter()
            .chain(self.value_columns().iter().map(|(c, _)| *c))
            .chain(description.iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `SELECT x.…` over the grouped rows `x`, with each source's current
    /// description when the rollup keeps one, in key order (so that
    /// concurrent transactions lock rows in one order).
    fn described_rows(&self, grouped: &str, condition: Option<&str>) -> String {
        let mut columns: Vec<String> = self
            .key_columns()
            .into_iter()
            .chain(self.value_columns().iter().map(|(c, _)| *c))
            .map(|c| format!("x.{c}"))
            .collect();
        let mut join = String::new();
        if self.described {
            columns.extend(DESCRIPTION.iter().map(|c| format!("s.{c}")));
            join.push_str(" LEFT JOIN ip_sources s ON s.ip = x.source_ip");
        }
        let order: Vec<String> = (1..=self.key_columns().len())
            .map(|i| i.to_string())
            .collect();
        format!(
            "SELECT {} FROM ({grouped}) AS x{join}{} ORDER BY {}",
            columns.join(", "),
            condition.map_or(String::new(), |c| format!(" WHERE {c}")),
            order.join(", ")
        )
    }

    /// Fills the (empty) rollup from every stored record: for benchmarks
    /// that seed records in bulk.
    pub fn fill_sql(&self, dialect: Dialect) -> String {
        format!(
            "INSERT INTO {} ({}) {}",
            self.table,
            self.insert_columns(),
            self.described_rows(&self.grouped(dialect, "1 = 1"), None)
        )
    }

    /// `fill_sql` without the description: for the migration that creates
    /// the rollup, whose description columns come in a later migration.
    pub fn fill_counters_sql(&self, dialect: Dialect) -> String {
        Rollup {
            described: false,
            ..*self
        }
        .fill_sql(dialect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_shares_its_dimensions_across_grains() {
        for family in [ORG_TOTALS, SOURCE_TOTALS, DOMAIN_SOURCE_TOTALS] {
            for rollup in [family.month, family.all].into_iter().flatten() {
                assert_eq!(rollup.dimensions, family.dimensions(), "{}", rollup.table);
                assert_eq!(rollup.measures, Measures::Counters);
                assert_eq!(rollup.described, family.day.described, "{}", rollup.table);
            }
            assert_eq!(family.day.grain, Grain::Day);
        }
    }

    #[test]
    fn all_time_totals_have_no_period_column() {
        let sql = TOTALS_SOURCE_ALL.fill_sql(Dialect::Postgres);
        assert!(!sql.contains("date_begin AS"), "{sql}");
        assert_eq!(
            TOTALS_SOURCE_ALL.key_columns(),
            ["source_ip", "invalid_source_ip"]
        );
        let sql = TOTALS_SOURCE_MONTH.fill_sql(Dialect::Sqlite);
        assert!(sql.contains("substr(date_begin, 1, 7)"), "{sql}");
    }
}
