//! Domain groups as an MSP runs them, on both backends: an admin makes two
//! customers over the API, gives each a domain and an owner; the owner
//! adds an analyst and a viewer; roles decide who approves sources,
//! changes alert rules and manages members; group tokens carry a role and
//! expire; every change is in the audit log. Then the same with the CLI
//! (`dmarcd group …`, `dmarcd user add --group`, `dmarcd token create
//! --group`). A single-team install (one group) sees no change.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::common;
use crate::dashboard::{sign_in, PASSWORD};
use common::http::{Reply, Server};
use dmarcd::accounts::TokenAccess;
use dmarcd::inbox::{Envelope, Inbox};
use dmarcd::scope::GroupRole;
use dmarcd::web::WebConfig;

async fn send(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    server.call(token, method, path, body).await
}

/// An aggregate report of `domain` (three records from 192.0.2.x).
fn report(domain: &str) -> Vec<u8> {
    let mut report = dmarcd::testing::aggregate_report(3);
    report.metadata.report_id = format!("{domain}-1");
    report.policy_published.domain = domain.to_string();
    report.to_xml().into_bytes()
}

async fn entries(server: &Server, admin: &str, action: &str) -> Vec<Value> {
    let reply = server
        .get(&format!("/api/v1/audit?action={action}"), Some(admin))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_msp_gives_each_customer_its_domains_members_roles_and_tokens() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let inbox = Inbox::new(store.clone());
        for domain in ["shop.example", "bank.example"] {
            inbox
                .accept(&report(domain), &Envelope::import(domain))
                .await
                .unwrap();
        }
        common::data::process_all(&store).await;
        let server = Server::start(store.clone(), WebConfig::default()).await;
        let accounts = &server.state.accounts;
        accounts.add_user("msp", PASSWORD, "admin").await.unwrap();
        for name in ["olga", "anton", "vera", "other"] {
            accounts.add_user(name, PASSWORD, "viewer").await.unwrap();
        }
        let admin = accounts
            .create_token_with("msp-token", TokenAccess::Write, None)
            .await
            .unwrap();

        // Before any group: a viewer (in the default group) sees every domain.
        let vera = sign_in(&server, "vera", PASSWORD).await.unwrap();
        let domains = vera.get(&server, "/api/v1/domains").await.json();
        assert_eq!(domains.as_array().unwrap().len(), 2, "{backend}: {domains}");

        // The admin makes two customers and gives each a domain.
        for (group, domain) in [("shop", "shop.example"), ("bank", "bank.example")] {
            let made = send(
                &server,
                &admin,
                "POST",
                "/api/v1/groups",
                Some(json!({"name": group})),
            )
            .await;
            assert_eq!(made.status, 201, "{backend}: {}", made.text());
            let path = format!("/api/v1/groups/{group}/domains/{domain}");
            let moved = send(&server, &admin, "PUT", &path, None).await;
            assert_eq!(moved.status, 204, "{backend}: {}", moved.text());
        }
        let twice = send(
            &server,
            &admin,
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "shop"})),
        )
        .await;
        assert_eq!(twice.status, 409, "{backend}");
        let owner = send(
            &server,
            &admin,
            "PUT",
            "/api/v1/groups/shop/members/olga",
            Some(json!({"role": "owner"})),
        )
        .await;
        assert_eq!(owner.status, 204, "{backend}: {}", owner.text());

        // The owner adds an analyst and a viewer, with a token of theirs.
        let olga = sign_in(&server, "olga", PASSWORD).await.unwrap();
        // An owner's group token may not be stronger than their role.
        let fields = [
            ("csrf", olga.csrf.as_str()),
            ("name", "olga-bank"),
            ("access", "read"),
            ("expires_days", "30"),
            ("group", "bank"),
            ("group_role", "viewer"),
        ];
        let refused = olga.post(&server, "/account/tokens", &fields).await;
        assert_eq!(refused.status, 400, "{backend}: not a member of bank");
        let fields = [
            ("csrf", olga.csrf.as_str()),
            ("name", "olga-owner"),
            ("access", "read"),
            ("expires_days", "30"),
            ("group", "shop"),
            ("group_role", "owner"),
        ];
        let made = olga.post(&server, "/account/tokens", &fields).await;
        assert_eq!(made.status, 200, "{backend}: {}", made.text());
        let olga_token = crate::account::shown_token(&made.text());
        for (user, role) in [("anton", "analyst"), ("vera", "viewer")] {
            let path = format!("/api/v1/groups/shop/members/{user}");
            let added = send(
                &server,
                &olga_token,
                "PUT",
                &path,
                Some(json!({"role": role})),
            )
            .await;
            assert_eq!(added.status, 204, "{backend}: {}", added.text());
        }
        // … but manages nothing of the other customer, and makes no group.
        let refused = send(
            &server,
            &olga_token,
            "PUT",
            "/api/v1/groups/bank/members/vera",
            Some(json!({"role": "viewer"})),
        )
        .await;
        assert_eq!(refused.status, 404, "{backend}: {}", refused.text());
        let refused = send(
            &server,
            &olga_token,
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "mine"})),
        )
        .await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        let refused = send(
            &server,
            &olga_token,
            "PUT",
            "/api/v1/groups/shop/domains/bank.example",
            None,
        )
        .await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());

        // Vera (viewer of shop, still in the default group, which no
        // longer holds either domain) sees shop.example only.
        let domains = vera.get(&server, "/api/v1/domains").await.json();
        let names: Vec<&str> = domains
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shop.example"], "{backend}");
        assert_eq!(domains[0]["domain_group"], "shop", "{backend}");

        // Roles: the analyst approves shop's sources and changes its alert
        // rules; the viewer may not; nobody of shop touches bank.
        let analyst = accounts
            .create_group_token("anton-shop", "shop", GroupRole::Analyst, None)
            .await
            .unwrap();
        let viewer = accounts
            .create_group_token("vera-shop", "shop", GroupRole::Viewer, None)
            .await
            .unwrap();
        let approval = |domain: &str| json!({"domain": domain, "action": "approve", "match": {"ip": "192.0.2.7"}, "note": "relay"});
        let approved = send(
            &server,
            &analyst,
            "POST",
            "/api/v1/approvals",
            Some(approval("shop.example")),
        )
        .await;
        assert_eq!(approved.status, 201, "{backend}: {}", approved.text());
        let refused = send(
            &server,
            &analyst,
            "POST",
            "/api/v1/approvals",
            Some(approval("bank.example")),
        )
        .await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        let every = json!({"action": "approve", "match": {"ip": "192.0.2.7"}});
        let refused = send(&server, &analyst, "POST", "/api/v1/approvals", Some(every)).await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        let refused = send(
            &server,
            &viewer,
            "POST",
            "/api/v1/approvals",
            Some(approval("shop.example")),
        )
        .await;
        assert_eq!(
            refused.status,
            403,
            "{backend}: a viewer's token only reads: {}",
            refused.text()
        );
        // An admin's channel is shared by admins' rules; the analyst makes
        // one for the group, and the group's rules tell it.
        let shared = send(
            &server,
            &admin,
            "POST",
            "/api/v1/alert-channels",
            Some(
                json!({"name": "msp", "kind": "webhook", "target": "https://hooks.example.com/x"}),
            ),
        )
        .await;
        assert_eq!(shared.status, 201, "{backend}: {}", shared.text());
        let shared = shared.json()["id"].clone();
        let own = send(
            &server,
            &analyst,
            "POST",
            "/api/v1/alert-channels",
            Some(json!({"name": "shop ops", "kind": "email", "target": "ops@shop.example"})),
        )
        .await;
        assert_eq!(own.status, 201, "{backend}: {}", own.text());
        let own = own.json();
        assert!(own["group_id"].is_i64(), "{backend}: {own}");
        let own = own["id"].clone();
        let rule = |domain: Option<&str>, channels: Value| json!({"domain": domain, "kind": "failing_volume", "threshold": 10, "channels": channels});
        let made = send(
            &server,
            &analyst,
            "POST",
            "/api/v1/alert-rules",
            Some(rule(Some("shop.example"), json!([own]))),
        )
        .await;
        assert_eq!(made.status, 201, "{backend}: {}", made.text());
        for (refused_rule, status) in [
            (rule(Some("bank.example"), json!([own])), 403),
            (rule(None, json!([own])), 403),
            (rule(Some("shop.example"), json!([shared])), 404),
            (rule(Some("shop.example"), json!([])), 400),
        ] {
            let refused = send(
                &server,
                &analyst,
                "POST",
                "/api/v1/alert-rules",
                Some(refused_rule),
            )
            .await;
            assert_eq!(refused.status, status, "{backend}: {}", refused.text());
        }
        // The group sees its rules and its channel, not the admins'.
        let rules = server
            .get("/api/v1/alert-rules", Some(&viewer))
            .await
            .json();
        assert_eq!(rules.as_array().unwrap().len(), 1, "{backend}: {rules}");
        let channels = server
            .get("/api/v1/alert-channels", Some(&viewer))
            .await
            .json();
        assert_eq!(
            channels.as_array().unwrap().len(),
            1,
            "{backend}: {channels}"
        );
        assert_eq!(channels[0]["name"], "shop ops", "{backend}");
        let path = format!("/api/v1/alert-channels/{shared}");
        let refused = send(&server, &analyst, "DELETE", &path, None).await;
        assert_eq!(refused.status, 404, "{backend}: {}", refused.text());
        // The viewer's dashboard offers no approval form; the analyst's does.
        let anton = sign_in(&server, "anton", PASSWORD).await.unwrap();
        let page = anton
            .get(&server, "/senders?domain=shop.example")
            .await
            .text();
        assert!(
            page.contains("name=\"match_kind\""),
            "{backend}: analysts approve"
        );
        let page = vera
            .get(&server, "/senders?domain=shop.example")
            .await
            .text();
        assert!(
            !page.contains("name=\"match_kind\""),
            "{backend}: viewers only read"
        );
        let bank = vera.get(&server, "/senders?domain=bank.example").await;
        assert_eq!(bank.status, 404, "{backend}");

        // A group token expires, and sees nothing once its maker leaves.
        let expiring = accounts
            .create_group_token(
                "shop-expired",
                "shop",
                GroupRole::Viewer,
                Some(Utc::now() - Duration::minutes(1)),
            )
            .await
            .unwrap();
        assert_eq!(
            server.get("/api/v1/domains", Some(&expiring)).await.status,
            401
        );
        let left = send(
            &server,
            &admin,
            "DELETE",
            "/api/v1/groups/shop/members/olga",
            None,
        )
        .await;
        assert_eq!(left.status, 204, "{backend}: {}", left.text());
        let blind = server
            .get("/api/v1/domains", Some(&olga_token))
            .await
            .json();
        assert_eq!(blind, json!([]), "{backend}");

        // Removing a group puts its domains back in the default group.
        let removed = send(&server, &admin, "DELETE", "/api/v1/groups/bank", None).await;
        assert_eq!(removed.status, 204, "{backend}: {}", removed.text());
        let other = sign_in(&server, "other", PASSWORD).await.unwrap();
        let domains = other.get(&server, "/api/v1/domains").await.json();
        assert_eq!(domains[0]["name"], "bank.example", "{backend}: {domains}");
        let refused = send(&server, &admin, "DELETE", "/api/v1/groups/default", None).await;
        assert_eq!(refused.status, 409, "{backend}");

        // The mailboxes are the server's: not in a member's navigation, and
        // refused to them.
        let overview = vera.get(&server, "/").await.text();
        assert!(!overview.contains("href=\"/mailboxes\""), "{backend}");
        assert_eq!(
            vera.get(&server, "/mailboxes").await.status,
            403,
            "{backend}"
        );
        // The Groups page: the owner's members, the viewer's group only.
        let page = vera.get(&server, "/groups").await.text();
        assert!(
            page.contains("shop") && page.contains("default"),
            "{backend}"
        );
        assert!(
            !page.contains("anton"),
            "{backend}: only owners see members"
        );
        let msp = sign_in(&server, "msp", PASSWORD).await.unwrap();
        let fields = [
            ("csrf", msp.csrf.as_str()),
            ("action", "member"),
            ("group", "shop"),
            ("user", "other"),
            ("role", "viewer"),
        ];
        let added = msp.post(&server, "/groups", &fields).await;
        assert_eq!(added.status, 303, "{backend}: {}", added.text());
        let page = msp.get(&server, "/groups").await.text();
        assert!(
            page.contains("other") && page.contains("anton"),
            "{backend}"
        );

        // Moving a domain to another group stops what its group set up for
        // it: shop's rule for shop.example would tell shop's channel of
        // another group's domain.
        let back = send(
            &server,
            &admin,
            "PUT",
            "/api/v1/groups/default/domains/shop.example",
            None,
        )
        .await;
        assert_eq!(back.status, 204, "{backend}: {}", back.text());
        let rules = server.get("/api/v1/alert-rules", Some(&admin)).await.json();
        let shop_rule = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["domain"] == "shop.example")
            .unwrap_or_else(|| panic!("{backend}: {rules}"));
        assert_eq!(shop_rule["enabled"], false, "{backend}: {shop_rule}");

        // Each change is in the audit log, by whom, old → new.
        assert_eq!(
            entries(&server, &admin, "group.add").await.len(),
            2,
            "{backend}"
        );
        let moved = entries(&server, &admin, "group.domain").await;
        assert_eq!(moved.len(), 3, "{backend}");
        assert!(
            moved[0]["new_value"]
                .as_str()
                .unwrap()
                .contains(&format!("\"disabled_alert_rules\":[{}]", shop_rule["id"])),
            "{backend}: {:?}",
            moved[0]
        );
        assert!(
            moved.iter().any(|e| e["target"] == "shop.example"
                && e["new_value"].as_str().unwrap().contains("shop")
                && e["old_value"].as_str().unwrap().contains("default")),
            "{backend}: {moved:?}"
        );
        let members = entries(&server, &admin, "group.member").await;
        assert!(
            members
                .iter()
                .any(|e| e["target"] == "shop/anton" && e["actor"] == "token:olga-owner"),
            "{backend}: {members:?}"
        );
        assert!(
            members
                .iter()
                .any(|e| e["target"] == "shop/other" && e["actor"] == "msp"),
            "{backend}: {members:?}"
        );
        let left = entries(&server, &admin, "group.member_remove").await;
        assert_eq!(left[0]["target"], "shop/olga", "{backend}");
        let gone = entries(&server, &admin, "group.remove").await;
        assert!(
            gone[0]["old_value"]
                .as_str()
                .unwrap()
                .contains("bank.example"),
            "{backend}: {gone:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| common::cli::dmarcd_ok(data.path(), args, &[]);
    cli(&["migrate"]);
    let store = dmarcd::store::Store::connect(None, data.path())
        .await
        .unwrap();
    Inbox::new(store.clone())
        .accept(&report("shop.example"), &Envelope::import("shop"))
        .await
        .unwrap();
    common::data::process_all(&store).await;
    store.close().await;
    cli(&["group", "add", "shop"]);
    cli(&["group", "domain", "shop", "shop.example"]);
    let added = cli(&[
        "user",
        "add",
        "sam",
        "--viewer",
        "--group",
        "shop",
        "--group-role",
        "analyst",
    ]);
    assert!(added.contains("password:"), "{added}");
    let listed = cli(&["group", "list"]);
    assert!(
        listed.contains("shop\tdomains: shop.example\tmembers: sam (analyst)"),
        "{listed}"
    );
    assert!(
        listed.contains("default\tdomains: -\tmembers: -"),
        "{listed}"
    );
    let token = cli(&["token", "create", "--name", "shop-read", "--group", "shop"]);
    let tokens = cli(&["token", "list"]);
    assert!(
        tokens.contains("shop-read\tread\tgroup shop (viewer)"),
        "{tokens}"
    );
    let refused = common::cli::dmarcd(data.path(), &["group", "remove", "default"], &[]);
    assert!(!refused.success, "the default group stays");
    cli(&["group", "leave", "shop", "sam"]);
    cli(&["group", "remove", "shop"]);
    let listed = cli(&["group", "list"]);
    assert!(
        listed.contains("default\tdomains: shop.example"),
        "{listed}"
    );
    // The group's token went with it.
    let store = dmarcd::store::Store::connect(None, data.path())
        .await
        .unwrap();
    let check = dmarcd::accounts::Accounts::new(store.clone())
        .token_check(token.trim())
        .await
        .unwrap();
    assert_eq!(check, dmarcd::accounts::TokenCheck::Unknown);
    let logged = dmarcd::store::audit::list(
        store.db(),
        &dmarcd::store::audit::AuditFilter {
            action: Some("group.".into()),
            ..Default::default()
        },
        100,
    )
    .await
    .unwrap();
    assert!(
        logged.iter().all(|e| e.actor.starts_with("cli:")),
        "{logged:?}"
    );
    assert_eq!(logged.len(), 4, "{logged:?}");
}
