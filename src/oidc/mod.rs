//! Single sign-on with OpenID Connect (authorization code flow with PKCE,
//! OpenID Connect Core 1.0 §3.1): `begin` sends the browser to the
//! provider with a fresh state, nonce and code challenge, kept in the
//! database (any node may receive the callback) and bound to the browser
//! by a cookie; `finish` takes them back once (a replayed or forged
//! callback finds nothing), trades the code for tokens, checks the ID
//! token's signature against the provider's keys and its issuer, audience,
//! expiry and nonce, and maps its groups claim to a role.

pub mod jwt;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::accounts::{hash_secret, random_secret};
use crate::mailbox::http;
use crate::store::sso::{self as stored, PendingLogin};
use crate::store::Store;
use jwt::Jwks;

/// The `[oidc]` section. Off while `issuer` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its ID tokens say it
    /// (`https://login.example.com/realms/ops`); its discovery document is
    /// read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// This dmarcd's callback as registered with the provider:
    /// `https://reports.example.com/login/sso/callback`.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// The claim that names the user (falls back to `email`).
    pub username_claim: String,
    /// The claim listing the user's groups.
    pub groups_claim: String,
    /// Members of any of these groups are admins.
    pub admin_groups: Vec<String>,
    /// Members of any of these are viewers. Someone in neither list cannot
    /// sign in (and a user made by an earlier sign-in is removed).
    pub viewer_groups: Vec<String>,
    /// Everyone the provider signs in who is no admin is a viewer. Off by
    /// default: with a provider shared beyond your organisation (Google,
    /// Entra ID's common endpoint) that would be anyone.
    pub allow_any_user: bool,
    /// Provider groups that make a user a member of a dmarcd domain group:
    /// `{ "acme-analysts" = "acme:analyst" }` (group `acme`, role analyst).
    /// Set at every sign-in: a user no longer in the provider group leaves
    /// the domain group. A mapped user may sign in (as a viewer of their
    /// groups' domains) without being in `viewer_groups`.
    pub group_roles: std::collections::BTreeMap<String, String>,
    /// A CA certificate (PEM) to trust for the provider, beside the public roots.
    pub ca_file: Option<PathBuf>,
    pub button_label: String,
    /// Whether local user names and passwords still sign in.
    pub local_passwords: bool,
    /// Seconds a sign-in may take at the provider.
    pub login_timeout_seconds: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            redirect_url: String::new(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            admin_groups: Vec::new(),
            viewer_groups: Vec::new(),
            allow_any_user: false,
            group_roles: Default::default(),
            ca_file: None,
            button_label: "Sign in with single sign-on".into(),
            local_passwords: true,
            login_timeout_seconds: 600,
        }
    }
}

/// An http:// URL is only for a provider on this machine (tests, a
/// sidecar); anything else must be https.
fn allowed_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| match url.scheme() {
        "https" => url.host().is_some(),
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    })
}

impl OidcConfig {
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            if !self.local_passwords {
                return Err(
                    "oidc.local_passwords = false needs oidc.issuer: nobody could sign in".into(),
                );
            }
            return Ok(());
        }
        for (name, value) in [
            ("oidc.issuer", &self.issuer),
            ("oidc.redirect_url", &self.redirect_url),
        ] {
            if !allowed_url(value) {
                return Err(format!(
                    "{name}: {value:?} is not an https:// URL (http:// only on loopback)"
                ));
            }
        }
        if self.client_id.is_empty() {
            return Err("oidc.client_id is needed with oidc.issuer".into());
        }
        if !self.scopes.iter().any(|scope| scope == "openid") {
            return Err("oidc.scopes must hold openid".into());
        }
        for (provider_group, target) in &self.group_roles {
            if parse_group_role(target).is_none() {
                return Err(format!(
                    "oidc.group_roles.{provider_group:?}: {target:?} is not GROUP:ROLE \
                     (a role is owner, analyst or viewer)"
                ));
            }
        }
        if self.admin_groups.is_empty()
            && self.viewer_groups.is_empty()
            && self.group_roles.is_empty()
            && !self.allow_any_user
        {
            return Err(
                "oidc: name oidc.admin_groups or oidc.viewer_groups (or set oidc.allow_any_user \
                 = true): as it is, nobody the provider signs in may enter"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Who the provider says signed in, and as what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `issuer|sub`: what ties the provider's user to a dmarcd user.
    pub subject: String,
    pub username: String,
    /// None: in none of the groups allowed in.
    pub role: Option<&'static str>,
    /// Where to go after signing in (a path on this site).
    pub next: String,
    /// The dmarcd groups `group_roles` maps, with the role the provider's
    /// groups give in each (`None`: not a member).
    pub group_roles: Vec<(String, Option<crate::scope::GroupRole>)>,
}

/// `acme:analyst` as (group, role).
fn parse_group_role(text: &str) -> Option<(String, crate::scope::GroupRole)> {
    let (group, role) = text.rsplit_once(':')?;
    let group = group.trim();
    (!group.is_empty()).then_some(())?;
    Some((group.to_string(), crate::scope::GroupRole::parse(role)?))
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense.
    #[error("the sign-in provider: {0}")]
    Provider(String),
    /// The callback or its token is not to be trusted.
    #[error("{0}")]
    Refused(String),
    /// A real user the group mapping lets in as nothing.
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// What `begin` gives the browser: where to go, and the state for its cookie.
pub struct Begun {
    pub redirect: String,
    pub state: String,
}

/// Provider documents are read again after this long (keys rotate).
const CACHE_SECONDS: u64 = 3600;
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct OidcClient {
    config: OidcConfig,
    cache: Mutex<Option<(Instant, Discovery, Jwks)>>,
}

impl OidcClient {
    pub fn new(config: OidcConfig) -> Self {
        OidcClient {
            config,
            cache: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn get(&self, url: &str) -> Result<Value, OidcError> {
        if !allowed_url(url) {
            return Err(OidcError::Provider(format!("{url} is not an https:// URL")));
        }
        let fetch = http::get_json(url, self.config.ca_file.as_deref(), MAX_ANSWER_BYTES);
        let (status, body) = tokio::time::timeout(PROVIDER_TIMEOUT, fetch)
            .await
            .map_err(|_| OidcError::Provider(format!("{url}: no answer in time")))?
            .map_err(|error| OidcError::Provider(format!("{url}: {error}")))?;
        if status != 200 {
            return Err(OidcError::Provider(format!("{url} answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|error| OidcError::Provider(format!("{url}: not JSON: {error}")))
    }

    /// The discovery document and keys, from the cache unless `refresh`.
    async fn provider(&self, refresh: bool) -> Result<(Discovery, Jwks), OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, discovery, keys)) = cache.as_ref() {
            if !refresh && at.elapsed() < Duration::from_secs(CACHE_SECONDS) {
                return Ok((discovery.clone(), keys.clone()));
            }
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let document = self
            .get(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        let discovery: Discovery = serde_json::from_value(document)
            .map_err(|error| OidcError::Provider(format!("its discovery document: {error}")))?;
        if discovery.issuer != self.config.issuer {
            return Err(OidcError::Provider(format!(
                "its discovery document names issuer {:?}, not oidc.issuer {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        let keys: Jwks = serde_json::from_value(self.get(&discovery.jwks_uri).await?)
            .map_err(|error| OidcError::Provider(format!("its keys: {error}")))?;
        *cache = Some((Instant::now(), discovery.clone(), keys.clone()));
        Ok((discovery, keys))
    }

    /// Starts a sign-in that returns to `next`.
    pub async fn begin(&self, store: &Store, next: &str) -> Result<Begun, OidcError> {
        let (discovery, _) = self.provider(false).await?;
        let state = random_secret();
        let nonce = random_secret();
        let verifier = random_secret();
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        let now = Utc::now();
        let pending = PendingLogin {
            nonce: nonce.clone(),
            verifier,
            next: next.to_string(),
            expires_at: now + chrono::Duration::seconds(self.config.login_timeout_seconds as i64),
        };
        stored::insert_login(store.db(), &hash_secret(&state), &pending, now).await?;
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|error| OidcError::Provider(format!("its authorization endpoint: {error}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Begun {
            redirect: url.to_string(),
            state,
        })
    }

    /// Finishes a sign-in from the provider's callback: `state` as the
    /// URL carries it, `cookie` as the browser kept it.
    pub async fn finish(
        &self,
        store: &Store,
        code: &str,
        state: &str,
        cookie: Option<&str>,
    ) -> Result<Identity, OidcError> {
        if cookie.is_none_or(|cookie| !crate::web::same_secret(cookie, state)) {
            return Err(OidcError::Refused(
                "this sign-in was not started in this browser (its state does not match)".into(),
            ));
        }
        let pending = stored::take_login(store.db(), &hash_secret(state))
            .await?
            .filter(|pending| pending.expires_at > Utc::now())
            .ok_or_else(|| {
                OidcError::Refused(
                    "this sign-in is unknown, used already or too old: start again".into(),
                )
            })?;
        let (discovery, keys) = self.provider(false).await?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_url.as_str()),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .map_err(|error| OidcError::Provider(error.to_string()))?;
        if !allowed_url(&discovery.token_endpoint) {
            return Err(OidcError::Provider(
                "its token endpoint is not https://".into(),
            ));
        }
        let exchange = http::post_form(
            &discovery.token_endpoint,
            form,
            self.config.ca_file.as_deref(),
            MAX_ANSWER_BYTES,
        );
        let (status, body) = tokio::time::timeout(PROVIDER_TIMEOUT, exchange)
            .await
            .map_err(|_| OidcError::Provider("its token endpoint gave no answer in time".into()))?
            .map_err(|error| OidcError::Provider(format!("its token endpoint: {error}")))?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 {
            let why = answer["error"].as_str().unwrap_or("no reason given");
            return Err(OidcError::Refused(format!(
                "the provider refused the sign-in code ({status}, {why})"
            )));
        }
        let token = answer["id_token"]
            .as_str()
            .ok_or_else(|| OidcError::Provider("its token answer has no id_token".into()))?;
        // A key id not among the cached keys: the provider rotated them.
        let keys = match jwt::key_id(token) {
            Ok(Some(kid)) if !keys.keys.iter().any(|key| key.kid.as_deref() == Some(&kid)) => {
                self.provider(true).await?.1
            }
            _ => keys,
        };
        let claims =
            jwt::verify(token, &keys).map_err(|error| OidcError::Refused(error.to_string()))?;
        self.check_claims(&claims, &pending.nonce)?;
        self.identity(&claims, pending.next)
    }

    /// OpenID Connect Core §3.1.3.7: issuer, audience, expiry, nonce.
    fn check_claims(&self, claims: &Value, nonce: &str) -> Result<(), OidcError> {
        let refused = |why: String| Err(OidcError::Refused(format!("the ID token {why}")));
        if claims["iss"].as_str() != Some(self.config.issuer.as_str()) {
            return refused(format!("is from issuer {}, not oidc.issuer", claims["iss"]));
        }
        let audiences: Vec<&str> = match &claims["aud"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&self.config.client_id.as_str()) {
            return refused("is not for this client (aud)".into());
        }
        let azp = claims.get("azp").filter(|azp| !azp.is_null());
        let azp_ours = azp.is_none_or(|azp| azp.as_str() == Some(self.config.client_id.as_str()));
        if !azp_ours || (audiences.len() > 1 && azp.is_none()) {
            return refused("is for another authorized party (azp)".into());
        }
        // A minute of leeway for clocks that differ; NumericDate may be a float.
        let now = Utc::now().timestamp() as f64;
        match claims["exp"].as_f64() {
            Some(exp) if exp + 60.0 > now => {}
            Some(_) => return refused("has expired".into()),
            None => return refused("has no expiry (exp)".into()),
        }
        if claims["iat"].as_f64().is_some_and(|iat| iat > now + 60.0) {
            return refused("was issued in the future (iat)".into());
        }
        let matches = claims["nonce"]
            .as_str()
            .is_some_and(|given| crate::web::same_secret(given, nonce));
        if !matches {
            return refused("does not carry this sign-in's nonce".into());
        }
        Ok(())
    }

    /// The user and role the claims name.
    fn identity(&self, claims: &Value, next: String) -> Result<Identity, OidcError> {
        let sub = claims["sub"]
            .as_str()
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| OidcError::Refused("the ID token has no subject (sub)".into()))?;
        let username = claims[&self.config.username_claim]
            .as_str()
            .or_else(|| claims["email"].as_str())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                OidcError::NotAllowed(format!(
                    "the provider gave no {} (nor email) for this user",
                    self.config.username_claim
                ))
            })?;
        let groups: Vec<&str> = match &claims[&self.config.groups_claim] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let member_of =
            |list: &[String]| groups.iter().any(|group| list.iter().any(|g| g == group));
        // Each mapped dmarcd group, with the best role the user's provider
        // groups give there.
        let mut group_roles: std::collections::BTreeMap<String, Option<crate::scope::GroupRole>> =
            Default::default();
        for (provider_group, target) in &self.config.group_roles {
            let Some((group, role)) = parse_group_role(target) else {
                continue;
            };
            let entry = group_roles.entry(group).or_default();
            if groups.contains(&provider_group.as_str()) {
                *entry = (*entry).max(Some(role));
            }
        }
        let mapped = group_roles.values().any(Option::is_some);
        let role = if member_of(&self.config.admin_groups) {
            Some("admin")
        } else if self.config.allow_any_user || member_of(&self.config.viewer_groups) || mapped {
            Some("viewer")
        } else {
            None
        };
        Ok(Identity {
            subject: format!("{}|{sub}", self.config.issuer),
            username: username.to_string(),
            role,
            next,
            group_roles: group_roles.into_iter().collect(),
        })
    }
}
