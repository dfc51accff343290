//! A `[[mailbox]]` entry: which IMAP mailbox to pull reports from, how to
//! sign in, and what to do with a message once it is in dmarcd's inbox.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Names the mailbox in the CLI (`dmarcd mailbox pull NAME`), on the
    /// dashboard and in `/metrics`; unique.
    pub name: String,
    pub host: String,
    /// Default: 993 for `tls = "implicit"`, 143 otherwise.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of certificate authorities trusted besides Mozilla's roots
    /// (a server with an internal CA).
    pub ca_file: Option<PathBuf>,
    /// Sign in as.
    pub user: String,
    #[serde(default)]
    pub auth: AuthMethod,
    /// The password (or, for `auth = "xoauth2"`/`"oauthbearer"` with a
    /// token URL, the client secret), from exactly one place.
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// OAuth2: a command whose standard output is an access token (run
    /// with `sh -c` at each connection), e.g. a helper that refreshes one.
    pub token_command: Option<String>,
    /// OAuth2: a token endpoint for the client-credentials grant
    /// (Microsoft 365: `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`);
    /// the secret is the password setting.
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// Microsoft 365: `https://outlook.office365.com/.default`.
    pub scope: Option<String>,
    /// The folder watched.
    #[serde(default = "default_folder")]
    pub folder: String,
    /// What happens to a message on the server once it is safely in
    /// dmarcd's inbox.
    #[serde(default)]
    pub after: AfterPull,
    /// With `after = "move"`: where reports go (created if missing; `/`
    /// separates levels whatever the server's own separator is).
    #[serde(default = "default_archive_folder")]
    pub archive_folder: String,
    /// With `after = "move"`: where mail that holds no report goes.
    #[serde(default = "default_non_report_folder")]
    pub non_report_folder: String,
    /// Messages fetched and committed together.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Bytes of messages fetched together (a larger message comes alone).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
    /// A larger message is left on the server, untouched, with a warning.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Wait for new mail with IDLE when the server offers it.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// Seconds between two looks at the folder when not idling (and at
    /// most between two passes when idling).
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
    /// Seconds allowed for connecting, signing in and each command.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Longest wait between attempts after repeated errors (seconds).
    #[serde(default = "default_max_backoff_seconds")]
    pub max_backoff_seconds: u64,
    /// The lease on this mailbox in the database (seconds): a node that
    /// stops renewing it is replaced after this long.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS before signing in (port 143).
    Starttls,
    /// No TLS: only to a loopback address.
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// LOGIN with the user and password.
    #[default]
    Password,
    /// SASL XOAUTH2 (Google, Microsoft 365).
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628).
    Oauthbearer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterPull {
    /// Move to `archive_folder` (or `non_report_folder`).
    #[default]
    Move,
    /// Mark seen and leave in place.
    Seen,
    /// Delete (expunge).
    Delete,
}

impl AfterPull {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterPull::Move => "move",
            AfterPull::Seen => "seen",
            AfterPull::Delete => "delete",
        }
    }
}

fn default_folder() -> String {
    "INBOX".to_string()
}
fn default_archive_folder() -> String {
    "Archive/dmarcd".to_string()
}
fn default_non_report_folder() -> String {
    "Archive/dmarcd-not-reports".to_string()
}
fn default_batch_size() -> u32 {
    100
}
fn default_batch_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_max_message_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_poll_seconds() -> u64 {
    300
}
fn default_timeout_seconds() -> u64 {
    120
}
fn default_max_backoff_seconds() -> u64 {
    3600
}
fn default_lease_seconds() -> u64 {
    90
}

impl MailboxConfig {
    /// A mailbox with every default, for tests and examples.
    pub fn new(name: &str, host: &str, user: &str) -> Self {
        MailboxConfig {
            name: name.to_string(),
            host: host.to_string(),
            port: None,
            tls: TlsMode::default(),
            ca_file: None,
            user: user.to_string(),
            auth: AuthMethod::default(),
            password: None,
            password_env: None,
            password_file: None,
            token_command: None,
            token_url: None,
            client_id: None,
            scope: None,
            folder: default_folder(),
            after: AfterPull::default(),
            archive_folder: default_archive_folder(),
            non_report_folder: default_non_report_folder(),
            batch_size: default_batch_size(),
            batch_bytes: default_batch_bytes(),
            max_message_bytes: default_max_message_bytes(),
            idle: true,
            poll_seconds: default_poll_seconds(),
            timeout_seconds: default_timeout_seconds(),
            max_backoff_seconds: default_max_backoff_seconds(),
            lease_seconds: default_lease_seconds(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_seconds)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    /// Checks one entry; the error names the mailbox and the setting.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(format!(
                "mailbox name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        let setting = |key: &str| format!("mailbox {name:?}: {key}");
        if self.host.trim().is_empty() || self.user.is_empty() {
            return Err(setting("host and user must be set"));
        }
        if self.tls == TlsMode::None && !is_loopback(&self.host) {
            return Err(setting(
                "tls = \"none\" is only allowed to a loopback address (the password would cross the network in the clear); use \"implicit\" or \"starttls\"",
            ));
        }
        let secrets = [
            self.password.is_some(),
            self.password_env.is_some(),
            self.password_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if secrets > 1 {
            return Err(setting(
                "set only one of password, password_env and password_file",
            ));
        }
        match self.auth {
            AuthMethod::Password => {
                if secrets == 0 {
                    return Err(setting(
                        "auth = \"password\" needs password, password_env or password_file",
                    ));
                }
                if self.token_command.is_some() || self.token_url.is_some() {
                    return Err(setting(
                        "token_command and token_url need auth = \"xoauth2\" or \"oauthbearer\"",
                    ));
                }
            }
            AuthMethod::Xoauth2 | AuthMethod::Oauthbearer => {
                match (&self.token_command, &self.token_url) {
                    (Some(_), None) => {}
                    (None, Some(url)) => {
                        if self.client_id.is_none() || secrets == 0 {
                            return Err(setting(
                                "token_url needs client_id and the client secret in password, password_env or password_file",
                            ));
                        }
                        let plain_ok = url
                            .strip_prefix("http://")
                            .map(|rest| is_loopback(host_of(rest)));
                        if !url.starts_with("https://") && plain_ok != Some(true) {
                            return Err(setting(
                                "token_url must be https:// (http:// only to a loopback address)",
                            ));
                        }
                    }
                    _ => {
                        return Err(setting(
                            "OAuth2 needs exactly one of token_command and token_url",
                        ))
                    }
                }
            }
        }
        if self.folder.is_empty() {
            return Err(setting("folder must not be empty"));
        }
        if self.after == AfterPull::Move
            && (self.archive_folder.is_empty()
                || self.non_report_folder.is_empty()
                || self.archive_folder == self.folder
                || self.non_report_folder == self.folder)
        {
            return Err(setting(
                "archive_folder and non_report_folder must be set and differ from folder",
            ));
        }
        if self.batch_size == 0 || self.batch_bytes == 0 || self.max_message_bytes == 0 {
            return Err(setting(
                "batch_size, batch_bytes and max_message_bytes must be at least 1",
            ));
        }
        if self.poll_seconds == 0 || self.timeout_seconds == 0 {
            return Err(setting(
                "poll_seconds and timeout_seconds must be at least 1",
            ));
        }
        if self.lease_seconds < 10 {
            return Err(setting("lease_seconds must be at least 10"));
        }
        Ok(())
    }
}

/// Checks the list: each entry, and names used once.
pub fn validate_all(mailboxes: &[MailboxConfig]) -> Result<(), String> {
    for (index, mailbox) in mailboxes.iter().enumerate() {
        mailbox.validate()?;
        if mailboxes[..index].iter().any(|m| m.name == mailbox.name) {
            return Err(format!(
                "mailbox name {:?} is used twice: names must be unique",
                mailbox.name
            ));
        }
    }
    Ok(())
}

fn host_of(authority_and_path: &str) -> &str {
    let authority = authority_and_path
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_password() -> MailboxConfig {
        MailboxConfig {
            password: Some("secret".to_string()),
            ..MailboxConfig::new("rua", "imap.example.com", "dmarc@example.com")
        }
    }

    #[test]
    fn defaults_are_implicit_tls_on_993_moving_to_an_archive() {
        let mailbox = with_password();
        assert_eq!(mailbox.validate(), Ok(()));
        assert_eq!(mailbox.port(), 993);
        assert_eq!(mailbox.folder, "INBOX");
        assert_eq!(mailbox.after, AfterPull::Move);
        assert_eq!(mailbox.archive_folder, "Archive/dmarcd");
    }

    #[test]
    fn plain_imap_only_to_loopback() {
        let mailbox = MailboxConfig {
            tls: TlsMode::None,
            ..with_password()
        };
        assert!(mailbox.validate().unwrap_err().contains("loopback"));
        let local = MailboxConfig {
            host: "127.0.0.1".to_string(),
            ..mailbox
        };
        assert_eq!(local.validate(), Ok(()));
        assert_eq!(local.port(), 143);
    }

    #[test]
    fn secrets_and_tokens_are_checked() {
        let none = MailboxConfig::new("rua", "imap.example.com", "u");
        assert!(none.validate().unwrap_err().contains("password_env"));
        let two = MailboxConfig {
            password_env: Some("X".to_string()),
            ..with_password()
        };
        assert!(two.validate().unwrap_err().contains("only one"));
        let oauth = MailboxConfig {
            auth: AuthMethod::Xoauth2,
            ..MailboxConfig::new("rua", "imap.example.com", "u")
        };
        assert!(oauth.validate().unwrap_err().contains("token_command"));
        let command = MailboxConfig {
            token_command: Some("get-token".to_string()),
            ..oauth.clone()
        };
        assert_eq!(command.validate(), Ok(()));
        let plain_url = MailboxConfig {
            token_url: Some("http://login.example.com/token".to_string()),
            client_id: Some("id".to_string()),
            password: Some("s".to_string()),
            ..oauth.clone()
        };
        assert!(plain_url.validate().unwrap_err().contains("https://"));
        let loopback_url = MailboxConfig {
            token_url: Some("http://127.0.0.1:8080/token".to_string()),
            ..plain_url
        };
        assert_eq!(loopback_url.validate(), Ok(()));
    }

    #[test]
    fn names_are_unique_and_simple() {
        let one = with_password();
        assert!(validate_all(&[one.clone(), one.clone()])
            .unwrap_err()
            .contains("twice"));
        let spaced = MailboxConfig {
            name: "my box".to_string(),
            ..one
        };
        assert!(spaced.validate().unwrap_err().contains("letters"));
    }
}
