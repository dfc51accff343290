//! Monitored domains: those seen in reports and those added by hand.

use serde::Serialize;

use super::time::Timestamp;
use super::QueryError;
use crate::store::Store;

/// A monitored domain with its report volume.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct DomainRow {
    pub name: String,
    /// `report` (seen in a report) or `user` (added by hand).
    pub origin: String,
    pub aggregate_reports: i64,
    #[sqlx(try_from = "Timestamp")]
    pub created_at: String,
}

pub async fn domains(store: &Store) -> Result<Vec<DomainRow>, QueryError> {
    let db = store.db();
    let sql = db.statement(
        "SELECT d.name, d.origin, \
         (SELECT count(*) FROM aggregate_reports a WHERE a.policy_domain = d.name) AS aggregate_reports, \
         d.created_at FROM domains d ORDER BY d.name",
        Vec::new(),
    );
    Ok(db.fetch_all(&sql).await?)
}

/// Adds a domain by hand; false if it was already there.
pub async fn add_domain(store: &Store, name: &str) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) {
        return Err(QueryError::Invalid(format!(
            "{name:?} is not a domain name"
        )));
    }
    let db = store.db();
    let sql = db.statement(
        "INSERT INTO domains (name, origin, created_at) VALUES ($1, 'user', $2) \
         ON CONFLICT (name) DO NOTHING",
        vec![name.into(), chrono::Utc::now().into()],
    );
    Ok(db.execute(&sql).await? > 0)
}

/// Stops monitoring a domain (its reports stay); false if it was not there.
pub async fn remove_domain(store: &Store, name: &str) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) {
        return Ok(false);
    }
    let db = store.db();
    let sql = db.statement("DELETE FROM domains WHERE name = $1", vec![name.into()]);
    Ok(db.execute(&sql).await? > 0)
}
