//! What a set of aggregate records adds to (or takes from) every rollup,
//! worked out in memory: one row per key per table, whatever the number of
//! records. Pure: the applier (`applier.rs`) reads the records grouped by
//! their finest key (`FineRow`), and writes each table's rows here in one
//! statement.
//!
//! The sums here are the Rust side of `rollup::COUNTERS` (which the
//! migrations and bulk fills use in SQL); `tests/all/rollups.rs` checks that
//! both agree with the records on both backends.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::derived::{self, Derived};
use super::rollup::{self, Grain, Measures, Rollup, COUNTERS};

/// Aggregate records summed by everything any rollup keys on: the day,
/// domain, reporter, source and DMARC results.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FineRow {
    /// The start of the records' day (UTC).
    pub day: DateTime<Utc>,
    pub policy_domain: String,
    pub org_name: String,
    /// The address as the database prints it.
    pub source_ip: Option<String>,
    pub invalid_source_ip: Option<String>,
    pub disposition: Option<String>,
    pub dkim_aligned: Option<String>,
    pub spf_aligned: Option<String>,
    pub dmarc_pass: bool,
    /// Messages.
    pub count: i64,
    /// Records.
    pub records: i64,
}

/// What a source is, as `ip_sources` says now (`rollup::DESCRIPTION`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    pub country: Option<String>,
    pub asn: Option<i64>,
    pub as_name: Option<String>,
    pub source_name: Option<String>,
    pub source_type: Option<String>,
}

/// One key column's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    Time(DateTime<Utc>),
    Text(Option<String>),
    Bool(bool),
}

/// The rows one table gains: key (in `Rollup::key_columns` order) →
/// values (in `Rollup::value_names` order). Sorted, so that every writer
/// locks rows in one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDelta {
    pub rollup: &'static Rollup,
    pub rows: BTreeMap<Vec<KeyValue>, Vec<i64>>,
}

impl TableDelta {
    /// The source IP of a row's key, for tables keyed by source.
    pub fn source_ip<'a>(&self, key: &'a [KeyValue]) -> Option<&'a str> {
        let position = self
            .rollup
            .key_columns()
            .iter()
            .position(|column| *column == "source_ip")?;
        match &key[position] {
            KeyValue::Text(ip) => ip.as_deref(),
            _ => None,
        }
    }
}

/// Every table's delta for a set of fine rows: the rollups (`rollup::ALL`)
/// then the derived totals (`derived::ALL`). `sign` is 1 to add, -1 to
/// take away. Sources missing from `descriptions` count as undescribed.
pub fn deltas(
    rows: &[FineRow],
    descriptions: &HashMap<String, Description>,
    sign: i64,
) -> Vec<TableDelta> {
    let undescribed = Description::default();
    let mut tables: Vec<TableDelta> = rollup::ALL
        .iter()
        .chain(derived::ALL.iter().map(|d| &d.rollup))
        .map(|rollup| TableDelta {
            rollup,
            rows: BTreeMap::new(),
        })
        .collect();
    let derived_from: Vec<Option<&Derived>> = tables
        .iter()
        .map(|table| {
            derived::ALL
                .iter()
                .copied()
                .find(|d| d.rollup.table == table.rollup.table)
        })
        .collect();
    for row in rows {
        let description = row
            .source_ip
            .as_ref()
            .and_then(|ip| descriptions.get(ip))
            .unwrap_or(&undescribed);
        let counters = counters(row);
        let pair = [row.count, row.records];
        for (table, derived) in tables.iter_mut().zip(&derived_from) {
            let values: &[i64] = match table.rollup.measures {
                Measures::Counters => &counters,
                Measures::ResultDimensions => &pair,
            };
            let key = key_of(table.rollup, *derived, row, description);
            let entry = table
                .rows
                .entry(key)
                .or_insert_with(|| vec![0; values.len()]);
            for (sum, value) in entry.iter_mut().zip(values) {
                *sum += sign * value;
            }
        }
    }
    tables
}

/// The counters of `rollup::COUNTERS`, in its order, for one fine row.
fn counters(row: &FineRow) -> [i64; COUNTERS.len()] {
    let when = |condition: bool, value: i64| if condition { value } else { 0 };
    let is = |value: &Option<String>, wanted: &str| value.as_deref() == Some(wanted);
    let fail = !row.dmarc_pass;
    let dkim = is(&row.dkim_aligned, "pass");
    let spf = is(&row.spf_aligned, "pass");
    let none = is(&row.disposition, "none");
    let quarantine = is(&row.disposition, "quarantine");
    let reject = is(&row.disposition, "reject");
    [
        row.count,
        row.records,
        when(dkim, row.count),
        when(spf, row.count),
        when(none, row.count),
        when(quarantine, row.count),
        when(reject, row.count),
        when(fail, row.count),
        when(fail, row.records),
        when(fail && dkim, row.count),
        when(fail && spf, row.count),
        when(fail && none, row.count),
        when(fail && quarantine, row.count),
        when(fail && reject, row.count),
    ]
}

/// The start of the month a day is in.
fn month_of(day: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(day.year(), day.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(day)
}

/// A fine row's key in one table. For a derived table, the columns are
/// `derived::Derived`'s expressions over the totals per domain and source
/// (a named source's IPs count under its name alone).
fn key_of(
    rollup: &Rollup,
    derived: Option<&Derived>,
    row: &FineRow,
    description: &Description,
) -> Vec<KeyValue> {
    let text = |value: &Option<String>| KeyValue::Text(value.clone());
    let named = derived.is_some() && description.source_name.is_some();
    rollup
        .key_columns()
        .into_iter()
        .map(|column| match column {
            "date_begin" => KeyValue::Time(match rollup.grain {
                Grain::Month => month_of(row.day),
                _ => row.day,
            }),
            "policy_domain" => KeyValue::Text(Some(row.policy_domain.clone())),
            "org_name" => KeyValue::Text(Some(row.org_name.clone())),
            "source_ip" if named => KeyValue::Text(None),
            "invalid_source_ip" if named => KeyValue::Text(None),
            "source_ip" => text(&row.source_ip),
            "invalid_source_ip" => text(&row.invalid_source_ip),
            "disposition" => text(&row.disposition),
            "dkim_aligned" => text(&row.dkim_aligned),
            "spf_aligned" => text(&row.spf_aligned),
            "dmarc_pass" => KeyValue::Bool(row.dmarc_pass),
            "country" => text(&description.country),
            "source_name" => text(&description.source_name),
            "source_type" => text(&description.source_type),
            other => unreachable!("no rollup keys on {other}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, pass: bool, count: i64) -> FineRow {
        FineRow {
            day: Utc.with_ymd_and_hms(2024, 3, 30, 0, 0, 0).unwrap(),
            policy_domain: "example.com".into(),
            org_name: "google.com".into(),
            source_ip: Some(ip.into()),
            invalid_source_ip: None,
            disposition: Some(if pass { "none" } else { "reject" }.into()),
            dkim_aligned: Some(if pass { "pass" } else { "fail" }.into()),
            spf_aligned: Some("pass".into()),
            dmarc_pass: pass,
            count,
            records: 1,
        }
    }

    fn table<'a>(tables: &'a [TableDelta], name: &str) -> &'a TableDelta {
        tables.iter().find(|t| t.rollup.table == name).unwrap()
    }

    #[test]
    fn every_rollup_and_derived_table_gets_a_delta() {
        let tables = deltas(&[row("192.0.2.1", true, 3)], &HashMap::new(), 1);
        assert_eq!(tables.len(), rollup::ALL.len() + derived::ALL.len());
        assert!(tables.iter().all(|t| t.rows.len() == 1));
    }

    #[test]
    fn counters_follow_the_sql_definitions() {
        let rows = [row("192.0.2.1", true, 3), row("192.0.2.1", false, 5)];
        let tables = deltas(&rows, &HashMap::new(), 1);
        let all = table(&tables, "totals_source_all");
        let values = all.rows.values().next().unwrap();
        let named: Vec<(&str, i64)> = COUNTERS
            .iter()
            .map(|(name, _)| *name)
            .zip(values.iter().copied())
            .collect();
        assert_eq!(
            named,
            [
                ("count", 8),
                ("records", 2),
                ("dkim_pass", 3),
                ("spf_pass", 8),
                ("disp_none", 3),
                ("disp_quarantine", 0),
                ("disp_reject", 5),
                ("fail_count", 5),
                ("fail_records", 1),
                ("fail_dkim_pass", 0),
                ("fail_spf_pass", 5),
                ("fail_disp_none", 0),
                ("fail_disp_quarantine", 0),
                ("fail_disp_reject", 5),
            ]
        );
        // Result rollups keep the results as key columns: two rows.
        assert_eq!(table(&tables, "rollup_domain_day").rows.len(), 2);
    }

    #[test]
    fn months_start_on_the_first_and_all_time_has_no_period() {
        let tables = deltas(&[row("192.0.2.1", true, 1)], &HashMap::new(), 1);
        let month = table(&tables, "totals_source_month");
        let key = month.rows.keys().next().unwrap();
        assert_eq!(
            key[0],
            KeyValue::Time(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap())
        );
        let all = table(&tables, "totals_source_all");
        assert_eq!(all.rows.keys().next().unwrap().len(), 2);
        assert_eq!(
            all.source_ip(all.rows.keys().next().unwrap()),
            Some("192.0.2.1")
        );
    }

    #[test]
    fn a_named_source_counts_under_its_name_and_an_unnamed_one_under_its_ip() {
        let mut descriptions = HashMap::new();
        descriptions.insert(
            "192.0.2.1".to_string(),
            Description {
                country: Some("US".into()),
                source_name: Some("Google".into()),
                source_type: Some("mailbox".into()),
                ..Description::default()
            },
        );
        let rows = [
            row("192.0.2.1", true, 1),
            row("192.0.2.2", true, 1),
            row("192.0.2.3", true, 1),
        ];
        let tables = deltas(&rows, &descriptions, 1);
        let names = table(&tables, "totals_name_all");
        let keys: Vec<&Vec<KeyValue>> = names.rows.keys().collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&&vec![
            KeyValue::Text(Some("example.com".into())),
            KeyValue::Text(Some("Google".into())),
            KeyValue::Text(Some("mailbox".into())),
            KeyValue::Text(None),
            KeyValue::Text(None),
        ]));
        let countries = table(&tables, "totals_country_all");
        assert_eq!(countries.rows.len(), 2, "US and unknown");
    }

    #[test]
    fn taking_away_negates_every_value() {
        let tables = deltas(&[row("192.0.2.1", false, 4)], &HashMap::new(), -1);
        let values = table(&tables, "totals_domain_source_day")
            .rows
            .values()
            .next()
            .unwrap();
        assert_eq!(values[0], -4);
        assert_eq!(values[1], -1);
        assert!(values.iter().all(|v| *v <= 0));
    }
}
