//! What a new user sees (issue 25, items 9 and 12): an empty dashboard
//! says where to send reports, the Domains page says what adding and
//! removing does, error pages keep the navigation, the period in force is
//! marked, counts read "1 record", and sections stay highlighted.

use crate::common;
use crate::common::http::Server;
use crate::dashboard::{setup, sign_in, PASSWORD};

use dmarcd::web::{AppState, IntakeHints, WebConfig};

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_dashboard_says_how_to_send_the_first_report() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let state = AppState::new(store.clone(), WebConfig::default(), Default::default())
            .with_intake_hints(IntakeHints {
                smtp: Some((
                    "192.0.2.25:25".into(),
                    vec!["dmarc@reports.example".into(), "tls@reports.example".into()],
                )),
            });
        let server = Server::start_with_state(state).await;
        server
            .state
            .accounts
            .add_user("alice", PASSWORD, "admin")
            .await
            .unwrap();
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();

        for path in ["/", "/inbox"] {
            let page = alice.get(&server, path).await;
            assert_eq!(page.status, 200, "{backend} {path}");
            let text = page.text();
            for needle in [
                "No reports yet",
                "<code>192.0.2.25:25</code>",
                "dmarc@reports.example, tls@reports.example",
                "swaks --server 192.0.2.25:25 --to dmarc@reports.example --data @report.eml",
                "rua=mailto:dmarc@reports.example",
                "dmarcd import report.xml.gz",
                "/tlsrpt",
            ] {
                assert!(text.contains(needle), "{backend} {path}: {needle} missing");
            }
        }

        // SMTP off: the page says so instead of naming an address.
        let quiet = Server::start(store.clone(), WebConfig::default()).await;
        let alice = sign_in(&quiet, "alice", PASSWORD).await.unwrap();
        let page = alice.get(&quiet, "/").await.text();
        assert!(page.contains("SMTP is off here"), "{backend}");
        assert!(!page.contains("swaks"), "{backend}");

        // The Domains page explains what a listed domain means.
        let domains = alice.get(&quiet, "/domains").await.text();
        for needle in [
            "when its first report arrives",
            "Removing one stops its checks",
        ] {
            assert!(domains.contains(needle), "{backend}: {needle}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_populated_dashboard_drops_the_first_steps_and_marks_where_you_are() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();

        let overview = alice.get(&server, "/").await.text();
        assert!(!overview.contains("No reports yet"), "{backend}");
        // All time is the period in force; after a click, last 30 days is.
        assert!(
            overview.contains("class=\"current\" aria-current=\"true\">all time</a>"),
            "{backend}"
        );
        let since = (chrono::Utc::now().date_naive() - chrono::Duration::days(30)).to_string();
        let month = alice.get(&server, &format!("/?since={since}")).await.text();
        assert!(
            month.contains("class=\"current\" aria-current=\"true\">last 30 days</a>"),
            "{backend}"
        );
        assert!(
            !month.contains("aria-current=\"true\">all time"),
            "{backend}"
        );

        // The section stays highlighted on a source and a report page.
        for path in ["/sources/11.0.0.7", "/reports/1"] {
            let page = alice.get(&server, path).await;
            assert_eq!(page.status, 200, "{backend} {path}");
            assert!(
                page.text()
                    .contains("<a href=\"/records\" class=\"active\" aria-current=\"page\">"),
                "{backend} {path}"
            );
        }

        // One record is "1 record".
        let one = alice.get(&server, "/records?source=11.0.0.7").await.text();
        assert!(one.contains(">1 record ·"), "{backend}");
        let many = alice.get(&server, "/records").await.text();
        assert!(many.contains(" records ·"), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_keep_the_navigation() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();

        // A report that does not exist, and a filter that does not parse.
        let missing = alice.get(&server, "/reports/999999").await;
        assert_eq!(missing.status, 404, "{backend}");
        let text = missing.text();
        assert!(
            text.contains("<nav aria-label=\"Main\">"),
            "{backend}: {text}"
        );
        assert!(text.contains("Sign out alice"), "{backend}");
        assert!(
            text.contains("<a href=\"/records\" class=\"active\""),
            "{backend}: the report's section"
        );
        assert!(text.contains("role=\"alert\""), "{backend}");

        let bad = alice.get(&server, "/records?since=yesterday-ish").await;
        assert_eq!(bad.status, 400, "{backend}");
        let text = bad.text();
        assert!(text.contains("Sign out alice"), "{backend}: {text}");
        assert!(text.contains("since"), "{backend}: says which parameter");

        // Signed out, an error page has no navigation to offer.
        let anonymous = server.get("/inbox/999999/raw", None).await;
        assert_ne!(anonymous.status, 200, "{backend}");
        assert!(!anonymous.text().contains("Sign out"), "{backend}");
    }
}
