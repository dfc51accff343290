//! The audit log on both backends: each kind of change made on the
//! dashboard, through the API and with the CLI leaves one entry saying who,
//! from where, what and the value before and after; failed sign-ins too.
//! Admins read it on the Audit page, by API and as CSV; viewers cannot;
//! the database refuses to edit an entry; retention deletes old ones.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::account::{make, shown_token};
use crate::common;
use crate::dashboard::{setup, sign_in, sign_in_with, PASSWORD};
use common::http::{Reply, Server};
use dmarcd::audit::Action;
use dmarcd::store::audit::{self as stored, NewEntry};
use dmarcd::web::WebConfig;

/// Changes whose entries other tests assert: the CLI's (below, on the
/// dmarcd binary) and those needing a hosted MTA-STS node (mta_sts.rs,
/// acme.rs). Every other action must appear in the dashboard test.
const ASSERTED_ELSEWHERE: &[&str] = &[
    "user.add",
    "user.remove",
    "user.role",
    "user.password",
    "user.totp_off",
    "message.reprocess_all",
    "account.totp_on",
    "account.totp_off",
    "mta_sts.policy_change",
    "mta_sts.certificate_renew",
    "hosted_dmarc.change",
    // groups.rs: an MSP's groups over the API, the page and the CLI.
    "group.add",
    "group.remove",
    "group.domain",
    "group.member",
    "group.member_remove",
];

async fn api(server: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    server.call(token, method, path, body).await
}

/// The entries of `action`, newest first, as the API lists them.
async fn entries(server: &Server, token: &str, action: &str) -> Vec<Value> {
    let reply = server
        .get(
            &format!("/api/v1/audit?action={action}&limit=1000"),
            Some(token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["entries"].as_array().unwrap().clone()
}

/// The one entry of `action`.
async fn only(server: &Server, token: &str, action: &str) -> Value {
    let found = entries(server, token, action).await;
    assert_eq!(found.len(), 1, "{action}: {found:?}");
    found[0].clone()
}

fn value(entry: &Value, side: &str) -> Value {
    serde_json::from_str(entry[side].as_str().unwrap_or("null")).unwrap()
}

fn created_id(reply: &Reply) -> i64 {
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_on_the_dashboard_and_api_is_recorded_for_admins_only() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;

        // Sign-ins, a failed one, and a sign-out.
        let failed = sign_in(&server, "alice", "not the password")
            .await
            .unwrap_err();
        assert_eq!(failed.status, 401, "{backend}");
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let second = sign_in_with(&server, "alice", PASSWORD, Some("Other/1"))
            .await
            .unwrap();
        let out = second
            .post(&server, "/logout", &[("csrf", &second.csrf)])
            .await;
        assert_eq!(out.status, 303, "{backend}");
        let third = sign_in_with(&server, "alice", PASSWORD, Some("Third/1"))
            .await
            .unwrap();

        // Alice makes herself a write token on the Account page; the API
        // changes below are made with it.
        let made = make(&server, &alice, "ops", "write", "").await;
        assert_eq!(made.status, 200, "{backend}: {}", made.text());
        let token = shown_token(&made.text());

        // Domains, a DKIM selector, on the Domains pages.
        let form = |fields: &[(&'static str, &'static str)]| {
            let mut all = vec![("csrf", alice.csrf.as_str())];
            all.extend_from_slice(fields);
            all
        };
        for (path, fields) in [
            ("/domains", form(&[("name", "Audit.Example")])),
            (
                "/domains/selectors",
                form(&[("name", "audit.example"), ("selector", "s2026")]),
            ),
            ("/domains/remove", form(&[("name", "audit.example")])),
        ] {
            let reply = alice.post(&server, path, &fields).await;
            assert_eq!(reply.status, 303, "{backend}: {path}: {}", reply.text());
        }

        // Approvals, alert channels and rules, digests, through the API.
        let approval = created_id(
            &api(
                &server,
                &token,
                "POST",
                "/api/v1/approvals",
                Some(json!({
                    "domain": "example.com", "action": "approve",
                    "match": {"cidr": "203.0.113.0/24"}, "note": "office relay"
                })),
            )
            .await,
        );
        let revoked = api(
            &server,
            &token,
            "DELETE",
            &format!("/api/v1/approvals/{approval}"),
            None,
        )
        .await;
        assert_eq!(revoked.status, 200, "{backend}: {}", revoked.text());
        let channel = created_id(
            &api(
                &server,
                &token,
                "POST",
                "/api/v1/alert-channels",
                Some(json!({
                    "name": "chat", "kind": "webhook", "target": "https://hooks.example.com/x",
                    "secret": "s3cret-signing-key"
                })),
            )
            .await,
        );
        let rule = created_id(
            &api(&server, &token, "POST", "/api/v1/alert-rules", Some(json!({
                "domain": "example.com", "kind": "failing_volume", "threshold": 10, "channels": [channel]
            })))
            .await,
        );
        let path = format!("/api/v1/alert-rules/{rule}");
        let off = api(
            &server,
            &token,
            "PATCH",
            &path,
            Some(json!({"enabled": false})),
        )
        .await;
        assert_eq!(off.status, 200, "{backend}: {}", off.text());
        assert_eq!(
            api(&server, &token, "DELETE", &path, None).await.status,
            200
        );
        let path = format!("/api/v1/alert-channels/{channel}");
        assert_eq!(
            api(&server, &token, "DELETE", &path, None).await.status,
            200
        );
        let digest = created_id(
            &api(
                &server,
                &token,
                "POST",
                "/api/v1/digest-schedules",
                Some(json!({
                    "name": "weekly", "recipients": ["pm@example.com"], "frequency": "weekly"
                })),
            )
            .await,
        );
        let path = format!("/api/v1/digest-schedules/{digest}");
        let daily = api(
            &server,
            &token,
            "PUT",
            &path,
            Some(json!({
                "name": "daily", "recipients": ["pm@example.com"], "frequency": "daily"
            })),
        )
        .await;
        assert_eq!(daily.status, 200, "{backend}: {}", daily.text());
        assert_eq!(
            api(&server, &token, "DELETE", &path, None).await.status,
            200
        );

        // An open alert (the default rules fire on the populated data),
        // resolved on the Alerts page.
        let open = api(&server, &token, "GET", "/api/v1/alerts?open=true", None)
            .await
            .json();
        let alert = open.as_array().and_then(|alerts| alerts.first()).cloned();
        let alert = alert.unwrap_or_else(|| panic!("{backend}: no open alert to resolve: {open}"));
        let id = alert["id"].as_i64().unwrap().to_string();
        let resolved = alice
            .post(
                &server,
                "/alerts",
                &[("csrf", &alice.csrf), ("id", &id), ("action", "resolve")],
            )
            .await;
        assert_eq!(resolved.status, 303, "{backend}: {}", resolved.text());

        // Reprocessing: one message through the API, the failed ones on the page.
        let reprocess = api(
            &server,
            &token,
            "POST",
            "/api/v1/inbox/messages/1/reprocess",
            None,
        )
        .await;
        assert_eq!(reprocess.status, 202, "{backend}: {}", reprocess.text());
        let failed_again = alice
            .post(&server, "/inbox/reprocess-failed", &[("csrf", &alice.csrf)])
            .await;
        assert_eq!(failed_again.status, 303, "{backend}");

        // Her own sessions and password, and the token revoked, last.
        let ended = third
            .post(
                &server,
                "/account/sessions/end",
                &[("csrf", &third.csrf), ("session", "others")],
            )
            .await;
        assert_eq!(ended.status, 303, "{backend}");
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let changed = alice
            .post(
                &server,
                "/account/password",
                &[
                    ("csrf", &alice.csrf),
                    ("current", PASSWORD),
                    ("new", "a much longer passphrase"),
                    ("repeat", "a much longer passphrase"),
                ],
            )
            .await;
        assert_eq!(changed.status, 303, "{backend}: {}", changed.text());

        // Every action of the dashboard and the API has its entry.
        let reply = server.get("/api/v1/audit?limit=1000", Some(&token)).await;
        assert_eq!(reply.status, 200, "{backend}: {}", reply.text());
        let all = reply.json()["entries"].as_array().unwrap().clone();
        // Every entry made over HTTP says where it came from.
        assert!(
            all.iter().all(|e| e["address"] == "127.0.0.1"),
            "{backend}: {all:?}"
        );
        let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first");

        // Who, what, before and after, for a few of them.
        let failed = only(&server, &token, "session.sign_in_failed").await;
        assert_eq!(
            (failed["actor"].as_str(), failed["target"].as_str()),
            (Some("alice"), Some("alice"))
        );
        assert_eq!(
            entries(&server, &token, "session.sign_in").await.len(),
            4,
            "{backend}"
        );
        let sign_out = only(&server, &token, "session.sign_out").await;
        assert_eq!(sign_out["actor"], "alice");
        let domain = only(&server, &token, "domain.add").await;
        assert_eq!(domain["target"], "audit.example", "{backend}");
        let selector = only(&server, &token, "domain.selector_add").await;
        assert_eq!(
            value(&selector, "new_value"),
            json!({"dkim_selector": "s2026"})
        );
        let added = only(&server, &token, "approval.add").await;
        assert_eq!(added["actor"], "token:ops", "{backend}");
        assert_eq!(
            added["target"],
            format!("approval {approval} (example.com)")
        );
        assert_eq!(value(&added, "new_value")["value"], "203.0.113.0/24");
        assert!(added["old_value"].is_null());
        let revoke = only(&server, &token, "approval.revoke").await;
        assert!(value(&revoke, "old_value")["revoked_at"].is_null());
        assert_eq!(value(&revoke, "new_value")["revoked_by"], "token:ops");
        let switched = only(&server, &token, "alert_rule.change").await;
        assert_eq!(value(&switched, "old_value")["enabled"], true, "{backend}");
        assert_eq!(value(&switched, "new_value")["enabled"], false);
        let deleted = only(&server, &token, "alert_rule.delete").await;
        assert_eq!(value(&deleted, "old_value")["threshold"], 10);
        assert!(deleted["new_value"].is_null());
        let digest_change = only(&server, &token, "digest.change").await;
        assert_eq!(value(&digest_change, "old_value")["name"], "weekly");
        assert_eq!(value(&digest_change, "new_value")["name"], "daily");
        let token_made = only(&server, &token, "token.create").await;
        assert_eq!(token_made["target"], "token:ops");
        assert_eq!(value(&token_made, "new_value")["access"], "write");
        let reprocessed = only(&server, &token, "message.reprocess").await;
        assert_eq!(reprocessed["target"], "message 1");
        // Secrets never reach the log, in any entry.
        let text = reply.text();
        assert!(
            !text.contains("hooks.example.com/x"),
            "{backend}: a webhook URL is logged"
        );
        assert!(text.contains("https://hooks.example.com/…"), "{backend}");
        assert!(
            !text.contains("s3cret-signing-key"),
            "{backend}: a channel secret is logged"
        );
        assert!(!text.contains(&token), "{backend}: a token is logged");
        assert!(!text.contains(PASSWORD), "{backend}: a password is logged");

        // Filters: a group of actions, an actor, a target, a time.
        let rules = entries(&server, &token, "alert_rule.").await;
        let keys: Vec<&str> = rules
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["alert_rule.delete", "alert_rule.change", "alert_rule.add"],
            "{backend}"
        );
        let by_token = server
            .get("/api/v1/audit?actor=token:ops&limit=1000", Some(&token))
            .await
            .json();
        let by_token = by_token["entries"].as_array().unwrap();
        assert!(
            by_token.len() >= 10 && by_token.iter().all(|e| e["actor"] == "token:ops"),
            "{backend}"
        );
        let target = server
            .get("/api/v1/audit?target=audit.example", Some(&token))
            .await
            .json();
        assert_eq!(
            target["entries"].as_array().unwrap().len(),
            3,
            "{backend}: {target}"
        );
        let tomorrow = (Utc::now() + Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let future = server
            .get(&format!("/api/v1/audit?since={tomorrow}"), Some(&token))
            .await
            .json();
        assert_eq!(future["entries"], json!([]), "{backend}");
        let bad = server
            .get("/api/v1/audit?action=approval.steal", Some(&token))
            .await;
        assert_eq!(bad.status, 400, "{backend}");
        assert!(bad.text().contains("action"), "{}", bad.text());

        // Pages of 5, continued with next_before, cover every entry once.
        let mut seen = Vec::new();
        let mut path = "/api/v1/audit?limit=5".to_string();
        loop {
            let page = server.get(&path, Some(&token)).await.json();
            seen.extend(
                page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_i64().unwrap()),
            );
            match page["next_before"].as_i64() {
                Some(before) => path = format!("/api/v1/audit?limit=5&before={before}"),
                None => break,
            }
        }
        assert_eq!(seen, ids, "{backend}");

        // CSV: every entry, with a header.
        let csv = server.get("/api/v1/audit?format=csv", Some(&token)).await;
        assert_eq!(csv.status, 200, "{backend}");
        let text = csv.text();
        assert!(
            text.starts_with("id,at,actor,address,action,target,old_value,new_value\r\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), ids.len() + 1, "{backend}");

        // The Audit page, for admins, with its filters and the CSV link.
        let page = alice.get(&server, "/audit?action=approval.").await;
        assert_eq!(page.status, 200, "{backend}: {}", page.text());
        let html = page.text();
        assert!(
            html.contains("approval.revoke") && html.contains("token:ops"),
            "{backend}"
        );
        assert!(
            !html.contains("<code>domain.add</code>"),
            "{backend}: the filter is not applied"
        );
        assert!(
            html.contains("/api/v1/audit?action=approval.&#38;format=csv"),
            "{backend}: {html}"
        );

        // Viewers: neither the page, nor the API with their session or own token.
        let victor = sign_in(&server, "victor", PASSWORD).await.unwrap();
        assert_eq!(victor.get(&server, "/audit").await.status, 403, "{backend}");
        assert_eq!(
            victor.get(&server, "/api/v1/audit").await.status,
            403,
            "{backend}"
        );
        let victor_token = shown_token(&make(&server, &victor, "mine", "read", "").await.text());
        let refused = server.get("/api/v1/audit", Some(&victor_token)).await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        // Nothing changes or deletes an entry over HTTP.
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let reply = api(&server, &token, method, "/api/v1/audit", None).await;
            assert_eq!(reply.status, 405, "{backend}: {method}");
        }
        // And the database itself refuses an edit.
        let edit = store
            .db()
            .execute(
                &store
                    .db()
                    .statement("UPDATE audit_log SET actor = 'someone else'", Vec::new()),
            )
            .await;
        assert!(edit.is_err(), "{backend}: an audit entry was edited");

        // The token revoked on the Account page: recorded by its owner.
        let revoked = alice
            .post(
                &server,
                "/account/tokens/revoke",
                &[("csrf", &alice.csrf), ("name", "ops")],
            )
            .await;
        assert_eq!(revoked.status, 303, "{backend}");
        let entry = stored::list(
            store.db(),
            &stored::AuditFilter {
                action: Some("token.revoke".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            (entry.len(), entry[0].actor.as_str()),
            (1, "alice"),
            "{backend}"
        );

        // Every action of the dashboard and the API has its entry.
        let every = stored::list(store.db(), &stored::AuditFilter::default(), 1000)
            .await
            .unwrap();
        let recorded: HashSet<&str> = every.iter().map(|e| e.action.as_str()).collect();
        for action in Action::ALL {
            if !ASSERTED_ELSEWHERE.contains(&action.key()) {
                assert!(
                    recorded.contains(action.key()),
                    "{backend}: no audit entry for {}: {recorded:?}",
                    action.key()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_old_entries_in_batches_and_keeps_the_rest() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let now = Utc::now();
        for days in [500, 450, 401, 399, 1] {
            let entry = NewEntry {
                at: now - Duration::days(days),
                actor: "alice",
                address: Some("192.0.2.1"),
                action: "domain.add",
                target: &format!("{days}.example"),
                old_value: None,
                new_value: None,
            };
            stored::insert(store.db(), &entry).await.unwrap();
        }
        assert_eq!(
            stored::count_prunable(store.db(), 400, now).await.unwrap(),
            3,
            "{backend}"
        );
        assert_eq!(
            stored::count_prunable(store.db(), 0, now).await.unwrap(),
            0,
            "{backend}"
        );
        // Batches of 2: all three go, in two deletes.
        assert_eq!(
            dmarcd::audit::prune(&store, 400, 2).await.unwrap(),
            3,
            "{backend}"
        );
        let left = stored::list(store.db(), &stored::AuditFilter::default(), 10)
            .await
            .unwrap();
        let targets: Vec<&str> = left.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["1.example", "399.example"], "{backend}");
        // 0 keeps every entry.
        assert_eq!(
            dmarcd::audit::prune(&store, 0, 2).await.unwrap(),
            0,
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_records_user_role_password_and_token_changes_as_its_user() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let env = [("USER", "operator"), ("SUDO_USER", "")];
    let cli = |args: &[&str]| common::cli::dmarcd_ok(dir, args, &env);
    cli(&["user", "add", "bob"]);
    cli(&["user", "role", "bob", "viewer"]);
    let changed = cli(&["user", "passwd", "bob"]);
    let password = changed
        .lines()
        .find_map(|line| line.strip_prefix("password: "))
        .expect("a generated password")
        .to_string();
    // Bob turns two-step sign-in on; an operator turns it off (a lost phone).
    {
        let store = dmarcd::store::Store::connect(None, dir).await.unwrap();
        let accounts = dmarcd::accounts::Accounts::new(store.clone());
        let bob = dmarcd::store::accounts::user(store.db(), "bob")
            .await
            .unwrap()
            .unwrap();
        accounts.start_totp(bob.id).await.unwrap();
        let secret = accounts
            .totp_state(bob.id)
            .await
            .unwrap()
            .pending
            .unwrap()
            .0;
        let step = dmarcd::totp::step_of(Utc::now().timestamp());
        let code = dmarcd::totp::code_at(&secret, step).unwrap();
        accounts
            .confirm_totp(bob.id, &password, &code)
            .await
            .unwrap();
        assert!(accounts.totp_state(bob.id).await.unwrap().enabled);
        store.close().await;
    }
    cli(&["user", "totp-off", "bob"]);
    cli(&["token", "create", "--name", "deploy", "--write"]);
    cli(&["token", "revoke", "deploy"]);
    cli(&["user", "remove", "bob"]);
    cli(&["reprocess", "--all"]);
    let refused = common::cli::dmarcd(dir, &["user", "role", "nobody", "admin"], &env);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains("no user"), "{}", refused.stderr);

    let store = dmarcd::store::Store::connect(None, dir).await.unwrap();
    let entries = stored::list(store.db(), &stored::AuditFilter::default(), 100)
        .await
        .unwrap();
    let lines: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| (e.actor.clone(), e.action.clone(), e.target.clone()))
        .collect();
    let expected = [
        ("user.add", "bob"),
        ("user.role", "bob"),
        ("user.password", "bob"),
        ("user.totp_off", "bob"),
        ("token.create", "token:deploy"),
        ("token.revoke", "token:deploy"),
        ("user.remove", "bob"),
        ("message.reprocess_all", "every message"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for ((actor, action, target), (want_action, want_target)) in lines.iter().zip(expected) {
        assert_eq!(
            (actor.as_str(), action.as_str(), target.as_str()),
            ("cli:operator", want_action, want_target)
        );
    }
    let role = entries.iter().find(|e| e.action == "user.role").unwrap();
    assert_eq!(role.old_value.as_deref(), Some(r#"{"role":"admin"}"#));
    assert_eq!(role.new_value.as_deref(), Some(r#"{"role":"viewer"}"#));
    assert!(
        entries.iter().all(|e| e.address.is_none()),
        "the CLI has no address"
    );
}
