//! Single sign-on on both backends against an OpenID provider running on
//! loopback (common::oidc_provider): the browser's round trip through it,
//! groups mapped to roles, and what must be refused: a forged state, a
//! replayed callback or code, an expired ID token, a user in no allowed
//! group, a name that is a local user's. With local passwords off, the
//! password form is gone and refused.

use crate::common;
use crate::dashboard::{setup, sign_in, PASSWORD};
use common::http::{Reply, Server};
use common::oidc_provider::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
use dmarcd::oidc::{OidcClient, OidcConfig};
use dmarcd::web::{AppState, WebConfig};

const CALLBACK: &str = "http://127.0.0.1/login/sso/callback";

fn config(provider: &OidcProvider, local_passwords: bool) -> OidcConfig {
    OidcConfig {
        issuer: provider.issuer.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_url: CALLBACK.into(),
        admin_groups: vec!["dmarc-admins".into()],
        viewer_groups: vec!["dmarc-viewers".into()],
        local_passwords,
        ..OidcConfig::default()
    }
}

/// Every start and callback counts against the sign-in limit: this test
/// makes many in a minute.
fn web_config() -> WebConfig {
    WebConfig {
        login_attempts_per_minute: 1000,
        ..WebConfig::default()
    }
}

fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.split(';').next().unwrap().to_string())
        .find(|pair| pair.starts_with(&format!("{name}=")))
}

/// A GET that does not follow redirects: (status, Location).
fn visit(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

/// The callback path and query the provider sent the browser back with,
/// and the browser's sign-in cookie.
struct Return {
    callback: String,
    cookie: String,
}

impl Return {
    /// The authorization code the provider sent back.
    fn code(&self) -> &str {
        let after = self.callback.split("code=").nth(1).expect("a code");
        after.split('&').next().unwrap()
    }
}

/// Starts a sign-in at dmarcd and goes through the provider.
async fn through_provider(server: &Server) -> Return {
    let start = server.get("/login/sso?next=/domains", None).await;
    assert_eq!(start.status, 303, "{}", start.text());
    let cookie = set_cookie(&start, "dmarcd_sso").expect("the sign-in cookie");
    let authorize = start.header("location").unwrap().to_string();
    let (status, back) = tokio::task::spawn_blocking(move || visit(&authorize))
        .await
        .unwrap();
    assert_eq!(status, 302, "{back}");
    assert!(back.starts_with(CALLBACK), "{back}");
    Return {
        callback: back.trim_start_matches("http://127.0.0.1").to_string(),
        cookie,
    }
}

async fn finish(server: &Server, back: &Return) -> Reply {
    server
        .request(
            "GET",
            &back.callback,
            None,
            None,
            Vec::new(),
            &[("Cookie", &back.cookie)],
        )
        .await
}

/// The session cookie a finished sign-in set, and the home page with it.
async fn signed_in(server: &Server, reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/domains"));
    let session = set_cookie(reply, "dmarcd_session").expect("a session");
    let home = server
        .request("GET", "/", None, None, Vec::new(), &[("Cookie", &session)])
        .await;
    assert_eq!(home.status, 200);
    (session, home.text())
}

fn refused(reply: &Reply, why: &str) {
    assert!(
        (400..500).contains(&reply.status),
        "{why}: {} {}",
        reply.status,
        reply.text()
    );
    assert!(
        reply.text().contains("Single sign-on failed"),
        "{why}: {}",
        reply.text()
    );
    let session = set_cookie(reply, "dmarcd_session");
    assert!(session.is_none(), "{why}: a session was opened");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_through_an_openid_provider_maps_groups_and_refuses_what_it_must() {
    let provider = OidcProvider::start().await;
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        // Users alice (admin) and victor (viewer) exist locally.
        drop(setup(&store, files.path(), WebConfig::default()).await);
        let state = AppState::new(store.clone(), web_config(), Default::default())
            .with_oidc(OidcClient::new(config(&provider, true)));
        let server = Server::start_with_state(state).await;

        let login = server.get("/login?next=/domains", None).await.text();
        assert!(
            login.contains("href=\"/login/sso?next=%2Fdomains\""),
            "{backend}: {login}"
        );
        assert!(login.contains("name=\"password\""), "{backend}");

        // An admin by group: the whole round trip, then signed in.
        provider.sign_in_as("u-carol", "carol", &["staff", "dmarc-admins"]);
        let carol = through_provider(&server).await;
        let (session, home) = signed_in(&server, &finish(&server, &carol).await).await;
        assert!(home.contains("Sign out carol"), "{backend}");
        assert!(home.contains("href=\"/audit\""), "{backend}: not an admin");
        // The same callback again finds its sign-in used.
        refused(&finish(&server, &carol).await, "a replayed callback");

        // A viewer by group.
        provider.sign_in_as("u-dave", "dave", &["dmarc-viewers"]);
        let dave = through_provider(&server).await;
        let (_, home) = signed_in(&server, &finish(&server, &dave).await).await;
        assert!(
            home.contains("Sign out dave") && !home.contains("href=\"/audit\""),
            "{backend}"
        );

        // Carol's groups change at the provider: her role follows at her next sign-in.
        provider.sign_in_as("u-carol", "carol", &["dmarc-viewers"]);
        let again = through_provider(&server).await;
        let (viewer_session, home) = signed_in(&server, &finish(&server, &again).await).await;
        assert!(
            home.contains("Sign out carol") && !home.contains("href=\"/audit\""),
            "{backend}"
        );
        drop(session);

        // Out of every allowed group: refused, and the user this provider
        // made goes, with every session of theirs.
        provider.sign_in_as("u-carol", "carol", &["staff"]);
        let out = through_provider(&server).await;
        refused(&finish(&server, &out).await, "carol in no group");
        let home = server
            .request(
                "GET",
                "/",
                None,
                None,
                Vec::new(),
                &[("Cookie", &viewer_session)],
            )
            .await;
        assert_eq!(
            home.status, 303,
            "{backend}: carol's session outlived her removal"
        );

        // In no allowed group: no way in.
        provider.sign_in_as("u-erin", "erin", &["staff"]);
        let erin = through_provider(&server).await;
        let reply = finish(&server, &erin).await;
        refused(&reply, "no group");
        assert!(reply.text().contains("none of the groups"), "{backend}");

        // A forged state (the cookie says another).
        provider.sign_in_as("u-frank", "frank", &["dmarc-admins"]);
        let frank = through_provider(&server).await;
        let forged = Return {
            callback: frank.callback.replace("state=", "state=x"),
            cookie: frank.cookie.clone(),
        };
        let reply = finish(&server, &forged).await;
        refused(&reply, "a forged state");
        assert!(
            reply.text().contains("not started in this browser"),
            "{backend}"
        );
        // No cookie at all: the same.
        let cookieless = Return {
            callback: frank.callback.clone(),
            cookie: String::new(),
        };
        refused(&finish(&server, &cookieless).await, "no cookie");

        // A replayed code under a fresh sign-in: the provider refuses it.
        let fresh = through_provider(&server).await;
        let (old_code, fresh_code) = (carol.code(), fresh.code());
        let replayed = Return {
            callback: fresh.callback.replace(fresh_code, old_code),
            cookie: fresh.cookie.clone(),
        };
        let reply = finish(&server, &replayed).await;
        refused(&reply, "a replayed code");
        assert!(
            reply.text().contains("invalid_grant"),
            "{backend}: {}",
            reply.text()
        );

        // An expired ID token.
        provider.issue_expired_tokens(true);
        let late = through_provider(&server).await;
        let reply = finish(&server, &late).await;
        refused(&reply, "an expired token");
        assert!(reply.text().contains("has expired"), "{backend}");
        provider.issue_expired_tokens(false);

        // A provider user named like a local user does not take them over.
        provider.sign_in_as("u-other-alice", "alice", &["dmarc-admins"]);
        let alice = through_provider(&server).await;
        let reply = finish(&server, &alice).await;
        refused(&reply, "a local user's name");
        assert!(reply.text().contains("local user"), "{backend}");
        sign_in(&server, "alice", PASSWORD).await.unwrap();

        // The audit log has the sign-ins and the refusals.
        let entries = dmarcd::store::audit::list(
            store.db(),
            &dmarcd::store::audit::AuditFilter::default(),
            100,
        )
        .await
        .unwrap();
        let sso_ins = entries
            .iter()
            .filter(|e| e.action == "session.sign_in")
            .filter(|e| {
                e.new_value
                    .as_deref()
                    .is_some_and(|v| v.contains("single sign-on"))
            })
            .count();
        assert_eq!(sso_ins, 3, "{backend}");
        // Only callbacks of a sign-in this browser started are audited (a
        // forged or cookieless one costs no write).
        let failures = entries
            .iter()
            .filter(|e| e.action == "session.sign_in_failed" && e.actor == "sso")
            .count();
        assert_eq!(failures, 6, "{backend}");
        let kinds = |action: &str| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e.action == action)
                .map(|e| format!("{} {}", e.actor, e.target))
                .collect()
        };
        assert_eq!(kinds("user.add"), ["dave dave", "carol carol"], "{backend}");
        assert_eq!(kinds("user.role"), ["carol carol"], "{backend}");
        assert_eq!(kinds("user.remove"), ["sso carol"], "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_local_passwords_off_only_single_sign_on_signs_in() {
    let provider = OidcProvider::start().await;
    let (_dir, store) = common::db::sqlite().await;
    let state = AppState::new(store.clone(), web_config(), Default::default())
        .with_oidc(OidcClient::new(config(&provider, false)));
    state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let server = Server::start_with_state(state).await;
    let login = server.get("/login", None).await.text();
    assert!(!login.contains("name=\"password\""), "{login}");
    assert!(login.contains("Sign in with single sign-on"), "{login}");
    let form =
        serde_urlencoded::to_string([("username", "alice"), ("password", PASSWORD), ("csrf", "x")])
            .unwrap();
    let refused = server
        .request(
            "POST",
            "/login",
            None,
            Some("application/x-www-form-urlencoded"),
            form.into_bytes(),
            &[("Cookie", "dmarcd_login=x")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("password is off"),
        "{}",
        refused.text()
    );
    provider.sign_in_as("u-carol", "carol", &["dmarc-admins"]);
    let carol = through_provider(&server).await;
    signed_in(&server, &finish(&server, &carol).await).await;
    // The setting needs a provider: without one nobody could sign in.
    let error = OidcConfig {
        local_passwords: false,
        ..OidcConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(error.contains("oidc.issuer"), "{error}");
    // Nor may a provider let in nobody, or (unless said) anybody.
    let error = OidcConfig {
        admin_groups: Vec::new(),
        viewer_groups: Vec::new(),
        ..config(&provider, true)
    }
    .validate()
    .unwrap_err();
    assert!(error.contains("allow_any_user"), "{error}");
}

/// `oidc.group_roles`: the provider's groups make a user a member of
/// dmarcd's domain groups (and let them in without `viewer_groups`), set
/// again at every sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn provider_groups_map_to_domain_groups_and_roles() {
    use dmarcd::scope::Scope;
    let provider = OidcProvider::start().await;
    let (_dir, store) = common::db::sqlite().await;
    let (all, cli) = (Scope::All, dmarcd::audit::Actor::cli());
    dmarcd::groups::create(&store, &cli, &all, "acme")
        .await
        .unwrap();
    dmarcd::groups::assign_domain(&store, &cli, &all, "acme", "acme.example")
        .await
        .unwrap();
    let mapped = OidcConfig {
        group_roles: [
            ("acme-analysts".to_string(), "acme:analyst".to_string()),
            ("acme-staff".to_string(), "acme:viewer".to_string()),
        ]
        .into_iter()
        .collect(),
        ..config(&provider, true)
    };
    mapped.validate().unwrap();
    let state = AppState::new(store.clone(), web_config(), Default::default())
        .with_oidc(OidcClient::new(mapped));
    let server = Server::start_with_state(state).await;
    let memberships = |store: dmarcd::store::Store| async move {
        let user = dmarcd::store::accounts::user(store.db(), "erin")
            .await
            .unwrap()
            .unwrap();
        dmarcd::store::groups::memberships_of(store.db(), user.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.group, m.role.key()))
            .collect::<Vec<_>>()
    };

    // In both provider groups (and not in viewer_groups): in, as acme's analyst only.
    provider.sign_in_as("u-erin", "erin", &["acme-staff", "acme-analysts"]);
    let erin = through_provider(&server).await;
    let (_, home) = signed_in(&server, &finish(&server, &erin).await).await;
    assert!(home.contains("Sign out erin"), "{home}");
    assert_eq!(
        memberships(store.clone()).await,
        [("acme".to_string(), "analyst")]
    );
    // Fewer provider groups, a weaker role, at the next sign-in.
    provider.sign_in_as("u-erin", "erin", &["acme-staff"]);
    let again = through_provider(&server).await;
    signed_in(&server, &finish(&server, &again).await).await;
    assert_eq!(
        memberships(store.clone()).await,
        [("acme".to_string(), "viewer")]
    );
    // None of them, but still a dmarcd viewer: out of acme, and in no
    // other group (not back into default), so seeing nothing.
    provider.sign_in_as("u-erin", "erin", &["dmarc-viewers"]);
    let last = through_provider(&server).await;
    signed_in(&server, &finish(&server, &last).await).await;
    assert_eq!(memberships(store.clone()).await, []);
    // A mapping that is not GROUP:ROLE is refused at start.
    let bad = OidcConfig {
        group_roles: [("x".to_string(), "acme:boss".to_string())]
            .into_iter()
            .collect(),
        ..config(&provider, true)
    };
    assert!(bad.validate().unwrap_err().contains("oidc.group_roles"));
}
