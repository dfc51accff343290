//! Process-wide counters and histograms, rendered in the Prometheus text
//! format at `/metrics`. Few enough series that a mutex-guarded map is
//! cheaper than any crate: every label value comes from a fixed set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

pub type Labels = Vec<(&'static str, String)>;

/// A gauge computed at scrape time: name, help text, and its series.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(Labels, f64)>);

struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        counters: BTreeMap::new(),
        histograms: BTreeMap::new(),
    })
});

/// Help text per metric name, in output order.
const HELP: &[(&str, &str, &str)] = &[
    (
        "dmarcd_acme_orders_total",
        "counter",
        "ACME certificate orders for hosted MTA-STS hosts, by result (issued, failed).",
    ),
    (
        "dmarcd_hosted_dns_queries_total",
        "counter",
        "Queries the hosted zone's DNS listener answered, by answer (answered, nxdomain, refused, servfail).",
    ),
    (
        "dmarcd_digests_queued_total",
        "counter",
        "Scheduled digests queued in the outbox.",
    ),
    (
        "dmarcd_alerts_opened_total",
        "counter",
        "Alerts opened, by kind of rule.",
    ),
    (
        "dmarcd_outbox_attempts_total",
        "counter",
        "Outbox sending attempts, by kind (mail, webhook) and result.",
    ),
    (
        "dmarcd_retention_pruned_messages_total",
        "counter",
        "Messages whose raw bytes retention deleted, by kind of data.",
    ),
    (
        "dmarcd_retention_pruned_bytes_total",
        "counter",
        "Bytes (as received) of those messages.",
    ),
    (
        "dmarcd_retention_pruned_reports_total",
        "counter",
        "Aggregate reports whose records retention deleted (the report rows and every rollup count stay).",
    ),
    (
        "dmarcd_retention_pruned_records_total",
        "counter",
        "Rows retention deleted: aggregate records (data=aggregate), day rows of the totals (data=day_rollups).",
    ),
    (
        "dmarcd_messages_received_total",
        "counter",
        "Messages offered to the inbox, by intake path and outcome (new, duplicate, error).",
    ),
    (
        "dmarcd_messages_processed_total",
        "counter",
        "Inbox messages processed, by final status.",
    ),
    (
        "dmarcd_reports_stored_total",
        "counter",
        "Reports stored, by kind (aggregate, tlsrpt, failure).",
    ),
    (
        "dmarcd_parse_failures_total",
        "counter",
        "Messages that failed to parse, by reason.",
    ),
    (
        "dmarcd_smtp_sessions_total",
        "counter",
        "SMTP sessions accepted.",
    ),
    (
        "dmarcd_smtp_replies_total",
        "counter",
        "SMTP replies sent, by code.",
    ),
    (
        "dmarcd_enrich_sources_total",
        "counter",
        "Source IPs of stored records: known (cache hit) or new (miss).",
    ),
    (
        "dmarcd_enrich_ptr_lookups_total",
        "counter",
        "PTR lookups, by result (name, none, failed).",
    ),
    (
        "dmarcd_mailbox_messages_total",
        "counter",
        "Messages pulled from IMAP mailboxes by this process, by mailbox and outcome (new, duplicate, skipped: left on the server).",
    ),
    (
        "dmarcd_mailbox_errors_total",
        "counter",
        "Failed mailbox pulls in this process, by mailbox and kind (connect, tls, auth, token, folder, quota, protocol, database).",
    ),
    (
        "dmarcd_http_requests_total",
        "counter",
        "HTTP requests, by route and status.",
    ),
    (
        "dmarcd_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by route.",
    ),
];

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Adds `by` to a counter.
pub fn count(name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
    if by == 0 {
        return;
    }
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    *registry.counters.entry((name, labels(pairs))).or_default() += by;
}

/// Records one observation in a histogram.
pub fn observe(name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let histogram = registry
        .histograms
        .entry((name, labels(pairs)))
        .or_default();
    for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
        if seconds <= bound {
            *bucket += 1;
        }
    }
    histogram.count += 1;
    histogram.sum += seconds;
}

/// A counter's current value (for tests).
pub fn value(name: &'static str, pairs: &[(&'static str, &str)]) -> u64 {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .counters
        .get(&(name, labels(pairs)))
        .copied()
        .unwrap_or(0)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Everything in the Prometheus text format, followed by `gauges`
/// (name, help, value) computed by the caller at scrape time.
pub fn render(gauges: &[Gauge<'_>]) -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((metric, labels), value) in &registry.counters {
            if metric == name {
                let _ = writeln!(out, "{name}{} {value}", label_text(labels, None));
            }
        }
        for ((metric, labels), histogram) in &registry.histograms {
            if metric != name {
                continue;
            }
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {count}",
                    label_text(labels, Some(("le", bound.to_string())))
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                label_text(labels, Some(("le", "+Inf".to_string()))),
                histogram.count
            );
            let _ = writeln!(
                out,
                "{name}_sum{} {}",
                label_text(labels, None),
                histogram.sum
            );
            let _ = writeln!(
                out,
                "{name}_count{} {}",
                label_text(labels, None),
                histogram.count
            );
        }
    }
    for (name, help, series) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{} {value}", label_text(labels, None));
        }
    }
    out
}

/// A bounded label for a failure reason: one of a fixed set of categories
/// (reasons themselves name files and values and would be a series each).
pub fn reason_label(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    const CATEGORIES: &[(&str, &str)] = &[
        ("gave up", "gave_up"),
        ("internal error", "internal"),
        ("limit", "limit"),
        ("encrypted", "encrypted"),
        ("truncated", "truncated"),
        ("corrupt", "corrupt"),
        ("doctype", "xml_doctype"),
        ("xml", "xml"),
        ("json", "json"),
        ("empty", "empty"),
        ("no report", "no_report"),
        ("not a report", "no_report"),
        ("unrecognised", "unrecognised"),
        ("date", "date"),
    ];
    CATEGORIES
        .iter()
        .find(|(needle, _)| reason.contains(needle))
        .map_or("other", |(_, label)| label)
}
