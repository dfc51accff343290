//! Alert rules on both backends, through ingestion (the rollup applier
//! evaluates new sources and failing volume on each batch), the scheduled
//! evaluation on a test clock (failure and TLS reports, silence, causes
//! gone), the outbox to a real SMTP server and a real webhook server, the
//! API (in the OpenAPI document) and the Alerts page.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use dmarcd::alerts::{Alert, ChannelKind, RuleKind};
use dmarcd::outbox::{MailOutConfig, MailTls, OutboxConfig, OutboxSender, WebhookFormat};
use dmarcd::store::alerts::{self, NewChannel};
use dmarcd::store::Store;
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use serde_json::json;

use crate::common;
use crate::common::data::ingest;
use crate::common::http::Server;
use crate::common::smtp_sink::SmtpSink;
use crate::common::webhook_server::WebhookServer;

pub(crate) const DOMAIN: &str = "alerts.test";
pub(crate) const DASHBOARD: &str = "https://dmarc.example.com";

/// An aggregate report for DOMAIN from `org`, for the day starting
/// `day` (Unix time), with (source, messages, passes DMARC) rows.
pub(crate) fn report(org: &str, id: &str, day: i64, rows: &[(&str, u32, bool)]) -> String {
    let records: String = rows
        .iter()
        .map(|(ip, count, pass)| {
            let result = if *pass { "pass" } else { "fail" };
            format!(
                "<record><row><source_ip>{ip}</source_ip><count>{count}</count>\
                 <policy_evaluated><disposition>none</disposition><dkim>{result}</dkim><spf>{result}</spf></policy_evaluated></row>\
                 <identifiers><header_from>{DOMAIN}</header_from></identifiers>\
                 <auth_results><spf><domain>{DOMAIN}</domain><result>{result}</result></spf></auth_results></record>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>{org}</org_name>\
         <email>dmarc@{org}</email><report_id>{id}</report_id>\
         <date_range><begin>{day}</begin><end>{end}</end></date_range></report_metadata>\
         <policy_published><domain>{DOMAIN}</domain><p>none</p></policy_published>{records}</feedback>",
        end = day + 86_399
    )
}

pub(crate) async fn all_alerts(store: &Store) -> Vec<Alert> {
    alerts::list(store.db(), false, 1000).await.unwrap()
}

/// The subjects of delivered mail, in order.
pub(crate) fn subjects(mails: &[(serde_json::Value, Vec<u8>)]) -> Vec<String> {
    mails
        .iter()
        .map(|(_, raw)| {
            mail_parser::MessageParser::default()
                .parse(raw)
                .unwrap()
                .subject()
                .unwrap()
                .to_string()
        })
        .collect()
}

pub(crate) fn of_kind(alerts: &[Alert], kind: RuleKind) -> Vec<Alert> {
    alerts.iter().filter(|a| a.kind == kind).cloned().collect()
}

pub(crate) fn sender(store: &Store, smtp_port: u16) -> OutboxSender {
    OutboxSender::new(
        store.clone(),
        &MailOutConfig {
            relay: "127.0.0.1".to_string(),
            port: smtp_port,
            tls: MailTls::None,
            from: "dmarcd@dmarc.example.com".to_string(),
            ..MailOutConfig::default()
        },
        &OutboxConfig::default(),
        "test".to_string(),
    )
    .unwrap()
}

pub(crate) async fn channels(store: &Store, hook: &WebhookServer, to: &str) {
    alerts::add_channel(
        store.db(),
        &NewChannel {
            name: "ops mail".to_string(),
            kind: ChannelKind::Email,
            target: to.to_string(),
            format: WebhookFormat::Json,
            secret: None,
            created_by: "test".to_string(),
        },
    )
    .await
    .unwrap();
    alerts::add_channel(
        store.db(),
        &NewChannel {
            name: "chat".to_string(),
            kind: ChannelKind::Webhook,
            target: hook.url(),
            format: WebhookFormat::Json,
            secret: Some("k".to_string()),
            created_by: "test".to_string(),
        },
    )
    .await
    .unwrap();
}

pub(crate) const DAY: i64 = 1_733_011_200; // 2024-12-01

#[tokio::test]
async fn new_sources_and_failing_volume_fire_once_reach_mail_and_webhook_and_resolve() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let mut delivered_mail = 0;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let store = store.with_dashboard_url(DASHBOARD);
        let hook = WebhookServer::start(&[200]).await;
        channels(&store, &hook, "ops@example.com").await;

        // The domain's first report is its baseline: no source is "new".
        let first = report("google.com", "g-1", DAY, &[("192.0.2.1", 50, true)]);
        ingest(&store, "1.xml", first.as_bytes()).await;
        assert!(all_alerts(&store).await.is_empty(), "{backend}");

        // A new source, failing: 150 failing messages pass the default 100.
        let second = report(
            "google.com",
            "g-2",
            DAY + 86_400,
            &[("192.0.2.1", 50, true), ("203.0.113.66", 150, false)],
        );
        ingest(&store, "2.xml", second.as_bytes()).await;
        let fired = all_alerts(&store).await;
        let new = of_kind(&fired, RuleKind::NewSource);
        assert_eq!(new.len(), 1, "{backend}: {fired:?}");
        assert_eq!(new[0].subject, "203.0.113.66");
        assert_eq!(
            new[0].link,
            "/aggregate?domain=alerts.test&source=203.0.113.66"
        );
        let failing = of_kind(&fired, RuleKind::FailingVolume);
        assert_eq!(failing.len(), 1, "{backend}: {fired:?}");
        assert_eq!(
            failing[0].title,
            "150 messages failing DMARC as alerts.test"
        );
        assert_eq!(
            failing[0].link,
            "/aggregate?domain=alerts.test&result=fail&since=2024-12-02&until=2024-12-02"
        );

        // The same causes again (another reporter): refreshed, not new.
        let third = report(
            "yahoo.com",
            "y-1",
            DAY + 86_400,
            &[("203.0.113.66", 10, false)],
        );
        ingest(&store, "3.xml", third.as_bytes()).await;
        let again = all_alerts(&store).await;
        assert_eq!(again.len(), 2, "{backend}: {again:?}");
        let failing = of_kind(&again, RuleKind::FailingVolume);
        assert_eq!(failing[0].occurrences, 2);
        assert_eq!(
            failing[0].title, "150 messages failing DMARC as alerts.test",
            "the title stays; the detail follows"
        );
        assert!(
            failing[0].detail.starts_with("160 messages"),
            "{:?}",
            failing[0]
        );

        // Two alerts × two channels, sent through the outbox.
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now())
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.failed), (4, 0), "{backend}");
        delivered_mail += 2;
        let mails = sink.wait_for(delivered_mail).await;
        let subjects = subjects(&mails[delivered_mail - 2..]);
        assert!(
            subjects.contains(&"New source sending as alerts.test: 203.0.113.66".to_string()),
            "{subjects:?}"
        );
        assert!(subjects.contains(&"150 messages failing DMARC as alerts.test".to_string()));
        let calls = hook.received();
        assert_eq!(calls.len(), 2);
        let opened: Vec<serde_json::Value> = calls.iter().map(|call| call.json()).collect();
        assert!(opened.iter().all(|body| body["event"] == "alert.opened"));
        assert!(opened.iter().any(|body| body["link"]
            == "https://dmarc.example.com/aggregate?domain=alerts.test&source=203.0.113.66"));

        // Resolved by hand, then fired again within the cooldown: reopened,
        // nobody told twice.
        let failing_id = failing[0].id;
        alerts::resolve_by_hand(store.db(), failing_id, "alice", Utc::now(), DASHBOARD)
            .await
            .unwrap()
            .unwrap();
        let fourth = report(
            "yahoo.com",
            "y-2",
            DAY + 86_400,
            &[("203.0.113.66", 5, false)],
        );
        ingest(&store, "4.xml", fourth.as_bytes()).await;
        let reopened = alerts::get(store.db(), failing_id).await.unwrap().unwrap();
        assert_eq!(reopened.state, "open", "{backend}");
        assert_eq!(reopened.occurrences, 3);
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now())
            .await
            .unwrap();
        assert_eq!(pass.sent, 2, "{backend}: only the resolution was told");
        delivered_mail += 1;
        let calls = hook.received();
        assert_eq!(calls[2].json()["event"], "alert.resolved");

        // A week and a day without them firing: both causes have gone.
        let later = Utc::now() + Duration::days(8);
        let summary = store.evaluate_alerts(later).await.unwrap().unwrap();
        assert_eq!(summary.resolved, 2, "{backend}: {summary:?}");
        let after = all_alerts(&store).await;
        for kind in [RuleKind::NewSource, RuleKind::FailingVolume] {
            let alert = &of_kind(&after, kind)[0];
            assert_eq!(alert.state, "resolved", "{backend}: {alert:?}");
            assert_eq!(alert.resolved_by, None);
        }
        // Eight days without a report is news too.
        let silent = of_kind(&after, RuleKind::DomainSilent);
        assert_eq!(silent.len(), 1, "{backend}: {after:?}");
        assert_eq!(silent[0].state, "open");
        let pass = sender(&store, sink.port).deliver_due(later).await.unwrap();
        assert_eq!(pass.sent, 6, "{backend}");
        delivered_mail += 3;
        assert_eq!(sink.wait_for(delivered_mail).await.len(), delivered_mail);
    }
}

/// Sets when the reports of `org` numbered `id` arrived (the fixture's
/// history of arrivals).
async fn arrived(store: &Store, id: &str, at: DateTime<Utc>) {
    let db = store.db();
    let changed = db
        .execute(&db.statement(
            "UPDATE aggregate_reports SET created_at = $1 WHERE report_id = $2",
            vec![at.into(), id.into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn a_daily_reporter_and_the_domain_going_silent_fire_and_resolve_when_reports_return() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let hook = WebhookServer::start(&[200]).await;
        channels(&store, &hook, "ops@example.com").await;
        let start = Utc::now().trunc_subsecs(0);
        // Google reported every day for a week, the last a day ago;
        // Yahoo once, ten days ago (not daily: its silence is no news).
        for n in 0..7i64 {
            let id = format!("g-{n}");
            let xml = report(
                "google.com",
                &id,
                DAY + n * 86_400,
                &[("192.0.2.1", 5, true)],
            );
            ingest(&store, &format!("{id}.xml"), xml.as_bytes()).await;
            arrived(&store, &id, start - Duration::days(7 - n)).await;
        }
        let xml = report("yahoo.com", "y-0", DAY, &[("192.0.2.1", 5, true)]);
        ingest(&store, "y.xml", xml.as_bytes()).await;
        arrived(&store, "y-0", start - Duration::days(10)).await;

        // Two days after the last report: quiet, but not 3 days yet.
        let summary = store
            .evaluate_alerts(start + Duration::days(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.opened, 0, "{backend}");

        let silent_at = start + Duration::days(3);
        store.evaluate_alerts(silent_at).await.unwrap().unwrap();
        let fired = all_alerts(&store).await;
        let domain = of_kind(&fired, RuleKind::DomainSilent);
        assert_eq!(domain.len(), 1, "{backend}: {fired:?}");
        assert_eq!(domain[0].title, "No reports for alerts.test in 4 days");
        let reporter = of_kind(&fired, RuleKind::ReporterSilent);
        assert_eq!(reporter.len(), 1, "{backend}: {fired:?}");
        assert_eq!(reporter[0].subject, "google.com");
        assert_eq!(
            reporter[0].title,
            "google.com stopped reporting alerts.test"
        );
        assert_eq!(
            reporter[0].link,
            "/aggregate?domain=alerts.test&org=google.com"
        );
        // Evaluated again: the same alerts, refreshed.
        store
            .evaluate_alerts(silent_at + Duration::hours(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all_alerts(&store).await.len(), 2);

        // Google reports again: both resolve.
        let xml = report(
            "google.com",
            "g-7",
            DAY + 7 * 86_400,
            &[("192.0.2.1", 5, true)],
        );
        ingest(&store, "g-7.xml", xml.as_bytes()).await;
        arrived(&store, "g-7", silent_at + Duration::hours(2)).await;
        let summary = store
            .evaluate_alerts(silent_at + Duration::hours(3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.resolved, 2, "{backend}: {summary:?}");
        assert!(all_alerts(&store)
            .await
            .iter()
            .all(|alert| alert.state == "resolved"));

        // Two opened and two resolved, by mail and webhook.
        let before = sink.messages().len();
        let pass = sender(&store, sink.port)
            .deliver_due(silent_at + Duration::hours(4))
            .await
            .unwrap();
        assert_eq!(pass.sent, 8, "{backend}");
        let mails = sink.wait_for(before + 4).await;
        let told = subjects(&mails[before..]);
        assert!(
            told.contains(&"google.com stopped reporting alerts.test".to_string())
                && told.contains(&"Resolved: google.com stopped reporting alerts.test".to_string()),
            "{backend}: {told:?}"
        );
        assert_eq!(hook.received().len(), 4);
    }
}

#[tokio::test]
async fn failure_reports_and_tls_failures_are_batched_into_one_alert_per_domain() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let hook = WebhookServer::start(&[200]).await;
        alerts::add_channel(
            store.db(),
            &NewChannel {
                name: "ops mail".to_string(),
                kind: ChannelKind::Email,
                target: "ops@example.com".to_string(),
                format: WebhookFormat::Json,
                secret: None,
                created_by: "test".to_string(),
            },
        )
        .await
        .unwrap();
        alerts::add_channel(
            store.db(),
            &NewChannel {
                name: "chat".to_string(),
                kind: ChannelKind::Webhook,
                target: hook.url(),
                format: WebhookFormat::Slack,
                secret: None,
                created_by: "test".to_string(),
            },
        )
        .await
        .unwrap();
        for (dir, name) in [
            ("failure", "dmarc_ruf_report_linkedin.eml"),
            ("smtp_tls", "rfc8460.json"),
        ] {
            let raw = common::corpus(&format!("{dir}/{name}"));
            ingest(&store, name, &raw).await;
        }
        let now = Utc::now();
        store.evaluate_alerts(now).await.unwrap().unwrap();
        let fired = all_alerts(&store).await;
        let failures = of_kind(&fired, RuleKind::FailureReport);
        assert_eq!(failures.len(), 1, "{backend}: {fired:?}");
        assert!(
            failures[0].link.starts_with("/failures?domain="),
            "{:?}",
            failures[0]
        );
        let tls = of_kind(&fired, RuleKind::TlsrptFailure);
        assert_eq!(tls.len(), 1, "{backend}: {fired:?}");
        assert!(tls[0].link.starts_with("/tls?domain="), "{:?}", tls[0]);
        assert!(tls[0].detail.contains("failed session"), "{:?}", tls[0]);

        // Read once: the next pass finds nothing new.
        let summary = store
            .evaluate_alerts(now + Duration::minutes(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((summary.opened, summary.refreshed), (0, 0), "{backend}");

        let before = sink.messages().len();
        let pass = sender(&store, sink.port).deliver_due(now).await.unwrap();
        assert_eq!(pass.sent, 4, "{backend}: two alerts, mail and webhook");
        let mails = sink.wait_for(before + 2).await;
        let told = subjects(&mails[before..]);
        assert!(
            told.iter()
                .any(|t| t.starts_with("New failure reports for "))
                && told
                    .iter()
                    .any(|t| t.starts_with("TLS failures delivering to ")),
            "{backend}: {told:?}"
        );
        let texts: Vec<String> = hook
            .received()
            .iter()
            .map(|call| call.json()["text"].as_str().unwrap().to_string())
            .collect();
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("*New failure reports for ")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("*TLS failures delivering to ")),
            "{texts:?}"
        );

        let summary = store
            .evaluate_alerts(now + Duration::days(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.resolved, 2, "{backend}");
    }
}

#[tokio::test]
async fn rules_and_channels_are_managed_over_the_api_and_the_page() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let server = Server::start_with_state(AppState::new(
            store.clone(),
            WebConfig::default(),
            Limits::default(),
        ))
        .await;
        let token = server.state.accounts.create_token("ops").await.unwrap();
        let post = |path: &'static str, body: serde_json::Value| {
            let server = &server;
            let token = token.clone();
            async move {
                server
                    .request(
                        "POST",
                        path,
                        Some(&token),
                        Some("application/json"),
                        body.to_string().into_bytes(),
                        &[],
                    )
                    .await
            }
        };
        // Every domain starts with the default rules.
        let rules = server.get("/api/v1/alert-rules", Some(&token)).await.json();
        let kinds: Vec<&str> = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| rule["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "new_source",
                "failing_volume",
                "failure_report",
                "tlsrpt_failure",
                "domain_silent",
                "reporter_silent",
                "pass_rate_drop",
                "dns_changed",
                "dns_broken",
                "source_failing_volume",
                "source_pass_rate_drop",
                "tlsrpt_first_failure"
            ],
            "{backend}"
        );
        // The finer rules start switched off (the domain-wide ones tell
        // of the same causes).
        let off: Vec<&str> = rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["enabled"] == false)
            .map(|rule| rule["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            off,
            [
                "source_failing_volume",
                "source_pass_rate_drop",
                "tlsrpt_first_failure"
            ]
        );
        assert!(rules
            .as_array()
            .unwrap()
            .iter()
            .all(|rule| rule["domain"].is_null()));

        let bad = post(
            "/api/v1/alert-channels",
            json!({"name": "x", "kind": "webhook", "target": "http://hooks.example.com/x"}),
        )
        .await;
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert!(bad.text().contains("https://"), "{}", bad.text());
        let hook = WebhookServer::start(&[200]).await;
        let created = post(
            "/api/v1/alert-channels",
            json!({"name": "chat", "kind": "webhook", "target": hook.url(), "format": "teams", "secret": "s"}),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let channel = created.json();
        assert_eq!(channel["signed"], true);
        assert!(channel.get("secret").is_none(), "the secret never leaves");
        let id = channel["id"].as_i64().unwrap();

        let rule = post(
            "/api/v1/alert-rules",
            json!({"domain": "Example.COM", "kind": "failing_volume", "threshold": 10, "channels": [id]}),
        )
        .await;
        assert_eq!(rule.status, 201, "{}", rule.text());
        let rule = rule.json();
        assert_eq!(rule["domain"], "example.com");
        assert_eq!(rule["window_days"], 1);
        let missing = post(
            "/api/v1/alert-rules",
            json!({"kind": "new_source", "channels": [999]}),
        )
        .await;
        assert_eq!(missing.status, 404, "{}", missing.text());
        let classed = post(
            "/api/v1/alert-rules",
            json!({"kind": "new_source", "classes": ["suspicious", "misconfigured", "suspicious"]}),
        )
        .await;
        assert_eq!(classed.status, 201, "{}", classed.text());
        assert_eq!(
            classed.json()["classes"],
            json!(["misconfigured", "suspicious"])
        );
        let unclassed = post(
            "/api/v1/alert-rules",
            json!({"kind": "pass_rate_drop", "classes": ["suspicious"]}),
        )
        .await;
        assert_eq!(unclassed.json()["classes"], json!([]), "new_source only");
        assert_eq!(unclassed.json()["threshold"], 15);
        let not_a_class = post(
            "/api/v1/alert-rules",
            json!({"kind": "new_source", "classes": ["evil"]}),
        )
        .await;
        assert_eq!(not_a_class.status, 400, "{}", not_a_class.text());

        // Switched off and on again.
        let rule_id = rule["id"].as_i64().unwrap();
        let patch = |id: i64, body: serde_json::Value| {
            let server = &server;
            let token = token.clone();
            async move {
                server
                    .request(
                        "PATCH",
                        &format!("/api/v1/alert-rules/{id}"),
                        Some(&token),
                        Some("application/json"),
                        body.to_string().into_bytes(),
                        &[],
                    )
                    .await
            }
        };
        let off = patch(rule_id, json!({"enabled": false})).await;
        assert_eq!(off.status, 200, "{}", off.text());
        assert_eq!(off.json()["enabled"], false);
        let stored = alerts::rules(store.db()).await.unwrap();
        assert!(!stored.iter().find(|r| r.id == rule_id).unwrap().enabled);
        assert_eq!(
            patch(rule_id, json!({"enabled": true})).await.json()["enabled"],
            true
        );
        assert_eq!(patch(99_999, json!({"enabled": true})).await.status, 404);
        assert_eq!(patch(rule_id, json!({"enabled": "yes"})).await.status, 400);

        let test = server
            .request(
                "POST",
                &format!("/api/v1/alert-channels/{id}/test"),
                Some(&token),
                None,
                Vec::new(),
                &[],
            )
            .await;
        assert_eq!(test.status, 202, "{}", test.text());
        let pass = sender(&store, 9).deliver_due(Utc::now()).await.unwrap();
        assert_eq!(pass.sent, 1);
        assert_eq!(hook.received()[0].json()["type"], "message");

        let document = server.get("/api/v1/openapi.json", None).await.json();
        for path in [
            "/api/v1/alerts",
            "/api/v1/alerts/{id}/resolve",
            "/api/v1/alert-rules",
            "/api/v1/alert-rules/{id}",
            "/api/v1/alert-channels",
            "/api/v1/alert-channels/{id}",
            "/api/v1/alert-channels/{id}/test",
        ] {
            assert!(
                document["paths"].get(path).is_some(),
                "{path} is not documented"
            );
        }
        assert!(
            document["paths"]["/api/v1/alert-rules/{id}"]
                .get("patch")
                .is_some(),
            "switching a rule is documented"
        );

        // The page: an admin adds an email channel and a rule, sees them.
        server
            .state
            .accounts
            .add_user("alice", "correct horse battery", "admin")
            .await
            .unwrap();
        let alice = crate::dashboard::sign_in(&server, "alice", "correct horse battery")
            .await
            .unwrap();
        let added = alice
            .post(
                &server,
                "/alerts/channels",
                &[
                    ("csrf", &alice.csrf),
                    ("name", "postmasters"),
                    ("kind", "email"),
                    ("target", "pm@example.com, ops@example.com"),
                    ("format", "json"),
                    ("secret", ""),
                ],
            )
            .await;
        assert_eq!(added.status, 303, "{}", added.text());
        let added = alice
            .post(
                &server,
                "/alerts/rules",
                &[
                    ("csrf", &alice.csrf),
                    ("kind", "domain_silent"),
                    ("domain", "example.org"),
                    ("threshold", ""),
                    ("window_days", "5"),
                    ("channel", ""),
                ],
            )
            .await;
        assert_eq!(added.status, 303, "{}", added.text());
        let added = alice
            .post(
                &server,
                "/alerts/rules",
                &[
                    ("csrf", &alice.csrf),
                    ("kind", "new_source"),
                    ("domain", ""),
                    ("threshold", ""),
                    ("window_days", ""),
                    ("classes", "suspicious+misconfigured"),
                    ("channel", ""),
                ],
            )
            .await;
        assert_eq!(added.status, 303, "{}", added.text());
        let page = alice.get(&server, "/alerts").await;
        assert_eq!(page.status, 200);
        let text = page.text();
        assert!(
            text.contains("pm@example.com, ops@example.com"),
            "{backend}"
        );
        assert!(text.contains("example.org"));
        assert!(
            text.contains("(only misconfigured, suspicious / unknown)"),
            "{backend}"
        );
        assert!(text.contains("webhook (teams, signed)"));
        assert!(text.contains("No alert has fired yet."));

        // The page switches a rule off.
        let switched = alice
            .post(
                &server,
                "/alerts",
                &[
                    ("csrf", &alice.csrf),
                    ("id", &rule_id.to_string()),
                    ("action", "disable_rule"),
                ],
            )
            .await;
        assert_eq!(switched.status, 303, "{}", switched.text());
        let stored = alerts::rules(store.db()).await.unwrap();
        assert!(!stored.iter().find(|r| r.id == rule_id).unwrap().enabled);
        assert!(alice.get(&server, "/alerts").await.text().contains("(off)"));
    }
}
