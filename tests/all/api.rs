//! The REST API, TLS-RPT intake and operations endpoints over HTTP, against
//! both storage backends: a real listener, a real client (ureq).

use crate::common;

use std::io::Write;
use std::path::Path;

use common::http::Server;
use dmarcd::store::Store;
use dmarcd::web::WebConfig;
use dmarcd::worker::{Worker, WorkerConfig};
use dmarcd::{testing, Limits};
use serde_json::Value;

const TLS_REPORT: &str = "tests/fixtures/corpus/parsedmarc/smtp_tls/rfc8460.json";

async fn server_with_token(store: &Store, config: WebConfig) -> (Server, String) {
    let server = Server::start(store.clone(), config).await;
    let token = server.state.accounts.create_token("tests").await.unwrap();
    (server, token)
}

fn total(reply: &Value) -> i64 {
    reply["total"].as_i64().unwrap()
}

fn messages(rows: &Value) -> i64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row["messages"].as_i64().unwrap())
        .sum()
}

const ENDPOINTS: &[&str] = &[
    "/api/v1/domains",
    "/api/v1/aggregate/summary",
    "/api/v1/aggregate/records",
    "/api/v1/aggregate/reports",
    "/api/v1/aggregate/reports/1",
    "/api/v1/tls/reports",
    "/api/v1/tls/summary",
    "/api/v1/failure/reports",
    "/api/v1/inbox/messages",
    "/api/v1/inbox/messages/1",
    "/api/v1/inbox/messages/1/raw",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_needs_a_valid_token() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, token) = server_with_token(&store, WebConfig::default()).await;
        for path in ENDPOINTS {
            let anonymous = server.get(path, None).await;
            assert_eq!(anonymous.status, 401, "{backend} {path}");
            assert!(anonymous.json()["error"]
                .as_str()
                .unwrap()
                .contains("token create"));
            assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
            let forged = server.get(path, Some("dmarcd_not-a-real-token")).await;
            assert_eq!(forged.status, 401, "{backend} {path}");
            let allowed = server.get(path, Some(&token)).await;
            assert_eq!(allowed.status, 200, "{backend} {path}: {}", allowed.text());
        }
        let reprocess = server
            .request(
                "POST",
                "/api/v1/inbox/messages/1/reprocess",
                None,
                None,
                Vec::new(),
                &[],
            )
            .await;
        assert_eq!(reprocess.status, 401, "{backend}");

        // A revoked token stops working at once.
        server.state.accounts.revoke_token("tests").await.unwrap();
        let revoked = server.get("/api/v1/domains", Some(&token)).await;
        assert_eq!(revoked.status, 401, "{backend}");

        // The OpenAPI document is public (it holds no data).
        let openapi = server.get("/api/v1/openapi.json", None).await.json();
        assert_eq!(openapi["openapi"], "3.1.0");
        assert!(openapi["paths"]["/api/v1/aggregate/summary"]["get"].is_object());
        assert!(openapi["components"]["securitySchemes"]["token"].is_object());
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_group_and_page_consistently() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, token) = server_with_token(&store, WebConfig::default()).await;
        let get = |path: String| {
            let server = &server;
            let token = token.clone();
            async move {
                let reply = server.get(&path, Some(&token)).await;
                assert_eq!(reply.status, 200, "{backend} {path}: {}", reply.text());
                reply.json()
            }
        };

        let all = get("/api/v1/aggregate/records?limit=1".into()).await;
        assert_eq!(total(&all), 300, "{backend}");
        let all_messages =
            messages(&get("/api/v1/aggregate/summary?group_by=domain".into()).await["items"]);

        // Every grouping covers every message exactly once.
        for group in [
            "source",
            "source_name",
            "org",
            "country",
            "asn",
            "domain",
            "day",
            "disposition",
            "header_from",
        ] {
            let summary = get(format!(
                "/api/v1/aggregate/summary?group_by={group}&limit=1000"
            ))
            .await;
            assert_eq!(
                messages(&summary["items"]),
                all_messages,
                "{backend} {group}"
            );
        }

        // Country comes from the enrichment: 254 sources in the US, 46 in Germany.
        let countries = get("/api/v1/aggregate/summary?group_by=country&sort=key".into()).await;
        let keys: Vec<&str> = countries["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["DE", "US"], "{backend}");
        let german = get("/api/v1/aggregate/records?country=de&limit=1000".into()).await;
        assert_eq!(total(&german), 46, "{backend}");
        assert!(german["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["country"] == "DE" && r["asn"] == 64501));
        let by_asn = get("/api/v1/aggregate/records?asn=AS64500&limit=1".into()).await;
        assert_eq!(total(&by_asn), 254, "{backend}");

        // Sources: one IP, a CIDR block, a name.
        assert_eq!(
            total(&get("/api/v1/aggregate/records?source=11.0.0.5".into()).await),
            1,
            "{backend}"
        );
        assert_eq!(
            total(&get("/api/v1/aggregate/records?source=11.0.1.0/25".into()).await),
            46,
            "{backend}"
        );
        assert_eq!(
            total(&get("/api/v1/aggregate/records?source=11.0.0.0/30".into()).await),
            3,
            "{backend}"
        );
        assert_eq!(
            total(&get("/api/v1/aggregate/records?source=Beispiel%20GmbH".into()).await),
            46,
            "{backend}: the AS name names sources without a PTR"
        );

        // Results: pass + fail = all, in records and in the summary.
        let passed = total(&get("/api/v1/aggregate/records?result=pass&limit=1".into()).await);
        let failed = total(&get("/api/v1/aggregate/records?result=fail&limit=1".into()).await);
        assert_eq!((passed, failed), (200, 100), "{backend}");
        let summary = get("/api/v1/aggregate/summary?group_by=domain&result=fail".into()).await;
        assert_eq!(summary["items"][0]["dmarc_pass"], 0, "{backend}");
        for (parameter, count) in [
            ("dkim=pass", 200),
            ("spf=fail", 100),
            ("disposition=none", 200),
        ] {
            let reply = get(format!("/api/v1/aggregate/records?{parameter}&limit=1")).await;
            assert_eq!(total(&reply), count, "{backend} {parameter}");
        }

        // Periods: the synthetic report begins 2024-03-30.
        assert_eq!(
            total(&get("/api/v1/aggregate/records?since=2024-03-30&until=2024-03-30".into()).await),
            300
        );
        assert_eq!(
            total(&get("/api/v1/aggregate/records?since=2024-03-31".into()).await),
            0,
            "{backend}"
        );

        // Pages are stable and disjoint.
        let first = get("/api/v1/aggregate/records?limit=100".into()).await;
        let second = get("/api/v1/aggregate/records?limit=100&offset=100".into()).await;
        let ids = |page: &Value| -> Vec<i64> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect()
        };
        let (a, b) = (ids(&first), ids(&second));
        assert_eq!((a.len(), b.len()), (100, 100));
        assert!(a.iter().all(|id| !b.contains(id)), "{backend}");

        // Reports, and a report's records.
        let reports = get("/api/v1/aggregate/reports".into()).await;
        assert_eq!(total(&reports), 1, "{backend}");
        let id = reports["items"][0]["id"].as_i64().unwrap();
        let report = get(format!("/api/v1/aggregate/reports/{id}")).await;
        assert_eq!(report["record_count"], 300);
        assert_eq!(report["p"], "quarantine");
        assert_eq!(
            total(&get(format!("/api/v1/aggregate/records?report={id}&limit=1")).await),
            300
        );

        // TLS-RPT and failure reports from the corpus.
        let tls = get("/api/v1/tls/reports".into()).await;
        assert!(total(&tls) >= 3, "{backend}");
        for group in [
            "domain",
            "day",
            "org",
            "result_type",
            "sending_mta",
            "receiving_mx",
        ] {
            get(format!("/api/v1/tls/summary?group_by={group}")).await;
        }
        let failures = get("/api/v1/failure/reports".into()).await;
        assert!(total(&failures) >= 1, "{backend}");
        let failure_id = failures["items"][0]["id"].as_i64().unwrap();
        get(format!("/api/v1/failure/reports/{failure_id}")).await;

        // Inbox by status.
        let done = get("/api/v1/inbox/messages?status=done".into()).await;
        let all = get("/api/v1/inbox/messages".into()).await;
        assert!(
            total(&done) >= 1 && total(&done) <= total(&all),
            "{backend}"
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_and_missing_rows_are_clear_errors() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, token) = server_with_token(&store, WebConfig::default()).await;
        for (path, status, says) in [
            ("/api/v1/aggregate/records?result=maybe", 400, "result:"),
            ("/api/v1/aggregate/records?since=yesterday", 400, "since:"),
            (
                "/api/v1/aggregate/records?source=11.0.0.0/99",
                400,
                "source:",
            ),
            ("/api/v1/aggregate/records?country=Germany", 400, "country:"),
            ("/api/v1/aggregate/records?limit=0", 400, "limit:"),
            ("/api/v1/aggregate/records?limit=abc", 400, "limit"),
            ("/api/v1/aggregate/records?format=xml", 400, "format:"),
            (
                "/api/v1/aggregate/summary?group_by=planet",
                400,
                "group_by:",
            ),
            ("/api/v1/aggregate/summary?sort=random", 400, "sort:"),
            ("/api/v1/tls/summary?group_by=planet", 400, "group_by:"),
            ("/api/v1/inbox/messages?status=lost", 400, "status:"),
            (
                "/api/v1/aggregate/reports/999999",
                404,
                "no aggregate report",
            ),
            ("/api/v1/failure/reports/999999", 404, "no failure report"),
            ("/api/v1/inbox/messages/999999", 404, "no inbox message"),
            ("/api/v1/inbox/messages/999999/raw", 404, "no inbox message"),
        ] {
            let reply = server.get(path, Some(&token)).await;
            assert_eq!(reply.status, status, "{backend} {path}: {}", reply.text());
            let message = reply.json()["error"].as_str().unwrap().to_string();
            assert!(message.contains(says), "{backend} {path}: {message}");
        }
        store.close().await;
    }
}

/// Every `$ref` in the OpenAPI document names a schema it defines
/// (`group_by` and `sort` named GroupBy, SummarySort and TlsGroupBy, which
/// were missing), and raw messages are a string of octets.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_defines_every_schema_it_references() {
    let (_dir, store) = common::db::sqlite().await;
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let document = server.get("/api/v1/openapi.json", None).await.json();
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&document, &mut found);
    for name in ["GroupBy", "SummarySort", "TlsGroupBy"] {
        assert!(
            found.contains(&format!("#/components/schemas/{name}")),
            "{name}"
        );
    }
    for target in &found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a local schema"));
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{target} is referenced but not defined"
        );
    }
    let group_by = &document["components"]["schemas"]["GroupBy"]["enum"];
    assert!(group_by
        .as_array()
        .unwrap()
        .contains(&Value::from("header_from")));
    let raw = &document["paths"]["/api/v1/inbox/messages/{id}/raw"]["get"]["responses"]["200"]
        ["content"]["application/octet-stream"]["schema"];
    let raw = match raw.get("$ref").and_then(Value::as_str) {
        Some(target) => &document["components"]["schemas"][target.rsplit('/').next().unwrap()],
        None => raw,
    };
    assert_eq!(raw["type"], "string", "{raw}");
    store.close().await;
}

/// A control character in a filter is the caller's mistake (400), not a
/// database outage; a block with host bits set means its network; the
/// `Bearer` scheme is case-insensitive (RFC 9110 section 11.1); an empty
/// `limit=` is not a number.
#[tokio::test(flavor = "multi_thread")]
async fn parameters_are_checked_before_they_reach_the_database() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, token) = server_with_token(&store, WebConfig::default()).await;
        for (path, says) in [
            ("/api/v1/aggregate/records?org=google%00.com", "org:"),
            (
                "/api/v1/aggregate/summary?header_from=a%0Ab",
                "header_from:",
            ),
            ("/api/v1/aggregate/reports?domain=%01example.com", "domain:"),
            ("/api/v1/tls/reports?sending_mta=%00", "sending_mta:"),
            ("/api/v1/aggregate/records?limit=", "limit:"),
            ("/api/v1/aggregate/records?offset=", "offset:"),
        ] {
            let reply = server.get(path, Some(&token)).await;
            assert_eq!(reply.status, 400, "{backend} {path}: {}", reply.text());
            let message = reply.json()["error"].as_str().unwrap().to_string();
            assert!(message.contains(says), "{backend} {path}: {message}");
        }
        let whole_block = server
            .get("/api/v1/aggregate/records?source=0.0.0.0/0", Some(&token))
            .await;
        assert_eq!(whole_block.status, 200, "{backend}: {}", whole_block.text());
        for (block, network) in [
            ("192.0.2.5/1", "128.0.0.0/1"),
            ("209.85.220.41/16", "209.85.0.0/16"),
        ] {
            let given = server
                .get(
                    &format!("/api/v1/aggregate/summary?source={block}"),
                    Some(&token),
                )
                .await;
            assert_eq!(given.status, 200, "{backend} {block}: {}", given.text());
            let normal = server
                .get(
                    &format!("/api/v1/aggregate/summary?source={network}"),
                    Some(&token),
                )
                .await;
            assert_eq!(given.json(), normal.json(), "{backend} {block}");
        }
        for scheme in ["bearer", "BEARER", "Bearer"] {
            let reply = server
                .request(
                    "GET",
                    "/api/v1/domains",
                    None,
                    None,
                    Vec::new(),
                    &[("Authorization", &format!("{scheme} {token}"))],
                )
                .await;
            assert_eq!(reply.status, 200, "{backend} {scheme}: {}", reply.text());
        }
        store.close().await;
    }
}

/// A database that refuses connections (restarting, failing over) is an
/// outage for the sender: 503, try again, never 500.
#[tokio::test(flavor = "multi_thread")]
async fn tls_report_post_answers_503_while_the_database_refuses_connections() {
    let Some((_dir, store, name)) = common::db::postgres_named().await else {
        eprintln!("NOTE: DATABASE_URL is unset: this PostgreSQL test was SKIPPED");
        return;
    };
    let report = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(TLS_REPORT)).unwrap();
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let post = || {
        server.request(
            "POST",
            "/tlsrpt",
            None,
            Some("application/tlsrpt+json"),
            report.clone(),
            &[],
        )
    };
    common::db::allow_connections(&name, false).await;
    let down = post().await;
    common::db::allow_connections(&name, true).await;
    assert_eq!(down.status, 503, "{}", down.text());
    assert!(down.text().contains("try again later"), "{}", down.text());
    let back = post().await;
    assert_eq!(back.status, 200, "{}", back.text());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_exports_every_row_and_raw_and_reprocess_work() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, token) = server_with_token(&store, WebConfig::default()).await;

        let csv = server
            .get(
                "/api/v1/aggregate/records?format=csv&country=US",
                Some(&token),
            )
            .await;
        assert_eq!(csv.status, 200);
        assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
        let text = csv.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1 + 254,
            "{backend}: header + every row, not one page"
        );
        assert!(lines[0].starts_with("id,report,org_name,"));
        for path in [
            "/api/v1/aggregate/summary?format=csv&group_by=source",
            "/api/v1/aggregate/reports?format=csv",
            "/api/v1/tls/reports?format=csv",
            "/api/v1/failure/reports?format=csv",
            "/api/v1/inbox/messages?format=csv",
        ] {
            let reply = server.get(path, Some(&token)).await;
            assert_eq!(reply.status, 200, "{backend} {path}");
            assert!(reply.text().lines().count() >= 2, "{backend} {path}");
        }

        // The original message, byte for byte.
        let reports = server
            .get("/api/v1/aggregate/reports", Some(&token))
            .await
            .json();
        let message = reports["items"][0]["message_id"].as_i64().unwrap();
        let raw = server
            .get(
                &format!("/api/v1/inbox/messages/{message}/raw"),
                Some(&token),
            )
            .await;
        assert_eq!(
            raw.body,
            testing::aggregate_report(300).to_xml().into_bytes(),
            "{backend}"
        );

        // Reprocess puts it back in the queue.
        let reply = server
            .request(
                "POST",
                &format!("/api/v1/inbox/messages/{message}/reprocess"),
                Some(&token),
                None,
                Vec::new(),
                &[],
            )
            .await;
        assert_eq!(reply.status, 202, "{backend}: {}", reply.text());
        let status = server
            .get(&format!("/api/v1/inbox/messages/{message}"), Some(&token))
            .await
            .json();
        assert_eq!(status["status"], "pending", "{backend}");
        store.close().await;
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_reports_arrive_by_https_post() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let config = WebConfig {
            tlsrpt_max_bytes: 64 * 1024,
            tlsrpt_per_minute: 8,
            ..WebConfig::default()
        };
        let server = Server::start(store.clone(), config).await;
        let report = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(TLS_REPORT)).unwrap();
        let post = |content_type: &'static str, body: Vec<u8>| {
            let server = &server;
            async move {
                server
                    .request("POST", "/tlsrpt", None, Some(content_type), body, &[])
                    .await
            }
        };

        let plain = post("application/tlsrpt+json", report.clone()).await;
        assert_eq!(plain.status, 200, "{backend}: {}", plain.text());
        assert_eq!(plain.json()["status"], "stored");
        let again = post("application/tlsrpt+json", report.clone()).await;
        assert_eq!(again.json()["status"], "already stored", "{backend}");

        let mut other = String::from_utf8(report.clone()).unwrap();
        other = other
            .replace("2016-04-01", "2016-04-02")
            .replace("5065427c-23d3-47ca-b6e0-946ea0e8c4be", "second-report");
        let gzipped = post("application/tlsrpt+gzip", gzip(other.as_bytes())).await;
        assert_eq!(gzipped.status, 200, "{backend}: {}", gzipped.text());

        let wrong_type = post("text/plain", report.clone()).await;
        assert_eq!(wrong_type.status, 415, "{backend}");
        assert!(wrong_type.json()["error"]
            .as_str()
            .unwrap()
            .contains("application/tlsrpt+json"));

        let oversized = post("application/tlsrpt+json", vec![b' '; 65 * 1024]).await;
        assert_eq!(oversized.status, 413, "{backend}");
        assert!(oversized.json()["error"]
            .as_str()
            .unwrap()
            .contains("tlsrpt_max_bytes"));

        // The request only looks at the body; the worker parses it, once.
        // JSON that is no report is stored, and failed later with its reason.
        let broken = post(
            "application/tlsrpt+json",
            b"{\"organization-name\": 5}".to_vec(),
        )
        .await;
        assert_eq!(broken.status, 200, "{backend}: {}", broken.text());
        let broken_id = broken.json()["message_id"].as_i64().unwrap();
        assert_eq!(
            store.message(broken_id).await.unwrap().unwrap().status,
            dmarcd::inbox::MessageStatus::Pending,
            "{backend}: not parsed while the sender waits"
        );
        // What is neither JSON nor gzip'd JSON is refused, and not stored.
        for junk in [b"<feedback/>".to_vec(), gzip(b"<feedback/>")] {
            let refused = post("application/tlsrpt+gzip", junk).await;
            assert_eq!(refused.status, 400, "{backend}: {}", refused.text());
            assert!(refused.json()["error"]
                .as_str()
                .unwrap()
                .contains("not a TLS report"));
        }

        // Both good reports are processed; the broken body is kept with its reason.
        Worker::new(
            store.clone(),
            Limits::default(),
            "w",
            WorkerConfig::default(),
        )
        .run_until_idle()
        .await
        .unwrap();
        assert_eq!(
            store.report_counts().await.unwrap().tls_reports,
            2,
            "{backend}"
        );
        let failed = store.status_counts().await.unwrap();
        assert_eq!(
            failed.get(&dmarcd::inbox::MessageStatus::Failed),
            Some(&1),
            "{backend}"
        );
        let reason = store.message(broken_id).await.unwrap().unwrap().error;
        assert!(
            reason.is_some_and(|r| r.contains("invalid SMTP TLS report")),
            "{backend}: a failed message keeps its reason"
        );

        // Eight a minute from one address: the ninth waits.
        let limited = post("application/tlsrpt+json", report.clone()).await;
        assert_eq!(limited.status, 429, "{backend}");

        // Database down: 503, so the sender retries.
        let fresh = Server::start(store.clone(), WebConfig::default()).await;
        store.close().await;
        let down = fresh
            .request(
                "POST",
                "/tlsrpt",
                None,
                Some("application/tlsrpt+json"),
                report.clone(),
                &[],
            )
            .await;
        assert_eq!(down.status, 503, "{backend}: {}", down.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let server = Server::start(store.clone(), WebConfig::default()).await;
        assert_eq!(server.get("/healthz", None).await.status, 200);
        let ready = server.get("/readyz", None).await;
        assert_eq!(ready.status, 200, "{backend}: {}", ready.text());
        let metrics = server.get("/metrics", None).await;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        for needle in [
            "dmarcd_messages_received_total{intake=\"import\",outcome=\"new\"}",
            "dmarcd_reports_stored_total{kind=\"aggregate\"}",
            "dmarcd_inbox_messages{status=\"done\"}",
            "dmarcd_enrich_sources_total{result=\"new\"}",
            "dmarcd_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"}",
        ] {
            assert!(
                text.contains(needle),
                "{backend}: {needle} missing from\n{text}"
            );
        }
        store.close().await;
        assert_eq!(
            server.get("/healthz", None).await.status,
            200,
            "the process still answers"
        );
        let unready = server.get("/readyz", None).await;
        assert_eq!(unready.status, 503, "{backend}");
        // The error (which names hosts and databases) is logged, not shown.
        assert_eq!(
            unready.json(),
            serde_json::json!({"status": "database unavailable"}),
            "{backend}"
        );
    }
}

/// Every answer carries `Referrer-Policy: no-referrer`, and raw messages
/// (bytes a stranger wrote) `nosniff` and `no-store`; HSTS only over
/// HTTPS (tests/https.rs).
#[tokio::test(flavor = "multi_thread")]
async fn responses_carry_protective_headers() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let (server, token) = server_with_token(&store, WebConfig::default()).await;
    let raw = server
        .get("/api/v1/inbox/messages/1/raw", Some(&token))
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(raw.header("cache-control"), Some("no-store"));
    for path in ["/api/v1/domains", "/login", "/healthz", "/api/v1/nowhere"] {
        let reply = server.get(path, Some(&token)).await;
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            reply.header("strict-transport-security"),
            None,
            "{path}: plain HTTP"
        );
    }
    store.close().await;
}

/// `/metrics` behind `web.metrics_token`, or on `web.metrics_listen` only.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_require_a_token_or_a_listener_of_their_own() {
    let (_dir, store) = common::db::sqlite().await;
    let guarded = Server::start(
        store.clone(),
        WebConfig {
            metrics_token: Some("scrape-secret".into()),
            ..WebConfig::default()
        },
    )
    .await;
    let refused = guarded.get("/metrics", None).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(guarded.get("/metrics", Some("wrong")).await.status, 401);
    let read = guarded.get("/metrics", Some("scrape-secret")).await;
    assert_eq!(read.status, 200);
    assert!(read.text().contains("dmarcd_inbox_messages"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = WebConfig {
        metrics_listen: Some(listener.local_addr().unwrap()),
        ..WebConfig::default()
    };
    let main = Server::start(store.clone(), config).await;
    assert_eq!(
        main.get("/metrics", None).await.status,
        404,
        "off the main listener"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = format!("http://{}/metrics", listener.local_addr().unwrap());
    let router = dmarcd::web::metrics_router(main.state.clone());
    tokio::spawn(dmarcd::web::serve(listener, router, stopped));
    let body = tokio::task::spawn_blocking(move || {
        ureq::get(&metrics)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(body.contains("dmarcd_inbox_messages"), "{body}");
    let _ = stop.send(true);
    store.close().await;
}

/// A policy domain from a report is listed under Domains only if it is a
/// domain name: a report's text could be anything.
#[tokio::test(flavor = "multi_thread")]
async fn only_domain_names_from_reports_are_listed_as_domains() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = dmarcd::inbox::Inbox::new(store.clone());
        for (number, domain) in ["example.org", "<b>pay here</b>", "example.com evil"]
            .into_iter()
            .enumerate()
        {
            let mut report = testing::aggregate_report(2);
            report.metadata.report_id = format!("domain-{number}");
            report.policy_published.domain = domain.to_string();
            let xml = report.to_xml();
            inbox
                .accept(xml.as_bytes(), &dmarcd::inbox::Envelope::import("x.xml"))
                .await
                .unwrap();
        }
        Worker::new(
            store.clone(),
            Limits::default(),
            "w",
            WorkerConfig::default(),
        )
        .run_until_idle()
        .await
        .unwrap();
        assert_eq!(
            store.report_counts().await.unwrap().aggregate_reports,
            3,
            "{backend}: every report is kept"
        );
        assert_eq!(
            store.domains(&dmarcd::scope::Scope::All).await.unwrap(),
            vec!["example.org"],
            "{backend}"
        );
        store.close().await;
    }
}

/// Behind a reverse proxy named in `web.trusted_proxies`, the TLS-RPT
/// limit counts each client its `X-Forwarded-For` names; from anywhere
/// else the header is ignored, so a client cannot spread its reports over
/// invented addresses.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_count_the_client_a_trusted_proxy_names() {
    let report = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(TLS_REPORT)).unwrap();
    // Each POST a distinct report, so that every one is stored.
    let report_number = std::sync::atomic::AtomicUsize::new(0);
    let body = || {
        let n = report_number.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        String::from_utf8(report.clone())
            .unwrap()
            .replace(
                "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
                &format!("forwarded-{n}"),
            )
            .into_bytes()
    };
    for (trusted, expected) in [
        (vec!["127.0.0.1".to_string()], "198.51.100.7"),
        (Vec::new(), "127.0.0.1"),
    ] {
        let (_dir, store) = common::db::sqlite().await;
        let config = WebConfig {
            tlsrpt_per_minute: 2,
            trusted_proxies: trusted.clone(),
            ..WebConfig::default()
        };
        let server = Server::start(store.clone(), config).await;
        let post = |forwarded: &'static str| {
            let server = &server;
            let body = body();
            async move {
                server
                    .request(
                        "POST",
                        "/tlsrpt",
                        None,
                        Some("application/tlsrpt+json"),
                        body,
                        &[("X-Forwarded-For", forwarded)],
                    )
                    .await
            }
        };
        // A client that writes its own header in front of the proxy's.
        for _ in 0..2 {
            let reply = post("203.0.113.1, 198.51.100.7").await;
            assert_eq!(reply.status, 200, "{trusted:?}: {}", reply.text());
        }
        let limited = post("203.0.113.2, 198.51.100.7").await;
        assert_eq!(limited.status, 429, "{trusted:?}");
        let message = limited.json()["error"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{trusted:?}: {message}");
        // Another client behind the proxy has a limit of its own.
        let other = post("198.51.100.8").await;
        let status = if trusted.is_empty() { 429 } else { 200 };
        assert_eq!(other.status, status, "{trusted:?}: {}", other.text());
        store.close().await;
    }
}

/// A connection from `local` (any 127.0.0.0/8 address) to `server`.
async fn connect_from(local: &str, server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// What the server sends until it closes the connection, or `None` if it
/// is still open after `wait`.
async fn until_closed(
    stream: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut received)).await {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// A client that sends half a header and then nothing, or that keeps a
/// connection open after its answer, is cut after
/// `web.header_read_timeout_seconds` (slowloris: ~20,000 of them used up
/// every descriptor).
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_idle_kept_alive_connections_are_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, store) = common::db::sqlite().await;
    let config = WebConfig {
        header_read_timeout_seconds: 1,
        ..WebConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    let wait = std::time::Duration::from_secs(5);

    let mut slow = connect_from("127.0.0.1", server.address).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        until_closed(&mut slow, wait).await.is_some(),
        "a half header held the connection"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    let mut kept = connect_from("127.0.0.1", server.address).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = kept.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    assert!(
        until_closed(&mut kept, wait).await.is_some(),
        "an idle kept-alive connection stayed open"
    );
    store.close().await;
}

/// Connections are capped per client address and in all: past a cap the
/// client gets a 503 and the connection is closed, instead of the process
/// running out of descriptors.
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_capped_per_address_and_in_all() {
    let (_dir, store) = common::db::sqlite().await;
    let config = WebConfig {
        max_connections: 5,
        max_connections_per_ip: 3,
        ..WebConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    let wait = std::time::Duration::from_secs(5);
    let quiet = std::time::Duration::from_millis(300);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", server.address).await);
    }
    let mut fourth = connect_from("127.0.0.2", server.address).await;
    let refused = until_closed(&mut fourth, wait)
        .await
        .expect("refused and closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    for _ in 0..2 {
        held.push(connect_from("127.0.0.3", server.address).await);
    }
    let mut sixth = connect_from("127.0.0.4", server.address).await;
    let refused = until_closed(&mut sixth, wait)
        .await
        .expect("refused and closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    for stream in &mut held {
        assert!(
            until_closed(stream, quiet).await.is_none(),
            "a connection under the caps was closed"
        );
    }
    // Once some close, others get in.
    held.truncate(2);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.get("/healthz", None).await.status, 200);
    store.close().await;
}

/// `web.request_timeout_seconds`: a request the database holds up past it
/// is answered 503 when it runs out, not when the database lets go.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_held_up_past_the_timeout_is_answered_503() {
    for (_dir, store) in common::db::backends().await {
        // SQLite's reads are not held up by a writer (WAL).
        if store.backend() != "postgres" {
            continue;
        }
        let config = WebConfig {
            request_timeout_seconds: 1,
            ..WebConfig::default()
        };
        let (server, token) = server_with_token(&store, config).await;
        let mut lock = store.db().begin_durable().await.unwrap();
        lock.execute(&lock.statement(
            "LOCK TABLE aggregate_reports IN ACCESS EXCLUSIVE MODE",
            Vec::new(),
        ))
        .await
        .unwrap();
        // Let go after 4 s whatever happens, so that a missing timeout
        // shows as a late 200 rather than a test that never ends.
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            lock.commit().await.unwrap();
        });
        let started = std::time::Instant::now();
        let reply = server.get("/api/v1/aggregate/reports", Some(&token)).await;
        let waited = started.elapsed();
        assert_eq!(reply.status, 503, "after {waited:?}");
        assert!(waited < std::time::Duration::from_secs(3), "{waited:?}");
        release.await.unwrap();
        let reply = server.get("/api/v1/aggregate/reports", Some(&token)).await;
        assert_eq!(reply.status, 200);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_tokens_only_read_and_expired_tokens_say_so() {
    use dmarcd::accounts::TokenAccess;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        common::data::populated(&store, files.path()).await;
        let (server, writer) = server_with_token(&store, WebConfig::default()).await;
        let accounts = &server.state.accounts;
        let reader = accounts
            .create_token_with("grafana", TokenAccess::Read, None)
            .await
            .unwrap();
        let expired = accounts
            .create_token_with(
                "old-script",
                TokenAccess::Write,
                Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
            )
            .await
            .unwrap();
        let later = accounts
            .create_token_with(
                "contractor",
                TokenAccess::Write,
                Some(chrono::Utc::now() + chrono::Duration::days(30)),
            )
            .await
            .unwrap();
        // Each change approves another address.
        let approval = |ip: &str| {
            serde_json::to_vec(&serde_json::json!({
                "action": "approve",
                "match": {"ip": ip},
            }))
            .unwrap()
        };
        let post = |token: String, ip: &'static str| {
            let server = &server;
            let body = approval(ip);
            async move {
                server
                    .request(
                        "POST",
                        "/api/v1/approvals",
                        Some(&token),
                        Some("application/json"),
                        body,
                        &[],
                    )
                    .await
            }
        };

        // A read-only token reads everything and changes nothing.
        for path in ENDPOINTS {
            let read = server.get(path, Some(&reader)).await;
            assert_eq!(read.status, 200, "{backend} {path}: {}", read.text());
        }
        let refused = post(reader.clone(), "192.0.2.1").await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        let why = refused.json()["error"].as_str().unwrap().to_string();
        assert!(
            why.contains("\"grafana\" may only read") && why.contains("--write"),
            "{backend}: {why}"
        );
        let approvals = server.get("/api/v1/approvals", Some(&writer)).await.json();
        assert_eq!(
            approvals.as_array().unwrap().len(),
            0,
            "{backend}: {approvals}"
        );

        // Write tokens change, an unexpired one too.
        assert_eq!(
            post(writer.clone(), "192.0.2.2").await.status,
            201,
            "{backend}"
        );
        assert_eq!(
            post(later.clone(), "192.0.2.3").await.status,
            201,
            "{backend}"
        );

        // An expired token is refused for reads and changes, saying when it expired.
        for reply in [
            server.get("/api/v1/domains", Some(&expired)).await,
            post(expired.clone(), "192.0.2.4").await,
        ] {
            assert_eq!(reply.status, 401, "{backend}: {}", reply.text());
            let why = reply.json()["error"].as_str().unwrap().to_string();
            assert!(
                why.contains("\"old-script\" expired at") && why.contains("--write"),
                "{backend}: {why}"
            );
        }

        // A token made before tokens had an access (the row as the old
        // schema wrote it) keeps writing.
        let legacy = "dmarcd_legacy-token-from-an-older-release";
        let db = store.db();
        db.execute(&db.statement(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)",
            vec![
                "legacy".into(),
                dmarcd::accounts::hash_secret(legacy).into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await
        .unwrap();
        assert_eq!(
            post(legacy.to_string(), "192.0.2.5").await.status,
            201,
            "{backend}"
        );
        // Every kind of change is refused to a read-only token.
        for (method, path) in [
            ("DELETE", "/api/v1/approvals/1"),
            ("PATCH", "/api/v1/alert-rules/1"),
            ("PUT", "/api/v1/domains/example.com/mta-sts"),
        ] {
            let refused = server
                .request(
                    method,
                    path,
                    Some(&reader),
                    Some("application/json"),
                    b"{}".to_vec(),
                    &[],
                )
                .await;
            assert_eq!(
                refused.status,
                403,
                "{backend} {method} {path}: {}",
                refused.text()
            );
        }

        // The API document says so for every change, and only for changes.
        let document = server
            .get("/api/v1/openapi.json", Some(&reader))
            .await
            .json();
        let responses = |path: &str, method: &str| {
            document["paths"][path][method]["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("no {method} {path} in the document"))
                .clone()
        };
        assert!(responses("/api/v1/approvals", "post").contains_key("403"));
        assert!(responses("/api/v1/approvals/{id}", "delete").contains_key("403"));
        assert!(!responses("/api/v1/approvals", "get").contains_key("403"));

        // The list says what each token may do and until when.
        let listed = accounts.tokens().await.unwrap();
        let grafana = listed.iter().find(|t| t.name == "grafana").unwrap();
        assert_eq!(grafana.access, TokenAccess::Read, "{backend}");
        assert_eq!(grafana.expires_at, None, "{backend}");
        let contractor = listed.iter().find(|t| t.name == "contractor").unwrap();
        assert_eq!(contractor.access, TokenAccess::Write, "{backend}");
        assert!(
            contractor.expires_at.is_some() && !contractor.expired,
            "{backend}"
        );
        let old_script = listed.iter().find(|t| t.name == "old-script").unwrap();
        assert!(old_script.expired, "{backend}");
    }
}

/// `dmarcd token …` in a fresh SQLite data directory: its success and output.
fn token_cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = std::iter::once("token")
        .chain(args.iter().copied())
        .collect();
    let run = common::cli::dmarcd(data_dir, &args, &[]);
    (run.success, format!("{}{}", run.stdout, run.stderr))
}

#[test]
fn the_cli_makes_read_only_tokens_unless_asked_and_lists_access_and_expiry() {
    let data = tempfile::tempdir().unwrap();
    let (ok, made) = token_cli(data.path(), &["create", "--name", "grafana"]);
    assert!(ok, "{made}");
    assert!(made.contains("(read access, never expires)"), "{made}");
    let (ok, made) = token_cli(
        data.path(),
        &[
            "create",
            "--name",
            "deploy",
            "--write",
            "--expires-days",
            "7",
        ],
    );
    assert!(ok, "{made}");
    assert!(made.contains("(write access, expires 20"), "{made}");
    let (ok, refused) = token_cli(
        data.path(),
        &["create", "--name", "never", "--expires-days", "0"],
    );
    assert!(!ok, "{refused}");

    let (ok, listed) = token_cli(data.path(), &["list"]);
    assert!(ok, "{listed}");
    let line = |name: &str| {
        listed
            .lines()
            .find(|line| line.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
            .to_string()
    };
    assert!(line("grafana").contains("\tread\t") && line("grafana").contains("expires never"));
    assert!(line("deploy").contains("\twrite\t") && !line("deploy").contains("expires never"));
    assert!(
        !listed.lines().any(|line| line.starts_with("never\t")),
        "a refused token was listed: {listed}"
    );
}
