//! A small OpenID Connect provider on loopback, as the SSO tests' real
//! counterpart: discovery, an authorization endpoint that signs in the user
//! the test names (no login form: it redirects at once with a code), a
//! token endpoint that checks the client secret, the redirect URI, the PKCE
//! verifier and that each code is used once, and ES256 keys published as a
//! JWKS. It can be told to issue expired ID tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "dmarcd";
pub const CLIENT_SECRET: &str = "provider-secret";
const KID: &str = "test-key-1";

struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: String,
    claims: Value,
    used: bool,
}

struct Provider {
    issuer: String,
    key: EcdsaKeyPair,
    /// Who the authorization endpoint signs in next (their claims).
    user: Mutex<Value>,
    grants: Mutex<HashMap<String, Grant>>,
    expired_tokens: Mutex<bool>,
}

pub struct OidcProvider {
    pub issuer: String,
    state: Arc<Provider>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OidcProvider {
    pub async fn start() -> OidcProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{address}");
        let random = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .unwrap();
        let state = Arc::new(Provider {
            issuer: issuer.clone(),
            key,
            user: Mutex::new(Value::Null),
            grants: Mutex::default(),
            expired_tokens: Mutex::new(false),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        OidcProvider {
            issuer,
            state,
            task,
        }
    }

    /// The next sign-in at the provider is this user, in these groups.
    pub fn sign_in_as(&self, sub: &str, username: &str, groups: &[&str]) {
        *self.state.user.lock().unwrap() = json!({
            "sub": sub,
            "preferred_username": username,
            "email": format!("{username}@example.com"),
            "groups": groups,
        });
    }

    /// ID tokens from now on expired ten minutes ago.
    pub fn issue_expired_tokens(&self, expired: bool) {
        *self.state.expired_tokens.lock().unwrap() = expired;
    }
}

async fn discovery(State(provider): State<Arc<Provider>>) -> Json<Value> {
    let issuer = &provider.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(provider): State<Arc<Provider>>) -> Json<Value> {
    let point = provider.key.public_key().as_ref();
    Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]}))
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn authorize(
    State(provider): State<Arc<Provider>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    if param("response_type") != "code"
        || param("client_id") != CLIENT_ID
        || param("code_challenge_method") != "S256"
        || param("code_challenge").is_empty()
        || param("nonce").is_empty()
        || !param("scope").split(' ').any(|scope| scope == "openid")
    {
        return oauth_error("invalid_request");
    }
    let code = URL_SAFE_NO_PAD.encode(
        ring::rand::generate::<[u8; 16]>(&SystemRandom::new())
            .unwrap()
            .expose(),
    );
    let claims = provider.user.lock().unwrap().clone();
    provider.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            redirect_uri: param("redirect_uri"),
            challenge: param("code_challenge"),
            nonce: param("nonce"),
            claims,
            used: false,
        },
    );
    let mut location = url::Url::parse(&param("redirect_uri")).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state"));
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn token(
    State(provider): State<Arc<Provider>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| form.get(name).cloned().unwrap_or_default();
    if param("client_id") != CLIENT_ID || param("client_secret") != CLIENT_SECRET {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if param("grant_type") != "authorization_code" {
        return oauth_error("unsupported_grant_type");
    }
    let mut grants = provider.grants.lock().unwrap();
    let Some(grant) = grants.get_mut(&param("code")) else {
        return oauth_error("invalid_grant");
    };
    // RFC 6749 §4.1.2: a code used twice is refused.
    if grant.used {
        return oauth_error("invalid_grant");
    }
    grant.used = true;
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        param("code_verifier").as_bytes(),
    ));
    if grant.redirect_uri != param("redirect_uri") || grant.challenge != challenge {
        return oauth_error("invalid_grant");
    }
    let now = chrono::Utc::now().timestamp();
    let exp = if *provider.expired_tokens.lock().unwrap() {
        now - 600
    } else {
        now + 300
    };
    let mut claims = grant.claims.clone();
    let object = claims.as_object_mut().unwrap();
    object.insert("iss".into(), json!(provider.issuer));
    object.insert("aud".into(), json!(CLIENT_ID));
    object.insert("iat".into(), json!(now));
    object.insert("exp".into(), json!(exp));
    object.insert("nonce".into(), json!(grant.nonce));
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = provider
        .key
        .sign(&SystemRandom::new(), signed.as_bytes())
        .unwrap();
    let id_token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    Json(json!({
        "access_token": "opaque-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}
