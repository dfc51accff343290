//! Totals keyed by what a source is rather than by which source it is:
//! per domain and country, and per domain and source name (a source
//! without a name keeps its IP, as the summary by source name shows it).
//! A month of them is a few hundred rows where the totals per source hold
//! one per source IP, so the overview's top sources and countries over any
//! period read hundreds of rows instead of a hundred thousand.
//!
//! They sum the totals per domain and source by what each source is. The
//! rollup applier writes them from its deltas, like every other rollup
//! (`delta.rs`); when a source's description changes, the triggers on
//! ip_sources rewrite its totals rows, and a trigger on those rows moves
//! their counts from the old key to the new one here. So a derived table is
//! always its source table summed by its key.
//!
//! PostgreSQL moves counts once per statement, from its transition tables;
//! SQLite has row triggers only, and fires them only for updates of the
//! description columns.

use super::rollup::{self, Family, Grain, Measures, Rollup, COUNTERS};
use super::Dialect;

/// One derived table.
#[derive(Debug, PartialEq, Eq)]
pub struct Derived {
    pub rollup: Rollup,
    /// The totals per domain and source of the same grain it sums.
    pub from: &'static Rollup,
    /// Each of `rollup.dimensions` as an expression over a row `@` of
    /// `from`.
    expressions: &'static [&'static str],
}

const COUNTRY: &[&str] = &["policy_domain", "country"];
const COUNTRY_EXPRESSIONS: &[&str] = &["@.policy_domain", "@.country"];
const NAME: &[&str] = &[
    "policy_domain",
    "source_name",
    "source_type",
    "source_ip",
    "invalid_source_ip",
];
const NAME_EXPRESSIONS: &[&str] = &[
    "@.policy_domain",
    "@.source_name",
    "@.source_type",
    // A named source's IPs are one group: the name.
    "CASE WHEN @.source_name IS NULL THEN @.source_ip END",
    "CASE WHEN @.source_name IS NULL THEN @.invalid_source_ip END",
];

const fn derived(
    table: &'static str,
    grain: Grain,
    dimensions: &'static [&'static str],
    expressions: &'static [&'static str],
    from: &'static Rollup,
) -> Derived {
    Derived {
        rollup: Rollup {
            table,
            grain,
            measures: Measures::Counters,
            dimensions,
            described: false,
        },
        from,
        expressions,
    }
}

pub const TOTALS_COUNTRY_DAY: Derived = derived(
    "totals_country_day",
    Grain::Day,
    COUNTRY,
    COUNTRY_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_DAY,
);
pub const TOTALS_COUNTRY_MONTH: Derived = derived(
    "totals_country_month",
    Grain::Month,
    COUNTRY,
    COUNTRY_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_MONTH,
);
pub const TOTALS_COUNTRY_ALL: Derived = derived(
    "totals_country_all",
    Grain::All,
    COUNTRY,
    COUNTRY_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_ALL,
);
pub const TOTALS_NAME_DAY: Derived = derived(
    "totals_name_day",
    Grain::Day,
    NAME,
    NAME_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_DAY,
);
pub const TOTALS_NAME_MONTH: Derived = derived(
    "totals_name_month",
    Grain::Month,
    NAME,
    NAME_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_MONTH,
);
pub const TOTALS_NAME_ALL: Derived = derived(
    "totals_name_all",
    Grain::All,
    NAME,
    NAME_EXPRESSIONS,
    &rollup::TOTALS_DOMAIN_SOURCE_ALL,
);

/// Per domain and country.
pub const COUNTRY_TOTALS: Family = Family {
    day: &TOTALS_COUNTRY_DAY.rollup,
    month: Some(&TOTALS_COUNTRY_MONTH.rollup),
    all: Some(&TOTALS_COUNTRY_ALL.rollup),
    keyed_by_description: true,
};
/// Per domain and source name (or IP, for a source without a name).
pub const NAME_TOTALS: Family = Family {
    day: &TOTALS_NAME_DAY.rollup,
    month: Some(&TOTALS_NAME_MONTH.rollup),
    all: Some(&TOTALS_NAME_ALL.rollup),
    keyed_by_description: true,
};

/// Every derived table (migration 8 on PostgreSQL, 7 on SQLite).
pub const ALL: [&Derived; 6] = [
    &TOTALS_COUNTRY_DAY,
    &TOTALS_COUNTRY_MONTH,
    &TOTALS_COUNTRY_ALL,
    &TOTALS_NAME_DAY,
    &TOTALS_NAME_MONTH,
    &TOTALS_NAME_ALL,
];

/// Held by a transaction from its first change to the derived totals until
/// it ends. One `INSERT … ON CONFLICT` into the totals per domain and
/// source fires two triggers (its inserted rows, its updated rows), each
/// locking derived rows in key order, but not in one order together: two
/// saves could each hold a row the other's second trigger needs. The
/// derived totals are small and quick to write, so their writers take
/// turns instead.
const DERIVED_TOTALS_LOCK: i64 = 7_363_012_947;

/// The sum that stays a bigint on PostgreSQL (migration 7).
fn sum(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "dmarcd_sum",
        Dialect::Sqlite => "sum",
    }
}

/// A row's contribution: added, or taken away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sign {
    Plus,
    Minus,
}

impl Derived {
    /// The key of the derived row that a row `row` of `from` counts in,
    /// one expression per key column.
    fn key_of(&self, row: &str) -> Vec<String> {
        let period = (self.rollup.grain != Grain::All).then(|| format!("{row}.date_begin"));
        period
            .into_iter()
            .chain(
                self.expressions
                    .iter()
                    .map(|expression| expression.replace('@', row)),
            )
            .collect()
    }

    fn key_columns(&self) -> Vec<&'static str> {
        self.rollup.key_columns()
    }

    fn columns(&self) -> String {
        self.key_columns()
            .into_iter()
            .chain(COUNTERS.iter().map(|(name, _)| *name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Everything in `from`, summed by key: fills the empty table.
    pub fn fill_sql(&self, dialect: Dialect) -> String {
        let rows = self.contributions("s", self.from.table, Sign::Plus);
        self.insert_grouped(&rows, sum(dialect))
    }

    /// `SELECT <key of row>, <±counters> FROM <relation> <row>`.
    fn contributions(&self, row: &str, relation: &str, sign: Sign) -> String {
        let key = self
            .key_of(row)
            .into_iter()
            .zip(self.key_columns())
            .map(|(expression, column)| format!("{expression} AS {column}"));
        let counters = COUNTERS.iter().map(|(name, _)| match sign {
            Sign::Plus => format!("{row}.{name} AS {name}"),
            Sign::Minus => format!("-{row}.{name} AS {name}"),
        });
        format!(
            "SELECT {} FROM {relation} {row}",
            key.chain(counters).collect::<Vec<_>>().join(", ")
        )
    }

    /// `INSERT INTO <table> SELECT <key>, <sums> FROM (<rows>) GROUP BY
    /// <key>`, for an empty table or (PostgreSQL) merged into the rows
    /// there, in key order so that concurrent saves lock rows in one order.
    fn insert_grouped(&self, rows: &str, sum: &str) -> String {
        let keys = self.key_columns().join(", ");
        let sums = COUNTERS
            .iter()
            .map(|(name, _)| format!("{sum}(x.{name})"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} AS t ({}) SELECT {keys}, {sums} FROM ({rows}) x GROUP BY {keys} ORDER BY {keys}",
            self.rollup.table,
            self.columns(),
        )
    }

    /// The PostgreSQL function and statement trigger that move counts when
    /// a source's description changes (the triggers on ip_sources rewrite
    /// its totals rows): each updated row moves from its old key to its
    /// new one. The rollup applier writes the derived rows itself from its
    /// deltas and marks its transaction with `dmarcd.applying_rollups`, so
    /// its own updates of the totals are skipped here.
    pub fn postgres_triggers(&self) -> String {
        let table = self.rollup.table;
        let keys = self.key_columns().join(", ");
        let merge = COUNTERS
            .iter()
            .map(|(name, _)| format!("{name} = t.{name} + excluded.{name}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = [("new_rows", Sign::Plus), ("old_rows", Sign::Minus)]
            .iter()
            .map(|(relation, sign)| self.contributions("r", relation, *sign))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let merged = self.insert_grouped(&rows, sum(Dialect::Postgres));
        let name = format!("{table}_update");
        format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n\
             IF current_setting('dmarcd.applying_rollups', true) = 'on' THEN RETURN NULL; END IF;\n\
             PERFORM pg_advisory_xact_lock({DERIVED_TOTALS_LOCK});\n\
             {merged} ON CONFLICT ({keys}) DO UPDATE SET {merge};\n\
             DELETE FROM {table} WHERE records <= 0;\nRETURN NULL;\nEND $$;\n\
             CREATE TRIGGER {name} AFTER UPDATE ON {} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows \
             FOR EACH STATEMENT EXECUTE FUNCTION {name}();\n",
            self.from.table
        )
    }

    /// The SQLite row trigger that moves counts when a source's
    /// description changes (see `postgres_triggers`): it fires only on
    /// updates of the description columns, which the rollup applier never
    /// names, and only when the derived key changes.
    pub fn sqlite_triggers(&self) -> String {
        let table = self.rollup.table;
        let from = self.from.table;
        let matches = |row: &str| {
            self.key_columns()
                .into_iter()
                .zip(self.key_of(row))
                .map(|(column, expression)| format!("{column} IS {expression}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let add = |row: &str, op: char| {
            let set = COUNTERS
                .iter()
                .map(|(name, _)| format!("{name} = {name} {op} {row}.{name}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("UPDATE {table} SET {set} WHERE {};\n", matches(row))
        };
        let insert_missing = |row: &str| {
            let values = self
                .key_of(row)
                .into_iter()
                .chain(COUNTERS.iter().map(|(name, _)| format!("{row}.{name}")))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO {table} ({}) SELECT {values} \
                 WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {});\n",
                self.columns(),
                matches(row)
            )
        };
        let prune = |row: &str| {
            format!(
                "DELETE FROM {table} WHERE {} AND records <= 0;\n",
                matches(row)
            )
        };
        let same_key = self
            .key_of("NEW")
            .into_iter()
            .zip(self.key_of("OLD"))
            .map(|(new, old)| format!("({new}) IS ({old})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "CREATE TRIGGER {table}_rekey AFTER UPDATE OF {} ON {from} FOR EACH ROW WHEN NOT ({same_key})\n\
             BEGIN\n{}{}{}{}END;\n",
            rollup::DESCRIPTION.join(", "),
            add("OLD", '-'),
            prune("OLD"),
            add("NEW", '+'),
            insert_missing("NEW")
        )
    }

    /// Replaces the triggers of migration 8 (7 on SQLite), which derived
    /// every change to the totals, by those for description changes alone
    /// (migration 11, 9 on SQLite: the rollup applier).
    pub fn retrigger_sql(&self, dialect: Dialect) -> String {
        let table = self.rollup.table;
        let from = self.from.table;
        let mut sql = String::new();
        for event in ["insert", "update", "delete", "rekey"] {
            sql.push_str(&format!("DROP TRIGGER IF EXISTS {table}_{event}"));
            match dialect {
                Dialect::Postgres => sql.push_str(&format!(
                    " ON {from};\nDROP FUNCTION IF EXISTS {table}_{event}();\n"
                )),
                Dialect::Sqlite => sql.push_str(";\n"),
            }
        }
        sql.push_str(&match dialect {
            Dialect::Postgres => self.postgres_triggers(),
            Dialect::Sqlite => self.sqlite_triggers(),
        });
        sql
    }

    /// What migration 8 (7 on SQLite) runs after creating the table.
    pub fn migration_sql(&self, dialect: Dialect) -> String {
        let triggers = match dialect {
            Dialect::Postgres => self.postgres_triggers(),
            Dialect::Sqlite => self.sqlite_triggers(),
        };
        let analyze = match dialect {
            // Statistics at once: until autovacuum comes by, the planner
            // would take a filled table for an empty one.
            Dialect::Postgres => format!("ANALYZE {};\n", self.rollup.table),
            Dialect::Sqlite => String::new(),
        };
        format!("{};\n{analyze}{triggers}", self.fill_sql(dialect))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_source_counts_under_its_name_and_an_unnamed_one_under_its_ip() {
        let fill = TOTALS_NAME_MONTH.fill_sql(Dialect::Sqlite);
        assert!(
            fill.contains("CASE WHEN s.source_name IS NULL THEN s.source_ip END AS source_ip"),
            "{fill}"
        );
        assert!(fill.contains("FROM totals_domain_source_month s"), "{fill}");
        assert!(
            fill.contains("GROUP BY date_begin, policy_domain, source_name"),
            "{fill}"
        );
        assert!(!TOTALS_COUNTRY_ALL
            .fill_sql(Dialect::Postgres)
            .contains("date_begin"));
    }

    #[test]
    fn postgres_moves_updated_rows_from_their_old_key_to_their_new_one() {
        let sql = TOTALS_COUNTRY_DAY.postgres_triggers();
        assert!(
            sql.contains("-r.fail_disp_reject AS fail_disp_reject FROM old_rows r"),
            "{sql}"
        );
        assert!(sql.contains(
            "AFTER UPDATE ON totals_domain_source_day REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
        ));
        assert!(sql.contains("ON CONFLICT (date_begin, policy_domain, country) DO UPDATE SET count = t.count + excluded.count"));
        assert!(sql.contains("dmarcd_sum(x.records)"), "{sql}");
        assert_eq!(sql.matches("CREATE TRIGGER").count(), 1);
        assert!(sql
            .contains("current_setting('dmarcd.applying_rollups', true) = 'on' THEN RETURN NULL"));
        assert_eq!(
            sql.matches("PERFORM pg_advisory_xact_lock(7363012947)")
                .count(),
            1
        );
    }

    #[test]
    fn sqlite_moves_counts_only_when_a_description_changes_the_key() {
        let sql = TOTALS_NAME_ALL.sqlite_triggers();
        assert!(
            sql.contains("AFTER UPDATE OF country, asn, as_name, source_name, source_type ON totals_domain_source_all FOR EACH ROW WHEN NOT ((NEW.policy_domain) IS (OLD.policy_domain)"),
            "{sql}"
        );
        assert!(sql.contains("count = count - OLD.count"), "{sql}");
        assert_eq!(sql.matches("CREATE TRIGGER").count(), 1);
        let retrigger = TOTALS_NAME_ALL.retrigger_sql(Dialect::Sqlite);
        assert!(retrigger.contains("DROP TRIGGER IF EXISTS totals_name_all_insert;"));
        assert!(TOTALS_NAME_ALL
            .retrigger_sql(Dialect::Postgres)
            .contains("DROP FUNCTION IF EXISTS totals_name_all_delete();"));
    }
}
