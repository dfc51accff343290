//! The Grafana dashboard in `packaging/grafana/` runs on the schema as it
//! is: every query in the file (panels and the domain variable), with
//! Grafana's macros expanded as Grafana expands them, against a populated
//! PostgreSQL database; and `/metrics` carries the per-domain gauges.

use chrono::{Duration, Utc};
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::web::WebConfig;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};
use serde_json::Value;
use sqlx::{Connection, Row};

use crate::common;
use crate::common::http::Server;

const DASHBOARD: &str = include_str!("../../packaging/grafana/dmarcd.json");

/// Every `rawSql` of the panels (rows included), with the panel's title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(sql) = target["rawSql"].as_str() {
                    out.push((title.clone(), sql.to_string()));
                }
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// Grafana's expansion of the macros the file uses: `$__timeFilter(col)`
/// over the whole range of the data, and the multi-value `$domain` as a
/// list of quoted literals.
fn expand(sql: &str, domains: &[String]) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let close = after.find(')').expect("closing parenthesis");
        let column = &after[..close];
        out.push_str(&format!(
            "{column} BETWEEN '1970-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'"
        ));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let quoted: Vec<String> = domains
        .iter()
        .map(|d| format!("'{}'", d.replace('\'', "''")))
        .collect();
    let expanded = out.replace("$domain", &quoted.join(","));
    assert!(
        !expanded.contains('$'),
        "a macro the test does not expand: {expanded}"
    );
    expanded
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grafana_query_runs_against_a_populated_database() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 8, "{} queries", queries.len());
    let expected_uid = dashboard["__inputs"][0]["name"]
        .as_str()
        .map(|name| format!("${{{name}}}"));
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"].as_str().map(str::to_string),
            expected_uid,
            "{}: the imported data source",
            panel["title"]
        );
    }

    let Some((_dir, store, name)) = common::db::postgres_named().await else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DATABASE_URL must be set in CI"
        );
        eprintln!("NOTE: DATABASE_URL is unset: the Grafana queries were NOT run");
        return;
    };
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), &name);
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();

    // The variable first: its values feed the panels, as in Grafana.
    let variable = dashboard["templating"]["list"][0]["query"]
        .as_str()
        .expect("the domain variable's query");
    let domains: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(variable.to_string()))
        .fetch_all(&mut db)
        .await
        .unwrap_or_else(|error| panic!("domain variable: {error}"))
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert!(domains.contains(&"example.com".to_string()), "{domains:?}");

    for (title, sql) in &queries {
        let expanded = expand(sql, &domains);
        let rows = sqlx::query(sqlx::AssertSqlSafe(expanded.clone()))
            .fetch_all(&mut db)
            .await
            .unwrap_or_else(|error| panic!("panel {title:?}: {error}\n{expanded}"));
        // The populated store has aggregate, TLS and failing data: every
        // panel shows something.
        assert!(!rows.is_empty(), "panel {title:?} is empty:\n{expanded}");
    }
    store.close().await;
}

/// A report dated this week, for the gauges' 7-day window.
async fn recent_reports(store: &dmarcd::store::Store) {
    let mut report = testing::aggregate_report(20);
    let begin = Utc::now() - Duration::days(2);
    report.metadata.begin = begin.timestamp();
    report.metadata.end = (begin + Duration::days(1)).timestamp();
    report.metadata.report_id = "recent".into();
    report.policy_published.domain = "recent.example".into();
    let tls = serde_json::json!({
        "organization-name": "Example Receiver",
        "date-range": {
            "start-datetime": begin.format("%Y-%m-%dT00:00:00Z").to_string(),
            "end-datetime": begin.format("%Y-%m-%dT23:59:59Z").to_string()
        },
        "contact-info": "tlsrpt@receiver.example",
        "report-id": "recent-tls",
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": "recent.example"},
            "summary": {"total-successful-session-count": 90, "total-failure-session-count": 7},
            "failure-details": [{"result-type": "certificate-expired", "failed-session-count": 7}]
        }]
    });
    let inbox = Inbox::new(store.clone());
    inbox
        .accept(report.to_xml().as_bytes(), &Envelope::import("recent.xml"))
        .await
        .unwrap();
    inbox
        .accept(tls.to_string().as_bytes(), &Envelope::import("recent.json"))
        .await
        .unwrap();
    Worker::new(
        store.clone(),
        Limits::default(),
        "w",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_carry_per_domain_gauges() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        recent_reports(&store).await;
        let server = Server::start(store.clone(), WebConfig::default()).await;
        let text = server.get("/metrics", None).await.text();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{backend}: {series} missing from\n{text}"))
        };
        let messages = value("dmarcd_domain_messages_7d{domain=\"recent.example\"}");
        let failing = value("dmarcd_domain_dmarc_fail_messages_7d{domain=\"recent.example\"}");
        let ratio = value("dmarcd_domain_dmarc_pass_ratio_7d{domain=\"recent.example\"}");
        assert!(messages > 0.0, "{backend}");
        assert!(
            failing > 0.0 && failing < messages,
            "{backend}: the synthetic mix"
        );
        assert!(
            (ratio - (messages - failing) / messages).abs() < 1e-9,
            "{backend}: {ratio}"
        );
        assert_eq!(
            value("dmarcd_domain_tls_failed_sessions_7d{domain=\"recent.example\"}"),
            7.0,
            "{backend}"
        );
        assert_eq!(
            value("dmarcd_domain_tls_successful_sessions_7d{domain=\"recent.example\"}"),
            90.0,
            "{backend}"
        );
        store.close().await;
    }
}
