//! A domain's compliance overview, readiness card and sender page on both
//! backends, over HTTP against the real app, from a fixture built to
//! produce them: an ESP passing DMARC (authorized), a list server the
//! receivers flagged (forwarded), Mailchimp signing as itself
//! (misconfigured: the blocker), a spoofer (suspicious); then Mailchimp
//! ignored (ready), a report made under test mode (t=y), and the DMARC
//! record a DNS check finds.

use std::time::Duration;

use chrono::Utc;
use dmarcd::dns::{DnsConfig, PostureChecker, PostureSchedule, ReportTargets};
use dmarcd::store::{PtrResult, SourceInfo, Store, StoredDnsState};
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use serde_json::{json, Value};

use crate::common;
use crate::common::data::ingest;
use crate::common::http::Server;
use crate::common::zone_server::ZoneServer;

const DOMAIN: &str = "compliance.test";

/// (source IP, messages, DKIM (domain, selector, result), SPF (domain,
/// result), evaluated (dkim, spf), override reason)
type Row = (
    &'static str,
    u32,
    Option<(&'static str, &'static str, &'static str)>,
    (&'static str, &'static str),
    (&'static str, &'static str),
    Option<&'static str>,
);

const FIRST: &[Row] = &[
    // Amazon SES signs as the domain: authorized.
    (
        "198.51.100.30",
        50,
        Some((DOMAIN, "ses1", "pass")),
        ("amazonses.com", "pass"),
        ("pass", "fail"),
        None,
    ),
    // Mailchimp signs as mcsv.net with k1 and bounces to its own domain.
    (
        "198.51.100.20",
        40,
        Some(("mcsv.net", "k1", "pass")),
        ("mail.mcsv.net", "pass"),
        ("fail", "fail"),
        None,
    ),
    // A list server: receivers said forwarded.
    (
        "198.51.100.7",
        20,
        Some((DOMAIN, "ses1", "fail")),
        (DOMAIN, "fail"),
        ("fail", "fail"),
        Some("forwarded"),
    ),
    // A spoofer.
    (
        "198.51.100.66",
        5,
        None,
        (DOMAIN, "softfail"),
        ("fail", "fail"),
        None,
    ),
];

/// A report of `rows` that began `days_ago` days ago; `testing`: made
/// under test mode in the RFC 9990 shape with p=quarantine, else RFC 7489
/// with p=none.
fn report_xml(id: &str, days_ago: i64, rows: &[Row], testing: bool) -> String {
    let begin = (Utc::now() - chrono::Duration::days(days_ago)).timestamp();
    let mut records = String::new();
    for (ip, count, dkim, spf, evaluated, reason) in rows {
        let reason = reason
            .map(|kind| format!("<reason><type>{kind}</type></reason>"))
            .unwrap_or_default();
        let dkim = dkim
            .map(|(domain, selector, result)| {
                format!("<dkim><domain>{domain}</domain><selector>{selector}</selector><result>{result}</result></dkim>")
            })
            .unwrap_or_default();
        records.push_str(&format!(
            "<record><row><source_ip>{ip}</source_ip><count>{count}</count>\
             <policy_evaluated><disposition>none</disposition><dkim>{}</dkim><spf>{}</spf>{reason}</policy_evaluated></row>\
             <identifiers><header_from>{DOMAIN}</header_from></identifiers>\
             <auth_results>{dkim}<spf><domain>{}</domain><result>{}</result></spf></auth_results></record>",
            evaluated.0, evaluated.1, spf.0, spf.1,
        ));
    }
    let (open, policy) = if testing {
        (
            "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\"><version>1.0</version>",
            format!("<policy_published><domain>{DOMAIN}</domain><p>quarantine</p><testing>y</testing></policy_published>"),
        )
    } else {
        (
            "<feedback>",
            format!("<policy_published><domain>{DOMAIN}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><pct>100</pct></policy_published>"),
        )
    };
    format!(
        "<?xml version=\"1.0\"?>{open}<report_metadata><org_name>Receiver</org_name>\
         <email>dmarc@receiver.example</email><report_id>{id}</report_id>\
         <date_range><begin>{begin}</begin><end>{}</end></date_range></report_metadata>\
         {policy}{records}</feedback>",
        begin + 86_399
    )
}

async fn describe(store: &Store) {
    let named = |ip: &str, name: &str, base: &str| PtrResult {
        ip: ip.parse().unwrap(),
        state: StoredDnsState::Done,
        info: Some(SourceInfo {
            ip: ip.parse().unwrap(),
            country: Some("US".into()),
            asn: None,
            as_name: None,
            as_domain: None,
            ptr: Some(format!("mta1.{base}")),
            base_domain: Some(base.to_string()),
            source_name: Some(name.into()),
            source_type: Some("esp".into()),
        }),
        due_in: Some(Duration::from_secs(3600)),
    };
    let nameless = |ip: &str| PtrResult {
        ip: ip.parse().unwrap(),
        state: StoredDnsState::NoName,
        info: Some(SourceInfo {
            ip: ip.parse().unwrap(),
            country: None,
            asn: None,
            as_name: None,
            as_domain: None,
            ptr: None,
            base_domain: None,
            source_name: None,
            source_type: None,
        }),
        due_in: Some(Duration::from_secs(3600)),
    };
    store
        .save_ptr_results(&[
            named("198.51.100.30", "Amazon SES", "amazonses.com"),
            named("198.51.100.20", "Mailchimp", "mcsv.net"),
            nameless("198.51.100.7"),
            nameless("198.51.100.66"),
        ])
        .await
        .unwrap();
}

async fn get_json(server: &Server, token: &str, path: &str) -> Value {
    let reply = server.get(path, Some(token)).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

fn class_row<'a>(body: &'a Value, class: &str) -> &'a Value {
    body["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == class)
        .unwrap_or_else(|| panic!("no class {class} in {body}"))
}

#[tokio::test]
async fn compliance_problems_readiness_and_sender_page_on_both_backends() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        ingest(
            &store,
            "first.xml",
            report_xml("c-1", 3, FIRST, false).as_bytes(),
        )
        .await;
        describe(&store).await;
        let server = Server::start_with_state(AppState::new(
            store.clone(),
            WebConfig::default(),
            Limits::default(),
        ))
        .await;
        let token = server.state.accounts.create_token("ops").await.unwrap();

        // Messages and sources per class, the problems biggest first.
        let body = get_json(
            &server,
            &token,
            &format!("/api/v1/domains/{DOMAIN}/compliance"),
        )
        .await;
        assert_eq!(body["messages"], 115, "{backend}: {body}");
        assert_eq!(body["dmarc_pass"], 50, "{backend}: {body}");
        for (class, sources, messages) in [
            ("authorized", 1, 50),
            ("forwarded", 1, 20),
            ("misconfigured", 1, 40),
            ("suspicious", 1, 5),
            ("ignored", 0, 0),
        ] {
            let row = class_row(&body, class);
            assert_eq!(row["sources"], sources, "{backend}: {class}");
            assert_eq!(row["messages"], messages, "{backend}: {class}");
        }
        let problems = body["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 2, "{backend}: {body}");
        assert_eq!(problems[0]["source"], "Mailchimp");
        assert_eq!(
            problems[0]["sentence"],
            format!(
                "Mailchimp fails DMARC on 40 of its 40 messages: signed by mcsv.net, not {DOMAIN}; \
                 SPF passes for mail.mcsv.net, not aligned with {DOMAIN}."
            ),
            "{backend}"
        );
        assert_eq!(
            problems[0]["fix"],
            format!(
                "set up DKIM for {DOMAIN} at Mailchimp (it signs as mcsv.net with selector k1): \
                 publish the key it gives you, usually a CNAME for k1._domainkey.{DOMAIN}"
            ),
            "{backend}"
        );
        assert_eq!(
            problems[1]["sentence"],
            format!(
                "198.51.100.66 (no PTR name) sent 5 messages as {DOMAIN} that fail DKIM and SPF: \
                 approve it if it is yours and have it authenticate; if not, p=reject stops it."
            ),
            "{backend}"
        );

        // The page's 30 days read the classed sources once for both its
        // halves: the same numbers as reading them apart.
        let config = dmarcd::senders::SendersConfig::default();
        let thirty_days = dmarcd::query::senders::SendersQuery {
            domain: DOMAIN.to_string(),
            since: Some(dmarcd::query::compliance::readiness_since()),
            until: None,
            class: None,
        };
        let (together, ready_together) = dmarcd::query::compliance::compliance_and_readiness(
            &store,
            &dmarcd::scope::Scope::All,
            &config,
            &thirty_days,
        )
        .await
        .unwrap();
        assert_eq!(
            together,
            dmarcd::query::compliance::compliance(
                &store,
                &dmarcd::scope::Scope::All,
                &config,
                &thirty_days
            )
            .await
            .unwrap(),
            "{backend}"
        );
        assert_eq!(
            ready_together,
            dmarcd::query::compliance::readiness(
                &store,
                &dmarcd::scope::Scope::All,
                &config,
                DOMAIN
            )
            .await
            .unwrap(),
            "{backend}"
        );
        assert!(together.messages > 0, "{backend}");

        // Readiness: Mailchimp's failing mail blocks quarantine.
        let readiness_path = format!("/api/v1/domains/{DOMAIN}/readiness");
        let ready = get_json(&server, &token, &readiness_path).await;
        assert_eq!(ready["verdict"], "blocked", "{backend}: {ready}");
        assert_eq!(ready["policy"]["origin"], "reports", "{backend}");
        assert_eq!(ready["policy"]["p"], "none", "{backend}");
        assert_eq!(ready["blocking_messages"], 40, "{backend}");
        assert_eq!(ready["blockers"][0]["source"], "Mailchimp", "{backend}");
        assert_eq!(ready["blockers"].as_array().unwrap().len(), 1, "{backend}");
        let impact = |body: &Value, class: &str| {
            body["impact"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["class"] == class)
                .map(|i| {
                    (
                        i["messages"].as_i64().unwrap(),
                        i["failing"].as_i64().unwrap(),
                    )
                })
                .unwrap()
        };
        assert_eq!(impact(&ready, "misconfigured"), (40, 40), "{backend}");
        assert_eq!(impact(&ready, "forwarded"), (20, 20), "{backend}");
        assert_eq!(impact(&ready, "authorized"), (50, 0), "{backend}");
        assert!(
            ready["verdict_line"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Not ready: 40 messages of {DOMAIN}'s own mail")),
            "{backend}: {}",
            ready["verdict_line"]
        );
        assert_eq!(
            ready["suggestion"]["record"], "v=DMARC1; p=none; np=reject",
            "{backend}"
        );

        // The page shows the same, with the chart.
        server
            .state
            .accounts
            .add_user("alice", "correct horse battery", "admin")
            .await
            .unwrap();
        let alice = crate::dashboard::sign_in(&server, "alice", "correct horse battery")
            .await
            .unwrap();
        let page = alice
            .get(&server, &format!("/compliance?domain={DOMAIN}"))
            .await;
        assert_eq!(page.status, 200, "{backend}: {}", page.text());
        let html = page.text();
        for shown in [
            "Mailchimp fails DMARC on 40 of its 40 messages",
            "CNAME for k1._domainkey.compliance.test",
            "<svg class=\"chart\"",
            "<title>Misconfigured: 40 (34.8%)</title>",
            "Not ready",
            "v=DMARC1; p=none; np=reject",
            "/senders/source?domain=compliance.test&#38;name=Mailchimp",
        ] {
            assert!(html.contains(shown), "{backend}: {shown} not on the page");
        }

        let senders = alice
            .get(&server, &format!("/senders?domain={DOMAIN}"))
            .await
            .text();
        assert!(
            senders.contains("/compliance?domain=compliance.test#readiness"),
            "{backend}: the Senders page does not lead to the readiness card"
        );

        // Mailchimp ignored: nothing of the domain's own fails; test
        // quarantine first.
        let ignored = server
            .request(
                "POST",
                "/api/v1/approvals",
                Some(&token),
                Some("application/json"),
                serde_json::to_vec(&json!({
                    "domain": DOMAIN,
                    "action": "ignore",
                    "match": {"name": "Mailchimp"},
                }))
                .unwrap(),
                &[],
            )
            .await;
        assert_eq!(ignored.status, 201, "{backend}: {}", ignored.text());
        let ready = get_json(&server, &token, &readiness_path).await;
        assert_eq!(ready["verdict"], "ready", "{backend}: {ready}");
        assert_eq!(
            ready["suggestion"]["record"], "v=DMARC1; p=quarantine; t=y; pct=0; np=reject",
            "{backend}"
        );
        assert_eq!(impact(&ready, "ignored"), (40, 40), "{backend}");

        // A receiver reports under t=y: the evidence to apply quarantine.
        ingest(
            &store,
            "testing.xml",
            report_xml("c-2", 1, &FIRST[..1], true).as_bytes(),
        )
        .await;
        let ready = get_json(&server, &token, &readiness_path).await;
        assert_eq!(ready["test_reports"], 1, "{backend}: {ready}");
        assert_eq!(ready["test_messages"], 50, "{backend}");
        assert_eq!(ready["policy"]["p"], "quarantine", "{backend}");
        assert_eq!(ready["policy"]["testing"], true, "{backend}");
        assert_eq!(
            ready["suggestion"]["record"], "v=DMARC1; p=quarantine; np=reject",
            "{backend}"
        );
        assert!(
            ready["suggestion"]["why"][0]
                .as_str()
                .unwrap()
                .starts_with("1 report made under t=y"),
            "{backend}: {}",
            ready["suggestion"]
        );

        // The record a DNS check finds wins over the reports' copy, and
        // the suggestion keeps its other tags.
        let zone = format!(
            "_dmarc.{DOMAIN}. TXT \"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}\"\n{DOMAIN}. TXT \"v=spf1 -all\"\n"
        );
        let dns = ZoneServer::start(&zone, &[]).await;
        let config = DnsConfig {
            name_servers: vec![dns.address().to_string()],
            timeout_ms: 300,
            attempts: 1,
            ..DnsConfig::default()
        };
        let checker = std::sync::Arc::new(
            PostureChecker::new(&config, ReportTargets::new(&[], &[], "/tlsrpt")).unwrap(),
        );
        PostureSchedule::new(store.clone(), checker, &config)
            .check_now(DOMAIN)
            .await
            .unwrap();
        let ready = get_json(&server, &token, &readiness_path).await;
        assert_eq!(ready["policy"]["origin"], "dns", "{backend}: {ready}");
        assert_eq!(
            ready["suggestion"]["record"],
            format!("v=DMARC1; p=quarantine; rua=mailto:dmarc@{DOMAIN}; t=y; pct=0; np=reject"),
            "{backend}"
        );

        // The sender page as JSON and as HTML: its day, DKIM selector,
        // reporter and fix.
        let sender = get_json(
            &server,
            &token,
            &format!("/api/v1/domains/{DOMAIN}/senders/source?name=Mailchimp"),
        )
        .await;
        assert_eq!(sender["row"]["class"], "ignored", "{backend}: {sender}");
        assert_eq!(sender["row"]["messages"], 40, "{backend}");
        assert_eq!(sender["days"].as_array().unwrap().len(), 1, "{backend}");
        assert_eq!(sender["dkim"][0]["selector"], "k1", "{backend}");
        assert_eq!(sender["reporters"][0]["key"], "Receiver", "{backend}");
        assert_eq!(sender["ips"][0]["key"], "198.51.100.20", "{backend}");
        // Over a period that begins in an earlier month (months and days
        // read together).
        let since = (Utc::now().date_naive() - chrono::Duration::days(40)).to_string();
        let period = get_json(
            &server,
            &token,
            &format!("/api/v1/domains/{DOMAIN}/senders/source?name=Mailchimp&since={since}"),
        )
        .await;
        assert_eq!(period["row"]["messages"], 40, "{backend}: {period}");
        assert_eq!(period["ips"][0]["messages"], 40, "{backend}");
        assert_eq!(period["countries"][0]["key"], "US", "{backend}");
        let missing = server
            .get(
                &format!("/api/v1/domains/{DOMAIN}/senders/source?name=Nobody"),
                Some(&token),
            )
            .await;
        assert_eq!(missing.status, 404, "{backend}");
        let html = alice
            .get(
                &server,
                &format!("/senders/source?domain={DOMAIN}&name=Mailchimp"),
            )
            .await
            .text();
        for shown in ["Messages per day", "<svg class=\"chart\"", "Fix:", "k1"] {
            assert!(
                html.contains(shown),
                "{backend}: {shown} not on the sender page"
            );
        }
        // The overview's and the explorer's named sources lead to it.
        for path in [
            format!("/?domain={DOMAIN}"),
            format!("/aggregate?domain={DOMAIN}&group_by=source_name"),
        ] {
            let html = alice.get(&server, &path).await.text();
            assert!(
                html.contains("/senders/source?domain=compliance.test&#38;name=Amazon+SES"),
                "{backend}: {path} does not link the sender page"
            );
        }
    }
}
