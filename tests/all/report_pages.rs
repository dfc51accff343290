//! The pages of single reports and their lists, as a user reads them:
//! failure reports with decoded headers and linked sources, aggregate
//! reports' authentication results as tables, TLS reports with their
//! policies and failure details (both backends, over HTTP).

use crate::common;
use crate::dashboard::{setup, sign_in, PASSWORD};

use dmarcd::web::WebConfig;

/// The text of the table row of `html` that holds `needle`.
fn row_with<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the page"));
    let start = html[..at].rfind("<tr").expect("a row");
    let end = at + html[at..].find("</tr>").expect("the row's end");
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_reports_read_decoded_with_linked_sources_and_named_times() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let token = server.state.accounts.create_token("t").await.unwrap();

        // The SharePoint report's original From is an encoded word in quotes.
        let list = alice.get(&server, "/failures").await.text();
        let decoded = "Interaktive Wettbewerber-Übersicht";
        assert!(list.contains(decoded), "{backend}: {list}");
        assert!(!list.contains("=?utf-8?"), "{backend}: {list}");
        let row = row_with(&list, decoded);
        assert!(
            row.contains("<a href=\"/sources/10.10.10.10\">10.10.10.10</a>"),
            "{backend}: {row}"
        );
        // Its failure type and both times, under the same names as on the
        // overview.
        assert!(row.contains("<td>dmarc</td>"), "{backend}: {row}");
        assert!(row.contains("2018-10-01T09:20:27Z"), "{backend}: {row}");
        let overview = alice.get(&server, "/").await.text();
        for page in [&list, &overview] {
            assert!(page.contains(">Received by dmarcd</th>"), "{backend}");
            assert!(page.contains(">Arrived at receiver</th>"), "{backend}");
            assert!(page.contains(">Failure type</th>"), "{backend}");
        }
        assert!(
            overview.contains("<a href=\"/sources/10.10.10.10\">"),
            "{backend}"
        );

        // The API gives the decoded From too.
        let api = server
            .get("/api/v1/failure/reports?source=10.10.10.10", Some(&token))
            .await
            .json();
        let report = api["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| {
                item["original_from"]
                    .as_str()
                    .unwrap_or("")
                    .contains(decoded)
            })
            .unwrap_or_else(|| panic!("{backend}: {api}"))
            .clone();
        assert_eq!(report["auth_failure"], "dmarc", "{backend}");
        assert_eq!(report["arrival_date"], "2018-10-01T09:20:27Z", "{backend}");

        // The report's page: the header block unfolded and decoded.
        let id = report["id"].as_i64().unwrap();
        let page = alice.get(&server, &format!("/failures/{id}")).await.text();
        assert!(
            page.contains(&format!(
                "from: &#34;{decoded}&#34; &#60;sharepoint@domain.de&#62;"
            )),
            "{backend}: {page}"
        );
        assert!(
            row_with(&page, ">Failure type<").contains("dmarc"),
            "{backend}"
        );
        assert!(
            row_with(&page, ">Arrived at receiver<").contains("2018-10-01T09:20:27Z"),
            "{backend}"
        );
        assert!(
            row_with(&page, ">Received by dmarcd<").contains("Z</td>"),
            "{backend}"
        );

        // The source page of an IP known only from failure reports lists them.
        let source = alice.get(&server, "/sources/10.10.10.10").await;
        assert_eq!(source.status, 200, "{backend}: {}", source.text());
        let source = source.text();
        assert!(
            source.contains("No aggregate report has a record from 10.10.10.10"),
            "{backend}"
        );
        assert!(
            source.contains(&format!("href=\"/failures/{id}\"")),
            "{backend}: {source}"
        );
        // An address no report mentions has no page.
        assert_eq!(alice.get(&server, "/sources/192.0.2.99").await.status, 404);
        store.close().await;
    }
}

/// Stores `raw` as if it had been mailed in, and processes it.
async fn ingest(store: &dmarcd::store::Store, name: &str, raw: &[u8]) {
    use dmarcd::inbox::{Envelope, Inbox};
    use dmarcd::worker::{Worker, WorkerConfig};
    Inbox::new(store.clone())
        .accept(raw, &Envelope::import(name))
        .await
        .unwrap();
    Worker::new(
        store.clone(),
        dmarcd::Limits::default(),
        "w",
        WorkerConfig::default(),
    )
    .run_until_idle()
    .await
    .unwrap();
}

/// A small synthetic aggregate report whose period begins at `begin`.
fn report_beginning(id: &str, begin: i64) -> Vec<u8> {
    let mut report = dmarcd::testing::aggregate_report(3);
    report.metadata.report_id = id.to_string();
    report.metadata.begin = begin;
    report.metadata.end = begin + 86_399;
    report.to_xml().into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_results_read_as_tables_and_arrays_and_odd_dates_are_flagged() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let token = server.state.accounts.create_token("t").await.unwrap();
        let api = |path: String| {
            let (server, token) = (&server, token.clone());
            async move {
                let reply = server.get(&path, Some(&token)).await;
                assert_eq!(reply.status, 200, "{backend} {path}: {}", reply.text());
                reply
            }
        };
        // 1979-06-16, 2024-04-02 (two empty days after the synthetic
        // report's 2024-03-30), 2031-01-01.
        for (id, begin) in [
            ("old", 298_339_200),
            ("later", 1_712_016_000),
            ("future", 1_924_992_000),
        ] {
            ingest(&store, id, &report_beginning(id, begin)).await;
        }
        let reports = api("/api/v1/aggregate/reports?limit=100".into())
            .await
            .json();
        let id_of = |report_id: &str| {
            reports["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["report_id"] == report_id)
                .unwrap_or_else(|| panic!("{backend}: no {report_id}"))["id"]
                .as_i64()
                .unwrap()
        };

        // The API's DKIM and SPF results are arrays of objects.
        let synthetic = id_of("synthetic-300");
        let records = api(format!(
            "/api/v1/aggregate/records?report={synthetic}&limit=5"
        ))
        .await
        .json();
        let record = &records["items"][0];
        let dkim = record["dkim_results"].as_array().expect("an array");
        let spf = record["spf_results"].as_array().expect("an array");
        assert!(!dkim.is_empty() && !spf.is_empty(), "{backend}: {record}");
        for key in ["domain", "selector", "result", "human_result"] {
            assert!(dkim[0].get(key).is_some(), "{backend}: {key} in {record}");
        }
        // The CSV keeps one compact text per check.
        let compact = format!(
            "{}:{}={}",
            dkim[0]["domain"].as_str().unwrap(),
            dkim[0]["selector"].as_str().unwrap(),
            dkim[0]["result"].as_str().unwrap()
        );
        let csv = api(format!(
            "/api/v1/aggregate/records?report={synthetic}&format=csv"
        ))
        .await
        .text();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let record_id = record["id"].to_string();
        let line = reader
            .records()
            .map(Result::unwrap)
            .find(|line| line[column("id")] == record_id)
            .expect("the record in the CSV");
        assert!(
            line[column("dkim_results")].starts_with(&compact),
            "{backend}: {:?} for {compact}",
            &line[column("dkim_results")]
        );
        let spf_compact = format!(
            "{}:{}={}",
            spf[0]["domain"].as_str().unwrap(),
            spf[0]["scope"].as_str().unwrap(),
            spf[0]["result"].as_str().unwrap()
        );
        assert!(
            line[column("spf_results")].starts_with(&spf_compact),
            "{backend}"
        );

        // The report's page shows them as a table, not as JSON.
        let page = alice
            .get(&server, &format!("/reports/{synthetic}"))
            .await
            .text();
        assert!(page.contains("<table class=\"checks\">"), "{backend}");
        assert!(page.contains("<th scope=\"row\">DKIM</th>"), "{backend}");
        assert!(page.contains("<th scope=\"row\">SPF</th>"), "{backend}");
        assert!(
            !page.contains("{&#34;domain"),
            "{backend}: JSON on the page"
        );
        assert!(!page.contains("implausible"), "{backend}");

        // Dates before 2010 or after arrival are flagged, on the page and
        // in the API's warnings.
        for (report_id, says) in [("old", "before 2010"), ("future", "in the future")] {
            let id = id_of(report_id);
            let json = api(format!("/api/v1/aggregate/reports/{id}")).await.json();
            let warnings = json["warnings"].as_array().expect("warnings");
            assert!(
                warnings.iter().any(|w| w.as_str().unwrap().contains(says)),
                "{backend}: {json}"
            );
            let page = alice.get(&server, &format!("/reports/{id}")).await.text();
            assert!(page.contains("implausible date"), "{backend}");
            assert!(page.contains(says), "{backend}");
        }
        let clean = api(format!("/api/v1/aggregate/reports/{synthetic}"))
            .await
            .json();
        assert_eq!(clean["warnings"], serde_json::json!([]), "{backend}");

        // The overview's chart: 1979 beside 2031 is a chart by month; in
        // 2024 a day for every day, the empty ones too, each with a title.
        let all = alice.get(&server, "/").await.text();
        assert!(all.contains("one bar per month"), "{backend}");
        assert!(all.contains("<title>1979-06, "), "{backend}");
        let spring = alice
            .get(&server, "/?since=2024-03-01&until=2024-04-30")
            .await
            .text();
        assert!(spring.contains("one bar per day"), "{backend}");
        assert!(spring.contains("square-root scale"), "{backend}");
        for day in ["2024-03-31", "2024-04-01"] {
            assert!(
                spring.contains(&format!("<title>{day}: no reports</title>")),
                "{backend}: {day}"
            );
        }
        assert!(
            spring.contains("<title>2024-03-30, DMARC pass: "),
            "{backend}"
        );
        assert!(spring.contains(">Mar 30</text>"), "{backend}");

        // The TLS summary comes in the same envelope as the other lists.
        let summary = api("/api/v1/tls/summary?group_by=org".into()).await.json();
        let total = summary["total"].as_i64().unwrap();
        assert!(total >= 2, "{backend}: {summary}");
        assert_eq!(summary["items"].as_array().unwrap().len() as i64, total);
        assert_eq!(summary["offset"], 0);
        let one = api("/api/v1/tls/summary?group_by=org&limit=1&offset=1".into())
            .await
            .json();
        assert_eq!(one["total"], total, "{backend}");
        assert_eq!(one["items"][0], summary["items"][1], "{backend}");
        let csv = api("/api/v1/tls/summary?group_by=org&format=csv".into())
            .await
            .text();
        assert!(csv.starts_with("key,successful_sessions,failed_sessions\r\n"));
        assert_eq!(csv.lines().count() as i64, total + 1, "{backend}");
        store.close().await;
    }
}

/// A TLS report whose first policy's failure details account for 7 of its
/// 10 failed sessions, with a reason code and additional information.
const TLS_REPORT: &str = r#"{
  "organization-name": "Example Reporter",
  "date-range": {"start-datetime": "2024-03-30T00:00:00Z", "end-datetime": "2024-03-30T23:59:59Z"},
  "contact-info": "tlsrpt@reporter.example",
  "report-id": "details-short-1",
  "policies": [
    {"policy": {"policy-type": "sts", "policy-domain": "mismatch.example",
                "policy-string": ["version: STSv1", "mode: enforce", "mx: mx1.mismatch.example", "max_age: 86400"],
                "mx-host": ["mx1.mismatch.example"]},
     "summary": {"total-successful-session-count": 90, "total-failure-session-count": 10},
     "failure-details": [
       {"result-type": "certificate-expired", "sending-mta-ip": "192.0.2.1",
        "receiving-mx-hostname": "mx1.mismatch.example.", "receiving-ip": "203.0.113.5",
        "failed-session-count": 4, "additional-information": "https://reporter.example/why",
        "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED"},
       {"result-type": "starttls-not-supported", "sending-mta-ip": "192.0.2.2",
        "receiving-mx-hostname": "mx2.mismatch.example", "receiving-ip": "198.51.100.7",
        "failed-session-count": 3}
     ]},
    {"policy": {"policy-type": "tlsa", "policy-domain": "mismatch.example",
                "policy-string": ["3 1 1 0123456789abcdef"]},
     "summary": {"total-successful-session-count": 5, "total-failure-session-count": 0}}
  ]
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn tls_pages_filter_by_what_tls_reports_have_and_show_each_report() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        ingest(&store, "details-short.json", TLS_REPORT.as_bytes()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let token = server.state.accounts.create_token("t").await.unwrap();
        let api = |path: &str| {
            let (server, token, path) = (&server, token.clone(), path.to_string());
            async move {
                let reply = server.get(&path, Some(&token)).await;
                assert_eq!(reply.status, 200, "{backend} {path}: {}", reply.text());
                reply.json()
            }
        };
        let ours = api("/api/v1/tls/reports?org=%22Example%20Reporter%22").await;
        assert_eq!(ours["total"], 1, "{backend}: {ours}");
        let id = ours["items"][0]["id"].as_i64().unwrap();
        // The list says the details fall short of the total.
        assert_eq!(ours["items"][0]["failed_sessions"], 10, "{backend}");
        assert_eq!(ours["items"][0]["detailed_failed_sessions"], 7, "{backend}");
        let all = api("/api/v1/tls/reports").await["total"].as_i64().unwrap();

        // The TLS page's own filters, none of DMARC's.
        let page = alice.get(&server, "/tls").await.text();
        for field in [
            "domain",
            "org",
            "result_type",
            "sending_mta",
            "receiving_mx",
            "policy_type",
            "since",
            "until",
        ] {
            assert!(
                page.contains(&format!("name=\"{field}\"")),
                "{backend}: {field}"
            );
        }
        for dmarc in ["dkim", "spf", "disposition", "header_from", "source", "asn"] {
            assert!(
                !page.contains(&format!("name=\"{dmarc}\"")),
                "{backend}: {dmarc}"
            );
        }
        assert!(
            page.contains(&format!("href=\"/tls/reports/{id}\"")),
            "{backend}"
        );
        assert!(
            row_with(&page, &format!("href=\"/tls/reports/{id}\"")).contains("7 ≠"),
            "{backend}"
        );
        // Charts of sessions per result type and per sending MTA, whose
        // bars lead to the reports with that failure.
        assert!(
            page.contains("<a href=\"/tls?result_type=certificate-expired\">"),
            "{backend}"
        );
        assert!(
            page.contains("<a href=\"/tls?sending_mta=192.0.2.1\">"),
            "{backend}"
        );

        // Each filter selects our report, in the API and on the page.
        for query in [
            "result_type=Certificate-Expired",
            "sending_mta=192.0.2.2",
            "receiving_mx=MX1.mismatch.example.",
            "receiving_mx=198.51.100.7",
            "policy_type=tlsa",
            "domain=mismatch.example",
        ] {
            let selected = api(&format!("/api/v1/tls/reports?{query}")).await;
            let total = selected["total"].as_i64().unwrap();
            let ids: Vec<i64> = selected["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            assert!(ids.contains(&id), "{backend} {query}: {selected}");
            assert!(total < all, "{backend} {query}: narrows");
            let page = alice.get(&server, &format!("/tls?{query}")).await;
            assert_eq!(page.status, 200, "{backend} {query}");
            let page = page.text();
            assert!(
                page.contains(&format!("href=\"/tls/reports/{id}\"")),
                "{backend} {query}"
            );
            assert!(
                page.contains(&format!("{total} report")),
                "{backend} {query}"
            );
        }
        let none = api("/api/v1/tls/reports?sending_mta=192.0.2.99").await;
        assert_eq!(none["total"], 0, "{backend}");
        // Failure summaries count the matching details only.
        let by_type = api("/api/v1/tls/summary?group_by=result_type&domain=mismatch.example").await;
        assert_eq!(by_type["total"], 2, "{backend}: {by_type}");
        assert_eq!(by_type["items"][0]["key"], "certificate-expired");
        assert_eq!(by_type["items"][0]["failed_sessions"], 4);
        let bad = server
            .get("/api/v1/tls/reports?policy_type=dane", Some(&token))
            .await;
        assert_eq!(bad.status, 400, "{backend}");
        assert!(bad.text().contains("policy_type:"), "{backend}");

        // The report whole, in the API.
        let report = api(&format!("/api/v1/tls/reports/{id}")).await;
        assert_eq!(report["successful_sessions"], 95, "{backend}: {report}");
        assert_eq!(report["failed_sessions"], 10, "{backend}");
        let sts = &report["policies"][0];
        assert_eq!(sts["policy_type"], "sts");
        assert_eq!(
            sts["policy_strings"][1], "mode: enforce",
            "{backend}: {sts}"
        );
        assert_eq!(sts["mx_hosts"], serde_json::json!(["mx1.mismatch.example"]));
        assert_eq!(sts["detailed_failed_sessions"], 7, "{backend}");
        let expired = &sts["failure_details"][0];
        assert_eq!(
            expired["failure_reason_code"],
            "X509_V_ERR_CERT_HAS_EXPIRED"
        );
        assert_eq!(
            expired["additional_information"],
            "https://reporter.example/why"
        );
        assert_eq!(expired["receiving_ip"], "203.0.113.5");
        assert_eq!(
            report["policies"][1]["failure_details"],
            serde_json::json!([])
        );
        let missing = server.get("/api/v1/tls/reports/999999", Some(&token)).await;
        assert_eq!(missing.status, 404, "{backend}");

        // And on its page: policies as lines, failure details with their
        // reason code, and a note that the details fall short.
        let page = alice.get(&server, &format!("/tls/reports/{id}")).await;
        assert_eq!(page.status, 200, "{backend}");
        let page = page.text();
        for expected in [
            "<code>mode: enforce</code>",
            "<code>3 1 1 0123456789abcdef</code>",
            "X509_V_ERR_CERT_HAS_EXPIRED",
            "https://reporter.example/why",
            "198.51.100.7",
            "account for 7 of the 10 failed sessions",
            "do not add up to its totals",
        ] {
            assert!(page.contains(expected), "{backend}: {expected}");
        }
        assert!(!page.contains("[&#34;"), "{backend}: JSON on the page");
        assert_eq!(alice.get(&server, "/tls/reports/999999").await.status, 404);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn override_reasons_are_an_array_in_json_text_in_csv_and_shown() {
    use dmarcd::report::aggregate::{OverrideReason, OverrideType};
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let mut report = dmarcd::testing::aggregate_report(2);
        report.metadata.report_id = "overrides".into();
        report.records[0].policy_evaluated.reasons = vec![
            OverrideReason {
                kind: Some(OverrideType::parse("forwarded")),
                comment: Some("list.example.org".into()),
            },
            OverrideReason {
                kind: Some(OverrideType::parse("sampled_out")),
                comment: None,
            },
        ];
        ingest(&store, "overrides.xml", report.to_xml().as_bytes()).await;
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let token = server.state.accounts.create_token("t").await.unwrap();
        let records = server
            .get("/api/v1/aggregate/records?limit=1000", Some(&token))
            .await
            .json();
        let with_reasons: Vec<&serde_json::Value> = records["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["reasons"].as_array().expect("an array").is_empty())
            .collect();
        assert_eq!(with_reasons.len(), 1, "{backend}");
        let record = with_reasons[0];
        assert_eq!(
            record["reasons"],
            serde_json::json!([
                {"type": "forwarded", "comment": "list.example.org"},
                {"type": "sampled_out", "comment": null}
            ]),
            "{backend}"
        );
        let csv = server
            .get(
                &format!(
                    "/api/v1/aggregate/records?report={}&format=csv",
                    record["report"]
                ),
                Some(&token),
            )
            .await
            .text();
        assert!(
            csv.contains("forwarded: list.example.org; sampled_out"),
            "{backend}: {csv}"
        );
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let page = alice
            .get(&server, &format!("/reports/{}", record["report"]))
            .await
            .text();
        assert!(page.contains("forwarded: list.example.org"), "{backend}");
    }
}
