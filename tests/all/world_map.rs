//! The world map on the overview and the compliance page, over HTTP on both
//! backends: every country with mail is shaded, named, titled with the same
//! numbers the API gives, and links to the explorer filtered by it; the
//! switch to failing messages is a plain link. And the banner that says how
//! to get IP databases while none is loaded.

use crate::common;
use crate::dashboard::{setup, sign_in, PASSWORD};

use std::sync::Arc;

use common::http::Server;
use dmarcd::enrich::GeoDatabases;
use dmarcd::web::{AppState, GeoStatus, WebConfig};

/// The `<path>` or `<circle>` element of `code` on the map, with its link.
fn country_element<'a>(html: &'a str, code: &str) -> &'a str {
    let at = html
        .find(&format!("data-country=\"{code}\""))
        .unwrap_or_else(|| panic!("{code} is not on the map"));
    let start = html[..at].rfind("<a ").filter(|a| {
        // The link is this element's own only if no other element starts between.
        !html[*a..at].contains("</a>")
    });
    let start = start.unwrap_or_else(|| html[..at].rfind('<').unwrap());
    let end = at + html[at..].find("</title>").unwrap();
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_map_shades_names_and_links_every_country_with_mail() {
    for (_dir, store) in common::db::backends().await {
        let backend = store.backend();
        let files = tempfile::tempdir().unwrap();
        let server = setup(&store, files.path(), WebConfig::default()).await;
        let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
        let token = server.state.accounts.create_token("map").await.unwrap();
        let countries = server
            .get("/api/v1/aggregate/summary?group_by=country", Some(&token))
            .await
            .json();
        let items = countries["items"].as_array().unwrap();
        assert!(items.len() >= 2, "{backend}: {countries}");

        let page = alice.get(&server, "/").await.text();
        assert!(
            page.contains("<figure class=\"chart world-map\">"),
            "{backend}"
        );
        assert!(page.contains("Made with Natural Earth"), "{backend}");
        for item in items {
            let Some(code) = item["key"].as_str() else {
                continue;
            };
            let (messages, failing) = (
                item["messages"].as_i64().unwrap(),
                item["dmarc_fail"].as_i64().unwrap(),
            );
            let name = match code {
                "US" => "United States",
                "DE" => "Germany",
                other => panic!("{backend}: unexpected country {other}"),
            };
            let element = country_element(&page, code);
            assert!(
                element.contains(&format!(
                    "{name} ({code}): {} messages, {} failing DMARC",
                    grouped(messages),
                    grouped(failing)
                )),
                "{backend}: {element}"
            );
            assert!(
                element.starts_with(&format!(
                    "<a href=\"/aggregate?country={code}&amp;group_by=source_name\">"
                )),
                "{backend}: {element}"
            );
            assert!(
                !element.contains("fill=\"#e5e7eb\""),
                "{backend}: {element}"
            );
            // The table beside the map names it too.
            assert!(
                page.contains(&format!("{code}</a> <span class=\"muted\">{name}</span>")),
                "{backend}: {code} in the table"
            );
        }
        // A country without mail is grey and leads nowhere.
        let france = country_element(&page, "FR");
        assert!(
            france.starts_with("<path") && france.contains("fill=\"#e5e7eb\""),
            "{backend}: {france}"
        );

        // The failing map: a plain link, marked current, whose countries
        // lead to their failing mail.
        assert!(page.contains("href=\"/?map=failing#map\">failing messages</a>"));
        let failing = alice.get(&server, "/?map=failing").await.text();
        assert!(
            failing.contains("class=\"current\" aria-current=\"true\">failing messages</a>"),
            "{backend}"
        );
        assert!(
            country_element(&failing, "DE").starts_with(
                "<a href=\"/aggregate?country=DE&amp;result=fail&amp;group_by=source_name\">"
            ),
            "{backend}"
        );
        // The page's filter is kept in the links.
        let filtered = alice.get(&server, "/?domain=example.com").await.text();
        assert!(
            country_element(&filtered, "US")
                .contains("/aggregate?domain=example.com&amp;country=US&amp;group_by=source_name"),
            "{backend}"
        );
        // The explorer the link leads to shows that country's senders only.
        let explorer = alice
            .get(&server, "/aggregate?country=DE&group_by=source_name")
            .await;
        assert_eq!(explorer.status, 200, "{backend}");

        // The compliance page maps the domain's mail.
        let compliance = alice
            .get(&server, "/compliance?domain=example.com")
            .await
            .text();
        assert!(
            country_element(&compliance, "US").contains("country=US"),
            "{backend}"
        );
        let switch = compliance
            .find("map=failing#map")
            .map(|at| &compliance[compliance[..at].rfind("href=").unwrap()..at + 20]);
        assert!(
            switch.is_some_and(|link| link
                .starts_with("href=\"/compliance?domain=example.com&#38;map=failing#map\"")),
            "{backend}: {switch:?}"
        );
    }
}

fn grouped(value: i64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_says_how_to_get_ip_databases_until_one_is_loaded() {
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let geo_dir = files.path().join("geo");
    let country = geo_dir.join("dbip-country-lite.mmdb");
    let databases = Arc::new(GeoDatabases::open(std::slice::from_ref(&country)));
    let server = Server::start_with_state(
        AppState::new(
            store.clone(),
            WebConfig::default(),
            dmarcd::Limits::default(),
        )
        .with_geo(GeoStatus {
            databases: Arc::clone(&databases),
            directory: geo_dir.clone(),
            listed: false,
        }),
    )
    .await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let alice = sign_in(&server, "alice", PASSWORD).await.unwrap();
    let page = alice.get(&server, "/").await.text();
    assert!(
        page.contains("Run <code>dmarcd geo update</code>"),
        "the banner: {page}"
    );
    assert!(page.contains(&format!("<code>{}</code>", geo_dir.display())));
    assert!(page.contains("<code>geo.monthly = true</code>"));
    assert!(page.contains("<code>enrich.databases</code>"));
    // Nothing loaded: no DB-IP attribution yet, although the file is named so.
    assert!(!page.contains("IP Geolocation by DB-IP"));

    // The file arrives (as `geo update` puts it) and is loaded.
    std::fs::create_dir_all(&geo_dir).unwrap();
    std::fs::write(
        &country,
        common::mmdb::build(
            "DBIP-Country-Lite",
            &[(
                "11.0.0.0/24",
                serde_json::json!({"country": {"iso_code": "US"}}),
            )],
        ),
    )
    .unwrap();
    assert_eq!(databases.reload_if_changed(), 1);
    let page = alice.get(&server, "/").await.text();
    assert!(!page.contains("dmarcd geo update"), "no banner");
    assert!(page.contains("<a href=\"https://db-ip.com\">IP Geolocation by DB-IP</a>"));
}
