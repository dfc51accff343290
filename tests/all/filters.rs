//! Text filters as a user types them: reporters and source names match
//! in part and ignoring case, a quoted name matches whole, and the form
//! suggests the names the data holds (both backends, over HTTP).

use crate::common;
use crate::dashboard::{setup, sign_in, PASSWORD};

use dmarcd::enrich::SourceInfo;
use dmarcd::web::WebConfig;

#[tokio::test(flavor = "multi_thread")]
async fn text_filters_ignore_case_match_parts_and_are_suggested() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        // One of the synthetic sources gets a name, as the source map gives.
        store
            .save_descriptions(&[SourceInfo {
                ip: "11.0.0.7".parse().unwrap(),
                country: None,
                asn: None,
                as_name: None,
                as_domain: None,
                ptr: None,
                base_domain: None,
                source_name: Some("Amazon SES".into()),
                source_type: Some("esp".into()),
            }])
            .await
            .unwrap();
        let token = server.state.accounts.create_token("filters").await.unwrap();
        let total = |query: &'static str| {
            let (server, token) = (&server, token.clone());
            async move {
                let reply = server
                    .get(
                        &format!("/api/v1/aggregate/records?limit=1&{query}"),
                        Some(&token),
                    )
                    .await;
                assert_eq!(reply.status, 200, "{backend} {query}: {}", reply.text());
                reply.json()["total"].as_i64().unwrap()
            }
        };

        // The synthetic report's reporter is "Enterprise Outlook".
        let all = total("").await;
        let whole = total("org=%22enterprise%20outlook%22").await;
        assert!(whole > 0, "{backend}");
        assert_eq!(whole, all, "{backend}: one reporter");
        assert_eq!(total("org=Outlook").await, whole, "{backend}");
        assert_eq!(total("org=OUTLOOK").await, whole, "{backend}");
        assert_eq!(
            total("org=%22Outlook%22").await,
            0,
            "{backend}: quoted is whole"
        );
        assert_eq!(total("org=google").await, 0, "{backend}");
        // LIKE's own characters are taken literally.
        assert_eq!(total("org=%25").await, 0, "{backend}");
        assert_eq!(total("org=_").await, 0, "{backend}");
        // The summary by reporter agrees (it reads the rollups).
        let summary = server
            .get(
                "/api/v1/aggregate/summary?group_by=org&org=outlook",
                Some(&token),
            )
            .await
            .json();
        assert_eq!(
            summary["items"][0]["key"], "Enterprise Outlook",
            "{backend}"
        );

        // Header From: exact, ignoring case.
        let from = total("header_from=example.com").await;
        assert!(from > 0, "{backend}");
        assert_eq!(total("header_from=EXAMPLE.com").await, from, "{backend}");

        // Source names: in part, ignoring case; quoted, whole.
        let named = total("source=%22Amazon%20SES%22").await;
        assert!(named > 0, "{backend}");
        assert_eq!(total("source=amazon").await, named, "{backend}");
        assert_eq!(total("source=%22amazon%22").await, 0, "{backend}");
        assert_eq!(total("source=11.0.0.7").await, named, "{backend}");

        // TLS reports: the corpus has "Mail.ru" and "Company-X".
        let tls = server
            .get("/api/v1/tls/reports?org=mail.RU", Some(&token))
            .await
            .json();
        assert!(tls["total"].as_i64().unwrap() > 0, "{backend}: {tls}");

        // The form suggests reporters (DMARC and TLS) and source names.
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let page = alice.get(&server, "/records").await.text();
        for expected in [
            "<input name=\"org\" list=\"reporters\"",
            "<option value=\"Enterprise Outlook\">",
            "<option value=\"Mail.ru\">",
            "<input name=\"source\" list=\"source-names\"",
            "<option value=\"Amazon SES\">",
        ] {
            assert!(page.contains(expected), "{backend}: {expected}");
        }
        // A row of the summary by reporter leads to exactly its records.
        let explorer = alice.get(&server, "/aggregate?group_by=org").await.text();
        assert!(
            explorer.contains("org=%22Enterprise+Outlook%22"),
            "{backend}: {explorer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_export_what_they_show_as_csv_with_the_session() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();

        let page = alice
            .get(&server, "/records?result=fail&org=outlook")
            .await
            .text();
        let link = "/api/v1/aggregate/records?org=outlook&#38;result=fail&#38;format=csv";
        assert!(page.contains(link), "{backend}: {page}");
        let csv = alice.get(&server, &link.replace("&#38;", "&")).await;
        assert_eq!(csv.status, 200, "{backend}: {}", csv.text());
        assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
        let lines = csv.text().lines().count() as i64;
        let token = server.state.accounts.create_token("count").await.unwrap();
        let total = server
            .get(
                "/api/v1/aggregate/records?org=outlook&result=fail&limit=1",
                Some(&token),
            )
            .await
            .json()["total"]
            .as_i64()
            .unwrap();
        assert!(total > 0, "{backend}");
        assert_eq!(lines, total + 1, "{backend}: a header and every row");

        for (page, export) in [
            (
                "/aggregate?group_by=org",
                "/api/v1/aggregate/summary?group_by=org&#38;sort=messages&#38;format=csv",
            ),
            ("/failures", "/api/v1/failure/reports?format=csv"),
            (
                "/inbox?status=done",
                "/api/v1/inbox/messages?status=done&#38;format=csv",
            ),
        ] {
            let html = alice.get(&server, page).await.text();
            assert!(html.contains(export), "{backend} {page}: {html}");
            let reply = alice.get(&server, &export.replace("&#38;", "&")).await;
            assert_eq!(reply.status, 200, "{backend} {export}");
            assert!(reply.text().lines().count() > 1, "{backend} {export}");
        }

        // Without a session or token: 401, as before.
        let anonymous = server
            .get("/api/v1/aggregate/records?format=csv", None)
            .await;
        assert_eq!(anonymous.status, 401, "{backend}");
        // A session reads; it never changes anything through the API (no
        // CSRF check there).
        let change = alice
            .post(&server, "/api/v1/inbox/messages/1/reprocess", &[])
            .await;
        assert_eq!(change.status, 401, "{backend}: {}", change.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overview_links_keep_their_filter_and_lead_to_a_summary() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let page = alice.get(&server, "/?country=DE").await.text();
        let failing = &page[page.find("Top failing sources").expect("the card")..];
        let failing = &failing[..failing.find("</table>").unwrap()];
        // Each row narrows the overview's filter and keeps "fail".
        let link = failing
            .split("<a href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a failing source")
            .replace("&#38;", "&");
        assert!(link.starts_with("/aggregate?"), "{backend}: {link}");
        for part in ["country=DE", "result=fail", "group_by=source", "source=%22"] {
            assert!(link.contains(part), "{backend}: {link} lacks {part}");
        }
        // The link's summary is that source's failures: the same count as
        // the row that led there.
        let summary = alice.get(&server, &link).await;
        assert_eq!(summary.status, 200, "{backend}: {link}");
        // Reporters lead to their senders, with the reporter quoted whole.
        assert!(
            page.contains(
                "/aggregate?org=%22Enterprise+Outlook%22&#38;country=DE&#38;group_by=source_name"
            ) || page.contains(
                "/aggregate?country=DE&#38;org=%22Enterprise+Outlook%22&#38;group_by=source_name"
            ) || page.contains("org=%22Enterprise+Outlook%22"),
            "{backend}"
        );
        // The cards list the compact columns only.
        assert!(page.contains("<table class=\"compact\">"), "{backend}");
    }
}
