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

/// A provider user as their sign-in left them.
#[derive(Debug, Clone)]
pub struct SsoUser {
    pub user: UserRow,
    /// Made by this sign-in.
    pub created: bool,
    /// Their role before, when this sign-in changed it.
    pub old_role: Option<String>,
}

/// The user tied to `subject`, made (as `name`, with no usable password)
/// on their first sign-in, with `role` set from the provider's groups each
/// time; a user who is no admin any more keeps their own tokens read-only
/// (as `accounts::set_role` does). None when `name` is a local user's
/// (never taken over).
pub async fn sso_user(
    db: &Db,
    subject: &str,
    name: &str,
    role: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<SsoUser>> {
    let mut transaction = db.begin_durable().await?;
    let known: Option<(i64, String)> = transaction
        .fetch_optional(&transaction.statement(
            "SELECT id, role FROM users WHERE sso_subject = $1",
            vec![subject.into()],
        ))
        .await?;
    let (created, old_role) = match known {
        Some((id, old)) => {
            if old != role {
                transaction
                    .execute(&transaction.statement(
                        "UPDATE users SET role = $2 WHERE id = $1",
                        vec![id.into(), role.into()],
                    ))
                    .await?;
                if role != "admin" {
                    transaction
                        .execute(&transaction.statement(
                            "UPDATE api_tokens SET access = 'read' WHERE user_id = $1",
                            vec![id.into()],
                        ))
                        .await?;
                }
            }
            (false, (old != role).then_some(old))
        }
        None => {
            // "!sso" is no argon2 hash: no password ever matches it.
            let inserted = transaction
                .execute(&transaction.statement(
                    "INSERT INTO users (username, password_hash, role, created_at, sso_subject) \
                     VALUES ($1, '!sso', $2, $3, $4) ON CONFLICT (username) DO NOTHING",
                    vec![name.into(), role.into(), now.into(), subject.into()],
                ))
                .await?;
            (inserted > 0, None)
        }
    };
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
    Ok(user.map(|user| SsoUser {
        user,
        created,
        old_role,
    }))
}

/// Removes the user tied to `subject` (the provider no longer lets them
/// in): their sessions end and their tokens go with them. Their (name,
/// role) when there was one.
pub async fn remove_sso_user(db: &Db, subject: &str) -> StoreResult<Option<(String, String)>> {
    let mut transaction = db.begin_durable().await?;
    let known: Option<(i64, String, String)> = transaction
        .fetch_optional(&transaction.statement(
            "SELECT id, username, role FROM users WHERE sso_subject = $1",
            vec![subject.into()],
        ))
        .await?;
    let Some((id, name, role)) = known else {
        return Ok(None);
    };
    for statement in [
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM api_tokens WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        transaction
            .execute(&transaction.statement(statement, vec![id.into()]))
            .await?;
    }
    transaction.commit().await?;
    Ok(Some((name, role)))
}
