//! Digests on both backends: a busy week and the quiet week after it,
//! made from reports stored as serve stores them and mailed through the
//! outbox and lettre to a real SMTP server on loopback (aiosmtpd), read
//! back as a mail client would; send times missed while "down" caught up
//! once by two nodes at once, and by the timer on start, on a test clock;
//! schedules managed over the API (in the OpenAPI document) and the page.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dmarcd::digests::{DigestSchedule, DigestsConfig, Frequency};
use dmarcd::dns::{Finding, PostureReport, RecordKind};
use dmarcd::outbox::{MailOutConfig, MailTls, OutboxConfig, OutboxSender};
use dmarcd::senders::SendersConfig;
use dmarcd::store::digests::{self, NewSchedule};
use dmarcd::store::{alerts, posture, OutboxEntry, Store};
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

use crate::common;
use crate::common::data::ingest;
use crate::common::http::Server;
use crate::common::smtp_sink::SmtpSink;

const DOMAIN: &str = "digest.test";
const DASHBOARD: &str = "https://dmarc.example.com";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// An aggregate report for DOMAIN from `org` for the UTC day starting at
/// `day`, with (source, messages, passes DMARC) rows.
fn report(org: &str, id: &str, day: &str, rows: &[(&str, u32, bool)]) -> String {
    let begin = at(&format!("{day}T00:00:00Z")).timestamp();
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
         <date_range><begin>{begin}</begin><end>{end}</end></date_range></report_metadata>\
         <policy_published><domain>{DOMAIN}</domain><p>none</p></policy_published>{records}</feedback>",
        end = begin + 86_399
    )
}

fn tls_report(day: &str, failed: u32) -> String {
    json!({
        "organization-name": "Example Receiver",
        "date-range": {"start-datetime": format!("{day}T00:00:00Z"), "end-datetime": format!("{day}T23:59:59Z")},
        "contact-info": "tlsrpt@receiver.example",
        "report-id": format!("tls-{day}"),
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": DOMAIN},
            "summary": {"total-successful-session-count": 90, "total-failure-session-count": failed},
            "failure-details": [{"result-type": "certificate-expired", "failed-session-count": failed}]
        }]
    })
    .to_string()
}

fn weekly(name: &str, to: &str, domains: &[&str]) -> NewSchedule {
    NewSchedule {
        name: name.to_string(),
        recipients: vec![to.to_string()],
        domains: domains.iter().map(|d| d.to_string()).collect(),
        frequency: Frequency::Weekly,
        time_zone: "Europe/Berlin".to_string(),
        hour: 8,
        weekday: Some("monday".to_string()),
        enabled: true,
    }
}

fn schedule_runner(store: &Store) -> DigestSchedule {
    DigestSchedule::new(
        store.clone(),
        &DigestsConfig::default(),
        &SendersConfig::default(),
    )
}

fn sender(store: &Store, smtp_port: u16) -> OutboxSender {
    OutboxSender::new(
        store.clone(),
        &MailOutConfig {
            relay: "127.0.0.1".to_string(),
            port: smtp_port,
            tls: MailTls::None,
            from: "dmarcd@dmarc.example.com".to_string(),
            timeout_seconds: 5,
            ..MailOutConfig::default()
        },
        &OutboxConfig::default(),
        "test".to_string(),
    )
    .unwrap()
}

async fn digest_rows(store: &Store) -> Vec<OutboxEntry> {
    let mut rows: Vec<OutboxEntry> = store
        .outbox_entries(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| {
            entry
                .dedup_key
                .as_deref()
                .is_some_and(|key| key.starts_with("digest:"))
        })
        .collect();
    rows.sort_by_key(|entry| entry.id);
    rows
}

/// The delivered message's subject, its parts' types, its text and HTML
/// bodies and its List-Unsubscribe header.
/// Form fields as the browser helper takes them.
fn as_refs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn read_mail(raw: &[u8]) -> (String, Vec<String>, String, String, String) {
    let message = MessageParser::default().parse(raw).unwrap();
    let content_type = message.content_type().unwrap();
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("multipart", Some("alternative"))
    );
    let parts = message
        .parts
        .iter()
        .skip(1)
        .map(|part| {
            let ct = part.content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect();
    (
        message.subject().unwrap().to_string(),
        parts,
        // Lines as written, whatever the transfer encoding made of their ends.
        message.body_text(0).unwrap().replace("\r\n", "\n"),
        message.body_html(0).unwrap().into_owned(),
        message
            .header_raw("List-Unsubscribe")
            .unwrap_or_default()
            .trim()
            .to_string(),
    )
}

#[tokio::test]
async fn a_busy_week_and_the_quiet_week_after_it_are_mailed_as_text_and_html() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let store = store.with_dashboard_url(DASHBOARD);
        // The week before: the baseline (400 messages, all passing).
        ingest(
            &store,
            "0.xml",
            report(
                "google.com",
                "g-0",
                "2026-02-24",
                &[("192.0.2.1", 400, true)],
            )
            .as_bytes(),
        )
        .await;
        // The busy week, 2026-03-02 to 03-08: a new source failing.
        ingest(
            &store,
            "1.xml",
            report(
                "google.com",
                "g-1",
                "2026-03-03",
                &[("192.0.2.1", 900, true), ("203.0.113.66", 300, false)],
            )
            .as_bytes(),
        )
        .await;
        ingest(
            &store,
            "2.xml",
            report("yahoo.com", "y-1", "2026-03-05", &[("192.0.2.1", 50, true)]).as_bytes(),
        )
        .await;
        ingest(&store, "t.json", tls_report("2026-03-04", 7).as_bytes()).await;
        // What the DNS check found.
        posture::save_check(
            store.db(),
            &PostureReport {
                domain: DOMAIN.to_string(),
                checked_at: at("2026-03-06T10:00:00Z"),
                grades: Vec::new(),
                findings: vec![Finding::error(
                    RecordKind::Dmarc,
                    "dmarc.policy_none",
                    "The DMARC policy is p=none: failing mail is delivered.",
                )],
                observations: Vec::new(),
                spf: None,
            },
        )
        .await
        .unwrap();
        let open: Vec<_> = alerts::list(store.db(), true, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|alert| alert.domain == DOMAIN)
            .collect();
        assert!(
            !open.is_empty(),
            "{backend}: the new source opened an alert"
        );

        let schedule = digests::add(
            store.db(),
            &weekly("postmasters", "pm@example.com", &[]),
            "test",
            at("2026-02-20T09:00:00Z"),
        )
        .await
        .unwrap();
        let runner = schedule_runner(&store);
        // Monday 2026-03-09, 08:00 in Berlin (CET) is 07:00 UTC.
        assert_eq!(
            runner.send_due(at("2026-03-09T06:59:00Z")).await.unwrap(),
            1,
            "{backend}: the Monday before, 2026-03-02, is due (the schedule is older)"
        );
        let rows = digest_rows(&store).await;
        assert_eq!(
            rows.last().unwrap().dedup_key.as_deref(),
            Some(format!("digest:{}:weekly:2026-02-23", schedule.id).as_str())
        );
        assert_eq!(
            runner.send_due(at("2026-03-09T07:00:00Z")).await.unwrap(),
            1,
            "{backend}"
        );
        assert_eq!(
            runner.send_due(at("2026-03-09T07:01:00Z")).await.unwrap(),
            0,
            "{backend}"
        );
        let before = sink.messages().len();
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now())
            .await
            .unwrap();
        assert_eq!(pass.sent, 2, "{backend}");
        let messages = sink.wait_for(before + 2).await;
        // Sent side by side: found by subject, not by order.
        let (envelope, raw) = messages[before..]
            .iter()
            .find(|(_, raw)| {
                MessageParser::default()
                    .parse(raw)
                    .and_then(|message| message.subject().map(|s| s.contains("2026-03-02 to")))
                    .unwrap_or(false)
            })
            .expect("the busy week's digest");
        assert_eq!(envelope["to"], json!(["pm@example.com"]));
        let (subject, parts, text, html, unsubscribe) = read_mail(raw);
        assert_eq!(
            subject, "Weekly DMARC digest, 2026-03-02 to 2026-03-08: 1,250 messages, 76.0% passed",
            "{backend}"
        );
        assert_eq!(parts, ["text/plain", "text/html"]);
        assert_eq!(unsubscribe, format!("<{DASHBOARD}/alerts/digests>"));
        // Totals against the week before (400), in both bodies.
        assert!(
            text.contains("Messages: 1,250 (+212% on the period before (400))"),
            "{backend}: {text}"
        );
        assert!(
            text.contains("Passed DMARC: 76.0% (before: 100.0%)"),
            "{text}"
        );
        assert!(text.contains("Failed DMARC: 300"), "{text}");
        assert!(text.contains("Reports: 2"), "{text}");
        assert!(
            html.contains(r#"<td class="messages">1,250</td>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<td class="pass-rate">76.0%</td>"#),
            "{html}"
        );
        // The new source, and the failing one with its class.
        assert!(
            text.contains("New sources (1):\n  - 203.0.113.66: 300 messages, 300 failing"),
            "{text}"
        );
        assert!(
            text.contains("  - 203.0.113.66 [Suspicious / unknown]: 300 of 300 failing."),
            "{text}"
        );
        assert!(
            html.contains(
                "<td>203.0.113.66</td><td style=\"padding-left: 1em;\">Suspicious / unknown</td>"
            ),
            "{html}"
        );
        // TLS-RPT failures by result type, open alerts, DNS findings.
        assert!(
            text.contains("TLS-RPT: 7 failed sessions, 90 successful; certificate-expired: 7"),
            "{text}"
        );
        assert!(text.contains("TLS-RPT failed sessions: 7"), "{text}");
        assert!(
            text.contains(&format!("Open alerts: {}", open.len())),
            "{text}"
        );
        for alert in &open {
            assert!(text.contains(&alert.title), "{}: {text}", alert.title);
            assert!(
                html.contains(&format!(
                    "<a href=\"{DASHBOARD}{}\">",
                    alert.link.replace('&', "&#38;")
                )),
                "{html}"
            );
        }
        assert!(
            text.contains("error: The DMARC policy is p=none: failing mail is delivered."),
            "{text}"
        );
        // Links to the period in the explorer and the senders page.
        let explorer =
            format!("{DASHBOARD}/aggregate?domain={DOMAIN}&since=2026-03-02&until=2026-03-08");
        assert!(
            text.contains(&format!("Open in dmarcd: {explorer}")),
            "{text}"
        );
        assert!(
            html.contains(&format!(
                "<a href=\"{}\">{DOMAIN}</a>",
                explorer.replace('&', "&#38;")
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!("<a href=\"{DASHBOARD}/senders?domain={DOMAIN}&#38;since=2026-03-02&#38;until=2026-03-08\">")),
            "{html}"
        );
        assert!(
            text.contains(&format!(
                "Change what you receive: {DASHBOARD}/alerts/digests"
            )),
            "{text}"
        );
        assert!(
            html.contains(&format!("href=\"{DASHBOARD}/alerts/digests\"")),
            "{html}"
        );

        // The week after: nothing arrived, and the digest says so.
        assert_eq!(
            runner.send_due(at("2026-03-16T07:00:00Z")).await.unwrap(),
            1,
            "{backend}"
        );
        let pass = sender(&store, sink.port)
            .deliver_due(Utc::now())
            .await
            .unwrap();
        assert_eq!(pass.sent, 1, "{backend}");
        let messages = sink.wait_for(before + 3).await;
        let (subject, parts, text, html, _) = read_mail(&messages[before + 2].1);
        assert_eq!(
            subject, "Weekly DMARC digest, 2026-03-09 to 2026-03-15: no reports received",
            "{backend}"
        );
        assert_eq!(parts, ["text/plain", "text/html"]);
        assert!(
            text.contains("No reports received: no aggregate report"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "== {DOMAIN} ==\nNo reports received (-100% on the period before (1,250))."
            )),
            "{text}"
        );
        assert!(
            text.contains("Messages: 0 (-100% on the period before (1,250))"),
            "{text}"
        );
        assert!(text.contains("Reports: 0"), "{text}");
        assert!(html.contains("No reports received."), "{html}");
        assert!(html.contains(r#"<td class="messages">0</td>"#), "{html}");
        store.close().await;
    }
}

#[tokio::test]
async fn send_times_missed_while_down_are_caught_up_once_by_two_nodes_and_by_the_timer() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let made = at("2026-02-20T09:00:00Z");
        let weekly = digests::add(
            store.db(),
            &weekly("weekly", "a@example.com", &[DOMAIN]),
            "t",
            made,
        )
        .await
        .unwrap();
        let mut daily_new = self::weekly("daily", "b@example.com", &[]);
        daily_new.frequency = Frequency::Daily;
        daily_new.weekday = None;
        daily_new.hour = 6;
        let daily = digests::add(store.db(), &daily_new, "t", made)
            .await
            .unwrap();
        let mut monthly_new = self::weekly("monthly", "c@example.com", &[]);
        monthly_new.frequency = Frequency::Monthly;
        monthly_new.weekday = None;
        monthly_new.time_zone = "UTC".to_string();
        monthly_new.hour = 0;
        let monthly = digests::add(store.db(), &monthly_new, "t", made)
            .await
            .unwrap();

        // Down from before the first send time to 2026-03-20 12:00 UTC:
        // weeks, days and a month of send times passed. Two nodes start
        // at once; each schedule's newest period is queued once.
        let down_until = at("2026-03-20T12:00:00Z");
        let (node_one, node_two) = (schedule_runner(&store), schedule_runner(&store));
        let (one, two) = tokio::join!(node_one.send_due(down_until), node_two.send_due(down_until));
        assert_eq!(one.unwrap() + two.unwrap(), 3, "{backend}");
        let keys: Vec<String> = digest_rows(&store)
            .await
            .into_iter()
            .filter_map(|row| row.dedup_key)
            .collect();
        let mut expected = vec![
            format!("digest:{}:weekly:2026-03-09", weekly.id),
            format!("digest:{}:daily:2026-03-19", daily.id),
            format!("digest:{}:monthly:2026-02-01", monthly.id),
        ];
        let mut sorted = keys.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "{backend}");
        assert_eq!(
            schedule_runner(&store)
                .send_due(down_until + chrono::Duration::hours(1))
                .await
                .unwrap(),
            0,
            "{backend}"
        );
        let stored = digests::schedule(store.db(), daily.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.last_period_start.unwrap().to_string(), "2026-03-19");

        // The timer in serve, on a test clock: it looks at once on start.
        let clock = Arc::new(AtomicI64::new(at("2026-03-21T12:00:00Z").timestamp()));
        let read = Arc::clone(&clock);
        let timer = schedule_runner(&store)
            .with_clock(move || DateTime::from_timestamp(read.load(Ordering::SeqCst), 0).unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(timer.run(stopped));
        let started = std::time::Instant::now();
        while digest_rows(&store).await.len() < 4 {
            assert!(
                started.elapsed().as_secs() < 10,
                "{backend}: the timer queued nothing"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Its next pass (one interval later) finds nothing new.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let rows = digest_rows(&store).await;
        assert_eq!(rows.len(), 4, "{backend}");
        assert_eq!(
            rows[3].dedup_key.as_deref(),
            Some(format!("digest:{}:daily:2026-03-20", daily.id).as_str())
        );
        store.close().await;
    }
}

#[tokio::test]
async fn digest_schedules_are_managed_over_the_api_and_the_page() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let server = Server::start_with_state(AppState::new(
            store.clone(),
            WebConfig::default(),
            Limits::default(),
        ))
        .await;
        let token = server.state.accounts.create_token("ops").await.unwrap();
        let send = |method: &'static str, path: String, body: Option<serde_json::Value>| {
            let server = &server;
            let token = token.clone();
            async move {
                let (content_type, bytes) = match body {
                    Some(body) => (Some("application/json"), body.to_string().into_bytes()),
                    None => (None, Vec::new()),
                };
                server
                    .request(method, &path, Some(&token), content_type, bytes, &[])
                    .await
            }
        };
        let bad = send(
            "POST",
            "/api/v1/digest-schedules".into(),
            Some(json!({"name": "x", "recipients": ["pm@example.com"], "frequency": "weekly", "time_zone": "Mars/Olympus"})),
        )
        .await;
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert!(bad.text().contains("time_zone"), "{}", bad.text());
        let bad = send(
            "POST",
            "/api/v1/digest-schedules".into(),
            Some(json!({"name": "x", "recipients": ["not an address"], "frequency": "daily"})),
        )
        .await;
        assert_eq!(bad.status, 400, "{}", bad.text());

        let created = send(
            "POST",
            "/api/v1/digest-schedules".into(),
            Some(json!({"name": "weekly", "recipients": ["pm@example.com"], "domains": ["Example.COM"],
                        "frequency": "weekly", "time_zone": "Europe/Berlin", "hour": 7, "weekday": "friday"})),
        )
        .await;
        assert_eq!(created.status, 201, "{backend}: {}", created.text());
        let schedule = created.json();
        assert_eq!(schedule["domains"], json!(["example.com"]));
        assert_eq!(schedule["weekday"], "friday");
        assert_eq!(schedule["created_by"], "token:ops");
        let next =
            DateTime::parse_from_rfc3339(schedule["next_send_at"].as_str().unwrap()).unwrap();
        assert_eq!(
            next.with_timezone(&chrono_tz::Europe::Berlin)
                .format("%A %H:%M")
                .to_string(),
            "Friday 07:00"
        );
        let id = schedule["id"].as_i64().unwrap();

        let changed = send(
            "PUT",
            format!("/api/v1/digest-schedules/{id}"),
            Some(
                json!({"name": "daily", "recipients": ["pm@example.com", "ops@example.com"],
                        "frequency": "daily", "hour": 6, "weekday": "friday"}),
            ),
        )
        .await;
        assert_eq!(changed.status, 200, "{}", changed.text());
        let changed = changed.json();
        assert_eq!(changed["frequency"], "daily");
        assert_eq!(
            changed["weekday"],
            serde_json::Value::Null,
            "only weekly ones have a day"
        );
        assert_eq!(changed["time_zone"], "UTC");
        assert_eq!(changed["domains"], json!([]));
        let listed = send("GET", "/api/v1/digest-schedules".into(), None)
            .await
            .json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(
            listed[0]["recipients"],
            json!(["pm@example.com", "ops@example.com"])
        );
        let missing = send(
            "PUT",
            "/api/v1/digest-schedules/999".into(),
            Some(json!({"name": "x", "recipients": ["pm@example.com"], "frequency": "daily"})),
        )
        .await;
        assert_eq!(missing.status, 404);

        let preview = send(
            "GET",
            format!("/api/v1/digest-schedules/{id}/preview"),
            None,
        )
        .await;
        assert_eq!(preview.status, 200, "{}", preview.text());
        assert!(preview
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        assert!(
            preview.text().contains("Daily DMARC digest"),
            "{}",
            preview.text()
        );
        let queued = send("POST", format!("/api/v1/digest-schedules/{id}/send"), None).await;
        assert_eq!(queued.status, 202, "{}", queued.text());
        let outbox_id = queued.json()["outbox_id"].as_i64().unwrap();
        let entry = store
            .outbox_entries(10)
            .await
            .unwrap()
            .into_iter()
            .find(|entry| entry.id == outbox_id)
            .unwrap();
        assert!(
            entry.payload.contains("Daily DMARC digest"),
            "{}",
            entry.payload
        );
        assert!(entry.payload.contains("ops@example.com"));

        let document = server.get("/api/v1/openapi.json", None).await.json();
        for path in [
            "/api/v1/digest-schedules",
            "/api/v1/digest-schedules/{id}",
            "/api/v1/digest-schedules/{id}/send",
            "/api/v1/digest-schedules/{id}/preview",
        ] {
            assert!(
                document["paths"].get(path).is_some(),
                "{path} is not documented"
            );
        }
        let deleted = send("DELETE", format!("/api/v1/digest-schedules/{id}"), None).await;
        assert_eq!(deleted.status, 200, "{}", deleted.text());
        assert_eq!(
            send("GET", format!("/api/v1/digest-schedules/{id}"), None)
                .await
                .status,
            404
        );

        // The page: an admin adds, changes, previews and deletes; a viewer
        // only looks; a forged form is refused.
        let accounts = &server.state.accounts;
        accounts
            .add_user("alice", "correct horse battery", "admin")
            .await
            .unwrap();
        accounts
            .add_user("victor", "correct horse battery", "viewer")
            .await
            .unwrap();
        let alice = crate::dashboard::sign_in(&server, "alice", "correct horse battery")
            .await
            .unwrap();
        let form = |csrf: &str| {
            vec![
                ("csrf", csrf.to_string()),
                ("name", "monday mail".to_string()),
                ("recipients", "pm@example.com, ops@example.com".to_string()),
                ("domains", "example.org".to_string()),
                ("frequency", "weekly".to_string()),
                ("time_zone", "Europe/Berlin".to_string()),
                ("hour", "9".to_string()),
                ("weekday", "monday".to_string()),
                ("enabled", "on".to_string()),
            ]
        };
        let fields =
            |form: &[(&'static str, String)]| -> Vec<(&'static str, String)> { form.to_vec() };
        let forged = fields(&form("forged"));
        let refused = alice
            .post(&server, "/alerts/digests", &as_refs(&forged))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let good = fields(&form(&alice.csrf));
        let added = alice
            .post(&server, "/alerts/digests", &as_refs(&good))
            .await;
        assert_eq!(added.status, 303, "{backend}: {}", added.text());
        let page = alice.get(&server, "/alerts/digests").await;
        assert_eq!(page.status, 200);
        let text = page.text();
        assert!(text.contains("monday mail"), "{text}");
        assert!(text.contains("pm@example.com, ops@example.com"), "{text}");
        assert!(
            text.contains("every monday at 09:00 Europe/Berlin"),
            "{text}"
        );
        let id = digests::schedules(store.db()).await.unwrap()[0].id;
        let edit = alice
            .get(&server, &format!("/alerts/digests?edit={id}"))
            .await;
        assert!(
            edit.text().contains(&format!("name=\"id\" value=\"{id}\"")),
            "{}",
            edit.text()
        );
        let mut changed = fields(&form(&alice.csrf));
        changed.push(("id", id.to_string()));
        changed[7] = ("weekday", "thursday".to_string());
        let saved = alice
            .post(&server, "/alerts/digests", &as_refs(&changed))
            .await;
        assert_eq!(saved.status, 303, "{}", saved.text());
        let page = alice.get(&server, "/alerts/digests").await.text();
        assert!(
            page.contains("every thursday at 09:00 Europe/Berlin"),
            "{page}"
        );
        let preview = alice
            .get(&server, &format!("/alerts/digests/{id}/preview"))
            .await;
        assert_eq!(preview.status, 200);
        assert!(
            preview
                .text()
                .contains("Subject:</strong> Weekly DMARC digest"),
            "{}",
            preview.text()
        );
        assert!(
            preview.text().contains("No reports received."),
            "{}",
            preview.text()
        );

        let victor = crate::dashboard::sign_in(&server, "victor", "correct horse battery")
            .await
            .unwrap();
        let viewer_page = victor.get(&server, "/alerts/digests").await.text();
        assert!(viewer_page.contains("monday mail") || viewer_page.contains("every thursday"));
        assert!(
            !viewer_page.contains("Add a schedule"),
            "viewers get no form"
        );
        let viewer_form = fields(&form(&victor.csrf));
        let refused = victor
            .post(&server, "/alerts/digests", &as_refs(&viewer_form))
            .await;
        assert_eq!(refused.status, 403);
        let id_text = id.to_string();
        let removed = alice
            .post(
                &server,
                "/alerts/digests/change",
                &[
                    ("csrf", &alice.csrf),
                    ("id", &id_text),
                    ("action", "delete"),
                ],
            )
            .await;
        assert_eq!(removed.status, 303);
        assert!(digests::schedules(store.db()).await.unwrap().is_empty());
        drop(server);
        store.close().await;
    }
}
