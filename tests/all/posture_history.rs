//! Posture checks stored: each check with what it saw, a record change as
//! an event, the schedule (due domains claimed once, failed lookups retried
//! sooner), on both backends, against the loopback DNS server.

use std::sync::Arc;

use chrono::Utc;
use dmarcd::dns::{
    DnsConfig, PostureChecker, PostureSchedule, RecordKind, ReportTargets, Severity,
};
use dmarcd::store::{posture, Store};

use crate::common;
use crate::common::zone_server::{Fault, ZoneServer};

fn schedule(store: &Store, dns: &ZoneServer) -> PostureSchedule {
    let config = DnsConfig {
        name_servers: vec![dns.address().to_string()],
        timeout_ms: 300,
        attempts: 1,
        ..DnsConfig::default()
    };
    let targets = ReportTargets::new(&["dmarc@reports.dmarcd.test".to_string()], &[], "/tlsrpt");
    let checker = Arc::new(PostureChecker::new(&config, targets).unwrap());
    PostureSchedule::new(store.clone(), checker, &config)
}

fn zone(policy: &str) -> String {
    let key = dmarcd::testing::rsa_spki(2048);
    let key: Vec<String> = format!("v=DKIM1; p={key}")
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect();
    format!(
        "_dmarc.change.test. TXT \"v=DMARC1; p={policy}; rua=mailto:dmarc@reports.dmarcd.test\"\n\
         change.test._report._dmarc.reports.dmarcd.test. TXT \"v=DMARC1\"\n\
         change.test. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
         s1._domainkey.change.test. TXT {}\n",
        key.join(" ")
    )
}

#[tokio::test]
async fn a_record_change_is_stored_as_an_event() {
    for (_dir, store) in common::db::backends().await {
        let db = store.db();
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, "change.test", None)
            .await
            .unwrap();
        posture::add_selector(db, "change.test", "s1")
            .await
            .unwrap();

        let before = ZoneServer::start(&zone("none"), &[]).await;
        let first = schedule(&store, &before);
        assert_eq!(first.run_due().await.unwrap(), 1);
        // Checked: not due again until its next time.
        assert_eq!(first.run_due().await.unwrap(), 0);
        let next = posture::next_check_at(db, "change.test")
            .await
            .unwrap()
            .unwrap();
        let hours = (next - Utc::now()).num_minutes() as f64 / 60.0;
        assert!((5.3..=6.7).contains(&hours), "next check in {hours} h");

        let checks = posture::checks_of(db, "change.test", 10).await.unwrap();
        assert_eq!(checks.len(), 1);
        assert!(
            checks[0].findings.iter().any(|f| f.code == "dkim.key"),
            "the added selector is checked"
        );
        assert!(checks[0].spf.is_some());
        assert!(posture::events_of(db, "change.test", 10)
            .await
            .unwrap()
            .is_empty());

        // The owner tightens the policy.
        let after = ZoneServer::start(&zone("reject"), &[]).await;
        let (report, events) = schedule(&store, &after)
            .check_now("change.test")
            .await
            .unwrap();
        assert_eq!(report.grade(RecordKind::Dmarc), Severity::Ok);
        assert_eq!(events.len(), 1, "{events:#?}");
        let stored = posture::events_of(db, "change.test", 10).await.unwrap();
        assert_eq!(stored, events);
        assert_eq!(stored[0].name, "_dmarc.change.test");
        assert_eq!(stored[0].kind, "dmarc");
        assert_eq!(
            stored[0].old_values,
            ["v=DMARC1; p=none; rua=mailto:dmarc@reports.dmarcd.test"]
        );
        assert_eq!(
            stored[0].new_values,
            ["v=DMARC1; p=reject; rua=mailto:dmarc@reports.dmarcd.test"]
        );
        assert_eq!(stored[0].changed_at, report.checked_at);

        let overview = posture::monitored_posture(db).await.unwrap();
        assert_eq!(overview.len(), 1);
        assert_eq!(overview[0].domain, "change.test");
        assert!(overview[0].checked_at.is_some());
        assert!(overview[0]
            .grades
            .iter()
            .any(|g| g.kind == RecordKind::Dmarc && g.severity == Severity::Ok));
        assert_eq!(
            posture::checks_of(db, "change.test", 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}

#[tokio::test]
async fn a_failed_lookup_is_retried_soon_and_is_not_read_as_a_removal() {
    for (_dir, store) in common::db::backends().await {
        let db = store.db();
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, "change.test", None)
            .await
            .unwrap();
        let healthy = ZoneServer::start(&zone("none"), &[]).await;
        schedule(&store, &healthy)
            .check_now("change.test")
            .await
            .unwrap();

        let failing =
            ZoneServer::start(&zone("none"), &[("_dmarc.change.test", Fault::ServFail)]).await;
        let (report, events) = schedule(&store, &failing)
            .check_now("change.test")
            .await
            .unwrap();
        assert_eq!(report.grade(RecordKind::Dmarc), Severity::Unknown);
        assert!(events.is_empty(), "a SERVFAIL is no removal: {events:#?}");
        let next = posture::next_check_at(db, "change.test")
            .await
            .unwrap()
            .unwrap();
        let minutes = (next - Utc::now()).num_minutes();
        assert!(
            (30..=42).contains(&minutes),
            "retried in {minutes} min, not 6 h"
        );

        // The next run asks again and finds the record.
        let (report, events) = schedule(&store, &healthy)
            .check_now("change.test")
            .await
            .unwrap();
        assert!(report.findings.iter().any(|f| f.code == "dmarc.found"));
        assert!(events.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_runs_lists_and_looks_up_checks() {
    for (_dir, store) in common::db::backends().await {
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, "change.test", None)
            .await
            .unwrap();
        let dns = ZoneServer::start(&zone("none"), &[]).await;
        let state = dmarcd::web::AppState::new(
            store.clone(),
            dmarcd::web::WebConfig::default(),
            dmarcd::Limits::default(),
        )
        .with_posture(schedule(&store, &dns), 3);
        let server = common::http::Server::start_with_state(state).await;
        let token = server.state.accounts.create_token("tests").await.unwrap();
        let token = Some(token.as_str());

        let path = "/api/v1/domains/change.test/checks";
        assert_eq!(server.get(path, None).await.status, 401);
        let empty = server.get(path, token).await.json();
        assert_eq!(empty["checks"].as_array().unwrap().len(), 0);

        let run = server
            .request("POST", path, token, None, Vec::new(), &[])
            .await;
        assert_eq!(run.status, 200, "{}", run.text());
        let run = run.json();
        assert_eq!(run["report"]["domain"], "change.test");
        assert!(run["report"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "dmarc.policy_none"));

        let listed = server.get(&format!("{path}?limit=5"), token).await.json();
        assert_eq!(listed["checks"].as_array().unwrap().len(), 1);
        assert_eq!(listed["checks"][0]["spf"]["lookups"], 0);

        // Not monitored, not a name, out of range: said so.
        let unknown = server.get("/api/v1/domains/other.test/checks", token).await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/lookup/other.test"));
        assert_eq!(
            server
                .get("/api/v1/domains/not%20a%20name/checks", token)
                .await
                .status,
            400
        );
        assert_eq!(
            server.get(&format!("{path}?limit=0"), token).await.status,
            400
        );

        // Any domain can be looked up (nothing stored), a few times a minute.
        let lookup = server.get("/api/v1/lookup/unmonitored.test", token).await;
        assert_eq!(lookup.status, 200, "{}", lookup.text());
        assert!(lookup.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "dmarc.missing"));
        assert!(posture::checks_of(store.db(), "unmonitored.test", 5)
            .await
            .unwrap()
            .is_empty());
        server.get("/api/v1/lookup/unmonitored.test", token).await;
        server.get("/api/v1/lookup/unmonitored.test", token).await;
        let limited = server.get("/api/v1/lookup/unmonitored.test", token).await;
        assert_eq!(limited.status, 429);
        assert!(limited.json()["error"]
            .as_str()
            .unwrap()
            .contains("dns.lookups_per_minute"));

        let document = server.get("/api/v1/openapi.json", None).await.json();
        for (route, method) in [
            ("/api/v1/domains/{domain}/checks", "get"),
            ("/api/v1/domains/{domain}/checks", "post"),
            ("/api/v1/lookup/{domain}", "get"),
        ] {
            assert!(
                document["paths"][route][method].is_object(),
                "{route} {method}"
            );
        }
        store.close().await;
    }
}

#[tokio::test]
async fn selectors_come_from_recent_reports_in_the_domains_own_name() {
    for (_dir, store) in common::db::backends().await {
        // A report of yesterday: each record signed by example.com with
        // selector1 and by the sender's own domain with s0..s6.
        let mut report = dmarcd::testing::aggregate_report(20);
        let yesterday = Utc::now().timestamp() - 86_400;
        report.metadata.begin = yesterday;
        report.metadata.end = yesterday + 86_399;
        dmarcd::inbox::Inbox::new(store.clone())
            .accept(
                report.to_xml().as_bytes(),
                &dmarcd::inbox::Envelope::import("recent.xml"),
            )
            .await
            .unwrap();
        dmarcd::worker::Worker::new(
            store.clone(),
            dmarcd::Limits::default(),
            "w",
            dmarcd::worker::WorkerConfig::default(),
        )
        .run_until_idle()
        .await
        .unwrap();
        let db = store.db();
        assert_eq!(
            posture::selectors_for(db, "example.com", 30, 10_000)
                .await
                .unwrap(),
            ["selector1"]
        );
        posture::add_selector(db, "example.com", "manual")
            .await
            .unwrap();
        assert_eq!(
            posture::selectors_for(db, "example.com", 30, 10_000)
                .await
                .unwrap(),
            ["manual", "selector1"]
        );
        // Reports older than the window are not read.
        assert_eq!(
            posture::selectors_for(db, "example.com", 0, 10_000)
                .await
                .unwrap(),
            ["manual"]
        );
    }
}
