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
        dmarcd::query::domains::add_domain(&store, "change.test")
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
        dmarcd::query::domains::add_domain(&store, "change.test")
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
