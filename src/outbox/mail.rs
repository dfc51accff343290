//! Mail out: a queued `MailMessage` built into a multipart/alternative
//! message (plain text, then HTML) and handed to the relay over SMTP with
//! lettre's tokio transport (STARTTLS required unless configured
//! otherwise), or to a local sendmail binary.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::config::{MailOutConfig, MailTls};
use super::SendError;

/// A message to send, as queued: rendered already, so a restart or
/// another node sends exactly what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMessage {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Where the recipient changes what they receive (List-Unsubscribe).
    pub settings_link: Option<String>,
}

/// The configured way out for mail.
pub struct MailSender {
    transport: Transport,
    from: Mailbox,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Sendmail(AsyncSendmailTransport<Tokio1Executor>),
}

impl MailSender {
    /// The sender `[mail_out]` describes; `None` when mail is off.
    pub fn from_config(config: &MailOutConfig) -> Result<Option<MailSender>, String> {
        if !config.is_enabled() {
            return Ok(None);
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| format!("mail_out.from {:?}: {error}", config.from))?;
        let transport = match &config.sendmail {
            Some(binary) => {
                Transport::Sendmail(AsyncSendmailTransport::new_with_command(binary.as_os_str()))
            }
            None => Transport::Smtp(smtp_transport(config)?),
        };
        Ok(Some(MailSender { transport, from }))
    }

    /// Sends `message`, queued as outbox row `id` (its Message-ID, so a
    /// receiver can drop a repeat after a crash between send and record).
    pub async fn send(&self, id: i64, message: &MailMessage) -> Result<(), SendError> {
        let email = self.build(id, message)?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(email).await.map(|_| ()).map_err(|error| {
                // 5xx: the relay refuses this message for good; 4xx, a
                // dropped connection, a timeout or a TLS failure may pass
                // later.
                let message = format!("the relay: {error}");
                if error.is_permanent() {
                    SendError::permanent(message)
                } else {
                    SendError::temporary(message)
                }
            }),
            Transport::Sendmail(sendmail) => sendmail
                .send(email)
                .await
                .map_err(|error| SendError::temporary(format!("sendmail: {error}"))),
        }
    }

    fn build(&self, id: i64, message: &MailMessage) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(message.subject.clone())
            .date_now()
            .message_id(Some(format!(
                "<dmarcd.outbox.{id}@{}>",
                self.from.email.domain()
            )))
            .user_agent(concat!("dmarcd/", env!("CARGO_PKG_VERSION")).to_string());
        if message.to.is_empty() {
            return Err(SendError::permanent("the message has no recipient"));
        }
        for to in &message.to {
            let mailbox: Mailbox = to.parse().map_err(|error| {
                SendError::permanent(format!("not an email address {to:?}: {error}"))
            })?;
            builder = builder.to(mailbox);
        }
        if let Some(link) = &message.settings_link {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{link}>"),
            ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|error| SendError::permanent(format!("cannot build the message: {error}")))
    }
}

fn smtp_transport(config: &MailOutConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = match config.tls {
        MailTls::None => Tls::None,
        MailTls::Starttls => Tls::Required(tls_parameters(config)?),
        MailTls::Implicit => Tls::Wrapper(tls_parameters(config)?),
    };
    let helo = if config.helo_name.is_empty() {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string())
    } else {
        config.helo_name.clone()
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.relay)
        .port(config.port)
        .tls(tls)
        .hello_name(ClientId::Domain(helo))
        .timeout(Some(Duration::from_secs(config.timeout_seconds)));
    if let Some(username) = &config.username {
        let password = match (&config.password, &config.password_file) {
            (Some(password), _) => password.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|error| {
                    format!(
                        "cannot read mail_out.password_file {}: {error}",
                        file.display()
                    )
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, None) => String::new(),
        };
        builder = builder.credentials(Credentials::new(username.clone(), password));
    }
    Ok(builder.build())
}

fn tls_parameters(config: &MailOutConfig) -> Result<TlsParameters, String> {
    let mut parameters = TlsParameters::builder(config.relay.clone());
    if let Some(file) = &config.ca_file {
        let pem = std::fs::read(file)
            .map_err(|error| format!("cannot read mail_out.ca_file {}: {error}", file.display()))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|error| format!("mail_out.ca_file {}: {error}", file.display()))?;
        parameters = parameters.add_root_certificate(certificate);
    }
    parameters
        .build_rustls()
        .map_err(|error| format!("TLS for mail_out: {error}"))
}
