//! Real databases for the storage tests: a fresh SQLite file, and a fresh
//! PostgreSQL database (created on the server named by DATABASE_URL) per test.

use dmarcd::store::Store;
use sqlx::Connection;

/// Every backend available here, each with an empty, migrated database.
/// PostgreSQL needs DATABASE_URL; without it that half is skipped, loudly,
/// except under CI, where skipping it is an error.
pub async fn backends() -> Vec<(tempfile::TempDir, Store)> {
    let mut stores = vec![sqlite().await];
    match postgres().await {
        Some(store) => stores.push(store),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "DATABASE_URL must be set in CI: the PostgreSQL half of the storage suite cannot be skipped there"
            );
            eprintln!("NOTE: DATABASE_URL is unset: the PostgreSQL half of this test was SKIPPED");
        }
    }
    stores
}

pub async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

pub async fn postgres() -> Option<(tempfile::TempDir, Store)> {
    postgres_named().await.map(|(dir, store, _)| (dir, store))
}

/// `postgres()`, with the name of its database (to cut it off in outage tests).
pub async fn postgres_named() -> Option<(tempfile::TempDir, Store, String)> {
    let url = std::env::var("DATABASE_URL").ok()?;
    let name = format!(
        "dmarcd_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("DATABASE_URL is reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let store = Store::connect(Some(&with_database(&url, &name)), std::path::Path::new("."))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((tempfile::tempdir().unwrap(), store, name))
}

/// Makes the PostgreSQL database `name` refuse new connections and ends
/// the open ones (`false`), or lets connections in again (`true`): an
/// outage as a restart or a failover looks from the client.
pub async fn allow_connections(name: &str, allowed: bool) {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// The URL with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}
