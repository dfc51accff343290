//! Users (argon2 password hashes), dashboard sessions and API tokens.
//! Sessions and tokens are random 256-bit values; only their SHA-256 is
//! stored, so a copy of the database does not let anyone in.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::store::{Arg, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    /// Must come back in every form POST (CSRF protection).
    pub csrf_token: String,
}

impl SessionUser {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

/// 32 random bytes, URL-safe base64.
pub fn random_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_secret(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
pub async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .expect("argon2 hashes any password")
            .to_string()
    })
    .await
    .expect("hashing does not panic")
}

pub async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::phc::PasswordHash;
        use argon2::password_hash::PasswordVerifier;
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

fn check_username(name: &str) -> Result<(), AccountError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "{name:?}: a user name is 1–64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < 10 {
        return Err(AccountError::Invalid(
            "a password needs at least 10 characters".into(),
        ));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
}

impl Accounts {
    pub fn new(store: Store) -> Self {
        Accounts { store }
    }

    pub async fn user_count(&self) -> Result<i64, AccountError> {
        let mut sql = self.store.sql();
        sql.push("SELECT count(*) FROM users");
        Ok(self.store.fetch_table(sql).await?[0][0].int())
    }

    /// With no users at all, creates `admin` with a random password and
    /// returns that password (to be shown once).
    pub async fn ensure_first_admin(&self) -> Result<Option<String>, AccountError> {
        if self.user_count().await? > 0 {
            return Ok(None);
        }
        let password = random_secret()[..20].to_string();
        match self.add_user("admin", &password, "admin").await {
            Ok(()) => Ok(Some(password)),
            // Another process created it first.
            Err(AccountError::Invalid(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        role: &str,
    ) -> Result<(), AccountError> {
        check_username(name)?;
        check_password(password)?;
        if !["admin", "viewer"].contains(&role) {
            return Err(AccountError::Invalid(format!(
                "{role:?}: the role is admin or viewer"
            )));
        }
        let hash = hash_password(password.to_string()).await;
        let mut sql = self.store.sql();
        sql.push("INSERT INTO users (username, password_hash, role, created_at) VALUES (")
            .bind_text(name)
            .push(", ")
            .bind_text(hash)
            .push(", ")
            .bind_text(role)
            .push(", ")
            .bind(Arg::Time(Utc::now()))
            .push(") ON CONFLICT (username) DO NOTHING");
        if self.store.execute_sql(sql).await? == 0 {
            return Err(AccountError::Invalid(format!(
                "user {name:?} exists already"
            )));
        }
        Ok(())
    }

    /// Sets a new password and ends the user's sessions.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        check_password(password)?;
        let hash = hash_password(password.to_string()).await;
        let mut sql = self.store.sql();
        sql.push("UPDATE users SET password_hash = ")
            .bind_text(hash)
            .push(" WHERE username = ")
            .bind_text(name);
        if self.store.execute_sql(sql).await? == 0 {
            return Err(AccountError::Invalid(format!("no user {name:?}")));
        }
        let mut sql = self.store.sql();
        sql.push("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = ")
            .bind_text(name)
            .push(")");
        self.store.execute_sql(sql).await?;
        Ok(())
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), AccountError> {
        let mut sql = self.store.sql();
        sql.push("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = ")
            .bind_text(name)
            .push(")");
        self.store.execute_sql(sql).await?;
        let mut sql = self.store.sql();
        sql.push("DELETE FROM users WHERE username = ")
            .bind_text(name);
        if self.store.execute_sql(sql).await? == 0 {
            return Err(AccountError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    /// (name, role) of every user.
    pub async fn users(&self) -> Result<Vec<(String, String)>, AccountError> {
        let mut sql = self.store.sql();
        sql.push("SELECT username, role FROM users ORDER BY username");
        Ok(self
            .store
            .fetch_table(sql)
            .await?
            .into_iter()
            .map(|row| {
                (
                    row[0].text().unwrap_or_default(),
                    row[1].text().unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Checks a password; a new session's (token, user) when it matches.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        lifetime: Duration,
    ) -> Result<Option<(String, SessionUser)>, AccountError> {
        // No user name holds a control character; PostgreSQL would refuse a NUL.
        let row = if name.chars().any(char::is_control) {
            None
        } else {
            let mut sql = self.store.sql();
            sql.push("SELECT id, password_hash, role FROM users WHERE username = ")
                .bind_text(name);
            self.store.fetch_table(sql).await?.into_iter().next()
        };
        // Verify against a hash even for unknown users, so that the time
        // taken does not tell which names exist.
        let (id, hash, role) = match row {
            Some(row) => (
                Some(row[0].int()),
                row[1].text().unwrap_or_default(),
                row[2].text().unwrap_or_default(),
            ),
            None => (None, DUMMY_HASH.to_string(), String::new()),
        };
        if !verify_password(hash, password.to_string()).await {
            return Ok(None);
        }
        let Some(user_id) = id else {
            return Ok(None);
        };
        let token = random_secret();
        let csrf_token = random_secret();
        let now = Utc::now();
        let mut sql = self.store.sql();
        sql.push("INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (")
            .bind_text(hash_secret(&token))
            .push(", ")
            .bind(Arg::Int(user_id))
            .push(", ")
            .bind_text(csrf_token.clone())
            .push(", ")
            .bind(Arg::Time(now))
            .push(", ")
            .bind(Arg::Time(now + lifetime))
            .push(")");
        self.store.execute_sql(sql).await?;
        // Expired sessions are cleared as new ones begin.
        let mut sql = self.store.sql();
        sql.push("DELETE FROM sessions WHERE expires_at < ")
            .bind(Arg::Time(now));
        self.store.execute_sql(sql).await?;
        Ok(Some((
            token,
            SessionUser {
                user_id,
                username: name.to_string(),
                role,
                csrf_token,
            },
        )))
    }

    pub async fn session(&self, token: &str) -> Result<Option<SessionUser>, AccountError> {
        let mut sql = self.store.sql();
        sql.push(
            "SELECT u.id, u.username, u.role, s.csrf_token FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = ",
        )
        .bind_text(hash_secret(token))
        .push(" AND s.expires_at > ")
        .bind(Arg::Time(Utc::now()));
        Ok(self
            .store
            .fetch_table(sql)
            .await?
            .into_iter()
            .next()
            .map(|row| SessionUser {
                user_id: row[0].int(),
                username: row[1].text().unwrap_or_default(),
                role: row[2].text().unwrap_or_default(),
                csrf_token: row[3].text().unwrap_or_default(),
            }))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), AccountError> {
        let mut sql = self.store.sql();
        sql.push("DELETE FROM sessions WHERE token_hash = ")
            .bind_text(hash_secret(token));
        self.store.execute_sql(sql).await?;
        Ok(())
    }

    /// Creates an API token; returns it (shown once, stored hashed).
    pub async fn create_token(&self, name: &str) -> Result<String, AccountError> {
        check_username(name)?;
        let token = format!("dmarcd_{}", random_secret());
        let mut sql = self.store.sql();
        sql.push("INSERT INTO api_tokens (name, token_hash, created_at) VALUES (")
            .bind_text(name)
            .push(", ")
            .bind_text(hash_secret(&token))
            .push(", ")
            .bind(Arg::Time(Utc::now()))
            .push(") ON CONFLICT (name) DO NOTHING");
        if self.store.execute_sql(sql).await? == 0 {
            return Err(AccountError::Invalid(format!(
                "a token named {name:?} exists already (revoked tokens keep their name)"
            )));
        }
        Ok(token)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError> {
        let mut sql = self.store.sql();
        sql.push("SELECT name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name");
        Ok(self
            .store
            .fetch_table(sql)
            .await?
            .into_iter()
            .map(|row| TokenInfo {
                name: row[0].text().unwrap_or_default(),
                created_at: crate::query::normalize_time(row[1].text()),
                last_used_at: row[2].text().map(|t| crate::query::normalize_time(Some(t))),
                revoked: row[3].text().is_some(),
            })
            .collect())
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), AccountError> {
        let mut sql = self.store.sql();
        sql.push("UPDATE api_tokens SET revoked_at = ")
            .bind(Arg::Time(Utc::now()))
            .push(" WHERE revoked_at IS NULL AND name = ")
            .bind_text(name);
        if self.store.execute_sql(sql).await? == 0 {
            return Err(AccountError::Invalid(format!(
                "no active token named {name:?}"
            )));
        }
        Ok(())
    }

    /// Whether `token` is a valid, unrevoked API token (and notes its use).
    pub async fn check_token(&self, token: &str) -> Result<bool, AccountError> {
        let mut sql = self.store.sql();
        sql.push(
            "SELECT id, last_used_at FROM api_tokens WHERE revoked_at IS NULL AND token_hash = ",
        )
        .bind_text(hash_secret(token));
        let Some(row) = self.store.fetch_table(sql).await?.into_iter().next() else {
            return Ok(false);
        };
        // Written at most once a minute per token: not a write per request.
        let now = Utc::now();
        let recent = row[1]
            .text()
            .and_then(|t| DateTime::parse_from_rfc3339(&crate::query::normalize_time(Some(t))).ok())
            .is_some_and(|last| now.signed_duration_since(last) < Duration::minutes(1));
        if !recent {
            let mut sql = self.store.sql();
            sql.push("UPDATE api_tokens SET last_used_at = ")
                .bind(Arg::Time(now))
                .push(" WHERE id = ")
                .bind(Arg::Int(row[0].int()));
            self.store.execute_sql(sql).await?;
        }
        Ok(true)
    }
}

/// An argon2 hash of a random password nobody knows, for timing-safe misses.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0y4kbBWh6GmTbMmbJPrn2hBtDnIbsJr2CqYsnkQe5Cw";
