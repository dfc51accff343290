//! The finer alert rules, each on a fixture built to trigger it, on both
//! backends: failing volume and pass rate of one source, the domain's pass
//! rate below its median, the first TLS failures after a clean week, and
//! DNS records changed or broken (checked against the loopback DNS
//! server). Each fires once, reaches the mail and webhook sinks, and
//! resolves when its cause goes.

use std::sync::Arc;

use chrono::{Duration, Utc};
use dmarcd::alerts::{Alert, RuleKind};
use dmarcd::dns::{DnsConfig, PostureChecker, PostureSchedule, ReportTargets};
use dmarcd::store::alerts;
use dmarcd::store::Store;

use crate::alerts::{all_alerts, channels, of_kind, report, sender, subjects, DASHBOARD, DAY};
use crate::common;
use crate::common::data::ingest;
use crate::common::smtp_sink::SmtpSink;
use crate::common::webhook_server::WebhookServer;
use crate::common::zone_server::ZoneServer;

/// Switches on the default rule of `kind` (the finer ones start off).
async fn switch_on(store: &Store, kind: RuleKind) {
    let rule = alerts::rules(store.db())
        .await
        .unwrap()
        .into_iter()
        .find(|rule| rule.kind == kind && rule.domain.is_none())
        .unwrap();
    alerts::set_rule_enabled(store.db(), rule.id, true)
        .await
        .unwrap()
        .unwrap();
}

fn one(alerts: &[Alert], kind: RuleKind) -> Alert {
    let found = of_kind(alerts, kind);
    assert_eq!(found.len(), 1, "{kind:?}: {alerts:#?}");
    found[0].clone()
}

const STEADY: &str = "192.0.2.1";
const SLIPPING: &str = "198.51.100.7";

#[tokio::test]
async fn a_source_failing_and_pass_rates_below_their_median_fire_and_resolve() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let mut delivered = 0;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let store = store.with_dashboard_url(DASHBOARD);
        let hook = WebhookServer::start(&[200]).await;
        channels(&store, &hook, "ops@example.com").await;
        switch_on(&store, RuleKind::SourceFailingVolume).await;
        switch_on(&store, RuleKind::SourcePassRateDrop).await;

        // Four days where everything passes: the baseline.
        for n in 0..4i64 {
            let xml = report(
                "google.com",
                &format!("g-{n}"),
                DAY + n * 86_400,
                &[(STEADY, 100, true), (SLIPPING, 50, true)],
            );
            ingest(&store, &format!("g-{n}.xml"), xml.as_bytes()).await;
        }
        assert!(all_alerts(&store).await.is_empty(), "{backend}");

        // Day 5: the second source fails on all its 150 messages.
        let xml = report(
            "google.com",
            "g-4",
            DAY + 4 * 86_400,
            &[(STEADY, 100, true), (SLIPPING, 150, false)],
        );
        ingest(&store, "g-4.xml", xml.as_bytes()).await;
        let fired = all_alerts(&store).await;

        let source = one(&fired, RuleKind::SourceFailingVolume);
        assert_eq!(source.subject, SLIPPING, "{backend}");
        assert_eq!(
            source.title,
            "198.51.100.7 failing DMARC on 150 messages as alerts.test"
        );
        assert_eq!(
            source.link,
            "/aggregate?domain=alerts.test&source=198.51.100.7&result=fail&since=2024-12-05&until=2024-12-05"
        );
        let domain = one(&fired, RuleKind::PassRateDrop);
        assert_eq!(domain.subject, "");
        assert_eq!(
            domain.title, "DMARC pass rate of alerts.test fell to 40% (usually 100%)",
            "{backend}: 100 of 250 passed"
        );
        assert!(
            domain.detail.contains("of 250 messages"),
            "{}",
            domain.detail
        );
        let source_rate = one(&fired, RuleKind::SourcePassRateDrop);
        assert_eq!(source_rate.subject, SLIPPING);
        assert_eq!(
            source_rate.title,
            "DMARC pass rate of 198.51.100.7 as alerts.test fell to 0% (usually 100%)"
        );
        // The steady source is nobody's cause.
        assert!(fired.iter().all(|alert| alert.subject != STEADY));

        // Told by mail and webhook: these three and the domain's failing volume.
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now())
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.failed), (8, 0), "{backend}");
        delivered += 4;
        let mails = sink.wait_for(delivered).await;
        let told = subjects(&mails[delivered - 4..]);
        for title in [&source.title, &domain.title, &source_rate.title] {
            assert!(told.contains(title), "{backend}: {title} not in {told:?}");
        }
        let calls = hook.received();
        assert_eq!(calls.len(), 4);
        assert!(calls
            .iter()
            .any(|call| call.json()["details"]["kind"] == "pass_rate_drop"));

        // The source recovers; a week later every cause has gone.
        let xml = report(
            "google.com",
            "g-5",
            DAY + 5 * 86_400,
            &[(STEADY, 100, true), (SLIPPING, 50, true)],
        );
        ingest(&store, "g-5.xml", xml.as_bytes()).await;
        let summary = store
            .evaluate_alerts(Utc::now() + Duration::days(8))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.resolved, 4, "{backend}: {summary:?}");
        let after = all_alerts(&store).await;
        for kind in [
            RuleKind::SourceFailingVolume,
            RuleKind::PassRateDrop,
            RuleKind::SourcePassRateDrop,
        ] {
            let alert = one(&after, kind);
            assert_eq!(alert.state, "resolved", "{backend}: {alert:?}");
        }
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now() + Duration::days(8))
            .await
            .unwrap();
        // Four resolutions and the domain falling silent, to both channels.
        assert_eq!(pass.sent, 10, "{backend}");
        delivered += 5;
        assert_eq!(sink.wait_for(delivered).await.len(), delivered);
    }
}

/// A TLS report for DOMAIN from `org` over the day starting `day`.
fn tls_report(id: &str, day: i64, failed: u32) -> Vec<u8> {
    let date = |at: i64| {
        chrono::DateTime::from_timestamp(at, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let details = if failed == 0 {
        String::new()
    } else {
        format!(
            r#","failure-details":[{{"result-type":"certificate-expired","sending-mta-ip":"192.0.2.9","receiving-mx-hostname":"mx.alerts.test","failed-session-count":{failed}}}]"#
        )
    };
    format!(
        r#"{{"organization-name":"Google Inc.","date-range":{{"start-datetime":"{begin}","end-datetime":"{end}"}},"contact-info":"smtp-tls-reporting@google.com","report-id":"{id}","policies":[{{"policy":{{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx.alerts.test","max_age: 86400"],"policy-domain":"alerts.test","mx-host":["mx.alerts.test"]}},"summary":{{"total-successful-session-count":100,"total-failure-session-count":{failed}}}{details}}}]}}"#,
        begin = date(day),
        end = date(day + 86_399),
    )
    .into_bytes()
}

#[tokio::test]
async fn the_first_tls_failures_after_a_clean_week_fire_once() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let hook = WebhookServer::start(&[200]).await;
        channels(&store, &hook, "ops@example.com").await;
        switch_on(&store, RuleKind::TlsrptFirstFailure).await;
        let now = Utc::now();

        for n in 0..3i64 {
            let id = format!("clean-{n}");
            ingest(
                &store,
                &format!("{id}.json"),
                &tls_report(&id, DAY + n * 86_400, 0),
            )
            .await;
        }
        store.evaluate_alerts(now).await.unwrap().unwrap();
        assert!(all_alerts(&store).await.is_empty(), "{backend}");

        ingest(
            &store,
            "bad-3.json",
            &tls_report("bad-3", DAY + 3 * 86_400, 7),
        )
        .await;
        store
            .evaluate_alerts(now + Duration::minutes(1))
            .await
            .unwrap()
            .unwrap();
        let fired = all_alerts(&store).await;
        let first = one(&fired, RuleKind::TlsrptFirstFailure);
        assert_eq!(
            first.title, "First TLS failures delivering to alerts.test in 7 days",
            "{backend}"
        );
        assert!(
            first.detail.contains("7 failed sessions"),
            "{}",
            first.detail
        );
        assert_eq!(first.link, "/tls?domain=alerts.test");
        one(&fired, RuleKind::TlsrptFailure);

        // Failing again the next day is no longer a first failure.
        ingest(
            &store,
            "bad-4.json",
            &tls_report("bad-4", DAY + 4 * 86_400, 3),
        )
        .await;
        store
            .evaluate_alerts(now + Duration::minutes(2))
            .await
            .unwrap()
            .unwrap();
        let again = one(&all_alerts(&store).await, RuleKind::TlsrptFirstFailure);
        assert_eq!(again.occurrences, 1, "{backend}");
        let failing = one(&all_alerts(&store).await, RuleKind::TlsrptFailure);
        assert_eq!(failing.occurrences, 2, "{backend}");

        let before = sink.messages().len();
        let pass = sender(&store, sink.port)
            .deliver_due(now + Duration::minutes(3))
            .await
            .unwrap();
        assert_eq!(pass.sent, 4, "{backend}: two alerts, mail and webhook");
        assert!(hook
            .received()
            .iter()
            .any(|call| call.json()["title"] == first.title));
        let mails = sink.wait_for(before + 2).await;
        assert!(
            subjects(&mails[before..]).contains(&first.title),
            "{backend}"
        );

        let summary = store
            .evaluate_alerts(now + Duration::days(8))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.resolved, 2, "{backend}: {summary:?}");
    }
}

fn zone(domain: &str, policy: &str, extra_spf: bool) -> String {
    let mut zone = format!(
        "_dmarc.{domain}. TXT \"v=DMARC1; p={policy}; rua=mailto:dmarc@reports.dmarcd.test\"\n\
         {domain}._report._dmarc.reports.dmarcd.test. TXT \"v=DMARC1\"\n\
         {domain}. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
    );
    if extra_spf {
        zone.push_str(&format!(
            "{domain}. TXT \"v=spf1 include:mail.example.net -all\"\n"
        ));
    }
    zone
}

fn checker(store: &Store, dns: &ZoneServer) -> PostureSchedule {
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

#[tokio::test]
async fn a_dns_record_changed_or_broken_fires_and_resolves_with_the_next_checks() {
    const NAME: &str = "dnsalert.test";
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let hook = WebhookServer::start(&[200]).await;
        channels(&store, &hook, "ops@example.com").await;
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, NAME, None)
            .await
            .unwrap();
        let now = Utc::now();
        let broken_spf = |alerts: &[Alert]| -> Vec<Alert> {
            of_kind(alerts, RuleKind::DnsBroken)
                .into_iter()
                .filter(|alert| alert.subject == "spf.multiple")
                .collect()
        };

        let healthy = ZoneServer::start(&zone(NAME, "none", false), &[]).await;
        checker(&store, &healthy).check_now(NAME).await.unwrap();
        store.evaluate_alerts(now).await.unwrap().unwrap();
        let first = all_alerts(&store).await;
        assert!(
            of_kind(&first, RuleKind::DnsChanged).is_empty(),
            "{backend}"
        );
        assert!(broken_spf(&first).is_empty());

        // The owner tightens DMARC and, by mistake, publishes a second SPF.
        let changed = ZoneServer::start(&zone(NAME, "reject", true), &[]).await;
        checker(&store, &changed).check_now(NAME).await.unwrap();
        store
            .evaluate_alerts(now + Duration::minutes(1))
            .await
            .unwrap()
            .unwrap();
        let fired = all_alerts(&store).await;
        let dmarc: Vec<Alert> = of_kind(&fired, RuleKind::DnsChanged)
            .into_iter()
            .filter(|alert| alert.subject == format!("dmarc _dmarc.{NAME} TXT"))
            .collect();
        assert_eq!(dmarc.len(), 1, "{backend}: {fired:#?}");
        assert_eq!(dmarc[0].title, "DMARC record of dnsalert.test changed");
        assert_eq!(
            dmarc[0].detail,
            "_dmarc.dnsalert.test TXT changed from \"v=DMARC1; p=none; rua=mailto:dmarc@reports.dmarcd.test\" \
             to \"v=DMARC1; p=reject; rua=mailto:dmarc@reports.dmarcd.test\"."
        );
        assert_eq!(dmarc[0].link, "/domains/dnsalert.test");
        let broken = broken_spf(&fired);
        assert_eq!(broken.len(), 1, "{backend}: {fired:#?}");
        assert_eq!(broken[0].state, "open");
        assert_eq!(broken[0].title, "SPF record of dnsalert.test broken");

        // Read once: evaluating again finds nothing new.
        let summary = store
            .evaluate_alerts(now + Duration::minutes(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((summary.opened, summary.refreshed), (0, 0), "{backend}");

        // The extra SPF goes: the broken record resolves at the next check.
        let fixed = ZoneServer::start(&zone(NAME, "reject", false), &[]).await;
        checker(&store, &fixed).check_now(NAME).await.unwrap();
        store
            .evaluate_alerts(now + Duration::minutes(3))
            .await
            .unwrap()
            .unwrap();
        let after = all_alerts(&store).await;
        let broken = broken_spf(&after);
        assert_eq!(broken[0].state, "resolved", "{backend}: {after:#?}");

        let before = sink.messages().len();
        let pass = sender(&store, sink.port)
            .deliver_due(now + Duration::minutes(4))
            .await
            .unwrap();
        let mails = sink.wait_for(before + 3).await;
        let told = subjects(&mails[before..]);
        assert!(
            told.contains(&"DMARC record of dnsalert.test changed".to_string())
                && told.contains(&"Resolved: SPF record of dnsalert.test broken".to_string()),
            "{backend}: {told:?}"
        );
        let titles: Vec<String> = hook
            .received()
            .iter()
            .map(|call| call.json()["title"].as_str().unwrap().to_string())
            .collect();
        assert!(pass.sent >= 6, "{backend}: {titles:?}");
        assert!(titles.contains(&"DMARC record of dnsalert.test changed".to_string()));
        assert!(titles.contains(&"Resolved: SPF record of dnsalert.test broken".to_string()));

        // A week without changes: the change alerts have gone too.
        store
            .evaluate_alerts(now + Duration::days(8))
            .await
            .unwrap()
            .unwrap();
        assert!(of_kind(&all_alerts(&store).await, RuleKind::DnsChanged)
            .iter()
            .all(|alert| alert.state == "resolved"));
    }
}

#[tokio::test]
async fn a_new_source_rule_for_suspicious_sources_leaves_out_authorized_and_approved_ones() {
    use dmarcd::senders::{Action, Class, MatchKind};
    use dmarcd::store::alerts::NewRule;
    use dmarcd::store::approvals::{self, NewApproval};
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let suspicious_only = alerts::add_rule(
            store.db(),
            &NewRule {
                domain: Some("alerts.test".to_string()),
                kind: RuleKind::NewSource,
                threshold: 1,
                window_days: 7,
                cooldown_minutes: 360,
                channels: Vec::new(),
                classes: vec![Class::Suspicious],
                created_by: "test".to_string(),
            },
        )
        .await
        .unwrap();
        approvals::add(
            store.db(),
            &NewApproval {
                domain: Some("alerts.test".to_string()),
                action: Action::Approve,
                match_kind: MatchKind::Cidr,
                value: "203.0.113.0/24".to_string(),
                note: "our relay".to_string(),
                created_by: "alice".to_string(),
            },
        )
        .await
        .unwrap();

        let first = report("google.com", "g-1", DAY, &[(STEADY, 50, true)]);
        ingest(&store, "1.xml", first.as_bytes()).await;
        // Three new sources: one passing DMARC, one failing from the
        // approved block, one failing and unknown.
        let second = report(
            "google.com",
            "g-2",
            DAY + 86_400,
            &[
                (STEADY, 50, true),
                ("198.51.100.20", 30, true),
                ("203.0.113.5", 30, false),
                ("198.51.100.66", 30, false),
            ],
        );
        ingest(&store, "2.xml", second.as_bytes()).await;
        let new = of_kind(&all_alerts(&store).await, RuleKind::NewSource);
        let every: Vec<&str> = new
            .iter()
            .filter(|alert| alert.rule_id != suspicious_only.id)
            .map(|alert| alert.subject.as_str())
            .collect();
        assert_eq!(
            every.len(),
            3,
            "{backend}: the default rule names each: {new:#?}"
        );
        let only: Vec<&Alert> = new
            .iter()
            .filter(|alert| alert.rule_id == suspicious_only.id)
            .collect();
        assert_eq!(only.len(), 1, "{backend}: {new:#?}");
        assert_eq!(only[0].subject, "198.51.100.66");
        assert!(
            only[0]
                .detail
                .ends_with("Its class as first reported: Suspicious / unknown."),
            "{}",
            only[0].detail
        );
        let approved = new
            .iter()
            .find(|alert| alert.subject == "203.0.113.5")
            .unwrap();
        assert!(
            approved
                .detail
                .ends_with("Its class as first reported: Authorized."),
            "{backend}: classed for every rule once any rule asks: {}",
            approved.detail
        );
    }
}

#[tokio::test]
async fn several_rules_firing_in_one_batch_are_opened_refreshed_and_reopened_together() {
    use dmarcd::store::alerts::NewRule;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let mut ids = Vec::new();
        for threshold in [10, 20, 30] {
            let rule = alerts::add_rule(
                store.db(),
                &NewRule {
                    domain: Some("alerts.test".to_string()),
                    kind: RuleKind::FailingVolume,
                    threshold,
                    window_days: 1,
                    cooldown_minutes: 360,
                    channels: Vec::new(),
                    classes: Vec::new(),
                    created_by: "test".to_string(),
                },
            )
            .await
            .unwrap();
            ids.push(rule.id);
        }
        let ours = |alerts: Vec<Alert>| -> Vec<Alert> {
            let mut ours: Vec<Alert> = alerts
                .into_iter()
                .filter(|alert| ids.contains(&alert.rule_id))
                .collect();
            ours.sort_by_key(|alert| alert.rule_id);
            ours
        };
        let first = report("google.com", "g-1", DAY, &[(SLIPPING, 40, false)]);
        ingest(&store, "1.xml", first.as_bytes()).await;
        let opened = ours(all_alerts(&store).await);
        assert_eq!(opened.len(), 3, "{backend}: {opened:#?}");
        assert!(opened
            .iter()
            .all(|a| a.state == "open" && a.occurrences == 1));

        // The same day again: all three refreshed at once, details follow.
        let second = report("yahoo.com", "y-1", DAY, &[(SLIPPING, 5, false)]);
        ingest(&store, "2.xml", second.as_bytes()).await;
        let refreshed = ours(all_alerts(&store).await);
        assert_eq!(refreshed.len(), 3, "{backend}");
        for alert in &refreshed {
            assert_eq!(alert.occurrences, 2, "{backend}: {alert:?}");
            assert!(alert.detail.starts_with("45 messages"), "{}", alert.detail);
        }

        // One resolved by hand fires again within its cooldown: reopened
        // beside the two refreshed.
        alerts::resolve_by_hand(store.db(), refreshed[1].id, "alice", Utc::now(), DASHBOARD)
            .await
            .unwrap()
            .unwrap();
        let third = report("mail.ru", "m-1", DAY, &[(SLIPPING, 5, false)]);
        ingest(&store, "3.xml", third.as_bytes()).await;
        let after = ours(all_alerts(&store).await);
        assert_eq!(after.len(), 3, "{backend}: no second alert for a rule");
        for alert in &after {
            assert_eq!(
                (alert.state.as_str(), alert.occurrences),
                ("open", 3),
                "{backend}: {alert:?}"
            );
            assert!(alert.detail.starts_with("50 messages"), "{}", alert.detail);
        }
        assert_eq!(
            after[1].id, refreshed[1].id,
            "{backend}: the same alert reopened"
        );
        let metrics = dmarcd::metrics::render(&[]);
        assert!(
            metrics.contains("dmarcd_alerts_opened_total{kind=\"failing_volume\"}"),
            "{metrics}"
        );
    }
}
