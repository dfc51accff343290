//! Daily rollups of aggregate records, kept exact as reports are stored and
//! requeued, so that dashboards over millions of records read thousands of
//! rows. Three grains: per domain, per domain and reporting organization,
//! per domain and source IP (the one the source, country and AS views join
//! to `ip_sources`). Each has the record columns the filters use under the
//! same names (`date_begin` is the day, `count` the messages), so a query
//! reads a rollup by naming it in place of `aggregate_records`.

use super::Dialect;

/// One rollup table and the record columns it keeps besides the day.
pub struct Rollup {
    pub table: &'static str,
    pub dimensions: &'static [&'static str],
}

const RESULTS: [&str; 5] = [
    "policy_domain",
    "disposition",
    "dkim_aligned",
    "spf_aligned",
    "dmarc_pass",
];

pub const DOMAIN_DAY: Rollup = Rollup {
    table: "rollup_domain_day",
    dimensions: &RESULTS,
};

pub const ORG_DAY: Rollup = Rollup {
    table: "rollup_org_day",
    dimensions: &[
        "policy_domain",
        "disposition",
        "dkim_aligned",
        "spf_aligned",
        "dmarc_pass",
        "org_name",
    ],
};

pub const SOURCE_DAY: Rollup = Rollup {
    table: "rollup_source_day",
    dimensions: &[
        "policy_domain",
        "disposition",
        "dkim_aligned",
        "spf_aligned",
        "dmarc_pass",
        "source_ip",
        "invalid_source_ip",
    ],
};

pub const ALL: [Rollup; 3] = [DOMAIN_DAY, ORG_DAY, SOURCE_DAY];

/// The start of the record's day (UTC), in the column's own type.
fn day(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "date_trunc('day', date_begin, 'UTC')",
        Dialect::Sqlite => "substr(date_begin, 1, 10) || 'T00:00:00+00:00'",
    }
}

fn placeholder(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "$1",
        Dialect::Sqlite => "?1",
    }
}

/// Equal, NULLs included.
fn same(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "IS NOT DISTINCT FROM",
        Dialect::Sqlite => "IS",
    }
}

impl Rollup {
    /// Statements that add the records of every aggregate report stored
    /// for a set of messages (bound as a PostgreSQL `int8[]`, or a JSON
    /// array on SQLite): run once per save transaction, not per report, so
    /// that workers storing reports about the same domain and day meet on
    /// these rows once per batch. PostgreSQL merges with ON CONFLICT over a NULLS NOT
    /// DISTINCT key; SQLite's unique keys treat NULLs as distinct, so there
    /// it is an update of the rows that exist, then an insert of the rest
    /// (exact inside its single-writer transaction).
    pub fn add_sql(&self, dialect: Dialect) -> Vec<String> {
        let dims = self.dimensions.join(", ");
        let table = self.table;
        let messages = match dialect {
            Dialect::Postgres => "message_id = ANY($1)",
            Dialect::Sqlite => "message_id IN (SELECT value FROM json_each(?1))",
        };
        // Sorted, so that concurrent transactions lock rows in one order.
        let grouped = format!(
            "SELECT {day} AS date_begin, {dims}, sum(count) AS count, count(*) AS records \
             FROM aggregate_records WHERE report_id IN \
             (SELECT id FROM aggregate_reports WHERE {messages}) \
             GROUP BY {day}, {dims} ORDER BY 1, {dims}",
            day = day(dialect),
        );
        match dialect {
            Dialect::Postgres => vec![format!(
                "INSERT INTO {table} (date_begin, {dims}, count, records) {grouped} \
                 ON CONFLICT (date_begin, {dims}) DO UPDATE SET count = {table}.count + excluded.count, \
                     records = {table}.records + excluded.records"
            )],
            Dialect::Sqlite => {
                let matches = self.matches(dialect);
                vec![
                    format!(
                        "UPDATE {table} AS t SET count = t.count + x.count, records = t.records + x.records \
                         FROM ({grouped}) AS x WHERE {matches}"
                    ),
                    format!(
                        "INSERT INTO {table} (date_begin, {dims}, count, records) \
                         SELECT x.date_begin, {x_dims}, x.count, x.records FROM ({grouped}) AS x \
                         WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {matches})",
                        x_dims = self.dimensions.iter().map(|d| format!("x.{d}")).collect::<Vec<_>>().join(", "),
                    ),
                ]
            }
        }
    }

    /// `t.c IS x.c AND …` over the day and every dimension.
    fn matches(&self, dialect: Dialect) -> String {
        std::iter::once("date_begin")
            .chain(self.dimensions.iter().copied())
            .map(|column| format!("t.{column} {} x.{column}", same(dialect)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Takes away the records of every aggregate report of one message
    /// (the bound id), before they are deleted for reprocessing.
    pub fn subtract_sql(&self, dialect: Dialect) -> String {
        let dims = self.dimensions.join(", ");
        let matches = self.matches(dialect);
        let source = format!(
            "SELECT {day} AS date_begin, {dims}, sum(count) AS count, count(*) AS records \
             FROM aggregate_records WHERE report_id IN \
             (SELECT id FROM aggregate_reports WHERE message_id = {p}) GROUP BY {day}, {dims}",
            day = day(dialect),
            p = placeholder(dialect),
        );
        let table = self.table;
        match dialect {
            Dialect::Postgres => format!(
                "UPDATE {table} t SET count = t.count - x.count, records = t.records - x.records \
                 FROM ({source}) x WHERE {matches}"
            ),
            Dialect::Sqlite => format!(
                "UPDATE {table} AS t SET count = t.count - x.count, records = t.records - x.records \
                 FROM ({source}) AS x WHERE {matches}"
            ),
        }
    }

    /// Rows left empty by a subtraction.
    pub fn prune_sql(&self) -> String {
        format!("DELETE FROM {} WHERE records <= 0", self.table)
    }
}
