//! Monitored domains: those seen in reports and those added by hand.

use serde::Serialize;

use super::time::Timestamp;
use super::QueryError;
use crate::scope::Scope;
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
    /// The domain group it belongs to.
    pub domain_group: Option<String>,
}

/// The domains `scope` sees.
pub async fn domains(store: &Store, scope: &Scope) -> Result<Vec<DomainRow>, QueryError> {
    let db = store.db();
    let mut sql = db.sql();
    sql.push(
        "SELECT d.name, d.origin, \
         (SELECT count(*) FROM aggregate_reports a WHERE a.policy_domain = d.name) AS aggregate_reports, \
         d.created_at, g.name AS domain_group FROM domains d \
         LEFT JOIN domain_groups g ON g.id = d.group_id WHERE 1 = 1",
    );
    scope.push_condition(&mut sql, "d.name");
    sql.push(" ORDER BY d.name");
    Ok(db.fetch_all(&sql).await?)
}

/// Adds a domain by hand, into group `group` (the default group unless
/// named); false if it was already there (in whichever group). Only those
/// who see every domain add one: a group's member could otherwise claim a
/// domain that has not reported yet, and with it the reports to come.
pub async fn add_domain(
    store: &Store,
    scope: &Scope,
    name: &str,
    group: Option<i64>,
) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) {
        return Err(QueryError::Invalid(format!(
            "{name:?} is not a domain name"
        )));
    }
    if !scope.is_all() {
        return Err(QueryError::Invalid("only admins add domains".into()));
    }
    let group = group.unwrap_or(crate::store::groups::DEFAULT_GROUP);
    let db = store.db();
    let sql = db.statement(
        "INSERT INTO domains (name, origin, created_at, group_id) VALUES ($1, 'user', $2, $3) \
         ON CONFLICT (name) DO NOTHING",
        vec![name.into(), chrono::Utc::now().into(), group.into()],
    );
    Ok(db.execute(&sql).await? > 0)
}

/// Stops monitoring a domain (its reports stay); false if it was not
/// there or the caller does not see every domain (the row says which
/// group the domain's reports belong to: only an admin lets it go).
pub async fn remove_domain(store: &Store, scope: &Scope, name: &str) -> Result<bool, QueryError> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    if !crate::domain::is_domain_name(&name) || !scope.is_all() {
        return Ok(false);
    }
    let db = store.db();
    let sql = db.statement("DELETE FROM domains WHERE name = $1", vec![name.into()]);
    Ok(db.execute(&sql).await? > 0)
}

/// A domain the caller may read: one dmarcd knows (seen in a report or
/// added) and `scope` sees; else a 404 that says the same for both, so a
/// caller learns nothing of another group's domains.
pub async fn require_visible(store: &Store, scope: &Scope, domain: &str) -> Result<(), QueryError> {
    if visible(store, scope, domain).await? {
        return Ok(());
    }
    Err(QueryError::NotFound(format!(
        "{domain} is not a domain dmarcd knows (it is listed when its first report arrives, or added under Domains)"
    )))
}

/// Whether dmarcd knows `domain` and `scope` sees it.
pub async fn visible(store: &Store, scope: &Scope, domain: &str) -> Result<bool, QueryError> {
    Ok(scope.sees(domain) && crate::store::posture::is_monitored(store.db(), domain).await?)
}
