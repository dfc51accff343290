//! Credentials for a mailbox: the password from the config, an environment
//! variable or a file; or an OAuth2 access token from a command or a
//! client-credentials token endpoint, sent as SASL XOAUTH2 or OAUTHBEARER.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::config::{AuthMethod, MailboxConfig};
use super::error::{MailboxError, MailboxErrorKind};

/// A token is fetched again this long before the endpoint says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);
/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// What `connect` signs in with.
#[derive(Clone)]
pub enum Credentials {
    Password(String),
    /// An access token for the SASL mechanism.
    Token {
        method: AuthMethod,
        token: String,
    },
}

/// Gets credentials for one mailbox; keeps a client-credentials token
/// until shortly before it expires.
#[derive(Clone)]
pub struct CredentialSource {
    config: Arc<MailboxConfig>,
    cached: Arc<Mutex<Option<(String, Instant)>>>,
}

impl CredentialSource {
    pub fn new(config: Arc<MailboxConfig>) -> Self {
        CredentialSource {
            config,
            cached: Arc::default(),
        }
    }

    pub async fn credentials(&self) -> Result<Credentials, MailboxError> {
        let config = &self.config;
        match config.auth {
            AuthMethod::Password => Ok(Credentials::Password(secret(config)?)),
            method => {
                let token = match (&config.token_command, &config.token_url) {
                    (Some(command), _) => token_from_command(command, config.timeout()).await?,
                    (None, Some(url)) => self.client_credentials_token(url).await?,
                    (None, None) => {
                        return Err(MailboxError::new(
                            MailboxErrorKind::Token,
                            "OAuth2 needs token_command or token_url",
                        ))
                    }
                };
                Ok(Credentials::Token { method, token })
            }
        }
    }

    /// Forgets a cached token (the server refused it).
    pub async fn forget_token(&self) {
        *self.cached.lock().await = None;
    }

    async fn client_credentials_token(&self, url: &str) -> Result<String, MailboxError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let config = &self.config;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", config.client_id.clone().unwrap_or_default()),
            ("client_secret", secret(config)?),
        ];
        if let Some(scope) = &config.scope {
            form.push(("scope", scope.clone()));
        }
        let body = serde_urlencoded::to_string(&form).unwrap_or_default();
        let answer = tokio::time::timeout(
            config.timeout(),
            super::http::post_form(url, body, config.ca_file.as_deref(), MAX_TOKEN_RESPONSE),
        )
        .await
        .map_err(|_| token_error(url, "no answer within timeout_seconds"))?
        .map_err(|error| token_error(url, &error))?;
        let (status, text) = answer;
        let parsed: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|_| token_error(url, &format!("HTTP {status}, not JSON")))?;
        if !(200..300).contains(&status) {
            // OAuth2 errors (RFC 6749 section 5.2) say why in these fields.
            let why = [parsed.get("error"), parsed.get("error_description")]
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(": ");
            return Err(token_error(url, &format!("HTTP {status}: {why}")));
        }
        let token = parsed
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| token_error(url, "the answer has no access_token"))?
            .to_string();
        let lifetime = parsed
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .map_or(Duration::from_secs(3600), Duration::from_secs);
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.clone(), until));
        Ok(token)
    }
}

fn token_error(url: &str, why: &str) -> MailboxError {
    MailboxError::new(
        MailboxErrorKind::Token,
        format!("no access token from {url}: {why} (check client_id, the client secret and scope)"),
    )
}

/// The password or client secret, from wherever the config says.
fn secret(config: &MailboxConfig) -> Result<String, MailboxError> {
    let missing = |what: String| {
        MailboxError::new(
            MailboxErrorKind::Auth,
            format!("mailbox {:?}: {what}", config.name),
        )
    };
    if let Some(password) = &config.password {
        return Ok(password.clone());
    }
    if let Some(variable) = &config.password_env {
        return std::env::var(variable).map_err(|_| {
            missing(format!(
                "the environment variable {variable} (password_env) is not set"
            ))
        });
    }
    if let Some(path) = &config.password_file {
        let text = std::fs::read_to_string(path).map_err(|error| {
            missing(format!(
                "cannot read password_file {}: {error}",
                path.display()
            ))
        })?;
        // A file written by `echo` ends with a newline that is no part of it.
        return Ok(text.trim_end_matches(['\r', '\n']).to_string());
    }
    Err(missing(
        "no password, password_env or password_file".to_string(),
    ))
}

/// The access token a command prints (trimmed); its error output is
/// shown when it fails.
async fn token_from_command(command: &str, timeout: Duration) -> Result<String, MailboxError> {
    let failed = |why: String| {
        MailboxError::new(
            MailboxErrorKind::Token,
            format!("the token_command {command:?} {why}"),
        )
    };
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| failed("did not finish within timeout_seconds".to_string()))?
        .map_err(|error| failed(format!("cannot run: {error}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(failed(
            "must print one access token and nothing else".to_string(),
        ));
    }
    Ok(token)
}

/// The SASL initial response (before base64) for an access token.
pub fn sasl_response(method: AuthMethod, user: &str, host: &str, port: u16, token: &str) -> String {
    match method {
        // Google's and Microsoft's XOAUTH2.
        AuthMethod::Xoauth2 | AuthMethod::Password => {
            format!("user={user}\x01auth=Bearer {token}\x01\x01")
        }
        // RFC 7628 section 3.1: a GS2 header naming the user (',' and '='
        // escaped, RFC 5801 section 4), then key=value pairs.
        AuthMethod::Oauthbearer => {
            let user = user.replace('=', "=3D").replace(',', "=2C");
            format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
        }
    }
}

/// Answers the server's SASL challenges: the token first; to an error
/// challenge (the server's JSON reason), an empty response, after which
/// the server ends the exchange with NO (RFC 7628 section 3.2.3).
pub struct TokenAuthenticator {
    pub response: Option<String>,
}

impl async_imap::Authenticator for TokenAuthenticator {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.response.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_responses_follow_the_mechanisms() {
        assert_eq!(
            sasl_response(
                AuthMethod::Xoauth2,
                "a@example.com",
                "imap.example.com",
                993,
                "T"
            ),
            "user=a@example.com\x01auth=Bearer T\x01\x01"
        );
        assert_eq!(
            sasl_response(
                AuthMethod::Oauthbearer,
                "a,b=c",
                "imap.example.com",
                993,
                "T"
            ),
            "n,a=a=2Cb=3Dc,\x01host=imap.example.com\x01port=993\x01auth=Bearer T\x01\x01"
        );
    }

    #[tokio::test]
    async fn a_token_command_prints_one_token() {
        let token = token_from_command("echo '  abc.def '", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(token, "abc.def");
        let error = token_from_command("echo nope >&2; exit 3", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(error.kind, MailboxErrorKind::Token);
        assert!(error.message.contains("nope"), "{}", error.message);
    }

    #[test]
    fn a_password_file_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let config = MailboxConfig {
            password_file: Some(path),
            ..MailboxConfig::new("rua", "imap.example.com", "u")
        };
        assert_eq!(secret(&config).unwrap(), "s3cret");
    }
}
