//! Webhooks: a notification rendered as the receiver expects it (a
//! generic JSON document, or Slack's, Mattermost's or Microsoft Teams'
//! incoming-webhook body), POSTed with an HMAC-SHA256 signature over the
//! time and the body when the webhook has a secret.
//!
//! Signature header, as receivers check it (Stripe's layout):
//! `X-Dmarcd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
//! the time lets a receiver refuse an old request replayed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Notification, SendError};

/// The body layouts a webhook can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// dmarcd's own document: event, title, text, link, details.
    Json,
    Slack,
    Mattermost,
    /// An Adaptive Card, as Teams' Workflows webhooks take it.
    Teams,
}

impl WebhookFormat {
    pub fn parse(text: &str) -> Result<WebhookFormat, String> {
        match text {
            "json" => Ok(WebhookFormat::Json),
            "slack" => Ok(WebhookFormat::Slack),
            "mattermost" => Ok(WebhookFormat::Mattermost),
            "teams" => Ok(WebhookFormat::Teams),
            other => Err(format!(
                "unknown webhook format {other:?} (json, slack, mattermost or teams)"
            )),
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Mattermost => "mattermost",
            WebhookFormat::Teams => "teams",
        }
    }

    /// The body for `notification`, as JSON text.
    pub fn render(self, notification: &Notification) -> String {
        let link = notification.link.as_deref();
        let body = match self {
            WebhookFormat::Json => json!({
                "event": notification.event,
                "title": notification.title,
                "text": notification.text,
                "link": link,
                "details": notification.details,
            }),
            // Slack's mrkdwn: *bold*, <url|label>.
            WebhookFormat::Slack => {
                let mut text = format!("*{}*\n{}", notification.title, notification.text);
                if let Some(link) = link {
                    text.push_str(&format!("\n<{link}|Open in dmarcd>"));
                }
                json!({ "text": text })
            }
            // Mattermost takes Markdown.
            WebhookFormat::Mattermost => {
                let mut text = format!("#### {}\n{}", notification.title, notification.text);
                if let Some(link) = link {
                    text.push_str(&format!("\n[Open in dmarcd]({link})"));
                }
                json!({ "text": text, "username": "dmarcd" })
            }
            WebhookFormat::Teams => {
                let mut card = json!({
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "size": "Medium", "weight": "Bolder",
                          "text": notification.title, "wrap": true },
                        { "type": "TextBlock", "text": notification.text, "wrap": true },
                    ],
                });
                if let Some(link) = link {
                    card["actions"] = json!([{ "type": "Action.OpenUrl", "title": "Open in dmarcd", "url": link }]);
                }
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "content": card,
                    }],
                })
            }
        };
        body.to_string()
    }
}

/// A webhook call as queued: rendered already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub url: String,
    /// Signs the body (`X-Dmarcd-Signature`) when set.
    pub secret: Option<String>,
    /// `event` of the notification (`X-Dmarcd-Event`).
    pub event: String,
    /// The JSON body.
    pub body: String,
}

/// Whether `url` may take webhooks: HTTPS, or plain HTTP to loopback only
/// (alerts name domains and sources; they do not cross a network in clear).
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("a webhook URL must be https:// (plain http only to loopback)".to_string())
            }
        }
        _ => Err("a webhook URL must be https://".to_string()),
    }
}

/// `t=<time>,v1=<hex HMAC-SHA256(secret, "<time>.<body>")>`.
pub fn signature(secret: &str, time: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{time}.{body}").as_bytes());
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={time},v1={hex}")
}

/// Answers read from a webhook, at most (the status is what counts).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// POSTs `request` (outbox row `id`) within `timeout`; a 2xx is success,
/// 408, 429 and 5xx and no answer are worth another try, any other status
/// is not.
pub async fn send(
    id: i64,
    request: &WebhookRequest,
    timeout: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), SendError> {
    check_url(&request.url).map_err(SendError::permanent)?;
    let mut headers = vec![
        ("X-Dmarcd-Delivery", id.to_string()),
        ("X-Dmarcd-Event", request.event.clone()),
    ];
    if let Some(secret) = &request.secret {
        headers.push((
            "X-Dmarcd-Signature",
            signature(secret, now.timestamp(), &request.body),
        ));
    }
    let call = crate::mailbox::http::post(
        &request.url,
        "application/json",
        &headers,
        request.body.clone(),
        None,
        MAX_ANSWER_BYTES,
    );
    let (status, _) = match tokio::time::timeout(timeout, call).await {
        Err(_) => {
            return Err(SendError::temporary(format!(
                "the webhook did not answer within {} s",
                timeout.as_secs_f64()
            )))
        }
        Ok(Err(error)) => return Err(SendError::temporary(format!("the webhook: {error}"))),
        Ok(Ok(answer)) => answer,
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::temporary(format!(
            "the webhook answered HTTP {status}"
        ))),
        _ => Err(SendError::permanent(format!(
            "the webhook answered HTTP {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_signature_is_the_hmac_of_time_and_body() {
        // The value openssl computes for the same input:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn plain_http_webhooks_only_go_to_loopback() {
        assert!(check_url("https://hooks.slack.com/services/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]/hook").is_ok());
        assert!(check_url("http://hooks.example.com/hook").is_err());
        assert!(check_url("ftp://example.com/").is_err());
    }

    #[test]
    fn every_format_names_the_title_and_the_link() {
        let notification = Notification {
            event: "test".to_string(),
            title: "Title here".to_string(),
            text: "Body".to_string(),
            link: Some("https://dmarc.example.com/alerts".to_string()),
            details: json!({}),
        };
        for format in [
            WebhookFormat::Json,
            WebhookFormat::Slack,
            WebhookFormat::Mattermost,
            WebhookFormat::Teams,
        ] {
            let body = format.render(&notification);
            let value: Value = serde_json::from_str(&body).unwrap();
            assert!(body.contains("Title here"), "{format:?}: {body}");
            assert!(
                body.contains("https://dmarc.example.com/alerts"),
                "{format:?}: {body}"
            );
            assert!(value.is_object());
        }
    }
}
