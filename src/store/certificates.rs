//! What ACME needs shared by every node: the account, the certificates of
//! the `mta-sts.<domain>` hosts with their state, and the challenges
//! being validated (any node may receive the CA's validation request).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::Db;
use super::StoreResult;

/// A host's certificate and how getting it went.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredCertificate {
    pub host: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub issued_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub failures: i32,
    pub next_attempt_at: DateTime<Utc>,
}

/// A certificate's state as pages and the API show it (no key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CertificateState {
    pub host: String,
    /// A certificate is stored and still valid.
    pub valid: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_after: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub issued_at: Option<DateTime<Utc>>,
    /// Why the last order failed, until one succeeds.
    pub last_error: Option<String>,
    pub failures: i32,
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: DateTime<Utc>,
}

impl StoredCertificate {
    pub fn state(&self, now: DateTime<Utc>) -> CertificateState {
        CertificateState {
            host: self.host.clone(),
            valid: self.cert_pem.is_some() && self.not_after.is_some_and(|end| end > now),
            not_after: self.not_after,
            issued_at: self.issued_at,
            last_error: self.last_error.clone(),
            failures: self.failures,
            next_attempt_at: self.next_attempt_at,
        }
    }
}

const COLUMNS: &str = "host, cert_pem, key_pem, not_before, not_after, issued_at, last_error, \
                       failures, next_attempt_at";

pub async fn certificate(db: &Db, host: &str) -> StoreResult<Option<StoredCertificate>> {
    db.fetch_optional(&db.statement(
        &format!("SELECT {COLUMNS} FROM tls_certificates WHERE host = $1"),
        vec![host.into()],
    ))
    .await
}

pub async fn certificates(db: &Db) -> StoreResult<Vec<StoredCertificate>> {
    db.fetch_all(&db.statement(
        &format!("SELECT {COLUMNS} FROM tls_certificates ORDER BY host"),
        Vec::new(),
    ))
    .await
}

/// Makes sure `host` has a row, due at once when new.
pub async fn want_certificate(db: &Db, host: &str, now: DateTime<Utc>) -> StoreResult<()> {
    db.execute(&db.statement(
        "INSERT INTO tls_certificates (host, next_attempt_at) VALUES ($1, $2) \
         ON CONFLICT (host) DO NOTHING",
        vec![host.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// Takes the next host whose order is due and that no node holds, for
/// `lease`; `None` when there is none.
pub async fn claim_due(
    db: &Db,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Option<String>> {
    // One statement: the first node to update the row has it.
    let claimed: Option<(String,)> = db
        .fetch_optional(&db.statement(
            "UPDATE tls_certificates SET claimed_until = $2 WHERE host = ( \
               SELECT host FROM tls_certificates \
               WHERE next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) \
               ORDER BY next_attempt_at LIMIT 1) \
             AND (claimed_until IS NULL OR claimed_until < $1) RETURNING host",
            vec![now.into(), lease_until.into()],
        ))
        .await?;
    Ok(claimed.map(|(host,)| host))
}

/// A new certificate for `host`, next looked at `renew_at`.
#[allow(clippy::too_many_arguments)]
pub async fn issued(
    db: &Db,
    host: &str,
    cert_pem: &str,
    key_pem: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute(&db.statement(
        "UPDATE tls_certificates SET cert_pem = $2, key_pem = $3, not_before = $4, \
         not_after = $5, issued_at = $6, last_error = NULL, failures = 0, \
         next_attempt_at = $7, claimed_until = NULL WHERE host = $1",
        vec![
            host.into(),
            cert_pem.into(),
            key_pem.into(),
            not_before.into(),
            not_after.into(),
            now.into(),
            renew_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// An order for `host` failed: kept with its reason, tried again at `retry_at`.
pub async fn failed(db: &Db, host: &str, error: &str, retry_at: DateTime<Utc>) -> StoreResult<()> {
    db.execute(&db.statement(
        "UPDATE tls_certificates SET last_error = $2, failures = failures + 1, \
         next_attempt_at = $3, claimed_until = NULL WHERE host = $1",
        vec![host.into(), error.into(), retry_at.into()],
    ))
    .await?;
    Ok(())
}

/// Renews `host`'s certificate at the next look (an admin asked).
pub async fn renew_now(db: &Db, host: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(db
        .execute(&db.statement(
            "UPDATE tls_certificates SET next_attempt_at = $2, failures = 0 WHERE host = $1",
            vec![host.into(), now.into()],
        ))
        .await?
        > 0)
}

/// The account's credentials (JSON) for an ACME directory.
pub async fn acme_account(db: &Db, directory_url: &str) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = db
        .fetch_optional(&db.statement(
            "SELECT credentials FROM acme_accounts WHERE directory_url = $1",
            vec![directory_url.into()],
        ))
        .await?;
    Ok(row.map(|(credentials,)| credentials))
}

/// Keeps the account made for a directory; the first node's wins when
/// two create one at once, and that one is returned.
pub async fn save_acme_account(
    db: &Db,
    directory_url: &str,
    credentials: &str,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    db.execute(&db.statement(
        "INSERT INTO acme_accounts (directory_url, credentials, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (directory_url) DO NOTHING",
        vec![directory_url.into(), credentials.into(), now.into()],
    ))
    .await?;
    Ok(acme_account(db, directory_url)
        .await?
        .unwrap_or_else(|| credentials.to_string()))
}

/// The kinds of challenge (RFC 8555 section 8.3, RFC 8737).
pub const HTTP_01: &str = "http-01";
pub const TLS_ALPN_01: &str = "tls-alpn-01";

pub async fn put_challenge(
    db: &Db,
    kind: &str,
    name: &str,
    key_authorization: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute(&db.statement(
        "INSERT INTO acme_challenges (kind, name, key_authorization, expires_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO UPDATE SET \
         key_authorization = excluded.key_authorization, expires_at = excluded.expires_at",
        vec![
            kind.into(),
            name.into(),
            key_authorization.into(),
            expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The key authorization of a challenge not yet expired.
pub async fn challenge(
    db: &Db,
    kind: &str,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = db
        .fetch_optional(&db.statement(
            "SELECT key_authorization FROM acme_challenges \
             WHERE kind = $1 AND name = $2 AND expires_at > $3",
            vec![kind.into(), name.into(), now.into()],
        ))
        .await?;
    Ok(row.map(|(key_authorization,)| key_authorization))
}

/// Forgets a challenge once validated (or failed), and any expired ones.
pub async fn drop_challenge(
    db: &Db,
    kind: &str,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute(&db.statement(
        "DELETE FROM acme_challenges WHERE (kind = $1 AND name = $2) OR expires_at <= $3",
        vec![kind.into(), name.into(), now.into()],
    ))
    .await?;
    Ok(())
}
