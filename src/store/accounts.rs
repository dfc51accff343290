//! Dashboard users, their sessions and API tokens as stored. Secrets
//! arrive here hashed (`crate::accounts` hashes them); nothing here knows
//! a password or a token.

use chrono::{DateTime, Utc};

use super::db::Db;
use super::StoreResult;

/// A user as a sign-in checks it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    /// Two-step sign-in: the secret when it is on, one being set up, and
    /// the time step of the last code used.
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    pub totp_last_step: Option<i64>,
    /// Wrong codes in a row after a right password, and the last one's time.
    pub totp_failures: i32,
    pub totp_failed_at: Option<DateTime<Utc>>,
}

pub(super) const USER_COLUMNS: &str =
    "id, username, password_hash, role, totp_secret, totp_pending, totp_last_step, \
     totp_failures, totp_failed_at";

/// A live session and its user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub csrf_token: String,
}

/// A live session as its user sees it listed (never the token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionInfoRow {
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// An API token as listed (never the token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `read` or `write`.
    pub access: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// The role of the user who made it on the Account page; None for a
    /// token made with `dmarcd token create` (an operator's: admin).
    pub owner_role: Option<String>,
    /// The user who made it (None: an operator).
    pub owner_id: Option<i64>,
    /// The domain group it is limited to, and its role there.
    pub group_id: Option<i64>,
    pub group_role: Option<String>,
    /// That group's name.
    pub group_name: Option<String>,
}

pub async fn user_count(db: &Db) -> StoreResult<i64> {
    let (count,): (i64,) = db
        .fetch_one(&db.statement("SELECT count(*) FROM users", Vec::new()))
        .await?;
    Ok(count)
}

/// False when a user of that name exists already.
pub async fn insert_user(
    db: &Db,
    name: &str,
    password_hash: &str,
    role: &str,
) -> StoreResult<bool> {
    let inserted = db
        .execute(&db.statement(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO NOTHING",
            vec![name.into(), password_hash.into(), role.into(), Utc::now().into()],
        ))
        .await?;
    Ok(inserted > 0)
}

/// Sets a user's password hash and ends their sessions; false when there
/// is no such user.
pub async fn set_password_hash(db: &Db, name: &str, password_hash: &str) -> StoreResult<bool> {
    let updated = db
        .execute(&db.statement(
            "UPDATE users SET password_hash = $1 WHERE username = $2",
            vec![password_hash.into(), name.into()],
        ))
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    end_sessions_of(db, name).await?;
    Ok(true)
}

/// Removes a user and their sessions; false when there is no such user.
pub async fn remove_user(db: &Db, name: &str) -> StoreResult<bool> {
    end_sessions_of(db, name).await?;
    let removed = db
        .execute(&db.statement("DELETE FROM users WHERE username = $1", vec![name.into()]))
        .await?;
    Ok(removed > 0)
}

/// Sets a user's role; a viewer's own tokens may then only read (as a
/// viewer could make them). False when there is no such user.
pub async fn set_role(db: &Db, name: &str, role: &str) -> StoreResult<bool> {
    let mut transaction = db.begin_durable().await?;
    let updated = transaction
        .execute(&transaction.statement(
            "UPDATE users SET role = $1 WHERE username = $2",
            vec![role.into(), name.into()],
        ))
        .await?;
    if role != "admin" {
        transaction
            .execute(&transaction.statement(
                "UPDATE api_tokens SET access = 'read' WHERE user_id IN \
                 (SELECT id FROM users WHERE username = $1)",
                vec![name.into()],
            ))
            .await?;
    }
    transaction.commit().await?;
    Ok(updated > 0)
}

/// Stores a secret being set up (None: forgets it).
pub async fn set_totp_pending(db: &Db, user_id: i64, secret: Option<&str>) -> StoreResult<()> {
    db.execute(&db.statement(
        "UPDATE users SET totp_pending = $2 WHERE id = $1",
        vec![user_id.into(), secret.into()],
    ))
    .await?;
    Ok(())
}

/// Turns two-step sign-in on with `secret`, the one being set up, whose
/// first code was used at `step`; false when another is being set up by
/// now (a second "set up" in another tab) or none.
pub async fn enable_totp(db: &Db, user_id: i64, secret: &str, step: i64) -> StoreResult<bool> {
    let updated = db
        .execute(&db.statement(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, \
             totp_last_step = $3, totp_failures = 0 WHERE id = $1 AND totp_pending = $2",
            vec![user_id.into(), secret.into(), step.into()],
        ))
        .await?;
    Ok(updated > 0)
}

/// Counts a wrong code after a right password (`Some(now)`), or clears the
/// count after a right one (`None`).
pub async fn note_totp_outcome(
    db: &Db,
    user_id: i64,
    failed_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    let sql = match failed_at {
        Some(at) => db.statement(
            "UPDATE users SET totp_failures = totp_failures + 1, totp_failed_at = $2 WHERE id = $1",
            vec![user_id.into(), at.into()],
        ),
        None => db.statement(
            "UPDATE users SET totp_failures = 0, totp_failed_at = NULL WHERE id = $1",
            vec![user_id.into()],
        ),
    };
    db.execute(&sql).await?;
    Ok(())
}

/// Turns two-step sign-in off for user `name`; false when it was not on.
pub async fn disable_totp(db: &Db, name: &str) -> StoreResult<bool> {
    let updated = db
        .execute(&db.statement(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, \
             totp_failures = 0, totp_failed_at = NULL WHERE username = $1 AND (totp_secret IS NOT NULL OR totp_pending IS NOT NULL)",
            vec![name.into()],
        ))
        .await?;
    Ok(updated > 0)
}

/// Notes that a code of `step` was used; false when one of that step or
/// later was used already (a replay, or two sign-ins racing with one code).
pub async fn use_totp_step(db: &Db, user_id: i64, step: i64) -> StoreResult<bool> {
    let updated = db
        .execute(&db.statement(
            "UPDATE users SET totp_last_step = $2 \
             WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            vec![user_id.into(), step.into()],
        ))
        .await?;
    Ok(updated > 0)
}

async fn end_sessions_of(db: &Db, name: &str) -> StoreResult<()> {
    db.execute(&db.statement(
        "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = $1)",
        vec![name.into()],
    ))
    .await?;
    Ok(())
}

/// (name, role) of every user, by name.
pub async fn users(db: &Db) -> StoreResult<Vec<(String, String)>> {
    db.fetch_all(&db.statement(
        "SELECT username, role FROM users ORDER BY username",
        Vec::new(),
    ))
    .await
}

pub async fn user(db: &Db, name: &str) -> StoreResult<Option<UserRow>> {
    db.fetch_optional(&db.statement(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
        vec![name.into()],
    ))
    .await
}

/// A new session: whose, until when, and where it was signed in from.
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: i64,
    pub csrf_token: &'a str,
    pub expires_at: DateTime<Utc>,
    pub address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Stores a new session, and clears the expired ones as it begins.
pub async fn insert_session(db: &Db, new: &NewSession<'_>) -> StoreResult<()> {
    let now = Utc::now();
    db.execute(&db.statement(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, \
         address, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            new.token_hash.into(),
            new.user_id.into(),
            new.csrf_token.into(),
            now.into(),
            new.expires_at.into(),
            new.address.into(),
            new.user_agent.into(),
        ],
    ))
    .await?;
    db.execute(&db.statement(
        "DELETE FROM sessions WHERE expires_at < $1",
        vec![now.into()],
    ))
    .await?;
    Ok(())
}

/// The session with this token hash, unless it has expired.
pub async fn session(db: &Db, token_hash: &str) -> StoreResult<Option<SessionRow>> {
    db.fetch_optional(&db.statement(
        "SELECT u.id AS user_id, u.username, u.role, s.csrf_token FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        vec![token_hash.into(), Utc::now().into()],
    ))
    .await
}

/// The user's live sessions, newest first.
pub async fn sessions_of(db: &Db, user_id: i64) -> StoreResult<Vec<SessionInfoRow>> {
    db.fetch_all(&db.statement(
        "SELECT token_hash, created_at, expires_at, address, user_agent FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, token_hash",
        vec![user_id.into(), Utc::now().into()],
    ))
    .await
}

/// Ends one of the user's sessions; false when the user has no such session.
pub async fn delete_session_of(db: &Db, user_id: i64, token_hash: &str) -> StoreResult<bool> {
    let deleted = db
        .execute(&db.statement(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash = $2",
            vec![user_id.into(), token_hash.into()],
        ))
        .await?;
    Ok(deleted > 0)
}

/// Ends every session of the user but `keep` (the one asking); returns
/// how many ended.
pub async fn delete_other_sessions(db: &Db, user_id: i64, keep: &str) -> StoreResult<u64> {
    db.execute(&db.statement(
        "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
        vec![user_id.into(), keep.into()],
    ))
    .await
}

pub async fn user_by_id(db: &Db, id: i64) -> StoreResult<Option<UserRow>> {
    db.fetch_optional(&db.statement(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        vec![id.into()],
    ))
    .await
}

/// Sets the user's own password hash and ends every session of theirs but
/// `keep` (the one asking), in one transaction: no old session outlives a
/// changed password. False when there is no such user.
pub async fn set_own_password_hash(
    db: &Db,
    user_id: i64,
    password_hash: &str,
    keep: &str,
) -> StoreResult<bool> {
    let mut transaction = db.begin_durable().await?;
    let updated = transaction
        .execute(&transaction.statement(
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            vec![password_hash.into(), user_id.into()],
        ))
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    transaction
        .execute(&transaction.statement(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
            vec![user_id.into(), keep.into()],
        ))
        .await?;
    transaction.commit().await?;
    Ok(true)
}

pub async fn delete_session(db: &Db, token_hash: &str) -> StoreResult<()> {
    db.execute(&db.statement(
        "DELETE FROM sessions WHERE token_hash = $1",
        vec![token_hash.into()],
    ))
    .await?;
    Ok(())
}

/// A new API token, hashed.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub token_hash: &'a str,
    /// `read` or `write`.
    pub access: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    /// The user who made it on the Account page; None for `dmarcd token create`.
    pub user_id: Option<i64>,
    /// Limited to this domain group, with this role (`crate::scope`).
    pub group: Option<(i64, &'a str)>,
}

/// False when a token of that name exists already (revoked ones too).
pub async fn insert_token(db: &Db, new: &NewToken<'_>) -> StoreResult<bool> {
    let inserted = db
        .execute(&db.statement(
            "INSERT INTO api_tokens \
             (name, token_hash, created_at, access, expires_at, user_id, group_id, group_role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
            vec![
                new.name.into(),
                new.token_hash.into(),
                Utc::now().into(),
                new.access.into(),
                new.expires_at.into(),
                new.user_id.into(),
                new.group.map(|(id, _)| id).into(),
                new.group.map(|(_, role)| role).into(),
            ],
        ))
        .await?;
    Ok(inserted > 0)
}

const TOKEN_COLUMNS: &str = "id, name, created_at, last_used_at, revoked_at, access, expires_at, \
     (SELECT role FROM users WHERE users.id = api_tokens.user_id) AS owner_role, \
     user_id AS owner_id, group_id, group_role, \
     (SELECT name FROM domain_groups g WHERE g.id = api_tokens.group_id) AS group_name";

pub async fn tokens(db: &Db) -> StoreResult<Vec<TokenRow>> {
    db.fetch_all(&db.statement(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"),
        Vec::new(),
    ))
    .await
}

/// The tokens a user made for themselves, by name.
pub async fn tokens_of(db: &Db, user_id: i64) -> StoreResult<Vec<TokenRow>> {
    db.fetch_all(&db.statement(
        &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY name"),
        vec![user_id.into()],
    ))
    .await
}

/// Revokes one of the user's own tokens; false when they have no active
/// token of that name.
pub async fn revoke_token_of(db: &Db, user_id: i64, name: &str) -> StoreResult<bool> {
    let revoked = db
        .execute(&db.statement(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE revoked_at IS NULL AND user_id = $2 AND name = $3",
            vec![Utc::now().into(), user_id.into(), name.into()],
        ))
        .await?;
    Ok(revoked > 0)
}

/// False when there is no active token of that name.
pub async fn revoke_token(db: &Db, name: &str) -> StoreResult<bool> {
    let revoked = db
        .execute(&db.statement(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND name = $2",
            vec![Utc::now().into(), name.into()],
        ))
        .await?;
    Ok(revoked > 0)
}

/// The unrevoked token with this hash (expired or not: the caller says
/// which it is).
pub async fn active_token(db: &Db, token_hash: &str) -> StoreResult<Option<TokenRow>> {
    db.fetch_optional(&db.statement(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE revoked_at IS NULL AND token_hash = $1"
        ),
        vec![token_hash.into()],
    ))
    .await
}

/// Notes that a token was used now.
pub async fn token_used(db: &Db, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    db.execute(&db.statement(
        "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2",
        vec![now.into(), id.into()],
    ))
    .await?;
    Ok(())
}
