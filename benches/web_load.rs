//! Dashboard and API latency at scale: `cargo bench --bench web_load`
//! (needs DATABASE_URL; PostgreSQL only).
//!
//! Seeds a database `dmarcd_load` with RECORDS aggregate records (default
//! 10,000,000: 20,000 reports of 500 records over the last 365 days, 25
//! domains, 12 reporters, 50,000 source IPs used with a heavy skew, like
//! real senders) straight into the tables, rollups included, once; later
//! runs reuse it (RESEED=1 starts over). Then serves the web app in this
//! process and requests every page and summary endpoint REQUESTS times
//! (default 40) from CLIENTS concurrent clients (default 4), printing
//! p50 / p95 / max. ONLY=<text> measures just the URLs containing it.
//! GROUP=<n> asks as a member of a domain group holding n of the 25
//! domains (domain-0 … domain-<n-1>; at least 4, so that domain-3, which
//! the per-domain pages name, is among them), with a token of that group:
//! every query then carries the group's domain filter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmarcd::store::Store;
use dmarcd::web::{AppState, WebConfig};
use dmarcd::Limits;
use sqlx::Connection;

const DATABASE: &str = "dmarcd_load";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("web_load: skipped (DATABASE_URL unset)");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(url));
}

async fn run(url: String) {
    let records = setting("RECORDS", 10_000_000);
    let requests = setting("REQUESTS", 40) as usize;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let store_url = format!("{base}/{DATABASE}");
    if exists && std::env::var_os("RESEED").is_some() {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {DATABASE}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let fresh = !exists || std::env::var_os("RESEED").is_some();
    if fresh {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let store = Store::connect(Some(&store_url), std::path::Path::new("."))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut db = sqlx::PgConnection::connect(&store_url).await.unwrap();
    if fresh {
        let started = Instant::now();
        seed(&mut db, records).await;
        println!(
            "seeded {records} records in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM aggregate_records")
        .fetch_one(&mut db)
        .await
        .unwrap();
    // Seeds made before the derived totals were filled here have none:
    // the sender views would measure empty tables.
    let derived_empty: bool =
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM totals_name_all)")
            .fetch_one(&mut db)
            .await
            .unwrap();
    if count > 0 && derived_empty {
        fill_derived(&mut db).await;
    }
    println!("database {DATABASE}: {count} aggregate records");

    let state = AppState::new(
        store.clone(),
        WebConfig {
            secure_cookies: false,
            // Measure slow pages instead of cutting them off.
            request_timeout_seconds: 900,
            ..WebConfig::default()
        },
        Limits::default(),
    );
    let group_domains = setting("GROUP", 0);
    let user = if group_domains > 0 {
        let group_domains = group_domains.clamp(4, 25);
        let (all, cli) = (dmarcd::scope::Scope::All, dmarcd::audit::Actor::cli());
        // Made once; later runs find them.
        let _ = dmarcd::groups::create(&store, &cli, &all, "load-tenant").await;
        for n in 0..25 {
            let group = if n < group_domains {
                "load-tenant"
            } else {
                "default"
            };
            dmarcd::groups::assign_domain(
                &store,
                &cli,
                &all,
                group,
                &format!("domain-{n}.example"),
            )
            .await
            .unwrap();
        }
        let _ = state
            .accounts
            .add_user_in(
                "tenant",
                "load-test-password",
                "viewer",
                Some(("load-tenant", dmarcd::scope::GroupRole::Viewer)),
            )
            .await;
        println!("asking as a viewer of a group of {group_domains} of the 25 domains");
        "tenant"
    } else {
        let _ = state
            .accounts
            .add_user("load", "load-test-password", "admin")
            .await;
        "load"
    };
    let (session, _) = state
        .accounts
        .login(user, "load-test-password", chrono::Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    let token_name = format!("load-{}", std::process::id());
    let token = if group_domains > 0 {
        state
            .accounts
            .create_group_token(
                &token_name,
                "load-tenant",
                dmarcd::scope::GroupRole::Viewer,
                None,
            )
            .await
            .unwrap()
    } else {
        state.accounts.create_token(&token_name).await.unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let router = dmarcd::web::router(state);
    tokio::spawn(async move { dmarcd::web::serve(listener, router, stopped).await });

    let top_ip: String = sqlx::query_scalar(
        "SELECT host(source_ip) FROM totals_source_all ORDER BY count DESC LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let top_name: String = sqlx::query_scalar(
        "SELECT coalesce(source_name, host(source_ip)) FROM totals_domain_source_all \
         WHERE policy_domain = 'domain-3.example' ORDER BY count DESC LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let report: i64 = sqlx::query_scalar("SELECT max(id) FROM aggregate_reports")
        .fetch_one(&mut db)
        .await
        .unwrap();
    // A period with ragged ends (whole months in the middle, days at both ends).
    let month = (chrono::Utc::now().date_naive() - chrono::Duration::days(36)).to_string();
    // The overview's own period links (last 30 and 90 days).
    let preset =
        |days| (chrono::Utc::now().date_naive() - chrono::Duration::days(days)).to_string();
    let pages: Vec<String> = vec![
        "/".into(),
        format!("/?since={month}"),
        format!("/?since={}", preset(30)),
        format!("/?since={}", preset(90)),
        "/?domain=domain-3.example".into(),
        "/aggregate".into(),
        "/aggregate?group_by=source".into(),
        format!("/aggregate?group_by=country&result=fail&since={month}"),
        "/aggregate?group_by=org&domain=domain-3.example".into(),
        "/aggregate?group_by=day".into(),
        "/records".into(),
        "/records?country=DE&result=fail".into(),
        format!("/sources/{top_ip}"),
        format!("/reports/{report}"),
        "/tls".into(),
        "/failures".into(),
        "/inbox".into(),
        "/domains".into(),
        "/senders?domain=domain-3.example".into(),
        format!("/senders?domain=domain-3.example&since={}", preset(30)),
        format!(
            "/senders/source?domain=domain-3.example&{}",
            serde_urlencoded::to_string([("name", &top_name)]).unwrap()
        ),
        format!(
            "/senders/source?domain=domain-3.example&since={}&{}",
            preset(30),
            serde_urlencoded::to_string([("name", &top_name)]).unwrap()
        ),
        "/compliance?domain=domain-3.example".into(),
        format!("/compliance?domain=domain-3.example&since={}", preset(30)),
    ];
    let mut api: Vec<String> = [
        "source",
        "source_name",
        "org",
        "country",
        "asn",
        "domain",
        "day",
        "disposition",
    ]
    .iter()
    .map(|group| format!("/api/v1/aggregate/summary?group_by={group}"))
    .collect();
    api.push(format!(
        "/api/v1/aggregate/summary?group_by=source&since={month}&result=fail"
    ));
    api.push("/api/v1/aggregate/summary?group_by=org&domain=domain-3.example".into());
    api.push("/api/v1/aggregate/records?country=US".into());
    api.push("/api/v1/aggregate/reports".into());
    api.push("/api/v1/tls/summary".into());
    api.push("/api/v1/domains/domain-3.example/senders".into());
    api.push(format!(
        "/api/v1/domains/domain-3.example/senders?since={}",
        preset(30)
    ));
    api.push(format!(
        "/api/v1/domains/domain-3.example/senders/source?{}",
        serde_urlencoded::to_string([("name", &top_name)]).unwrap()
    ));
    api.push("/api/v1/domains/domain-3.example/compliance".into());
    api.push("/api/v1/domains/domain-3.example/readiness".into());

    let clients = setting("CLIENTS", 4).max(1) as usize;
    println!("{requests} requests per URL, {clients} concurrent clients; latency in ms");
    println!("{:<70} {:>7} {:>7} {:>7}", "URL", "p50", "p95", "max");
    let cookie = format!("dmarcd_session={session}");
    let mut worst = 0.0f64;
    // ONLY=<text>: just the URLs that contain it (while working on one view).
    let only = std::env::var("ONLY").unwrap_or_default();
    for (path, header) in pages
        .iter()
        .map(|p| (p, ("Cookie", cookie.clone())))
        .chain(
            api.iter()
                .map(|p| (p, ("Authorization", format!("Bearer {token}")))),
        )
        .filter(|(path, _)| path.contains(only.as_str()))
    {
        let (p50, p95, max) = measure(address, path, header, requests, clients).await;
        worst = worst.max(p95);
        println!("{path:<70} {p50:>7.1} {p95:>7.1} {max:>7.1}");
    }
    println!("worst p95: {worst:.1} ms (target: 200 ms)");

    // A large CSV export: memory must stay flat however many rows stream.
    let since = (chrono::Utc::now().date_naive()
        - chrono::Duration::days(setting("CSV_DAYS", 36) as i64))
    .to_string();
    let url = format!("http://{address}/api/v1/aggregate/records?format=csv&since={since}");
    let baseline = rss_kib();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let bearer = format!("Bearer {token}");
    let (rows, bytes, elapsed) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let started = Instant::now();
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let response = agent
            .get(&url)
            .header("Authorization", &bearer)
            .call()
            .unwrap();
        let reader = std::io::BufReader::new(
            response
                .into_body()
                .into_with_config()
                .limit(u64::MAX)
                .reader(),
        );
        let (mut rows, mut bytes) = (0u64, 0u64);
        for line in reader.lines() {
            bytes += line.unwrap().len() as u64 + 2;
            rows += 1;
        }
        (rows.saturating_sub(1), bytes, started.elapsed())
    })
    .await
    .unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "CSV export: {rows} rows, {:.0} MB in {:.1} s; process RSS {} MiB before, peak {} MiB (+{} MiB)",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        baseline / 1024,
        peak / 1024,
        peak.saturating_sub(baseline) / 1024
    );
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(
    address: SocketAddr,
    path: &str,
    header: (&'static str, String),
    requests: usize,
    clients: usize,
) -> (f64, f64, f64) {
    let url = Arc::new(format!("http://{address}{path}"));
    let header = Arc::new(header);
    // One warm-up request (plans, caches), not counted.
    let _ = fetch(&url, &header);
    let per_client = requests.div_ceil(clients);
    let mut workers = Vec::new();
    for _ in 0..clients {
        let url = Arc::clone(&url);
        let header = Arc::clone(&header);
        workers.push(tokio::task::spawn_blocking(move || {
            (0..per_client)
                .map(|_| fetch(&url, &header))
                .collect::<Vec<Duration>>()
        }));
    }
    let mut times = Vec::new();
    for worker in workers {
        times.extend(worker.await.unwrap());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| {
        times[((times.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    (ms(at(0.50)), ms(at(0.95)), ms(*times.last().unwrap()))
}

fn fetch(url: &str, header: &(&'static str, String)) -> Duration {
    let started = Instant::now();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).header(header.0, &header.1).call().unwrap();
    let status = response.status().as_u16();
    let _ = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec();
    assert_eq!(status, 200, "{url}");
    started.elapsed()
}

/// Reports, records, sources and rollups written straight into the tables.
async fn seed(db: &mut sqlx::PgConnection, records: u64) {
    let per_report = 500u64;
    let reports = records.div_ceil(per_report) as i64;
    let statements = [
        "SET synchronous_commit = off".to_string(),
        format!(
            "INSERT INTO aggregate_reports (org_name, email, report_id, date_begin, date_end, schema, policy_domain,
                 adkim, aspf, p, sp, pct, record_count, message_count)
             SELECT (ARRAY['google.com','Enterprise Outlook','Yahoo','Mail.Ru','comcast.net','web.de',
                           'Fastmail','Proofpoint','Mimecast','ProtonMail','GMX','seznam.cz'])[1 + g % 12],
                    'noreply@example.net', 'load-' || g,
                    date_trunc('day', now(), 'UTC') - ((g % 365) || ' days')::interval,
                    date_trunc('day', now(), 'UTC') - ((g % 365) || ' days')::interval + interval '1 day' - interval '1 second',
                    'rfc7489', 'domain-' || (g % 25) || '.example', 'r', 'r', 'quarantine', 'quarantine', 100,
                    {per_report}, 0
               FROM generate_series(1, {reports}) g"
        ),
        "DROP INDEX IF EXISTS aggregate_records_report, aggregate_records_domain_time, aggregate_records_source_ip, aggregate_records_newest, aggregate_records_domain_source".to_string(),
        format!(
            "INSERT INTO aggregate_records (report_id, policy_domain, org_name, date_begin, date_end, source_ip, count,
                 disposition, dkim_aligned, spf_aligned, dmarc_pass, header_from, dkim_results, spf_results)
             SELECT a.id, a.policy_domain, a.org_name, a.date_begin, a.date_end,
                    '11.0.0.0'::inet + (50000 * power(random(), 3))::int,
                    1 + (random() * 40)::int,
                    CASE WHEN x.pass THEN 'none' WHEN random() < 0.7 THEN 'quarantine' ELSE 'reject' END,
                    CASE WHEN x.pass OR random() < 0.3 THEN 'pass' ELSE 'fail' END,
                    CASE WHEN x.pass AND random() < 0.8 THEN 'pass' ELSE 'fail' END,
                    x.pass, a.policy_domain,
                    jsonb_build_array(jsonb_build_object('domain', a.policy_domain, 'selector', 's1', 'result', 'pass')),
                    jsonb_build_array(jsonb_build_object('domain', a.policy_domain, 'scope', 'mfrom', 'result', 'pass'))
               FROM aggregate_reports a
               CROSS JOIN LATERAL (SELECT s, random() < 0.8 AS pass FROM generate_series(1, {per_report}) s) x
              WHERE a.report_id LIKE 'load-%'"
        ),
        "CREATE INDEX aggregate_records_report ON aggregate_records (report_id)".to_string(),
        "CREATE INDEX aggregate_records_domain_time ON aggregate_records (policy_domain, date_begin)".to_string(),
        "CREATE INDEX aggregate_records_source_ip ON aggregate_records (source_ip, date_begin DESC, id DESC)".to_string(),
        "CREATE INDEX aggregate_records_newest ON aggregate_records (date_begin DESC, id DESC)".to_string(),
        "CREATE INDEX aggregate_records_domain_source ON aggregate_records (policy_domain, source_ip, date_begin DESC)".to_string(),
        "UPDATE aggregate_reports a SET message_count = s.m FROM
             (SELECT report_id, sum(count) m FROM aggregate_records GROUP BY report_id) s WHERE s.report_id = a.id".to_string(),
        "INSERT INTO domains (name, origin) SELECT DISTINCT policy_domain, 'report' FROM aggregate_reports ON CONFLICT DO NOTHING".to_string(),
        "INSERT INTO ip_sources (ip, country, asn, as_name, source_name, source_type, described_at, dns_state, dns_due_at)
         SELECT DISTINCT source_ip,
                (ARRAY['US','DE','FR','GB','NL','IE','JP','BR','IN','CA'])[1 + abs(hashtext(host(source_ip))) % 10],
                64500 + abs(hashtext(host(source_ip))) % 400,
                'Network ' || (abs(hashtext(host(source_ip))) % 400),
                (ARRAY['Google','Microsoft 365','Amazon SES','SendGrid','Mailchimp','Mimecast','Proofpoint','example.net'])[1 + abs(hashtext(host(source_ip))) % 8],
                (ARRAY['mailbox_provider','mailbox_provider','esp','esp','marketing','security_gateway','security_gateway','hosting'])[1 + abs(hashtext(host(source_ip))) % 8],
                now(), 'done', now() + interval '7 days'
           FROM aggregate_records ON CONFLICT DO NOTHING".to_string(),
    ];
    for statement in statements {
        let started = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *db)
            .await
            .unwrap();
        println!(
            "  {:>6.1} s  {}",
            started.elapsed().as_secs_f64(),
            statement
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    // The triggers on the totals per domain and source fill these from
    // that fill.
    for derived in dmarcd::store::derived::ALL {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "TRUNCATE {}",
            derived.rollup.table
        )))
        .execute(&mut *db)
        .await
        .unwrap();
    }
    for rollup in dmarcd::store::rollup::ALL {
        let started = Instant::now();
        // Filled afresh: the migration filled them from no records.
        sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {}", rollup.table)))
            .execute(&mut *db)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(
            rollup.fill_sql(dmarcd::store::Backend::Postgres),
        ))
        .execute(&mut *db)
        .await
        .unwrap();
        println!(
            "  {:>6.1} s  rollup {}",
            started.elapsed().as_secs_f64(),
            rollup.table
        );
    }
    fill_derived(db).await;
    sqlx::query("ANALYZE").execute(&mut *db).await.unwrap();
}

/// The totals per country and per sender name, summed from the totals per
/// domain and source (the rollup applier writes them from its deltas; a
/// seed written straight into the tables fills them here).
async fn fill_derived(db: &mut sqlx::PgConnection) {
    for derived in dmarcd::store::derived::ALL {
        let started = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "TRUNCATE {}",
            derived.rollup.table
        )))
        .execute(&mut *db)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(
            derived.fill_sql(dmarcd::store::Backend::Postgres),
        ))
        .execute(&mut *db)
        .await
        .unwrap();
        println!(
            "  {:>6.1} s  derived {}",
            started.elapsed().as_secs_f64(),
            derived.rollup.table
        );
    }
    sqlx::query("ANALYZE").execute(&mut *db).await.unwrap();
}
