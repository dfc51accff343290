//! The dashboard in a real browser: Debian's headless Chromium driven
//! through chromedriver (W3C WebDriver over HTTP). Signs in, applies a
//! filter, follows a drill-down, checks the phone layout and the form
//! labels, and saves screenshots. `.ci/run` installs chromium and
//! chromium-driver; without them this test is skipped locally (loudly) and
//! fails under CI.

use crate::common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::Server;
use dmarcd::web::WebConfig;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

struct Driver {
    process: Child,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = call(
            "DELETE",
            &format!("{}/session/{}", self.base, self.session),
            None,
        );
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json")
        .body(body.map(|b| b.to_string()).unwrap_or_default().into_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = agent.run(request).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if status >= 400 {
        return Err(format!("{method} {url}: {status} {value}"));
    }
    Ok(value["value"].clone())
}

fn find(binary: &[&str]) -> Option<PathBuf> {
    binary.iter().map(PathBuf::from).find(|path| path.exists())
}

impl Driver {
    fn start() -> Option<Driver> {
        let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?;
        let browser = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while call("GET", &format!("{base}/status"), None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap().keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-extensions", "--disable-sync", "--disable-background-networking",
                         "--disable-component-update", "--no-first-run", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let session = call("POST", &format!("{base}/session"), Some(capabilities)).unwrap();
        Some(Driver {
            process,
            base,
            session: session["sessionId"].as_str().unwrap().to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn go(&self, url: &str) {
        call("POST", &self.url("/url"), Some(json!({"url": url}))).unwrap();
    }

    fn element(&self, css: &str) -> String {
        let found = call(
            "POST",
            &self.url("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        found
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        call(
            "POST",
            &self.url(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        )
        .unwrap();
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        call(
            "POST",
            &self.url(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .unwrap();
    }

    fn script(&self, source: &str) -> Value {
        call(
            "POST",
            &self.url("/execute/sync"),
            Some(json!({"script": source, "args": []})),
        )
        .unwrap()
    }

    fn current_url(&self) -> String {
        call("GET", &self.url("/url"), None)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The URL once `arrived` holds: a click starts a navigation but does
    /// not wait for it.
    fn wait_for_url(&self, arrived: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.current_url();
            let ready = self.script("return document.readyState;") == json!("complete");
            if arrived(&url) && ready {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "still at {url}: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page text once it contains `expected`: a form posting back to
    /// the page it is on leaves the URL as it was, so the URL cannot tell
    /// the new page from the old.
    fn wait_for_text(&self, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.page_text();
            let ready = self.script("return document.readyState;") == json!("complete");
            if ready && text.contains(expected) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{expected:?} never shown: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn page_text(&self) -> String {
        self.script("return document.body.innerText;")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let data = call("GET", &self.url("/screenshot"), None).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    fn resize(&self, width: u32, height: u32) {
        call(
            "POST",
            &self.url("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_filter_and_drill_down_in_chromium() {
    let Some(driver) = tokio::task::spawn_blocking(Driver::start).await.unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver must be installed in CI (.ci/run installs them)"
        );
        eprintln!("NOTE: chromium/chromedriver not installed: the browser test was SKIPPED");
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    // Plain HTTP on loopback in this test: the cookie cannot be Secure.
    let config = WebConfig {
        secure_cookies: false,
        ..WebConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let base = server.url("");
    // The pages of single reports: the first of each kind.
    let token = server.state.accounts.create_token("ids").await.unwrap();
    let first_id = |path: &'static str| {
        let (server, token) = (&server, token.clone());
        async move {
            server.get(path, Some(&token)).await.json()["items"][0]["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("no {path}"))
        }
    };
    let report = first_id("/api/v1/aggregate/reports").await;
    let failure = first_id("/api/v1/failure/reports").await;
    let tls_report = first_id("/api/v1/tls/reports").await;

    tokio::task::spawn_blocking(move || {
        // Any page sends a stranger to the sign-in form.
        driver.go(&format!("{base}/aggregate"));
        driver.wait_for_url(|url| url.contains("/login?next="));
        driver.type_into("#username", "alice");
        driver.type_into("#password", PASSWORD);
        driver.click("button[type=submit]");
        driver.wait_for_url(|url| url.ends_with("/aggregate"));
        assert!(driver.page_text().contains("Aggregate explorer"));

        // Apply a filter: group by country, failures only.
        driver.script("document.querySelector('select[name=group_by]').value = 'country';");
        driver.script("document.querySelector('select[name=result]').value = 'fail';");
        driver.click("form.filters button[type=submit]");
        driver.wait_for_url(|url| url.contains("group_by=country") && url.contains("result=fail"));
        let text = driver.page_text();
        assert!(text.contains("DE") && text.contains("US"), "{text}");
        driver.screenshot("dashboard-explorer.png");

        // Drill down into Germany's failing records.
        driver.click("a[href*='country=DE']");
        driver.wait_for_url(|url| {
            url.contains("/records?") && url.contains("country=DE") && url.contains("result=fail")
        });
        let text = driver.page_text();
        assert!(text.contains("records"), "{text}");
        let rows = driver.script("return document.querySelectorAll('main table tbody tr').length;");
        assert!(rows.as_u64().unwrap() >= 1);
        let countries = driver.script(
            "return Array.from(document.querySelectorAll('main table tbody tr td:nth-child(5)')).map(td => td.innerText);",
        );
        assert!(countries.as_array().unwrap().iter().all(|c| c == "DE"), "{countries}");
        let path = driver.screenshot("dashboard-records.png");
        eprintln!("screenshot: {}", path.display());

        // Every form field has a label.
        for page in [
            "/",
            "/aggregate",
            "/records",
            "/tls",
            "/failures",
            "/inbox",
            "/domains",
            "/account",
            "/audit",
            "/groups",
        ] {
            driver.go(&format!("{base}{page}"));
            let unlabelled = driver.script(
                "return Array.from(document.querySelectorAll('input:not([type=hidden]), select'))\
                 .filter(el => el.labels.length === 0).map(el => el.name);",
            );
            assert_eq!(unlabelled, json!([]), "{page}: fields without a label");
        }

        // At desktop and phone width nothing spills out of a page sideways,
        // and at desktop width every column of an overview card shows
        // (no card scrolls inside). A screenshot of each page at each width.
        let report = format!("/reports/{report}");
        let failure = format!("/failures/{failure}");
        let tls_report = format!("/tls/reports/{tls_report}");
        // The busiest sender's page, as the Senders list links it.
        driver.go(&format!("{base}/senders?domain=example.com"));
        let sender = driver
            .script("return document.querySelector(\"a[href^='/senders/source']\").getAttribute('href');")
            .as_str()
            .unwrap()
            .to_string();
        let pages = [
            ("overview", "/"),
            ("explorer", "/aggregate?group_by=source"),
            ("records", "/records"),
            ("source", "/sources/11.0.0.7"),
            ("source-failures", "/sources/10.10.10.10"),
            ("report", report.as_str()),
            ("tls", "/tls"),
            ("tls-report", tls_report.as_str()),
            ("failures", "/failures"),
            ("failure", failure.as_str()),
            ("inbox", "/inbox"),
            ("domains", "/domains"),
            ("lookup", "/lookup"),
            ("senders", "/senders?domain=example.com"),
            ("sender", sender.as_str()),
            ("compliance", "/compliance?domain=example.com"),
            ("account", "/account"),
            ("audit", "/audit"),
            ("groups", "/groups"),
        ];
        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            for (name, page) in pages {
                driver.go(&format!("{base}{page}"));
                assert!(
                    !driver.page_text().contains("Error"),
                    "{page}: {}",
                    driver.page_text()
                );
                let overflow = driver.script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                );
                assert!(
                    overflow.as_i64().unwrap() <= 1,
                    "{page}: {overflow}px wider than the window at {width}px"
                );
                driver.screenshot(&format!("page-{name}-{width}.png"));
            }
        }
        // Setting up two-step sign-in shows a QR code a phone's camera can
        // read: square, at least 150 px, whole inside a phone-wide window.
        driver.resize(390, 844);
        driver.go(&format!("{base}/account"));
        driver.click("form[action='/account/totp'] button");
        driver.wait_for_text("Scan this code");
        let qr = driver.script(
            "const r = document.querySelector('#totp-qr svg').getBoundingClientRect(); \
             return [r.width, r.height, r.left, r.right];",
        );
        let [width, height, left, right] =
            [0, 1, 2, 3].map(|i| qr[i].as_f64().unwrap());
        assert!(width >= 150.0 && (width - height).abs() < 1.0, "{qr}");
        assert!(left >= 0.0 && right <= 390.0, "{qr}");
        let overflow = driver.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        );
        assert!(overflow.as_i64().unwrap() <= 1, "/account set-up: {overflow}px too wide");
        driver.script("document.querySelector('#totp-qr').scrollIntoView();");
        driver.screenshot("account-totp-390.png");

        // A chart's axis labels are readable on a phone: drawn at least
        // 9 px tall, and none overlaps the next.
        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            for page in ["/", "/tls"] {
                driver.go(&format!("{base}{page}"));
                driver.script("document.querySelector('figure.chart').scrollIntoView();");
                let labels = driver.script(
                    "return Array.from(document.querySelectorAll('svg.chart text:not(.value)'))\
                     .map(t => t.getBoundingClientRect()).filter(r => r.width > 0)\
                     .map(r => [r.left, r.right, r.height]);",
                );
                let labels = labels.as_array().unwrap();
                assert!(!labels.is_empty(), "{page} at {width}px: no axis labels");
                let mut right_of_previous = f64::MIN;
                for label in labels {
                    let (left, right, tall) = (
                        label[0].as_f64().unwrap(),
                        label[1].as_f64().unwrap(),
                        label[2].as_f64().unwrap(),
                    );
                    assert!(tall >= 9.0, "{page} at {width}px: labels {tall}px tall");
                    assert!(left >= right_of_previous, "{page} at {width}px: {labels:?}");
                    right_of_previous = right;
                }
                let name = if page == "/" { "overview" } else { "tls" };
                driver.screenshot(&format!("chart-{name}-{width}.png"));
            }
        }

        // The compliance chart's text is readable on a phone and its
        // labels stay above their bars.
        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            driver.go(&format!("{base}/compliance?domain=example.com"));
            let texts = driver.script(
                "return Array.from(document.querySelectorAll('svg.chart text'))\
                 .map(t => t.getBoundingClientRect()).filter(r => r.width > 0).map(r => r.height);",
            );
            let texts = texts.as_array().unwrap();
            assert!(!texts.is_empty(), "compliance at {width}px: no chart text");
            for tall in texts {
                assert!(tall.as_f64().unwrap() >= 9.0, "compliance at {width}px: {texts:?}");
            }
            let overlapping = driver.script(
                "const rects = Array.from(document.querySelectorAll('svg.chart rect')).map(r => r.getBoundingClientRect());\
                 return Array.from(document.querySelectorAll('svg.chart > text')).map(t => t.getBoundingClientRect())\
                 .filter(t => rects.some(r => t.bottom > r.top + 1 && t.top < r.bottom - 1 && t.right > r.left && t.left < r.right)).length;",
            );
            assert_eq!(overlapping, json!(0), "compliance at {width}px: a label over a bar");
            driver.screenshot(&format!("chart-compliance-{width}.png"));
        }

        driver.resize(1400, 900);
        driver.go(&format!("{base}/"));
        let clipped = driver.script(
            "return Array.from(document.querySelectorAll('.card'))\
             .filter(card => card.scrollWidth > card.clientWidth + 1)\
             .map(card => (card.querySelector('h2') || card).innerText.slice(0, 40));",
        );
        assert_eq!(clipped, json!([]), "overview cards that hide columns at 1400px");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_world_map_draws_countries_and_leads_to_the_explorer_in_chromium() {
    let Some(driver) = tokio::task::spawn_blocking(Driver::start).await.unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver must be installed in CI (.ci/run installs them)"
        );
        eprintln!("NOTE: chromium/chromedriver not installed: the browser test was SKIPPED");
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let config = WebConfig {
        secure_cookies: false,
        ..WebConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let base = server.url("");
    tokio::task::spawn_blocking(move || {
        driver.go(&format!("{base}/"));
        driver.wait_for_url(|url| url.contains("/login?next="));
        driver.type_into("#username", "alice");
        driver.type_into("#password", PASSWORD);
        driver.click("button[type=submit]");
        driver.wait_for_url(|url| url.ends_with('/'));

        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            driver.go(&format!("{base}/"));
            driver.script("document.getElementById('map').scrollIntoView();");
            // Drawn: well over a hundred country shapes with a real size,
            // the map as wide as its column, inside the window.
            let shapes = driver.script(
                "return Array.from(document.querySelectorAll('figure.world-map path'))\
                 .filter(p => { const r = p.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length;",
            );
            assert!(shapes.as_u64().unwrap() > 150, "{width}px: {shapes} shapes drawn");
            let map = driver.script(
                "const r = document.querySelector('figure.world-map svg').getBoundingClientRect();\
                 const card = document.getElementById('map').getBoundingClientRect();\
                 return [r.left, r.right, r.width, r.height, window.innerWidth, card.width];",
            );
            let map = map.as_array().unwrap();
            let number = |i: usize| map[i].as_f64().unwrap();
            assert!(number(0) >= 0.0 && number(1) <= number(4), "{width}px: {map:?}");
            // Beside the table at desktop width, the card's full width on a phone.
            let share = if width > 900 { 0.5 } else { 0.9 };
            assert!(number(2) >= number(5) * share, "{width}px: the map is {map:?}");
            assert!(
                (number(2) / number(3) - 1000.0 / 438.0).abs() < 0.05,
                "{width}px: the map keeps its shape {map:?}"
            );
            // The countries with mail are coloured, the others grey; the
            // US is as large on screen as a country should be.
            let fills = driver.script(
                "return ['US', 'DE', 'FR'].map(c => getComputedStyle(document.querySelector(\
                 `figure.world-map [data-country=${c}]`)).fill);",
            );
            let fills = fills.as_array().unwrap();
            assert_ne!(fills[0], json!("rgb(229, 231, 235)"), "{fills:?}");
            assert_ne!(fills[1], json!("rgb(229, 231, 235)"), "{fills:?}");
            assert_eq!(fills[2], json!("rgb(229, 231, 235)"), "{fills:?}");
            let us = driver.script(
                "const r = document.querySelector('figure.world-map [data-country=US]').getBoundingClientRect();\
                 const m = document.querySelector('figure.world-map svg').getBoundingClientRect();\
                 return r.width / m.width;",
            );
            assert!(us.as_f64().unwrap() > 0.1, "the US spans {us} of the map");
            // Nothing spills sideways at either width.
            let overflow = driver.script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            );
            assert!(overflow.as_i64().unwrap() <= 1, "{width}px: {overflow}");
            let path = driver.screenshot(&format!("map-overview-{width}.png"));
            eprintln!("screenshot: {}", path.display());
        }

        // The tooltip names the country; a click on Germany opens the
        // explorer filtered by it.
        driver.resize(1400, 900);
        driver.go(&format!("{base}/"));
        let title = driver.script(
            "return document.querySelector('figure.world-map [data-country=DE] title').textContent;",
        );
        assert!(
            title.as_str().unwrap().starts_with("Germany (DE): "),
            "{title}"
        );
        driver.script("document.getElementById('map').scrollIntoView();");
        driver.click("figure.world-map [data-country=DE]");
        let url = driver.wait_for_url(|url| url.contains("/aggregate?"));
        assert!(url.contains("country=DE"), "{url}");
        let filter = driver.script("return document.querySelector('input[name=country]').value;");
        assert_eq!(filter, json!("DE"));
        let text = driver.page_text();
        assert!(text.contains("Aggregate explorer"), "{text}");

        // The failing map, switched by its link, and on the compliance page.
        driver.go(&format!("{base}/"));
        driver.click("#map a[href*='map=failing']");
        driver.wait_for_url(|url| url.contains("map=failing"));
        let current = driver.script("return document.querySelector('#map a.current').innerText;");
        assert_eq!(current, json!("failing messages"));
        driver.screenshot("map-failing-1400.png");
        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            driver.go(&format!("{base}/compliance?domain=example.com"));
            driver.script("document.getElementById('map').scrollIntoView();");
            let shapes = driver.script(
                "return document.querySelectorAll('figure.world-map a path, figure.world-map a circle').length;",
            );
            assert!(shapes.as_u64().unwrap() >= 2, "compliance at {width}px: {shapes}");
            driver.screenshot(&format!("map-compliance-{width}.png"));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_schedule_is_added_and_previewed_in_chromium() {
    let Some(driver) = tokio::task::spawn_blocking(Driver::start).await.unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver must be installed in CI (.ci/run installs them)"
        );
        eprintln!("NOTE: chromium/chromedriver not installed: the browser test was SKIPPED");
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    let files = tempfile::tempdir().unwrap();
    common::data::populated(&store, files.path()).await;
    let config = WebConfig {
        secure_cookies: false,
        ..WebConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let base = server.url("");
    tokio::task::spawn_blocking(move || {
        driver.go(&format!("{base}/alerts/digests"));
        driver.wait_for_url(|url| url.contains("/login?next="));
        driver.type_into("#username", "alice");
        driver.type_into("#password", PASSWORD);
        driver.click("button[type=submit]");
        driver.wait_for_url(|url| url.ends_with("/alerts/digests"));
        assert!(driver.page_text().contains("No digest schedules"));
        let unlabelled = driver.script(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select'))\
             .filter(el => el.labels.length === 0).map(el => el.name);",
        );
        assert_eq!(unlabelled, json!([]), "fields without a label");

        // Add a daily digest for every domain through the form.
        driver.type_into("input[name=name]", "morning summary");
        driver.type_into("input[name=recipients]", "pm@example.com");
        driver.script("document.querySelector('select[name=frequency]').value = 'daily';");
        driver.click("form[action='/alerts/digests'] button[type=submit]");
        let text = driver.wait_for_text("morning summary");
        assert!(text.contains("every day at 08:00 UTC"), "{text}");
        driver.screenshot("dashboard-digests.png");

        // Its preview: the mail's HTML in the page, for yesterday's
        // report days (none in the corpus: the digest says so).
        driver.click("a[href$='/preview']");
        driver.wait_for_url(|url| url.ends_with("/preview"));
        let text = driver.page_text();
        assert!(text.contains("Subject: Daily DMARC digest"), "{text}");
        assert!(text.contains("no reports received"), "{text}");
        let domains =
            driver.script("return document.querySelectorAll('.digest-preview h2').length;");
        assert!(
            domains.as_u64().unwrap() >= 1,
            "every corpus domain is listed"
        );
        driver.screenshot("dashboard-digest-preview.png");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mta_sts_page_switches_modes_in_chromium() {
    let Some(driver) = tokio::task::spawn_blocking(Driver::start).await.unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver must be installed in CI (.ci/run installs them)"
        );
        eprintln!("NOTE: chromium/chromedriver not installed: the browser test was SKIPPED");
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    assert!(dmarcd::query::domains::add_domain(
        &store,
        &dmarcd::scope::Scope::All,
        "example.test",
        None
    )
    .await
    .unwrap());
    // The domain's MX answers on no port: its STARTTLS probe fails.
    let zone = common::zone_server::ZoneServer::start(
        "example.test. MX 10 mx.example.test.\nmx.example.test. A 127.0.0.1\n",
        &[],
    )
    .await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = dmarcd::config::Config::default();
    config.dns.name_servers = vec![zone.address().to_string()];
    config.dns.timeout_ms = 500;
    config.mta_sts.probe_port = closed;
    config.mta_sts.probe_timeout_seconds = 2;
    config.mta_sts.host = Some("reports.test".to_string());
    config.dns_server.zone = Some("_hosted.reports.test".to_string());
    config.dns_server.listen = Some("127.0.0.1:0".to_string());
    config.smtp.recipients = vec!["dmarc@reports.test".to_string()];
    let hosted = dmarcd::hosted::HostedService::from_config(store.clone(), &config).unwrap();
    let web = WebConfig {
        secure_cookies: false,
        ..WebConfig::default()
    };
    let state = dmarcd::web::AppState::new(store.clone(), web, dmarcd::Limits::default())
        .with_hosted(std::sync::Arc::new(hosted));
    let server = Server::start_with_state(state).await;
    server
        .state
        .accounts
        .add_user("alice", PASSWORD, "admin")
        .await
        .unwrap();
    let base = server.url("");
    tokio::task::spawn_blocking(move || {
        driver.go(&format!("{base}/domains/example.test/mta-sts"));
        driver.wait_for_url(|url| url.contains("/login?next="));
        driver.type_into("#username", "alice");
        driver.type_into("#password", PASSWORD);
        driver.click("button[type=submit]");
        driver.wait_for_url(|url| url.ends_with("/mta-sts"));
        let text = driver.page_text();
        assert!(text.contains("No policy is hosted"), "{text}");
        assert!(
            text.contains("_mta-sts.example.test.\tCNAME\texample.test._mta-sts._hosted.reports.test."),
            "{text}"
        );
        let unlabelled = driver.script(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
             .filter(el => el.labels.length === 0).map(el => el.name);",
        );
        assert_eq!(unlabelled, json!([]), "fields without a label");

        // testing: the MX patterns come from the domain's MX record.
        driver.script("document.querySelector('#policy-form select[name=mode]').value = 'testing';");
        driver.click("#policy-form button[type=submit]");
        let text = driver.wait_for_text("Policy changed");
        assert!(text.contains("mode: testing"), "{text}");
        assert!(text.contains("mx: mx.example.test"), "{text}");

        // enforce is refused while the MX host offers no STARTTLS …
        driver.script("document.querySelector('#policy-form select[name=mode]').value = 'enforce';");
        driver.click("#policy-form button[type=submit]");
        let text = driver.wait_for_text("Not enforced");
        assert!(text.contains("mx.example.test: cannot connect"), "{text}");
        driver.screenshot("mta-sts-refused.png");
        // … unless forced.
        driver.script("document.querySelector('#policy-form select[name=mode]').value = 'enforce';");
        driver.click("#policy-form input[name=force]");
        driver.click("#policy-form button[type=submit]");
        let text = driver.wait_for_text("Policy changed");
        assert!(text.contains("mode: enforce"), "{text}");
        assert!(text.contains("forced"), "{text}");

        // One click back to testing.
        driver.click("#back-to-testing button[type=submit]");
        let text = driver.wait_for_text("mode: testing");
        assert!(text.contains("Policy changed"), "{text}");

        for (width, height) in [(1400, 900), (390, 844)] {
            driver.resize(width, height);
            driver.go(&format!("{base}/domains/example.test/mta-sts"));
            let overflow = driver.script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            );
            assert!(
                overflow.as_i64().unwrap() <= 1,
                "{overflow}px wider than the window at {width}px"
            );
            driver.screenshot(&format!("page-mta-sts-{width}.png"));
        }
    })
    .await
    .unwrap();
    drop(zone);
}
