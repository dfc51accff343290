//! The Account page over HTTP on both backends: a user sees their own
//! sessions (when, from where, which browser), signs out the others, and
//! changes their own password.

use crate::common;
use crate::dashboard::{setup, sign_in, sign_in_with, Browser, PASSWORD};

use common::http::Server;
use dmarcd::web::WebConfig;

const NEW_PASSWORD: &str = "a much longer passphrase";

/// The sign-out handle on the Account page's row of the session whose
/// browser is `agent`.
fn handle_of(html: &str, agent: &str) -> String {
    let row = html
        .split("<tr>")
        .find(|row| row.contains(agent))
        .unwrap_or_else(|| panic!("no session from {agent} in {html}"));
    let start = row
        .find("name=\"session\" value=\"")
        .unwrap_or_else(|| panic!("no sign-out button for {agent}: {row}"))
        + 22;
    row[start..start + row[start..].find('"').unwrap()].to_string()
}

async fn signed_in(server: &Server, browser: &Browser) -> bool {
    let home = browser.get(server, "/").await;
    match home.status {
        200 => true,
        303 => false,
        other => panic!("GET / answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_their_sessions_sign_out_the_others_and_change_their_password() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let laptop = sign_in_with(&server, "alice", PASSWORD, Some("Laptop Browser/1.0"))
            .await
            .unwrap();
        let phone = sign_in_with(&server, "alice", PASSWORD, Some("Phone Browser/2.0"))
            .await
            .unwrap();
        let tablet = sign_in_with(&server, "alice", PASSWORD, Some("Tablet Browser/3.0"))
            .await
            .unwrap();
        let victor = sign_in_with(&server, "victor", PASSWORD, Some("Victor Browser/9"))
            .await
            .unwrap();
        let victor_again = sign_in_with(&server, "victor", PASSWORD, Some("Victor Other/9"))
            .await
            .unwrap();

        // Alice's sessions, each with where it came from; not Victor's.
        let page = laptop.get(&server, "/account").await;
        assert_eq!(page.status, 200, "{backend}: {}", page.text());
        let html = page.text();
        for shown in [
            "Laptop Browser/1.0",
            "Phone Browser/2.0",
            "Tablet Browser/3.0",
            "127.0.0.1",
            "Signed in as <strong>alice</strong> (admin)",
        ] {
            assert!(html.contains(shown), "{backend}: {shown} not on {html}");
        }
        assert!(
            !html.contains("Victor"),
            "{backend}: another user's session listed"
        );
        assert_eq!(html.matches("this session").count(), 1, "{backend}");
        assert!(
            html.split("<tr>")
                .find(|row| row.contains("Laptop Browser/1.0"))
                .unwrap()
                .contains("this session"),
            "{backend}: the asking session is not the one marked"
        );

        // A forged form ends nothing.
        let handle = handle_of(&html, "Phone Browser/2.0");
        let forged = laptop
            .post(
                &server,
                "/account/sessions/end",
                &[("csrf", "forged"), ("session", &handle)],
            )
            .await;
        assert_eq!(forged.status, 403, "{backend}");
        assert!(signed_in(&server, &phone).await, "{backend}");

        // Alice signs out her phone from her laptop.
        let ended = laptop
            .post(
                &server,
                "/account/sessions/end",
                &[("csrf", &laptop.csrf), ("session", &handle)],
            )
            .await;
        assert_eq!(ended.status, 303, "{backend}");
        assert_eq!(
            ended.header("location"),
            Some("/account?notice=sessions_ended&n=1")
        );
        assert!(
            !signed_in(&server, &phone).await,
            "{backend}: the phone is still in"
        );
        assert!(signed_in(&server, &laptop).await, "{backend}");
        let notice = laptop
            .get(&server, "/account?notice=sessions_ended&n=1")
            .await
            .text();
        assert!(notice.contains("1 session signed out."), "{backend}");
        assert!(!notice.contains("Phone Browser/2.0"), "{backend}");

        // Victor's session handle means nothing on Alice's account.
        let victors = victor.get(&server, "/account").await.text();
        let victors_other = handle_of(&victors, "Victor Other/9");
        let not_hers = laptop
            .post(
                &server,
                "/account/sessions/end",
                &[("csrf", &laptop.csrf), ("session", &victors_other)],
            )
            .await;
        assert_eq!(
            not_hers.header("location"),
            Some("/account?notice=no_such_session&n=0"),
            "{backend}"
        );
        assert!(signed_in(&server, &victor_again).await, "{backend}");

        // Password changes that are refused, each saying why.
        for (current, new, repeat, why) in [
            (
                "not the password",
                NEW_PASSWORD,
                NEW_PASSWORD,
                "the current password is not right",
            ),
            (PASSWORD, "short", "short", "at least 10 characters"),
            (
                PASSWORD,
                NEW_PASSWORD,
                "something else entirely",
                "the two new passwords differ",
            ),
            (
                PASSWORD,
                PASSWORD,
                PASSWORD,
                "the new password is the current one",
            ),
        ] {
            let refused = laptop
                .post(
                    &server,
                    "/account/password",
                    &[
                        ("csrf", &laptop.csrf),
                        ("current", current),
                        ("new", new),
                        ("repeat", repeat),
                    ],
                )
                .await;
            assert_eq!(refused.status, 400, "{backend}: {why}");
            let text = refused.text();
            assert!(
                text.contains("Your password is not changed") && text.contains(why),
                "{backend}: {why} not in {text}"
            );
        }
        assert!(signed_in(&server, &tablet).await, "{backend}");

        // The right one: the laptop stays in, the tablet is signed out,
        // the old password no longer signs in and the new one does.
        let changed = laptop
            .post(
                &server,
                "/account/password",
                &[
                    ("csrf", &laptop.csrf),
                    ("current", PASSWORD),
                    ("new", NEW_PASSWORD),
                    ("repeat", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(changed.status, 303, "{backend}: {}", changed.text());
        assert_eq!(
            changed.header("location"),
            Some("/account?notice=password_changed&n=0")
        );
        assert!(signed_in(&server, &laptop).await, "{backend}");
        assert!(!signed_in(&server, &tablet).await, "{backend}");
        assert_eq!(
            sign_in(&server, "alice", PASSWORD)
                .await
                .unwrap_err()
                .status,
            401,
            "{backend}"
        );
        sign_in(&server, "alice", NEW_PASSWORD).await.unwrap();
        assert!(
            signed_in(&server, &victor).await,
            "{backend}: Victor was signed out"
        );

        // "Every other session": only the asking one is left.
        let others = laptop
            .post(
                &server,
                "/account/sessions/end",
                &[("csrf", &laptop.csrf), ("session", "others")],
            )
            .await;
        assert_eq!(
            others.header("location"),
            Some("/account?notice=sessions_ended&n=1"),
            "{backend}"
        );
        let html = laptop.get(&server, "/account").await.text();
        assert_eq!(
            html.matches("<td>127.0.0.1</td>").count(),
            1,
            "{backend}: {html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guesses_at_the_current_password_count_against_the_sign_in_limit() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    let config = WebConfig {
        login_attempts_per_minute: 3,
        ..WebConfig::default()
    };
    let server = setup(&store, files.path(), config).await;
    let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
    let guess = |current: &'static str| {
        let (server, alice) = (&server, &alice);
        async move {
            alice
                .post(
                    server,
                    "/account/password",
                    &[
                        ("csrf", &alice.csrf),
                        ("current", current),
                        ("new", NEW_PASSWORD),
                        ("repeat", NEW_PASSWORD),
                    ],
                )
                .await
                .status
        }
    };
    for _ in 0..3 {
        assert_eq!(guess("a wrong guess").await, 400);
    }
    assert_eq!(guess("a wrong guess").await, 429);
    // Even the right one waits for the minute to pass.
    assert_eq!(guess(PASSWORD).await, 429);
}

/// The token the Account page shows once after making it.
pub(crate) fn shown_token(html: &str) -> String {
    let start = html
        .find("id=\"new-token\">")
        .unwrap_or_else(|| panic!("no new token on {html}"))
        + 15;
    html[start..start + html[start..].find('<').unwrap()].to_string()
}

/// The Account page's token form, sent.
pub(crate) async fn make(
    server: &Server,
    browser: &Browser,
    name: &str,
    access: &str,
    days: &str,
) -> common::http::Reply {
    let fields = [
        ("csrf", browser.csrf.as_str()),
        ("name", name),
        ("access", access),
        ("expires_days", days),
    ];
    browser.post(server, "/account/tokens", &fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn users_make_and_revoke_their_own_tokens_within_their_rights() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let victor = sign_in(&server, "victor", PASSWORD).await.unwrap();
        let approve = |token: String, ip: &'static str| {
            let server = &server;
            async move {
                server
                    .request(
                        "POST",
                        "/api/v1/approvals",
                        Some(&token),
                        Some("application/json"),
                        format!(r#"{{"action":"approve","match":{{"ip":"{ip}"}}}}"#).into_bytes(),
                        &[],
                    )
                    .await
                    .status
            }
        };

        // An admin makes a write token that expires; it is shown once and works.
        let made = make(&server, &alice, "alice-deploy", "write", "30").await;
        assert_eq!(made.status, 200, "{backend}: {}", made.text());
        let deploy = shown_token(&made.text());
        assert!(deploy.starts_with("dmarcd_"), "{backend}");
        assert_eq!(approve(deploy.clone(), "192.0.2.7").await, 201, "{backend}");
        let page = alice.get(&server, "/account").await.text();
        assert!(
            !page.contains(&deploy),
            "{backend}: the token was shown again"
        );
        assert!(
            page.contains("alice-deploy") && page.contains("<td>write</td>"),
            "{backend}"
        );

        // A viewer may only make read tokens; the page offers no more.
        let refused = make(&server, &victor, "victor-write", "write", "").await;
        assert_eq!(refused.status, 400, "{backend}");
        assert!(
            refused
                .text()
                .contains("No token was made: a viewer&#39;s tokens may only read"),
            "{backend}: {}",
            refused.text()
        );
        let victors_page = victor.get(&server, "/account").await.text();
        assert!(!victors_page.contains("value=\"write\""), "{backend}");
        let made = make(&server, &victor, "victor-grafana", "read", "").await;
        assert_eq!(made.status, 200, "{backend}: {}", made.text());
        let grafana = shown_token(&made.text());
        assert_eq!(
            server.get("/api/v1/domains", Some(&grafana)).await.status,
            200,
            "{backend}"
        );
        assert_eq!(
            approve(grafana.clone(), "192.0.2.8").await,
            403,
            "{backend}"
        );
        for (days, why) in [("0", "1 to 36500 days"), ("soon", "whole number")] {
            let bad = make(&server, &victor, "victor-bad", "read", days).await;
            assert_eq!(bad.status, 400, "{backend}");
            assert!(bad.text().contains(why), "{backend}: {why}");
        }

        // Each sees only their own tokens, and cannot revoke the other's.
        assert!(!victors_page.contains("alice-deploy"), "{backend}");
        let page = alice.get(&server, "/account").await.text();
        assert!(!page.contains("victor-grafana"), "{backend}");
        let not_his = victor
            .post(
                &server,
                "/account/tokens/revoke",
                &[("csrf", &victor.csrf), ("name", "alice-deploy")],
            )
            .await;
        assert_eq!(not_his.status, 404, "{backend}");
        assert_eq!(approve(deploy.clone(), "192.0.2.9").await, 201, "{backend}");

        // Revoked: 401 from then on, and listed as revoked.
        let revoked = alice
            .post(
                &server,
                "/account/tokens/revoke",
                &[("csrf", &alice.csrf), ("name", "alice-deploy")],
            )
            .await;
        assert_eq!(
            revoked.header("location"),
            Some("/account?notice=token_revoked&n=0"),
            "{backend}"
        );
        assert_eq!(approve(deploy, "192.0.2.10").await, 401, "{backend}");
        let page = alice.get(&server, "/account").await.text();
        assert!(page.contains("revoked"), "{backend}");

        // A removed user's tokens go with them.
        server.state.accounts.remove_user("victor").await.unwrap();
        assert_eq!(
            server.get("/api/v1/domains", Some(&grafana)).await.status,
            401,
            "{backend}"
        );
    }
}

/// The key the Account page shows while two-step sign-in is set up.
fn shown_secret(html: &str) -> String {
    let start = html
        .find("id=\"totp-secret\">")
        .unwrap_or_else(|| panic!("no key on {html}"))
        + 17;
    html[start..start + html[start..].find('<').unwrap()].to_string()
}

/// The app's code for `secret`, `steps` 30-second steps from now.
fn code(secret: &str, steps: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    dmarcd::totp::code_at(secret, dmarcd::totp::step_of(now) + steps).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_step_sign_in_is_set_up_with_a_code_asked_at_sign_in_used_once_and_turned_off() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let totp = |fields: &[(&'static str, &str)]| {
            let mut all = vec![("csrf", alice.csrf.clone())];
            all.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
            all
        };
        let post = |fields: Vec<(&'static str, String)>| {
            let (server, alice) = (&server, &alice);
            async move {
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                alice.post(server, "/account/totp", &fields).await
            }
        };
        let page = alice.get(&server, "/account").await.text();
        assert!(page.contains("Set up two-step sign-in"), "{backend}");

        // Set up: a key, shown until a code from it confirms it.
        assert_eq!(post(totp(&[("step", "start")])).await.status, 303);
        let page = alice.get(&server, "/account").await.text();
        let secret = shown_secret(&page);
        assert!(page.contains("id=\"totp-qr\""), "{backend}: no QR code");
        assert!(page.contains("<svg"), "{backend}: no QR code");
        assert!(
            page.contains(&format!("otpauth://totp/dmarcd%3Aalice?secret={secret}")),
            "{backend}"
        );
        let wrong = post(totp(&[
            ("step", "confirm"),
            ("password", PASSWORD),
            ("code", "000000"),
        ]))
        .await;
        assert_eq!(wrong.status, 400, "{backend}");
        assert!(wrong.text().contains("that code is not right"), "{backend}");
        let confirming = code(&secret, 0);
        // A stolen session alone cannot turn it on: the password is asked.
        let no_password = post(totp(&[
            ("step", "confirm"),
            ("password", "guess"),
            ("code", &confirming),
        ]))
        .await;
        assert_eq!(no_password.status, 400, "{backend}");
        let right = post(totp(&[
            ("step", "confirm"),
            ("password", PASSWORD),
            ("code", &confirming),
        ]))
        .await;
        assert_eq!(right.status, 303, "{backend}: {}", right.text());
        assert_eq!(
            right.header("location"),
            Some("/account?notice=totp_on&n=0")
        );
        let page = alice.get(&server, "/account").await.text();
        assert!(page.contains("Turn two-step sign-in off"), "{backend}");
        assert!(!page.contains(&secret), "{backend}: the key is shown again");

        // Signing in now needs the code: none, a wrong one, and the one
        // that confirmed it (used) are refused; the next one works, once.
        for (given, why) in [
            (String::new(), "no code"),
            ("123456".to_string(), "a wrong code"),
            (confirming.clone(), "a used code"),
        ] {
            let refused =
                crate::dashboard::sign_in_with_code(&server, "alice", PASSWORD, None, &given)
                    .await
                    .unwrap_err();
            assert_eq!(refused.status, 401, "{backend}: {why}");
            assert!(
                refused
                    .text()
                    .contains("Wrong user name or password (or authenticator code)"),
                "{backend}: {why}"
            );
        }
        let next = code(&secret, 1);
        let phone = crate::dashboard::sign_in_with_code(&server, "alice", PASSWORD, None, &next)
            .await
            .unwrap();
        let replayed = crate::dashboard::sign_in_with_code(&server, "alice", PASSWORD, None, &next)
            .await
            .unwrap_err();
        assert_eq!(replayed.status, 401, "{backend}: a code worked twice");
        // Viewers without it sign in as before.
        sign_in(&server, "victor", PASSWORD).await.unwrap();

        // Guessing codes: after five wrong ones in a row (from any address)
        // the account takes no code for a while, even the right one, and
        // the audit log says the password was right.
        for _ in 0..5 {
            crate::dashboard::sign_in_with_code(&server, "alice", PASSWORD, None, "000000")
                .await
                .unwrap_err();
        }
        let locked = crate::dashboard::sign_in_with_code(
            &server,
            "alice",
            PASSWORD,
            None,
            &code(&secret, 1),
        )
        .await
        .unwrap_err();
        assert_eq!(
            locked.status, 401,
            "{backend}: a code was checked while locked"
        );
        let reasons = dmarcd::store::audit::list(
            store.db(),
            &dmarcd::store::audit::AuditFilter {
                action: Some("session.sign_in_failed".into()),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
        let reasons: Vec<&str> = reasons
            .iter()
            .filter_map(|e| e.new_value.as_deref())
            .collect();
        assert!(
            reasons[0].contains("too many wrong authenticator codes"),
            "{backend}: {reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|reason| reason.contains("the authenticator code was not")),
            "{backend}: {reasons:?}"
        );
        // The lock passes (here: its time is set back, and the mark of the
        // last used code cleared, rather than waiting for the next one).
        store
            .db()
            .execute(&store.db().statement(
                "UPDATE users SET totp_failed_at = $1, totp_last_step = NULL WHERE username = 'alice'",
                vec![(chrono::Utc::now() - chrono::Duration::minutes(16)).into()],
            ))
            .await
            .unwrap();
        let after = crate::dashboard::sign_in_with_code(
            &server,
            "alice",
            PASSWORD,
            None,
            &code(&secret, 1),
        )
        .await;
        assert!(
            after.is_ok(),
            "{backend}: {:?}",
            after.err().map(|r| r.status)
        );

        // Off: the password confirms it; then the password alone signs in.
        let forged = phone
            .post(
                &server,
                "/account/totp",
                &[
                    ("csrf", &phone.csrf),
                    ("step", "off"),
                    ("password", "not it"),
                ],
            )
            .await;
        assert_eq!(forged.status, 400, "{backend}");
        let off = phone
            .post(
                &server,
                "/account/totp",
                &[
                    ("csrf", &phone.csrf),
                    ("step", "off"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(off.status, 303, "{backend}: {}", off.text());
        sign_in(&server, "alice", PASSWORD).await.unwrap();

        // Both changes are in the audit log, with where they came from.
        for action in ["account.totp_on", "account.totp_off"] {
            let entries = dmarcd::store::audit::list(
                store.db(),
                &dmarcd::store::audit::AuditFilter {
                    action: Some(action.into()),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
            assert_eq!(entries.len(), 1, "{backend}: {action}");
            assert_eq!(entries[0].actor, "alice");
            assert_eq!(entries[0].address.as_deref(), Some("127.0.0.1"));
        }
    }
}
