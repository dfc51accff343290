//! Users (argon2 password hashes), dashboard sessions and API tokens: the
//! rules (names, password length, roles, hashing), shared by the web and
//! the CLI; `store::accounts` keeps them. Sessions and tokens are random
//! 256-bit values; only their SHA-256 is stored, so a copy of the database
//! does not let anyone in.

use base64::Engine;
use chrono::{Duration, Utc};
use serde::Serialize;

use crate::query::time::time_text;
use crate::scope::{GroupRole, Scope};
use crate::store::accounts as stored;
use crate::store::groups;
use crate::store::{Db, Store, StoreError};
use crate::totp;

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
    /// The domains they see, and their role in each group.
    pub scope: Scope,
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
    pub access: TokenAccess,
    pub expires_at: Option<String>,
    /// Past its expiry (and so refused).
    pub expired: bool,
    /// The domain group it is limited to, and its role there.
    pub group: Option<String>,
    pub group_role: Option<String>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAccess {
    /// GET and HEAD only.
    Read,
    /// Every request, changes too.
    Write,
}

impl TokenAccess {
    pub fn key(self) -> &'static str {
        match self {
            TokenAccess::Read => "read",
            TokenAccess::Write => "write",
        }
    }

    /// As stored; anything but `read` is the access tokens had before
    /// there was a choice.
    fn stored(text: &str) -> Self {
        match text {
            "read" => TokenAccess::Read,
            _ => TokenAccess::Write,
        }
    }
}

/// An API token as a request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid {
        name: String,
        access: TokenAccess,
        /// Made by an operator (`dmarcd token create`) or by an admin for
        /// themselves, and not limited to a group: may read what only
        /// admins see (the audit log).
        admin: bool,
        /// The domains it sees.
        scope: Scope,
    },
    /// A real token past its expiry (refused, saying so).
    Expired {
        name: String,
        access: TokenAccess,
        at: String,
    },
    /// Not a token, or a revoked one.
    Unknown,
}

/// Wrong codes in a row after which an account takes no code for a while.
pub const TOTP_MAX_FAILURES: i32 = 5;
pub const TOTP_LOCK_MINUTES: i64 = 15;

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user or wrong password.
    Credentials,
    /// The password was right; the authenticator code was missing, wrong
    /// or used already.
    SecondFactor,
    /// The password was right; too many wrong codes lately.
    SecondFactorLocked,
}

/// A single sign-on that opened a session.
#[derive(Debug, Clone)]
pub struct SsoSignIn {
    pub token: String,
    pub user: SessionUser,
    /// The user was made by this sign-in.
    pub created: bool,
    /// Their role before, when the provider's groups changed it.
    pub old_role: Option<String>,
}

/// A user's two-step sign-in, as their Account page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpState {
    pub enabled: bool,
    /// The secret being set up, its otpauth URI and that URI's QR code (SVG).
    pub pending: Option<(String, String, String)>,
}

/// Where a session was signed in from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedInFrom {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A live session as its user sees it listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Names the session in a sign-out form: derived from the stored hash
    /// of its token, so that neither the token nor the stored hash is ever
    /// sent to a browser.
    pub handle: String,
    /// The session asking.
    pub current: bool,
    pub created_at: String,
    pub expires_at: String,
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

fn token_infos(rows: Vec<stored::TokenRow>) -> Vec<TokenInfo> {
    let now = Utc::now();
    rows.into_iter()
        .map(|row| TokenInfo {
            name: row.name,
            created_at: time_text(row.created_at),
            last_used_at: row.last_used_at.map(time_text),
            revoked: row.revoked_at.is_some(),
            access: TokenAccess::stored(&row.access),
            expired: row.expires_at.is_some_and(|at| at <= now),
            expires_at: row.expires_at.map(time_text),
            group: row.group_name,
            group_role: row.group_role,
        })
        .collect()
}

fn session_handle(token_hash: &str) -> String {
    hash_secret(&format!("session-handle:{token_hash}"))[..24].to_string()
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
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
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

    fn db(&self) -> &Db {
        self.store.db()
    }

    pub async fn user_count(&self) -> Result<i64, AccountError> {
        Ok(stored::user_count(self.db()).await?)
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
        self.add_user_in(name, password, role, None).await
    }

    /// Adds a user; one who is no admin joins `group` with its role (none:
    /// the default group, as a viewer).
    pub async fn add_user_in(
        &self,
        name: &str,
        password: &str,
        role: &str,
        group: Option<(&str, GroupRole)>,
    ) -> Result<(), AccountError> {
        let group = match group {
            Some((group, group_role)) => match groups::group_named(self.db(), group).await? {
                Some(found) => Some((found.id, group_role)),
                None => return Err(AccountError::Invalid(format!("no group {group:?}"))),
            },
            None => None,
        };
        check_username(name)?;
        check_password(password)?;
        if !["admin", "viewer"].contains(&role) {
            return Err(AccountError::Invalid(format!(
                "{role:?}: the role is admin or viewer"
            )));
        }
        let hash = hash_password(password.to_string()).await;
        if !stored::insert_user(self.db(), name, &hash, role).await? {
            return Err(AccountError::Invalid(format!(
                "user {name:?} exists already"
            )));
        }
        if let (Some((group_id, group_role)), Some(user)) =
            (group, stored::user(self.db(), name).await?)
        {
            groups::set_member(self.db(), group_id, user.id, group_role).await?;
        }
        if role != "admin" {
            self.join_default_group_if_none(name).await?;
        }
        Ok(())
    }

    /// A user who is no admin and in no group becomes a viewer of the
    /// default group, as every viewer was before there were groups (an
    /// operator then moves them: `dmarcd group member`).
    async fn join_default_group_if_none(&self, name: &str) -> Result<(), AccountError> {
        let Some(user) = stored::user(self.db(), name).await? else {
            return Ok(());
        };
        if user.role != "admin" && !groups::has_membership(self.db(), user.id).await? {
            groups::set_member(self.db(), groups::DEFAULT_GROUP, user.id, GroupRole::Viewer)
                .await?;
        }
        Ok(())
    }

    /// Sets a new password and ends the user's sessions.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        check_password(password)?;
        let hash = hash_password(password.to_string()).await;
        if !stored::set_password_hash(self.db(), name, &hash).await? {
            return Err(AccountError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    /// Changes a user's role (admin or viewer); returns the role before.
    /// Takes effect on their next request (sessions read the role live);
    /// a user made a viewer keeps their own tokens, read-only.
    pub async fn set_role(&self, name: &str, role: &str) -> Result<String, AccountError> {
        if !["admin", "viewer"].contains(&role) {
            return Err(AccountError::Invalid(format!(
                "{role:?} is not a role (admin or viewer)"
            )));
        }
        let Some(before) = stored::user(self.db(), name).await? else {
            return Err(AccountError::Invalid(format!("no user {name:?}")));
        };
        stored::set_role(self.db(), name, role).await?;
        self.join_default_group_if_none(name).await?;
        Ok(before.role)
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), AccountError> {
        if !stored::remove_user(self.db(), name).await? {
            return Err(AccountError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    /// (name, role) of every user.
    pub async fn users(&self) -> Result<Vec<(String, String)>, AccountError> {
        Ok(stored::users(self.db()).await?)
    }

    /// Checks a password; a new session's (token, user) when it matches.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        lifetime: Duration,
    ) -> Result<Option<(String, SessionUser)>, AccountError> {
        Ok(self
            .login_from(name, password, None, lifetime, &SignedInFrom::default())
            .await?
            .ok())
    }

    /// `login`, with the code from the user's authenticator app when they
    /// turned two-step sign-in on (without it, or with a wrong or used
    /// one, refused), noting where the session was signed in from (shown
    /// to its user on the Account page). After `TOTP_MAX_FAILURES` wrong
    /// codes in a row the account takes no code for `TOTP_LOCK_MINUTES`.
    pub async fn login_from(
        &self,
        name: &str,
        password: &str,
        code: Option<&str>,
        lifetime: Duration,
        from: &SignedInFrom,
    ) -> Result<Result<(String, SessionUser), Refusal>, AccountError> {
        // No user name holds a control character; PostgreSQL would refuse a NUL.
        let user = if name.chars().any(char::is_control) {
            None
        } else {
            stored::user(self.db(), name).await?
        };
        // Verify against a hash even for unknown users, so that the time
        // taken does not tell which names exist.
        let hash = user
            .as_ref()
            .map_or(DUMMY_HASH.to_string(), |user| user.password_hash.clone());
        if !verify_password(hash, password.to_string()).await {
            return Ok(Err(Refusal::Credentials));
        }
        let Some(user) = user else {
            return Ok(Err(Refusal::Credentials));
        };
        if let Some(secret) = &user.totp_secret {
            let now = Utc::now();
            let locked = user.totp_failures >= TOTP_MAX_FAILURES
                && user
                    .totp_failed_at
                    .is_some_and(|at| now - at < Duration::minutes(TOTP_LOCK_MINUTES));
            if locked {
                return Ok(Err(Refusal::SecondFactorLocked));
            }
            let step = totp::verify(
                secret,
                code.unwrap_or(""),
                now.timestamp(),
                user.totp_last_step,
            );
            let used = match step {
                Some(step) => stored::use_totp_step(self.db(), user.id, step).await?,
                None => false,
            };
            if !used {
                stored::note_totp_outcome(self.db(), user.id, Some(now)).await?;
                return Ok(Err(Refusal::SecondFactor));
            }
            if user.totp_failures > 0 {
                stored::note_totp_outcome(self.db(), user.id, None).await?;
            }
        }
        self.open_session(user, lifetime, from).await.map(Ok)
    }

    /// A session for a user the OpenID provider vouched for as `role`
    /// (made on their first sign-in, their role set from its groups every
    /// time): the session's token and user, whether the user was made,
    /// and their role before when it changed. None when their name is a
    /// local user's.
    pub async fn sso_login(
        &self,
        identity: &crate::oidc::Identity,
        role: &str,
        lifetime: Duration,
        from: &SignedInFrom,
    ) -> Result<Option<SsoSignIn>, AccountError> {
        check_username(&identity.username)?;
        let found = crate::store::sso::sso_user(
            self.db(),
            &identity.subject,
            &identity.username,
            role,
            Utc::now(),
        )
        .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        // The provider's groups say which mapped domain groups they are in.
        for (group, role) in &identity.group_roles {
            let Some(group) = groups::group_named(self.db(), group).await? else {
                tracing::warn!(group = %group, "oidc.group_roles names a group dmarcd does not have");
                continue;
            };
            match role {
                Some(role) => {
                    groups::set_member(self.db(), group.id, found.user.id, *role).await?;
                }
                None => {
                    groups::remove_member(self.db(), group.id, found.user.id).await?;
                }
            }
        }
        // A new user starts in the default group (unless the provider put
        // them in one); one an owner or the provider took out of their
        // groups later stays out.
        if found.created {
            self.join_default_group_if_none(&found.user.username)
                .await?;
        }
        let (token, user) = self.open_session(found.user, lifetime, from).await?;
        Ok(Some(SsoSignIn {
            token,
            user,
            created: found.created,
            old_role: found.old_role,
        }))
    }

    /// Removes the user the provider no longer lets in (sessions and
    /// tokens too); their (name, role) when there was one.
    pub async fn sso_remove(
        &self,
        subject: &str,
    ) -> Result<Option<(String, String)>, AccountError> {
        Ok(crate::store::sso::remove_sso_user(self.db(), subject).await?)
    }

    async fn open_session(
        &self,
        user: stored::UserRow,
        lifetime: Duration,
        from: &SignedInFrom,
    ) -> Result<(String, SessionUser), AccountError> {
        let token = random_secret();
        let csrf_token = random_secret();
        stored::insert_session(
            self.db(),
            &stored::NewSession {
                token_hash: &hash_secret(&token),
                user_id: user.id,
                csrf_token: &csrf_token,
                expires_at: Utc::now() + lifetime,
                address: from.address.as_deref(),
                user_agent: from.user_agent.as_deref(),
            },
        )
        .await?;
        let scope = groups::scope_of_user(self.db(), user.id, &user.role).await?;
        Ok((
            token,
            SessionUser {
                user_id: user.id,
                username: user.username,
                role: user.role,
                csrf_token,
                scope,
            },
        ))
    }

    pub async fn session(&self, token: &str) -> Result<Option<SessionUser>, AccountError> {
        let Some(row) = stored::session(self.db(), &hash_secret(token)).await? else {
            return Ok(None);
        };
        let scope = groups::scope_of_user(self.db(), row.user_id, &row.role).await?;
        Ok(Some(SessionUser {
            user_id: row.user_id,
            username: row.username,
            role: row.role,
            csrf_token: row.csrf_token,
            scope,
        }))
    }

    /// The user's live sessions, newest first; `current` is the asking
    /// session's token.
    pub async fn sessions_of(
        &self,
        user_id: i64,
        current: &str,
    ) -> Result<Vec<SessionInfo>, AccountError> {
        let current = hash_secret(current);
        Ok(stored::sessions_of(self.db(), user_id)
            .await?
            .into_iter()
            .map(|row| SessionInfo {
                handle: session_handle(&row.token_hash),
                current: row.token_hash == current,
                created_at: time_text(row.created_at),
                expires_at: time_text(row.expires_at),
                address: row.address,
                user_agent: row.user_agent,
            })
            .collect())
    }

    /// Ends the user's session that `handle` names; false when the user has
    /// none by that handle (ended already, or someone else's).
    pub async fn end_session_of(&self, user_id: i64, handle: &str) -> Result<bool, AccountError> {
        let sessions = stored::sessions_of(self.db(), user_id).await?;
        let Some(row) = sessions
            .iter()
            .find(|row| crate::web::same_secret(&session_handle(&row.token_hash), handle))
        else {
            return Ok(false);
        };
        Ok(stored::delete_session_of(self.db(), user_id, &row.token_hash).await?)
    }

    /// Ends every session of the user but the asking one; how many ended.
    pub async fn end_other_sessions(
        &self,
        user_id: i64,
        current: &str,
    ) -> Result<u64, AccountError> {
        Ok(stored::delete_other_sessions(self.db(), user_id, &hash_secret(current)).await?)
    }

    /// A user changes their own password: the current one must match; the
    /// new one follows the usual rules; every other session of theirs ends
    /// (whoever knew the old password is signed out), the asking one stays.
    pub async fn change_own_password(
        &self,
        user_id: i64,
        current_token: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), AccountError> {
        let Some(user) = stored::user_by_id(self.db(), user_id).await? else {
            return Err(AccountError::Invalid("the user no longer exists".into()));
        };
        if !verify_password(user.password_hash, current_password.to_string()).await {
            return Err(AccountError::Invalid(
                "the current password is not right".into(),
            ));
        }
        check_password(new_password)?;
        if new_password == current_password {
            return Err(AccountError::Invalid(
                "the new password is the current one".into(),
            ));
        }
        let hash = hash_password(new_password.to_string()).await;
        let keep = hash_secret(current_token);
        if !stored::set_own_password_hash(self.db(), user_id, &hash, &keep).await? {
            return Err(AccountError::Invalid("the user no longer exists".into()));
        }
        Ok(())
    }

    /// Whether the user's two-step sign-in is on, and the secret being set
    /// up (with its otpauth URI) if one is.
    pub async fn totp_state(&self, user_id: i64) -> Result<TotpState, AccountError> {
        let Some(user) = stored::user_by_id(self.db(), user_id).await? else {
            return Err(AccountError::Invalid("the user no longer exists".into()));
        };
        Ok(TotpState {
            enabled: user.totp_secret.is_some(),
            pending: user.totp_pending.map(|secret| {
                let uri = totp::uri("dmarcd", &user.username, &secret);
                let qr = totp::qr_svg(&uri).unwrap_or_default();
                (secret, uri, qr)
            }),
        })
    }

    /// Starts setting up two-step sign-in: a new secret, kept aside until
    /// a code from it confirms it (`confirm_totp`).
    pub async fn start_totp(&self, user_id: i64) -> Result<(), AccountError> {
        if self.totp_state(user_id).await?.enabled {
            return Err(AccountError::Invalid(
                "two-step sign-in is on already".into(),
            ));
        }
        stored::set_totp_pending(self.db(), user_id, Some(&totp::new_secret())).await?;
        Ok(())
    }

    /// Turns two-step sign-in on when the password is the user's and
    /// `code` is right for the secret being set up (so the user's app
    /// surely has it, and a stolen session alone cannot lock them out).
    pub async fn confirm_totp(
        &self,
        user_id: i64,
        password: &str,
        code: &str,
    ) -> Result<(), AccountError> {
        let Some(user) = stored::user_by_id(self.db(), user_id).await? else {
            return Err(AccountError::Invalid("the user no longer exists".into()));
        };
        if !verify_password(user.password_hash.clone(), password.to_string()).await {
            return Err(AccountError::Invalid(
                "the current password is not right".into(),
            ));
        }
        let Some(pending) = user.totp_pending else {
            return Err(AccountError::Invalid(
                "no two-step sign-in is being set up".into(),
            ));
        };
        let Some(step) = totp::verify(&pending, code, Utc::now().timestamp(), None) else {
            return Err(AccountError::Invalid(
                "that code is not right: check the time on your phone and try the next code".into(),
            ));
        };
        if !stored::enable_totp(self.db(), user_id, &pending, step).await? {
            return Err(AccountError::Invalid(
                "the key was set up again meanwhile (another tab?): use the key shown now".into(),
            ));
        }
        Ok(())
    }

    /// Turns the user's own two-step sign-in off; their password confirms it.
    pub async fn disable_own_totp(&self, user_id: i64, password: &str) -> Result<(), AccountError> {
        let Some(user) = stored::user_by_id(self.db(), user_id).await? else {
            return Err(AccountError::Invalid("the user no longer exists".into()));
        };
        if !verify_password(user.password_hash, password.to_string()).await {
            return Err(AccountError::Invalid(
                "the current password is not right".into(),
            ));
        }
        stored::disable_totp(self.db(), &user.username).await?;
        Ok(())
    }

    /// Turns a user's two-step sign-in off (`dmarcd user totp-off`, for a
    /// lost phone).
    pub async fn disable_totp(&self, name: &str) -> Result<(), AccountError> {
        if !stored::disable_totp(self.db(), name).await? {
            return Err(AccountError::Invalid(format!(
                "{name:?} is no user with two-step sign-in on"
            )));
        }
        Ok(())
    }

    pub async fn end_session(&self, token: &str) -> Result<(), AccountError> {
        Ok(stored::delete_session(self.db(), &hash_secret(token)).await?)
    }

    /// Creates an API token that may write and does not expire; returns
    /// it (shown once, stored hashed). For code that makes a token to use
    /// it at once (tests, set-up); `dmarcd token create` makes read-only
    /// tokens unless asked (`create_token_with`).
    pub async fn create_token(&self, name: &str) -> Result<String, AccountError> {
        self.create_token_with(name, TokenAccess::Write, None).await
    }

    /// Creates an API token with this access, expiring at `expires_at`
    /// (never when None); returns it (shown once, stored hashed).
    pub async fn create_token_with(
        &self,
        name: &str,
        access: TokenAccess,
        expires_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<String, AccountError> {
        self.insert_token(name, access, expires_at, None, None)
            .await
    }

    /// Creates an operator's token limited to domain group `group`, with
    /// `role` there (a viewer's token only reads).
    pub async fn create_group_token(
        &self,
        name: &str,
        group: &str,
        role: GroupRole,
        expires_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<String, AccountError> {
        let Some(found) = groups::group_named(self.db(), group).await? else {
            return Err(AccountError::Invalid(format!("no group {group:?}")));
        };
        self.insert_token(
            name,
            access_of(role),
            expires_at,
            None,
            Some((found.id, role)),
        )
        .await
    }

    /// A signed-in user makes a token for themselves, within their rights:
    /// a viewer's tokens may only read. Expires after `expires_days`
    /// (never when None); returns it (shown once, stored hashed).
    pub async fn create_own_token(
        &self,
        user: &SessionUser,
        name: &str,
        access: TokenAccess,
        expires_days: Option<u32>,
        group: Option<(i64, GroupRole)>,
    ) -> Result<String, AccountError> {
        // Within their rights: a token changes only what its maker may.
        let may_change = match group {
            Some((group_id, role)) => {
                let Some(held) = user.scope.role_in_group(group_id) else {
                    return Err(AccountError::Invalid(
                        "you are not a member of that group".into(),
                    ));
                };
                if role > held {
                    return Err(AccountError::Invalid(format!(
                        "your role in that group is {}: a token of yours cannot be {}",
                        held.key(),
                        role.key()
                    )));
                }
                role >= GroupRole::Analyst
            }
            None => user.is_admin() || user.scope.may_somewhere(GroupRole::Analyst),
        };
        if access == TokenAccess::Write && !may_change {
            return Err(AccountError::Invalid(
                "a viewer's tokens may only read".into(),
            ));
        }
        if expires_days.is_some_and(|days| !(1..=36500).contains(&days)) {
            return Err(AccountError::Invalid(
                "a token expires after 1 to 36500 days (or never)".into(),
            ));
        }
        let expires_at = expires_days.map(|days| Utc::now() + Duration::days(days.into()));
        self.insert_token(name, access, expires_at, Some(user.user_id), group)
            .await
    }

    async fn insert_token(
        &self,
        name: &str,
        access: TokenAccess,
        expires_at: Option<chrono::DateTime<Utc>>,
        user_id: Option<i64>,
        group: Option<(i64, GroupRole)>,
    ) -> Result<String, AccountError> {
        check_username(name)?;
        let token = format!("dmarcd_{}", random_secret());
        let hash = hash_secret(&token);
        let new = stored::NewToken {
            name,
            token_hash: &hash,
            access: access.key(),
            expires_at,
            user_id,
            group: group.map(|(id, role)| (id, role.key())),
        };
        if !stored::insert_token(self.db(), &new).await? {
            return Err(AccountError::Invalid(format!(
                "a token named {name:?} exists already (revoked tokens keep their name)"
            )));
        }
        Ok(token)
    }

    /// Every token (the CLI's list).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError> {
        Ok(token_infos(stored::tokens(self.db()).await?))
    }

    /// The tokens a user made for themselves.
    pub async fn own_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>, AccountError> {
        Ok(token_infos(stored::tokens_of(self.db(), user_id).await?))
    }

    /// Revokes one of the user's own tokens.
    pub async fn revoke_own_token(&self, user_id: i64, name: &str) -> Result<(), AccountError> {
        if !stored::revoke_token_of(self.db(), user_id, name).await? {
            return Err(AccountError::Invalid(format!(
                "you have no active token named {name:?}"
            )));
        }
        Ok(())
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), AccountError> {
        if !stored::revoke_token(self.db(), name).await? {
            return Err(AccountError::Invalid(format!(
                "no active token named {name:?}"
            )));
        }
        Ok(())
    }

    /// What `token` is (and, when valid, notes its use): its name says who
    /// made a change through the API, its access what it may do.
    pub async fn token_check(&self, token: &str) -> Result<TokenCheck, AccountError> {
        let Some(row) = stored::active_token(self.db(), &hash_secret(token)).await? else {
            return Ok(TokenCheck::Unknown);
        };
        if let Some(at) = row.expires_at.filter(|at| *at <= Utc::now()) {
            return Ok(TokenCheck::Expired {
                access: TokenAccess::stored(&row.access),
                name: row.name,
                at: time_text(at),
            });
        }
        // Written at most once a minute per token: not a write per request.
        let now = Utc::now();
        let recent = row
            .last_used_at
            .is_some_and(|last| now.signed_duration_since(last) < Duration::minutes(1));
        if !recent {
            stored::token_used(self.db(), row.id, now).await?;
        }
        // An operator's token, or an admin's (a removed maker's tokens
        // are removed with them).
        let global = row.owner_id.is_none() || row.owner_role.as_deref() == Some("admin");
        let scope = match (row.group_id, row.owner_id) {
            (Some(group_id), maker) => {
                let role = row
                    .group_role
                    .as_deref()
                    .and_then(GroupRole::parse)
                    .unwrap_or(GroupRole::Viewer);
                let maker = maker.map(|id| (id, row.owner_role.as_deref().unwrap_or("")));
                groups::scope_of_group_token(self.db(), group_id, role, maker).await?
            }
            (None, Some(owner)) if !global => {
                groups::scope_of_user(self.db(), owner, row.owner_role.as_deref().unwrap_or(""))
                    .await?
            }
            (None, _) => Scope::All,
        };
        Ok(TokenCheck::Valid {
            admin: global && row.group_id.is_none(),
            name: row.name,
            access: TokenAccess::stored(&row.access),
            scope,
        })
    }
}

/// A group token's access: a viewer's only reads.
fn access_of(role: GroupRole) -> TokenAccess {
    if role >= GroupRole::Analyst {
        TokenAccess::Write
    } else {
        TokenAccess::Read
    }
}

/// An argon2 hash of a random password nobody knows, for timing-safe misses.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0y4kbBWh6GmTbMmbJPrn2hBtDnIbsJr2CqYsnkQe5Cw";
