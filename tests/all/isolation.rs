//! Tenants on both backends: two domain groups, "alpha" and "bravo", each
//! with its own aggregate, TLS and failure reports, approvals, alert rules
//! and digests. For every route the API and the dashboard serve (read from
//! their routers, `dmarcd::web::route_paths`, so a new route is visited
//! without editing this file), alpha's viewer, alpha's group token and
//! alpha's analyst token get nothing of bravo's: an error, or an answer
//! holding none of bravo's marks (its reporter, addresses, report ids),
//! CSV exports, suggestions, charts, report XML and raw messages included;
//! none of their writes touches bravo's things. An admin sees bravo's marks
//! on the same routes, so the check can fail.

use std::collections::BTreeMap;

use dmarcd::accounts::TokenAccess;
use dmarcd::audit::Actor;
use dmarcd::groups;
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::scope::{GroupRole, Scope};
use dmarcd::store::Store;
use dmarcd::web::WebConfig;
use serde_json::{json, Value};

use crate::common;
use crate::dashboard::{sign_in, Browser, PASSWORD};
use common::http::{Reply, Server};

/// What only bravo's data holds (lower case): its reporters' names, its
/// source addresses, its report ids. Its domain name counts too, except
/// where the request itself names it (an error, a form, echo it).
const BRAVO_MARKS: &[&str] = &[
    "bravo reporter",
    "bravo tls org",
    "203.0.113.",
    "bravo-rid",
    "bravo digest",
    "bravo note",
];
const BRAVO_DOMAIN: &str = "bravo.example";

/// An aggregate report of `domain` from `org`, its records from `prefix`.
fn aggregate(domain: &str, org: &str, report_id: &str, prefix: &str) -> Vec<u8> {
    let mut report = dmarcd::testing::aggregate_report(3);
    report.metadata.org_name = org.to_string();
    report.metadata.report_id = report_id.to_string();
    report.policy_published.domain = domain.to_string();
    for (i, record) in report.records.iter_mut().enumerate() {
        record.source_ip = Some(format!("{prefix}{}", i + 5).parse().unwrap());
        record.identifiers.header_from = Some(domain.into());
    }
    report.to_xml().into_bytes()
}

/// A TLS-RPT report (RFC 8460) of `domain` from `org`, with one failure
/// from `sending_ip`.
fn tls(domain: &str, org: &str, report_id: &str, sending_ip: &str) -> Vec<u8> {
    json!({
        "organization-name": org,
        "date-range": {"start-datetime": "2024-03-30T00:00:00Z", "end-datetime": "2024-03-30T23:59:59Z"},
        "contact-info": "tls@reporter.example",
        "report-id": report_id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce"],
                       "policy-domain": domain, "mx-host": [format!("mx.{domain}")]},
            "summary": {"total-successful-session-count": 90, "total-failure-session-count": 3},
            "failure-details": [{"result-type": "certificate-expired", "sending-mta-ip": sending_ip,
                                 "receiving-mx-hostname": format!("mx.{domain}"), "failed-session-count": 3}]
        }]
    })
    .to_string()
    .into_bytes()
}

/// A DMARC failure report (ARF, RFC 6591) about `domain`.
fn failure(domain: &str, source_ip: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: reporter@receiver.example\r\nTo: ruf@{domain}\r\nSubject: {subject}\r\n\
         Date: Sat, 30 Mar 2024 10:00:00 +0000\r\nMessage-ID: <{subject}@receiver.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nA message failed DMARC.\r\n\
         --b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: auth-failure\r\nVersion: 1\r\n\
         User-Agent: test/1.0\r\nAuth-Failure: dmarc\r\nSource-IP: {source_ip}\r\nReported-Domain: {domain}\r\n\
         Original-Mail-From: <a@{domain}>\r\nArrival-Date: Sat, 30 Mar 2024 09:59:00 +0000\r\n\r\n\
         --b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: a@{domain}\r\nSubject: {subject}\r\n\r\n--b--\r\n"
    )
    .into_bytes()
}

async fn ingest(store: &Store) {
    let inbox = Inbox::new(store.clone());
    let messages: [(&str, Vec<u8>); 6] = [
        (
            "alpha.xml",
            aggregate(
                "alpha.example",
                "Alpha Reporter",
                "alpha-rid-1",
                "198.51.100.",
            ),
        ),
        (
            "bravo.xml",
            aggregate(BRAVO_DOMAIN, "Bravo Reporter", "bravo-rid-1", "203.0.113."),
        ),
        (
            "alpha.json",
            tls(
                "alpha.example",
                "Alpha TLS Org",
                "alpha-rid-2",
                "198.51.100.20",
            ),
        ),
        (
            "bravo.json",
            tls(BRAVO_DOMAIN, "Bravo TLS Org", "bravo-rid-2", "203.0.113.20"),
        ),
        (
            "alpha.eml",
            failure("alpha.example", "198.51.100.30", "alpha-rid-3"),
        ),
        (
            "bravo.eml",
            failure(BRAVO_DOMAIN, "203.0.113.30", "bravo-rid-3"),
        ),
    ];
    for (name, raw) in messages {
        inbox.accept(&raw, &Envelope::import(name)).await.unwrap();
    }
    common::data::process_all(store).await;
}

/// Ids of bravo's things, by what a path's `{id}` names.
#[derive(Default)]
struct Ids(BTreeMap<&'static str, i64>);

impl Ids {
    /// The id a path's `{id}` names there; every path with an `{id}` must
    /// be known here (a new one fails the test until it is taught).
    fn for_path(&self, path: &str) -> i64 {
        let kind = [
            ("/aggregate/reports/", "aggregate"),
            ("/reports/", "aggregate"),
            ("/tls/reports/", "tls"),
            ("/failure/reports/", "failure"),
            ("/failures/", "failure"),
            ("/inbox/", "message"),
            ("/inbox/messages/", "message"),
            ("/approvals/", "approval"),
            ("/alert-rules/", "rule"),
            ("/alert-channels/", "channel"),
            ("/alerts/digests/", "digest"),
            ("/digest-schedules/", "digest"),
            ("/alerts/", "alert"),
        ]
        .iter()
        .find(|(prefix, _)| path.contains(&format!("{prefix}{{id}}")))
        .map(|(_, kind)| *kind)
        .unwrap_or_else(|| panic!("teach the isolation test what {{id}} in {path} names"));
        self.0.get(kind).copied().unwrap_or(999_999)
    }
}

/// `path` with its placeholders filled with bravo's things.
fn fill(path: &str, ids: &Ids) -> String {
    let mut filled = path.to_string();
    if filled.contains("{id}") {
        filled = filled.replace("{id}", &ids.for_path(path).to_string());
    }
    for (placeholder, value) in [
        ("{domain}", BRAVO_DOMAIN),
        ("{name}", BRAVO_DOMAIN),
        ("{ip}", "203.0.113.5"),
        ("{group}", "bravo"),
        ("{user}", "bob"),
    ] {
        filled = filled.replace(placeholder, value);
    }
    assert!(
        !filled.contains('{'),
        "teach the isolation test what the placeholders of {path} name"
    );
    filled
}

/// The bravo marks `reply` shows (none for an error: it may echo the
/// request; nor a mark the request itself holds, which a form echoes).
fn leaks(reply: &Reply, request: &str) -> Vec<String> {
    if !(200..300).contains(&reply.status) {
        return Vec::new();
    }
    let body = String::from_utf8_lossy(&reply.body).to_lowercase();
    let request = request.to_lowercase();
    let mut marks: Vec<&str> = BRAVO_MARKS.to_vec();
    if !request.contains("bob") {
        marks.push(BRAVO_DOMAIN);
    }
    marks
        .into_iter()
        .filter(|mark| !request.contains(mark) && body.contains(mark))
        .map(str::to_string)
        .collect()
}

/// The requests a route is read with: as it is, as CSV, and narrowed to
/// bravo's domain, source and reporter.
fn reads(path: &str) -> Vec<String> {
    vec![
        path.to_string(),
        format!("{path}?format=csv"),
        format!("{path}?domain={BRAVO_DOMAIN}&format=csv"),
        format!("{path}?domain={BRAVO_DOMAIN}"),
        format!("{path}?source=203.0.113.5"),
        format!("{path}?org=Bravo"),
        format!("{path}?status=done"),
    ]
}

async fn api_get(server: &Server, token: &str, path: &str) -> Reply {
    server.get(path, Some(token)).await
}

async fn send(server: &Server, token: &str, method: &str, path: &str, body: Value) -> Reply {
    server.call(token, method, path, Some(body)).await
}

/// Bravo's approval, channel, rule and digest, made by an admin.
async fn bravo_things(server: &Server, admin: &str, ids: &mut Ids) {
    let created = |reply: Reply| {
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["id"].as_i64().unwrap()
    };
    let approval = send(server, admin, "POST", "/api/v1/approvals", json!({
        "domain": BRAVO_DOMAIN, "action": "approve", "match": {"ip": "203.0.113.5"}, "note": "bravo note"
    }))
    .await;
    ids.0.insert("approval", created(approval));
    let channel = send(server, admin, "POST", "/api/v1/alert-channels", json!({
        "name": "bravo digest hook", "kind": "webhook", "target": "https://hooks.bravo.example/x"
    }))
    .await;
    let channel = created(channel);
    ids.0.insert("channel", channel);
    let rule = send(
        server,
        admin,
        "POST",
        "/api/v1/alert-rules",
        json!({
            "domain": BRAVO_DOMAIN, "kind": "failing_volume", "threshold": 10, "channels": [channel]
        }),
    )
    .await;
    ids.0.insert("rule", created(rule));
    let digest = send(
        server,
        admin,
        "POST",
        "/api/v1/digest-schedules",
        json!({
            "name": "bravo digest", "recipients": ["ops@bravo.example"], "frequency": "weekly",
            "domains": [BRAVO_DOMAIN]
        }),
    )
    .await;
    ids.0.insert("digest", created(digest));
}

/// Ids of bravo's stored reports and messages.
async fn bravo_ids(server: &Server, admin: &str, ids: &mut Ids) {
    let first = |reply: Reply, list: &str| -> (i64, Option<i64>) {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let item = reply.json()[list][0].clone();
        (item["id"].as_i64().unwrap(), item["message_id"].as_i64())
    };
    let domain = format!("domain={BRAVO_DOMAIN}");
    let (aggregate, message) = first(
        api_get(
            server,
            admin,
            &format!("/api/v1/aggregate/reports?{domain}"),
        )
        .await,
        "items",
    );
    ids.0.insert("aggregate", aggregate);
    ids.0.insert("message", message.unwrap());
    let (tls, _) = first(
        api_get(server, admin, &format!("/api/v1/tls/reports?{domain}")).await,
        "items",
    );
    ids.0.insert("tls", tls);
    let (failure, _) = first(
        api_get(server, admin, &format!("/api/v1/failure/reports?{domain}")).await,
        "items",
    );
    ids.0.insert("failure", failure);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_sees_nothing_of_another_group_on_any_route() {
    let paths = dmarcd::web::route_paths();
    assert!(paths.len() > 60, "{paths:?}");
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        ingest(&store).await;
        let all = Scope::All;
        let operator = Actor::cli();
        for (group, domain) in [("alpha", "alpha.example"), ("bravo", BRAVO_DOMAIN)] {
            groups::create(&store, &operator, &all, group)
                .await
                .unwrap();
            groups::assign_domain(&store, &operator, &all, group, domain)
                .await
                .unwrap();
        }
        let server = Server::start(
            store.clone(),
            WebConfig {
                ..WebConfig::default()
            },
        )
        .await;
        let accounts = &server.state.accounts;
        accounts.add_user("root", PASSWORD, "admin").await.unwrap();
        accounts
            .add_user_in(
                "ann",
                PASSWORD,
                "viewer",
                Some(("alpha", GroupRole::Viewer)),
            )
            .await
            .unwrap();
        accounts
            .add_user_in("bob", PASSWORD, "viewer", Some(("bravo", GroupRole::Owner)))
            .await
            .unwrap();
        let admin = accounts
            .create_token_with("root-token", TokenAccess::Write, None)
            .await
            .unwrap();
        let alpha_read = accounts
            .create_group_token("alpha-read", "alpha", GroupRole::Viewer, None)
            .await
            .unwrap();
        let alpha_write = accounts
            .create_group_token("alpha-write", "alpha", GroupRole::Owner, None)
            .await
            .unwrap();
        let mut ids = Ids::default();
        bravo_ids(&server, &admin, &mut ids).await;
        bravo_things(&server, &admin, &mut ids).await;
        let ann: Browser = sign_in(&server, "ann", PASSWORD).await.unwrap();
        let root: Browser = sign_in(&server, "root", PASSWORD).await.unwrap();

        // Ann is in alpha only (not also in the default group).
        let memberships = dmarcd::store::groups::memberships_of(
            store.db(),
            dmarcd::store::accounts::user(store.db(), "ann")
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
        assert_eq!(memberships.len(), 1, "{backend}: {memberships:?}");

        let mut admin_saw = 0;
        let mut requests = 0;
        for path in &paths {
            let filled = fill(path, &ids);
            for request in reads(&filled) {
                // Alpha's viewer on the dashboard (its session also reads the API).
                let reply = ann.get(&server, &request).await;
                // (503: a service this node does not run, as hosted MTA-STS.)
                assert!(
                    reply.status != 500,
                    "{backend}: ann GET {request}: {}",
                    reply.text()
                );
                let leaked = leaks(&reply, &request);
                assert!(
                    leaked.is_empty(),
                    "{backend}: ann GET {request} shows {leaked:?}"
                );
                if request.starts_with("/api/") {
                    for token in [&alpha_read, &alpha_write] {
                        let reply = api_get(&server, token, &request).await;
                        assert!(
                            reply.status != 500,
                            "{backend}: token GET {request}: {}",
                            reply.text()
                        );
                        let leaked = leaks(&reply, &request);
                        assert!(
                            leaked.is_empty(),
                            "{backend}: token GET {request} shows {leaked:?}"
                        );
                    }
                }
                // The same request as an admin shows bravo's marks where
                // there are any to show.
                let seen = root.get(&server, &request).await;
                if !leaks(&seen, &request).is_empty() {
                    admin_saw += 1;
                }
                requests += 1;
            }
        }
        assert!(
            admin_saw > 40,
            "{backend}: an admin saw bravo's marks on only {admin_saw} of {requests} requests"
        );

        // Alpha's owner token changes nothing of bravo's, on any route.
        for path in &paths {
            let filled = fill(path, &ids);
            for (method, body) in [
                ("DELETE", json!({})),
                ("POST", json!({})),
                ("PUT", json!({"role": "viewer"})),
                ("PATCH", json!({"enabled": false})),
            ] {
                if !filled.starts_with("/api/") {
                    continue;
                }
                let reply = send(&server, &alpha_write, method, &filled, body).await;
                assert!(
                    reply.status != 500,
                    "{backend}: {method} {filled}: {}",
                    reply.text()
                );
                // A route that names one of bravo's things refuses.
                let names_bravo = filled.contains("bravo")
                    || filled.contains("/bob")
                    || bravo_id_in(&filled, &ids);
                assert!(
                    !(names_bravo && (200..300).contains(&reply.status)),
                    "{backend}: alpha's owner token {method} {filled}: {} {}",
                    reply.status,
                    reply.text()
                );
            }
        }
        // Bravo's things are all still there.
        let approvals = api_get(&server, &admin, "/api/v1/approvals").await.json();
        assert_eq!(
            approvals.as_array().unwrap().len(),
            1,
            "{backend}: {approvals}"
        );
        let rules = api_get(&server, &admin, "/api/v1/alert-rules").await.json();
        assert_eq!(rules[0]["enabled"], true, "{backend}: {rules}");
        let groups_now = api_get(&server, &admin, "/api/v1/groups").await.json();
        let bravo = groups_now
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "bravo")
            .unwrap_or_else(|| panic!("{backend}: bravo is gone: {groups_now}"))
            .clone();
        assert_eq!(bravo["domains"], json!([BRAVO_DOMAIN]), "{backend}");
        assert_eq!(bravo["members"][0]["user"], "bob", "{backend}");

        // And alpha sees its own: its records, counted, by day too.
        let records = api_get(&server, &alpha_read, "/api/v1/aggregate/records").await;
        assert!(
            records.text().contains("198.51.100.5"),
            "{backend}: {}",
            records.text()
        );
        let admin_days = api_get(
            &server,
            &admin,
            "/api/v1/aggregate/summary?group_by=day&domain=alpha.example",
        )
        .await
        .json();
        let alpha_days = api_get(
            &server,
            &alpha_read,
            "/api/v1/aggregate/summary?group_by=day",
        )
        .await
        .json();
        assert_eq!(alpha_days["items"], admin_days["items"], "{backend}");
        // Alpha holds one domain: its summary by source is read from the
        // per-domain totals as they are, and must equal an admin's for it.
        for group_by in ["source", "source_name", "country", "org"] {
            let admin_view = api_get(
                &server,
                &admin,
                &format!("/api/v1/aggregate/summary?group_by={group_by}&domain=alpha.example"),
            )
            .await
            .json();
            let alpha_view = api_get(
                &server,
                &alpha_read,
                &format!("/api/v1/aggregate/summary?group_by={group_by}"),
            )
            .await
            .json();
            assert_eq!(
                alpha_view["items"], admin_view["items"],
                "{backend}: {group_by}"
            );
            assert_eq!(
                alpha_view["total"], admin_view["total"],
                "{backend}: {group_by}"
            );
        }
        let overview = ann.get(&server, "/").await.text();
        assert!(overview.contains("alpha.example"), "{backend}");
    }
}

/// Whether a filled path names one of bravo's ids.
fn bravo_id_in(path: &str, ids: &Ids) -> bool {
    ids.0
        .values()
        .any(|id| path.split('/').any(|part| part == id.to_string()))
}
