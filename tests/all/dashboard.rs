//! The dashboard over HTTP on both backends: sign-in, sessions, CSRF, every
//! page with filters, and the same rows as the API for the same parameters.

use crate::common;

use common::http::{Reply, Server};
use dmarcd::store::Store;
use dmarcd::web::WebConfig;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// The cookie `name` set by a reply.
fn set_cookie<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_value(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// The value of the first `name="csrf" value="…"` in a page.
fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(pairs).unwrap().into_bytes()
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Debug)]
pub(crate) struct Browser {
    cookie: String,
    pub(crate) csrf: String,
}

/// The sign-in form filled in and sent, asking to go to `next` after.
async fn submit_sign_in(server: &Server, user: &str, password: &str, next: &str) -> Reply {
    submit_sign_in_with(server, user, password, next, None, "").await
}

/// `submit_sign_in` from a browser that names itself `user_agent`.
async fn submit_sign_in_with(
    server: &Server,
    user: &str,
    password: &str,
    next: &str,
    user_agent: Option<&str>,
    code: &str,
) -> Reply {
    let page = server.get("/login?next=/domains", None).await;
    assert_eq!(page.status, 200);
    let login_cookie = cookie_value(set_cookie(&page, "dmarcd_login").unwrap());
    let csrf = csrf_in(&page.text());
    server
        .request(
            "POST",
            "/login",
            None,
            FORM,
            form(&[
                ("username", user),
                ("password", password),
                ("csrf", &csrf),
                ("next", next),
                ("code", code),
            ]),
            &[
                ("Cookie", &format!("dmarcd_login={login_cookie}")),
                ("User-Agent", user_agent.unwrap_or("dmarcd-tests")),
            ],
        )
        .await
}

pub(crate) async fn sign_in(server: &Server, user: &str, password: &str) -> Result<Browser, Reply> {
    sign_in_with(server, user, password, None).await
}

/// `sign_in` from a browser that names itself `user_agent`.
pub(crate) async fn sign_in_with(
    server: &Server,
    user: &str,
    password: &str,
    user_agent: Option<&str>,
) -> Result<Browser, Reply> {
    sign_in_with_code(server, user, password, user_agent, "").await
}

/// `sign_in_with`, giving the authenticator app's `code` too.
pub(crate) async fn sign_in_with_code(
    server: &Server,
    user: &str,
    password: &str,
    user_agent: Option<&str>,
    code: &str,
) -> Result<Browser, Reply> {
    let reply = submit_sign_in_with(server, user, password, "/domains", user_agent, code).await;
    if reply.status != 303 {
        return Err(reply);
    }
    assert_eq!(reply.header("location"), Some("/domains"));
    let session = set_cookie(&reply, "dmarcd_session").unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    let cookie = format!("dmarcd_session={}", cookie_value(session));
    let home = server
        .request("GET", "/", None, None, Vec::new(), &[("Cookie", &cookie)])
        .await;
    assert_eq!(home.status, 200, "{}", home.text());
    Ok(Browser {
        csrf: csrf_in(&home.text()),
        cookie,
    })
}

impl Browser {
    pub(crate) async fn get(&self, server: &Server, path: &str) -> Reply {
        server
            .request(
                "GET",
                path,
                None,
                None,
                Vec::new(),
                &[("Cookie", &self.cookie)],
            )
            .await
    }

    pub(crate) async fn post(&self, server: &Server, path: &str, fields: &[(&str, &str)]) -> Reply {
        server
            .request(
                "POST",
                path,
                None,
                FORM,
                form(fields),
                &[("Cookie", &self.cookie)],
            )
            .await
    }
}

pub(crate) async fn setup(store: &Store, files: &std::path::Path, config: WebConfig) -> Server {
    common::data::populated(store, files).await;
    let server = Server::start(store.clone(), config).await;
    let accounts = &server.state.accounts;
    accounts.add_user("alice", PASSWORD, "admin").await.unwrap();
    accounts
        .add_user("victor", PASSWORD, "viewer")
        .await
        .unwrap();
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_sessions_and_csrf() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let config = WebConfig {
            login_attempts_per_minute: 3,
            ..WebConfig::default()
        };
        let server = setup(&store, files.path(), config).await;

        // Anonymous visitors are sent to the sign-in page, keeping where they were going.
        let anonymous = server.get("/records?country=DE", None).await;
        assert_eq!(anonymous.status, 303, "{backend}");
        assert_eq!(
            anonymous.header("location"),
            Some("/login?next=%2Frecords%3Fcountry%3DDE")
        );

        // Wrong password, then a form without its CSRF cookie.
        let wrong = sign_in(&server, "alice", "not the password")
            .await
            .unwrap_err();
        assert_eq!(wrong.status, 401, "{backend}");
        assert!(wrong.text().contains("Wrong user name or password"));
        let forged = server
            .request(
                "POST",
                "/login",
                None,
                FORM,
                form(&[("username", "alice"), ("password", PASSWORD), ("csrf", "x")]),
                &[],
            )
            .await;
        assert_eq!(forged.status, 403, "{backend}");

        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        assert!(alice
            .get(&server, "/")
            .await
            .text()
            .contains("Sign out alice"));

        // POSTs need the session's CSRF token.
        let no_token = alice
            .post(
                &server,
                "/domains",
                &[("csrf", "wrong"), ("name", "example.org")],
            )
            .await;
        assert_eq!(no_token.status, 403, "{backend}");
        assert!(no_token.text().contains("CSRF"));
        let added = alice
            .post(
                &server,
                "/domains",
                &[("csrf", &alice.csrf), ("name", "Example.ORG")],
            )
            .await;
        assert_eq!(added.status, 303, "{backend}");
        let domains = alice.get(&server, "/domains").await.text();
        assert!(
            domains.contains("example.org") && domains.contains("user,"),
            "{backend}"
        );
        let invalid = alice
            .post(
                &server,
                "/domains",
                &[("csrf", &alice.csrf), ("name", "not a domain")],
            )
            .await;
        let shown = alice
            .get(&server, invalid.header("location").unwrap())
            .await
            .text();
        assert!(shown.contains("is not a domain name"), "{backend}");

        // A viewer sees everything but changes nothing.
        let victor = sign_in(&server, "victor", PASSWORD).await.unwrap();
        assert!(!victor
            .get(&server, "/domains")
            .await
            .text()
            .contains("Add a domain"));
        let refused = victor
            .post(
                &server,
                "/domains/remove",
                &[("csrf", &victor.csrf), ("name", "example.org")],
            )
            .await;
        assert_eq!(refused.status, 403, "{backend}");
        let reprocess = victor
            .post(
                &server,
                "/inbox/reprocess-failed",
                &[("csrf", &victor.csrf)],
            )
            .await;
        assert_eq!(reprocess.status, 403, "{backend}");
        let removed = alice
            .post(
                &server,
                "/domains/remove",
                &[("csrf", &alice.csrf), ("name", "example.org")],
            )
            .await;
        assert_eq!(removed.status, 303, "{backend}");

        // Signing out ends the session on the server, not just in the browser.
        let out = alice
            .post(&server, "/logout", &[("csrf", &alice.csrf)])
            .await;
        assert_eq!(out.status, 303, "{backend}");
        assert_eq!(alice.get(&server, "/").await.status, 303, "{backend}");

        // Three failed attempts a minute per address; the fourth is refused unchecked.
        for _ in 0..3 {
            let _ = sign_in(&server, "alice", "guess").await;
        }
        let limited = sign_in(&server, "alice", PASSWORD).await.unwrap_err();
        assert_eq!(limited.status, 429, "{backend}");
        store.close().await;
    }
}

/// `next` after sign-in goes only to a path on this site: browsers drop a
/// tab or newline from `Location` (`/\t/evil.example` is `//evil.example`)
/// and a newline used to make the redirect fail with a 500.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_redirects_only_to_local_paths() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    let server = setup(&store, files.path(), WebConfig::default()).await;
    for (next, expected) in [
        (
            "/aggregate?domain=example.com",
            "/aggregate?domain=example.com",
        ),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r\nSet-Cookie: a=b", "/"),
        ("/\\evil.example", "/"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
    ] {
        let reply = submit_sign_in(&server, "alice", PASSWORD, next).await;
        assert_eq!(reply.status, 303, "{next:?}: {}", reply.text());
        assert_eq!(reply.header("location"), Some(expected), "{next:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_and_filter_renders_the_same_rows_as_the_api() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let token = server.state.accounts.create_token("compare").await.unwrap();
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();

        let report = server
            .get("/api/v1/aggregate/reports", Some(&token))
            .await
            .json()["items"][0]["id"]
            .as_i64()
            .unwrap();
        let failure = server
            .get("/api/v1/failure/reports", Some(&token))
            .await
            .json()["items"][0]["id"]
            .as_i64()
            .unwrap();
        let mut pages = vec![
            "/".to_string(),
            "/?domain=example.com&since=2024-01-01".into(),
            "/records".into(),
            "/records?country=DE&result=fail".into(),
            "/records?source=11.0.0.0/30&dkim=pass&spf=pass&disposition=none".into(),
            "/sources/11.0.1.5".into(),
            format!("/reports/{report}"),
            "/tls".into(),
            "/tls?domain=company-y.example".into(),
            "/failures".into(),
            format!("/failures/{failure}"),
            "/inbox".into(),
            "/inbox?status=done".into(),
            "/domains".into(),
        ];
        for group in [
            "source",
            "source_name",
            "org",
            "country",
            "asn",
            "domain",
            "day",
            "disposition",
            "header_from",
        ] {
            for sort in ["messages", "failures", "pass_rate", "key"] {
                pages.push(format!("/aggregate?group_by={group}&sort={sort}"));
            }
        }
        for path in &pages {
            let reply = alice.get(&server, path).await;
            assert_eq!(reply.status, 200, "{backend} {path}: {}", reply.text());
            let html = reply.text();
            assert!(html.contains("<meta name=\"viewport\""), "{backend} {path}");
            assert!(
                !html.contains("http://") || html.contains("xmlns=\"http://www.w3.org/2000/svg\""),
                "{backend} {path}: nothing is loaded from elsewhere"
            );
        }

        // The same parameters select the same rows in the page and the API.
        for query in [
            "country=DE",
            "result=fail",
            "source=11.0.0.0/30",
            "dkim=pass&country=US",
            "asn=64501",
        ] {
            let api = server
                .get(
                    &format!("/api/v1/aggregate/records?{query}&limit=1"),
                    Some(&token),
                )
                .await
                .json();
            let total = api["total"].as_i64().unwrap();
            let page = alice
                .get(&server, &format!("/records?{query}"))
                .await
                .text();
            assert!(
                page.contains(&format!("{total} records")),
                "{backend} {query}: API says {total}"
            );
            let groups = server
                .get(
                    &format!("/api/v1/aggregate/summary?group_by=source&{query}&limit=1"),
                    Some(&token),
                )
                .await
                .json()["total"]
                .as_i64()
                .unwrap();
            let explorer = alice
                .get(&server, &format!("/aggregate?group_by=source&{query}"))
                .await
                .text();
            assert!(
                explorer.contains(&format!("{groups} groups")),
                "{backend} {query}"
            );
        }

        // Drill-down: a country's row links to its records.
        let explorer = alice
            .get(&server, "/aggregate?group_by=country")
            .await
            .text();
        assert!(
            explorer.contains("href=\"/records?country=DE\""),
            "{backend}"
        );

        // Downloads: the report's XML and the original message.
        // Bytes a stranger wrote: never sniffed into HTML, never cached.
        let xml = alice.get(&server, &format!("/reports/{report}/xml")).await;
        assert_eq!(xml.status, 200, "{backend}");
        assert!(xml.text().contains("<feedback"), "{backend}");
        let message = server
            .get(&format!("/api/v1/aggregate/reports/{report}"), Some(&token))
            .await
            .json()["message_id"]
            .as_i64()
            .unwrap();
        let raw = alice.get(&server, &format!("/inbox/{message}/raw")).await;
        assert_eq!(raw.body, xml.body);
        for download in [&xml, &raw] {
            assert_eq!(download.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(download.header("cache-control"), Some("no-store"));
            assert_eq!(download.header("referrer-policy"), Some("no-referrer"));
        }

        // Bad filters are explained, not a blank page.
        let bad = alice.get(&server, "/records?country=Germany").await;
        assert_eq!(bad.status, 400, "{backend}");
        assert!(bad.text().contains("country:"));
        assert_eq!(alice.get(&server, "/sources/not-an-ip").await.status, 400);
        assert_eq!(alice.get(&server, "/reports/999999").await.status, 404);

        // Reprocessing from the inbox page (admin, with CSRF).
        let requeued = alice
            .post(
                &server,
                &format!("/inbox/{message}/reprocess"),
                &[("csrf", &alice.csrf)],
            )
            .await;
        assert_eq!(requeued.status, 303, "{backend}");
        let inbox = alice
            .get(&server, requeued.header("location").unwrap())
            .await
            .text();
        assert!(
            inbox.contains(&format!("Message {message} is queued")),
            "{backend}"
        );

        // Notices are ours, by key: a crafted link cannot make the page
        // say something of its choosing.
        for path in [
            "/inbox?notice=Your+password+expired%3A+sign+in+at+evil.example",
            "/domains?notice=Your+password+expired%3A+sign+in+at+evil.example",
            "/domains?error=Your+password+expired%3A+sign+in+at+evil.example",
        ] {
            let page = alice.get(&server, path).await;
            assert_eq!(page.status, 200, "{backend} {path}");
            assert!(!page.text().contains("evil.example"), "{backend} {path}");
        }
        let crafted = alice
            .get(&server, "/inbox?notice=requeued&n=%3Cb%3E")
            .await
            .text();
        assert!(
            !crafted.contains("&lt;b&gt;") && !crafted.contains("<b>"),
            "{backend}"
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn db_ip_data_carries_its_attribution_link() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let mut server = Server::start(store.clone(), WebConfig::default()).await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
    assert!(!alice.get(&server, "/").await.text().contains("db-ip.com"));
    drop(server);
    server = Server::start_with_state(
        dmarcd::web::AppState::new(
            store.clone(),
            WebConfig::default(),
            dmarcd::Limits::default(),
        )
        .with_dbip_attribution(true),
    )
    .await;
    let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
    assert!(alice
        .get(&server, "/")
        .await
        .text()
        .contains("<a href=\"https://db-ip.com\">IP Geolocation by DB-IP</a>"));
}

/// Reports stored but not yet counted in the rollups: the overview and the
/// explorer say what their totals are as of, until the applier catches up.
#[tokio::test(flavor = "multi_thread")]
async fn pages_say_as_of_when_the_totals_lag_the_records() {
    use dmarcd::inbox::Envelope;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let browser = sign_in(&server, "alice", PASSWORD).await.unwrap();
        for path in ["/", "/aggregate"] {
            let page = browser.get(&server, path).await.text();
            assert!(!page.contains("still being counted"), "{backend} {path}");
        }
        // Stored by a worker, without the applier's pass.
        let mut report = dmarcd::testing::aggregate_report(7);
        report.metadata.report_id = "late".into();
        dmarcd::inbox::Inbox::new(store.clone())
            .accept(report.to_xml().as_bytes(), &Envelope::import("late.xml"))
            .await
            .unwrap();
        let worker = dmarcd::worker::Worker::new(
            store.clone(),
            dmarcd::Limits::default(),
            "w",
            dmarcd::worker::WorkerConfig::default(),
        );
        assert_eq!(worker.run_batch().await.unwrap().len(), 1);
        for path in ["/", "/aggregate"] {
            let page = browser.get(&server, path).await.text();
            assert!(
                page.contains("1 report with 7 records stored since is still being counted"),
                "{backend} {path}"
            );
        }
        store.apply_rollups_until_idle().await.unwrap();
        let page = browser.get(&server, "/").await.text();
        assert!(!page.contains("still being counted"), "{backend}");
        store.close().await;
    }
}

/// A posture schedule asking `dns` (the loopback zone server).
fn posture_schedule(
    store: &Store,
    dns: &common::zone_server::ZoneServer,
) -> dmarcd::dns::PostureSchedule {
    let config = dmarcd::dns::DnsConfig {
        name_servers: vec![dns.address().to_string()],
        timeout_ms: 300,
        attempts: 1,
        ..dmarcd::dns::DnsConfig::default()
    };
    let targets =
        dmarcd::dns::ReportTargets::new(&["dmarc@reports.dmarcd.test".to_string()], &[], "/tlsrpt");
    let checker = std::sync::Arc::new(dmarcd::dns::PostureChecker::new(&config, targets).unwrap());
    dmarcd::dns::PostureSchedule::new(store.clone(), checker, &config)
}

fn posture_zone(policy: &str) -> String {
    format!(
        "_dmarc.change.test. TXT \"v=DMARC1; p={policy}\"\n\
         change.test. TXT \"v=spf1 include:_spf.change.test -all\"\n\
         _spf.change.test. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn posture_pages_show_grades_findings_changes_and_lookups() {
    for (_dir, store) in common::db::backends().await {
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, "change.test", None)
            .await
            .unwrap();
        let dns = common::zone_server::ZoneServer::start(&posture_zone("none"), &[]).await;
        let state = dmarcd::web::AppState::new(
            store.clone(),
            WebConfig::default(),
            dmarcd::Limits::default(),
        )
        .with_posture(posture_schedule(&store, &dns), 2);
        let server = Server::start_with_state(state).await;
        server
            .state
            .accounts
            .add_user("alice", PASSWORD, "admin")
            .await
            .unwrap();
        let browser = sign_in(&server, "alice", PASSWORD).await.unwrap();

        let domains = browser.get(&server, "/domains").await.text();
        assert!(
            domains.contains("href=\"/domains/change.test\""),
            "{domains}"
        );
        assert!(domains.contains("sev-unchecked"));
        assert!(domains.contains("never"));

        let checked = browser
            .post(
                &server,
                "/domains/check",
                &[("csrf", &browser.csrf), ("name", "change.test")],
            )
            .await;
        assert_eq!(checked.status, 303, "{}", checked.text());
        assert_eq!(checked.header("location"), Some("/domains/change.test"));
        let page = browser.get(&server, "/domains/change.test").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.text();
        for text in [
            "dmarc.policy_none",
            "Publish:",
            "_smtp._tls.change.test. IN TXT",
            "include:_spf.change.test",
            "192.0.2.0/24",
            "DNS lookups: 1 of 10 allowed",
            "No record has changed",
        ] {
            assert!(page.contains(text), "{text} in {page}");
        }
        let domains = browser.get(&server, "/domains").await.text();
        assert!(
            domains.contains("sev-warning"),
            "DMARC p=none is graded: {domains}"
        );
        assert!(!domains.contains("never"));

        // The owner tightens the policy; the next check records the change.
        let tightened = common::zone_server::ZoneServer::start(&posture_zone("reject"), &[]).await;
        posture_schedule(&store, &tightened)
            .check_now("change.test")
            .await
            .unwrap();
        let page = browser.get(&server, "/domains/change.test").await.text();
        assert!(page.contains("TXT _dmarc.change.test"), "{page}");
        assert!(page.contains("v=DMARC1; p=none") && page.contains("v=DMARC1; p=reject"));

        // Selectors added by hand are listed (and checked from then on).
        let added = browser
            .post(
                &server,
                "/domains/selectors",
                &[
                    ("csrf", &browser.csrf),
                    ("name", "change.test"),
                    ("selector", "s1"),
                ],
            )
            .await;
        assert_eq!(added.status, 303);
        assert!(browser
            .get(&server, "/domains/change.test")
            .await
            .text()
            .contains("<code>s1</code>"));
        let bad = browser
            .post(
                &server,
                "/domains/selectors",
                &[
                    ("csrf", &browser.csrf),
                    ("name", "change.test"),
                    ("selector", "a b"),
                ],
            )
            .await;
        assert_eq!(bad.status, 400);

        // Any domain can be looked up, a few times a minute; nothing is stored.
        let lookup = browser
            .get(&server, "/lookup?domain=unmonitored.test")
            .await;
        assert_eq!(lookup.status, 200);
        assert!(lookup.text().contains("dmarc.missing"));
        assert_eq!(
            browser
                .get(&server, "/domains/unmonitored.test")
                .await
                .status,
            404
        );
        assert_eq!(
            browser
                .get(&server, "/lookup?domain=not%20a%20name")
                .await
                .status,
            400
        );
        browser
            .get(&server, "/lookup?domain=unmonitored.test")
            .await;
        let limited = browser
            .get(&server, "/lookup?domain=unmonitored.test")
            .await;
        assert_eq!(limited.status, 429);
        assert!(limited.text().contains("dns.lookups_per_minute"));
        assert_eq!(browser.get(&server, "/lookup").await.status, 200);
        store.close().await;
    }
}

/// Signing in over plain HTTP with Secure cookies (a dashboard reached as
/// http://host:8080 on a LAN): the browser drops the form's cookie, and the
/// page says why and which setting to change instead of "the sign-in form
/// expired" again and again.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_without_its_cookie_says_why() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    let secure = setup(&store, files.path(), WebConfig::default()).await;
    let refused = post_sign_in(&secure, None).await;
    assert_eq!(refused.status, 403);
    let text = refused.text();
    assert!(text.contains("only over HTTPS"), "{text}");
    assert!(text.contains("web.secure_cookies = false"), "{text}");
    assert!(text.contains("DMARCD_WEB_SECURE_COOKIES=false"), "{text}");
    // A cookie from an older form is still an expired form.
    let stale = post_sign_in(&secure, Some("older")).await;
    assert_eq!(stale.status, 403);
    assert!(stale.text().contains("The sign-in form expired"));

    let files = tempfile::tempdir().unwrap();
    let (_dir, store) = common::db::sqlite().await;
    let plain = WebConfig {
        secure_cookies: false,
        ..WebConfig::default()
    };
    let plain = setup(&store, files.path(), plain).await;
    let refused = post_sign_in(&plain, None).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("allow cookies for this site"));
}

/// A sign-in form sent with its cookie (`dmarcd_login`) or without one.
async fn post_sign_in(server: &Server, cookie: Option<&str>) -> Reply {
    let cookie = cookie.map(|value| format!("dmarcd_login={value}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    server
        .request(
            "POST",
            "/login",
            None,
            FORM,
            form(&[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", "abc"),
            ]),
            &headers,
        )
        .await
}

/// Each inbox message links to the reports it produced (issue 25): the
/// counts by kind agree with the report lists, and the page links the
/// aggregate report and labels the envelope sender as such.
#[tokio::test(flavor = "multi_thread")]
async fn inbox_messages_link_the_reports_they_produced() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let token = server.state.accounts.create_token("inbox").await.unwrap();
        let api = |path: String| {
            let server = &server;
            let token = token.clone();
            async move { server.get(&path, Some(&token)).await.json() }
        };
        let messages = api("/api/v1/inbox/messages?limit=100".into()).await;
        let items = messages["items"].as_array().unwrap();
        let sum = |field: &str| {
            items
                .iter()
                .map(|m| m[field].as_i64().unwrap())
                .sum::<i64>()
        };
        for (field, list) in [
            ("aggregate_reports", "/api/v1/aggregate/reports"),
            ("tls_reports", "/api/v1/tls/reports"),
            ("failure_reports", "/api/v1/failure/reports"),
        ] {
            let total = api(format!("{list}?limit=1")).await["total"]
                .as_i64()
                .unwrap();
            assert!(total > 0, "{backend} {list}");
            assert_eq!(sum(field), total, "{backend} {field}");
        }
        let report = api("/api/v1/aggregate/reports?limit=1".into()).await["items"][0]["id"]
            .as_i64()
            .unwrap();
        let holder = items
            .iter()
            .find(|m| m["first_aggregate_report"].as_i64() == Some(report))
            .expect("the message of the aggregate report");
        assert_eq!(holder["aggregate_reports"], 1, "{backend}");

        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let page = alice.get(&server, "/inbox").await.text();
        assert!(page.contains("Envelope sender"), "{backend}");
        assert!(
            page.contains(&format!(
                "<a href=\"/reports/{report}\">aggregate #{report}</a>"
            )),
            "{backend}: {page}"
        );
        assert!(
            page.contains(" TLS</a>") && page.contains(" failure</a>"),
            "{backend}"
        );
        // Mails show their Subject, decoded; a bare report file has none.
        let subjects: Vec<&str> = items.iter().filter_map(|m| m["subject"].as_str()).collect();
        assert!(!subjects.is_empty(), "{backend}: {messages}");
        assert!(
            subjects.iter().all(|s| !s.contains("=?")),
            "{backend}: {subjects:?}"
        );
        let plain = subjects
            .iter()
            .find(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " .:-@".contains(c))
            })
            .expect("a subject without characters HTML escapes");
        assert!(
            page.contains(&format!("<td class=\"key\">{plain}</td>")),
            "{backend}"
        );
        let synthetic = items
            .iter()
            .find(|m| m["first_aggregate_report"].as_i64() == Some(report))
            .unwrap();
        assert_eq!(synthetic["subject"], serde_json::Value::Null, "{backend}");
    }
}
