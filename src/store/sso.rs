//! Single sign-on as stored: sign-ins under way (taken back once) and the
//! users the OpenID provider vouches for. `crate::oidc` decides what is
//! trusted; this module keeps it.

use chrono::{DateTime, Utc};

use super::accounts::UserRow;
use super::db::Db;
use super::StoreResult;

/// A sign-in under way, as `begin` left it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLogin {
    pub nonce: String,
    pub verifier: String,
    pub next: String,
    pub expires_at: DateTime<Utc>,
}

/// Keeps a sign-in under way (and forgets the ones long expired).
pub async fn insert_login(
    db: &Db,
    state_hash: &str,
    login: &PendingLogin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    db.execute(&db.statement(
        "DELETE FROM sso_logins WHERE expires_at < $1",
        vec![now.into()],
    ))
    .await?;
    db.execute(&db.statement(
        "INSERT INTO sso_logins (state_hash, nonce, verifier, next, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            state_hash.into(),
            login.nonce.as_str().into(),
            login.verifier.as_str().into(),
            login.next.as_str().into(),
            login.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Takes a sign-in under way back, once: a second callback with the same
/// state finds nothing.
pub async fn take_login(db: &Db, state_hash: &str) -> StoreResult<Option<PendingLogin>> {
    db.fetch_optional(&db.statement(
        "DELETE FROM sso_logins WHERE state_hash = $1 \
         RETURNING nonce, verifier, next, expires_at",
        vec![state_hash.into()],
    ))
    .await
}

/// The user tied to `subject`, made (as `name`, with no usable password)
/// on their first sign-in, with `role` set from the provider's groups each
/// time. None when `name` is a local user's (never taken over).
pub async fn sso_user(
    db: &Db,
    subject: &str,
    name: &str,
    role: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserRow>> {
    let mut transaction = db.begin_durable().await?;
    let updated = transaction
        .execute(&transaction.statement(
            "UPDATE users SET role = $2 WHERE sso_subject = $1",
            vec![subject.into(), role.into()],
        ))
        .await?;
    if updated == 0 {
        // "!sso" is no argon2 hash: no password ever matches it.
        transaction
            .execute(&transaction.statement(
                "INSERT INTO users (username, password_hash, role, created_at, sso_subject) \
                 VALUES ($1, '!sso', $2, $3, $4) ON CONFLICT (username) DO NOTHING",
                vec![name.into(), role.into(), now.into(), subject.into()],
            ))
            .await?;
    }
    let user: Option<UserRow> = transaction
        .fetch_optional(&transaction.statement(
            &format!(
                "SELECT {} FROM users WHERE sso_subject = $1",
                super::accounts::USER_COLUMNS
            ),
            vec![subject.into()],
        ))
        .await?;
    transaction.commit().await?;
    Ok(user)
}
