//! Who sends as a domain: a fixture where each class appears for a known
//! reason (a source inside the published SPF, an ESP passing by DKIM, a
//! forwarder the receivers flagged, a misconfigured ESP, a CIDR an admin
//! approves, a spoofer an admin ignores), on both backends, through
//! ingestion, the real DNS check of the domain's SPF record, approval
//! changes over the API and the page, and reprocessing.

use std::net::IpAddr;
use std::time::Duration;

use dmarcd::dns::{DnsConfig, PostureChecker, PostureSchedule, ReportTargets};
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::store::{PtrResult, Requeue, SourceInfo, Store, StoredDnsState};
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use serde_json::{json, Value};

use crate::common;
use crate::common::data::process_all;
use crate::common::http::Server;
use crate::common::zone_server::ZoneServer;

const DOMAIN: &str = "senders.test";

/// One record of the fixture report: source, count, DKIM and SPF auth
/// results, the evaluated DKIM/SPF results and an override reason.
struct Row {
    ip: &'static str,
    count: u32,
    dkim: Option<(&'static str, &'static str)>,
    spf: (&'static str, &'static str),
    evaluated: (&'static str, &'static str),
    reason: Option<&'static str>,
}

const ROWS: &[Row] = &[
    // Our relay: inside the published SPF, but the bounce domain is not ours.
    Row {
        ip: "192.0.2.10",
        count: 30,
        dkim: None,
        spf: ("bounce.relay.example", "pass"),
        evaluated: ("fail", "fail"),
        reason: None,
    },
    // Amazon SES signs as the domain: DMARC passes by DKIM.
    Row {
        ip: "198.51.100.30",
        count: 50,
        dkim: Some((DOMAIN, "pass")),
        spf: ("amazonses.com", "pass"),
        evaluated: ("pass", "fail"),
        reason: None,
    },
    // A list server broke the signature; receivers said it was forwarded.
    Row {
        ip: "198.51.100.7",
        count: 20,
        dkim: Some((DOMAIN, "fail")),
        spf: (DOMAIN, "fail"),
        evaluated: ("fail", "fail"),
        reason: Some("forwarded"),
    },
    // Mailchimp signs with its own domain and bounces to its own.
    Row {
        ip: "198.51.100.20",
        count: 40,
        dkim: Some(("mcsv.net", "pass")),
        spf: ("mail.mcsv.net", "pass"),
        evaluated: ("fail", "fail"),
        reason: None,
    },
    // A new office relay nobody put in SPF: approved by CIDR later.
    Row {
        ip: "203.0.113.5",
        count: 15,
        dkim: None,
        spf: (DOMAIN, "fail"),
        evaluated: ("fail", "fail"),
        reason: None,
    },
    // A spoofer.
    Row {
        ip: "198.51.100.66",
        count: 5,
        dkim: None,
        spf: (DOMAIN, "softfail"),
        evaluated: ("fail", "fail"),
        reason: None,
    },
];

fn report_xml() -> String {
    let mut records = String::new();
    for row in ROWS {
        let reason = row
            .reason
            .map(|kind| format!("<reason><type>{kind}</type></reason>"))
            .unwrap_or_default();
        let dkim = row
            .dkim
            .map(|(domain, result)| {
                format!("<dkim><domain>{domain}</domain><selector>s1</selector><result>{result}</result></dkim>")
            })
            .unwrap_or_default();
        records.push_str(&format!(
            "<record><row><source_ip>{ip}</source_ip><count>{count}</count>\
             <policy_evaluated><disposition>none</disposition><dkim>{ed}</dkim><spf>{es}</spf>{reason}</policy_evaluated></row>\
             <identifiers><header_from>{DOMAIN}</header_from></identifiers>\
             <auth_results>{dkim}<spf><domain>{sd}</domain><result>{sr}</result></spf></auth_results></record>",
            ip = row.ip,
            count = row.count,
            ed = row.evaluated.0,
            es = row.evaluated.1,
            sd = row.spf.0,
            sr = row.spf.1,
        ));
    }
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>Receiver</org_name>\
         <email>dmarc@receiver.example</email><report_id>senders-1</report_id>\
         <date_range><begin>1733011200</begin><end>1733097599</end></date_range></report_metadata>\
         <policy_published><domain>{DOMAIN}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><pct>100</pct></policy_published>\
         {records}</feedback>"
    )
}

async fn ingest(store: &Store) {
    Inbox::new(store.clone())
        .accept(report_xml().as_bytes(), &Envelope::import("senders.xml"))
        .await
        .unwrap();
    process_all(store).await;
}

/// What the enrichment would find: names from the source map for the
/// services, no PTR name for the spoofer.
async fn describe(store: &Store) {
    let named = |ip: &str, name: &str, kind: &str, base: &str| PtrResult {
        ip: ip.parse().unwrap(),
        state: StoredDnsState::Done,
        info: Some(SourceInfo {
            ip: ip.parse().unwrap(),
            country: None,
            asn: None,
            as_name: None,
            as_domain: None,
            ptr: Some(format!("mta1.{base}")),
            base_domain: Some(base.to_string()),
            source_name: Some(name.into()),
            source_type: Some(kind.into()),
        }),
        due_in: Some(Duration::from_secs(3600)),
    };
    let nameless = |ip: &str| PtrResult {
        ip: ip.parse().unwrap(),
        state: StoredDnsState::NoName,
        info: Some(SourceInfo {
            ip: ip.parse::<IpAddr>().unwrap(),
            country: None,
            asn: Some(64511),
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
            named("198.51.100.30", "Amazon SES", "esp", "amazonses.com"),
            named("198.51.100.20", "Mailchimp", "esp", "mcsv.net"),
            nameless("192.0.2.10"),
            nameless("198.51.100.7"),
            nameless("203.0.113.5"),
            nameless("198.51.100.66"),
        ])
        .await
        .unwrap();
}

/// Checks the domain's records against a DNS server that publishes
/// `v=spf1 ip4:192.0.2.0/24 -all`, as the schedule does.
async fn check_dns(store: &Store) {
    let zone = format!(
        "_dmarc.{DOMAIN}. TXT \"v=DMARC1; p=none\"\n{DOMAIN}. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
    );
    let server = ZoneServer::start(&zone, &[]).await;
    let config = DnsConfig {
        name_servers: vec![server.address().to_string()],
        timeout_ms: 300,
        attempts: 1,
        ..DnsConfig::default()
    };
    let targets = ReportTargets::new(&[], &[], "/tlsrpt");
    let checker = std::sync::Arc::new(PostureChecker::new(&config, targets).unwrap());
    PostureSchedule::new(store.clone(), checker, &config)
        .check_now(DOMAIN)
        .await
        .unwrap();
}

/// Class and reason per source, from the API.
async fn classes(server: &Server, token: &str) -> Vec<(String, String, String)> {
    let reply = server
        .get(&format!("/api/v1/domains/{DOMAIN}/senders"), Some(token))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    let mut rows: Vec<(String, String, String)> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cause = row["cause"].as_str().unwrap_or("").to_string();
            (
                row["source"].as_str().unwrap().to_string(),
                row["class"].as_str().unwrap().to_string(),
                format!("{} | {cause}", row["reason"].as_str().unwrap()),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn class_of<'a>(rows: &'a [(String, String, String)], source: &str) -> (&'a str, &'a str) {
    let row = rows
        .iter()
        .find(|(key, _, _)| key == source)
        .unwrap_or_else(|| panic!("no source {source} in {rows:#?}"));
    (&row.1, &row.2)
}

#[tokio::test]
async fn each_class_appears_for_its_reason_and_follows_approvals_and_reprocessing() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        ingest(&store).await;
        describe(&store).await;
        let server = Server::start_with_state(AppState::new(
            store.clone(),
            WebConfig::default(),
            Limits::default(),
        ))
        .await;
        let token = server.state.accounts.create_token("ops").await.unwrap();

        // Before any DNS check, the relay has no SPF signal: it fails both.
        let before = classes(&server, &token).await;
        assert_eq!(class_of(&before, "192.0.2.10").0, "suspicious", "{backend}");

        check_dns(&store).await;
        let rows = classes(&server, &token).await;
        let (class, why) = class_of(&rows, "192.0.2.10");
        assert_eq!(class, "authorized", "{backend}: {why}");
        assert!(why.contains("inside 192.0.2.0/24"), "{backend}: {why}");
        let (class, why) = class_of(&rows, "Amazon SES");
        assert_eq!(class, "authorized", "{backend}: {why}");
        assert!(why.contains("DMARC pass for 100%"), "{backend}: {why}");
        let (class, why) = class_of(&rows, "198.51.100.7");
        assert_eq!(class, "forwarded", "{backend}: {why}");
        assert!(
            why.contains("override reason forwarded"),
            "{backend}: {why}"
        );
        let (class, why) = class_of(&rows, "Mailchimp");
        assert_eq!(class, "misconfigured", "{backend}: {why}");
        assert!(
            why.contains("signed by mcsv.net, not senders.test")
                && why.contains("SPF passes for mail.mcsv.net"),
            "{backend}: {why}"
        );
        let (class, why) = class_of(&rows, "203.0.113.5");
        assert_eq!(class, "suspicious", "{backend}: {why}");
        assert!(why.contains("not DKIM-signed"), "{backend}: {why}");
        let (class, why) = class_of(&rows, "198.51.100.66");
        assert_eq!(class, "suspicious", "{backend}: {why}");
        assert_eq!(rows.len(), 6, "{backend}: {rows:#?}");

        // An admin approves the office block through the API: at once authorized.
        let created = server
            .request(
                "POST",
                "/api/v1/approvals",
                Some(&token),
                Some("application/json"),
                serde_json::to_vec(&json!({
                    "domain": DOMAIN,
                    "action": "approve",
                    "match": {"cidr": "203.0.113.77/24"},
                    "note": "new office relay"
                }))
                .unwrap(),
                &[],
            )
            .await;
        assert_eq!(created.status, 201, "{backend}: {}", created.text());
        let rule: Value = created.json();
        assert_eq!(rule["value"], "203.0.113.0/24");
        assert_eq!(rule["created_by"], "token:ops");
        let rows = classes(&server, &token).await;
        let (class, why) = class_of(&rows, "203.0.113.5");
        assert_eq!(class, "authorized", "{backend}: {why}");
        assert!(
            why.contains("approved by token:ops") && why.contains("CIDR block 203.0.113.0/24"),
            "{backend}: {why}"
        );
        assert!(why.contains("new office relay"), "{backend}: {why}");

        // A rule that does not parse is refused, saying why.
        let bad = server
            .request(
                "POST",
                "/api/v1/approvals",
                Some(&token),
                Some("application/json"),
                br#"{"action":"approve","match":{"cidr":"203.0.113.0/33"}}"#.to_vec(),
                &[],
            )
            .await;
        assert_eq!(bad.status, 400, "{backend}");

        // Reprocessing every message rebuilds the records; the classes,
        // the rule and the check stay as they were.
        assert!(store.requeue(&Requeue::All).await.unwrap() >= 1);
        process_all(&store).await;
        assert_eq!(classes(&server, &token).await, rows, "{backend}");

        // An admin on the page ignores the spoofer, then revokes the CIDR rule.
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
            .get(&server, &format!("/senders?domain={DOMAIN}"))
            .await;
        assert_eq!(page.status, 200, "{backend}");
        let html = page.text();
        for shown in [
            "Mailchimp",
            "signed by mcsv.net, not senders.test",
            "inside 192.0.2.0/24",
            "at least 95%",
            "192.0.2.0/24",
        ] {
            assert!(html.contains(shown), "{backend}: {shown} not on the page");
        }
        // The sender page: all of Mailchimp's IPs, its DKIM and SPF
        // results, its reporters.
        assert!(
            html.contains("name=Mailchimp"),
            "{backend}: no link to the sender page"
        );
        let sender = alice
            .get(
                &server,
                &format!("/senders/source?domain={DOMAIN}&name=Mailchimp"),
            )
            .await;
        assert_eq!(sender.status, 200, "{backend}: {}", sender.text());
        let sender = sender.text();
        for shown in [
            "Misconfigured",
            "signed by mcsv.net, not senders.test",
            "<td>mcsv.net</td><td>s1</td><td>pass</td><td class=\"num\">40</td>",
            "<td>mail.mcsv.net</td><td>pass</td><td class=\"num\">40</td>",
            "/sources/198.51.100.20",
            "Receiver",
        ] {
            assert!(
                sender.contains(shown),
                "{backend}: {shown} not on the sender page"
            );
        }
        let unknown = alice
            .get(
                &server,
                &format!("/senders/source?domain={DOMAIN}&name=Nobody"),
            )
            .await;
        assert_eq!(unknown.status, 404, "{backend}");

        let forged = alice
            .post(
                &server,
                "/senders/rules",
                &[
                    ("csrf", "forged"),
                    ("domain", DOMAIN),
                    ("action", "ignore"),
                    ("match_kind", "ip"),
                    ("value", "198.51.100.66"),
                ],
            )
            .await;
        assert_eq!(forged.status, 403, "{backend}");
        let ignored = alice
            .post(
                &server,
                "/senders/rules",
                &[
                    ("csrf", &alice.csrf),
                    ("domain", DOMAIN),
                    ("action", "ignore"),
                    ("match_kind", "ip"),
                    ("value", "198.51.100.66"),
                    ("note", "reported to abuse@"),
                    ("back", &format!("/senders?domain={DOMAIN}")),
                ],
            )
            .await;
        assert_eq!(ignored.status, 303, "{backend}: {}", ignored.text());
        let rows = classes(&server, &token).await;
        let (class, why) = class_of(&rows, "198.51.100.66");
        assert_eq!(class, "ignored", "{backend}: {why}");
        assert!(why.contains("ignored by alice"), "{backend}: {why}");

        let id = rule["id"].as_i64().unwrap().to_string();
        let revoked = alice
            .post(
                &server,
                "/senders/revoke",
                &[("csrf", &alice.csrf), ("id", &id), ("domain", DOMAIN)],
            )
            .await;
        assert_eq!(revoked.status, 303, "{backend}: {}", revoked.text());
        assert_eq!(
            class_of(&classes(&server, &token).await, "203.0.113.5").0,
            "suspicious",
            "{backend}"
        );
        let listed = server
            .get("/api/v1/approvals?revoked=true", Some(&token))
            .await
            .json();
        let revoked_rule = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rule["id"])
            .unwrap();
        assert_eq!(revoked_rule["revoked_by"], "alice", "{backend}");
        let active = server.get("/api/v1/approvals", Some(&token)).await.json();
        assert_eq!(active.as_array().unwrap().len(), 1, "{backend}: {active}");

        // Revoking through the API answers the rule, then 404.
        let ignore_id = active[0]["id"].as_i64().unwrap();
        let path = format!("/api/v1/approvals/{ignore_id}");
        let gone = server
            .request("DELETE", &path, Some(&token), None, Vec::new(), &[])
            .await;
        assert_eq!(gone.status, 200, "{backend}");
        assert_eq!(gone.json()["revoked_by"], "token:ops");
        let again = server
            .request("DELETE", &path, Some(&token), None, Vec::new(), &[])
            .await;
        assert_eq!(again.status, 404, "{backend}");

        // A rule on the network of a named sender's IPs approves the
        // sender: its busiest IPs are gathered under its name.
        let network = server
            .request(
                "POST",
                "/api/v1/approvals",
                Some(&token),
                Some("application/json"),
                br#"{"action":"approve","match":{"cidr":"198.51.100.16/28"}}"#.to_vec(),
                &[],
            )
            .await;
        assert_eq!(network.status, 201, "{backend}: {}", network.text());
        let rows = classes(&server, &token).await;
        let (class, why) = class_of(&rows, "Mailchimp");
        assert_eq!(class, "authorized", "{backend}: {why}");
        assert!(
            why.contains("CIDR block 198.51.100.16/28"),
            "{backend}: {why}"
        );
    }
}
