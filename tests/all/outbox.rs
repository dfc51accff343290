//! The outbox on both backends: mail through lettre to a real SMTP server
//! on loopback (aiosmtpd), read back and checked as a mail client would
//! (subject, multipart/alternative, both bodies, links, Message-ID);
//! webhooks to a real HTTP server (signature, formats, a 500 then a 200, a
//! server that never answers, a 404); retries and giving up on a test
//! clock; several senders claiming at once never take the same message.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dmarcd::outbox::{
    MailOutConfig, MailTls, Notification, OutboxConfig, OutboxItem, OutboxSender, WebhookFormat,
};
use dmarcd::store::{OutboxEntry, Store};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

use crate::common;
use crate::common::smtp_sink::SmtpSink;
use crate::common::webhook_server::WebhookServer;

fn clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn mail_out(port: u16) -> MailOutConfig {
    MailOutConfig {
        relay: "127.0.0.1".to_string(),
        port,
        tls: MailTls::None,
        from: "dmarcd@reports.example.com".to_string(),
        timeout_seconds: 5,
        ..MailOutConfig::default()
    }
}

fn outbox_config() -> OutboxConfig {
    OutboxConfig {
        first_retry_seconds: 60,
        max_retry_seconds: 600,
        give_up_hours: 2,
        webhook_timeout_seconds: 1,
        dashboard_url: "https://dmarc.example.com".to_string(),
        ..OutboxConfig::default()
    }
}

fn sender(store: &Store, mail: &MailOutConfig) -> OutboxSender {
    OutboxSender::new(
        store.clone(),
        mail,
        &outbox_config(),
        "test-node".to_string(),
    )
    .unwrap()
}

fn alert() -> Notification {
    Notification {
        event: "alert.opened".to_string(),
        title: "New source sending as example.com".to_string(),
        text: "203.0.113.9 sent 42 messages as example.com.\nNone passed DMARC.".to_string(),
        link: Some("https://dmarc.example.com/explorer?domain=example.com".to_string()),
        details: json!({"domain": "example.com", "source": "203.0.113.9"}),
    }
}

async fn queue(store: &Store, item: OutboxItem) -> i64 {
    store
        .enqueue_outbox(&[item.queued(None)], clock())
        .await
        .unwrap()
        .pop()
        .unwrap()
}

async fn entry(store: &Store, id: i64) -> OutboxEntry {
    store
        .outbox_entries(1000)
        .await
        .unwrap()
        .into_iter()
        .find(|entry| entry.id == id)
        .unwrap()
}

#[tokio::test]
async fn a_queued_mail_reaches_a_real_smtp_server_as_text_and_html() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    for (_dir, store) in common::db::backends().await {
        let before = sink.messages().len();
        let mail = alert().mail(
            vec!["postmaster@example.com".to_string()],
            Some("https://dmarc.example.com/settings/alerts".to_string()),
        );
        let id = queue(&store, OutboxItem::Mail(mail)).await;
        let pass = sender(&store, &mail_out(sink.port))
            .deliver_due(clock())
            .await
            .unwrap();
        assert_eq!((pass.sent, pass.retried, pass.failed), (1, 0, 0));
        let stored = entry(&store, id).await;
        assert_eq!(stored.status, "sent", "{stored:?}");
        assert_eq!(stored.attempts, 1);

        let messages = sink.wait_for(before + 1).await;
        let (envelope, raw) = &messages[before];
        assert_eq!(envelope["from"], "dmarcd@reports.example.com");
        assert_eq!(envelope["to"], json!(["postmaster@example.com"]));
        let message = MessageParser::default().parse(raw).unwrap();
        assert_eq!(message.subject(), Some("New source sending as example.com"));
        assert_eq!(
            message.message_id(),
            Some(format!("dmarcd.outbox.{id}@reports.example.com").as_str())
        );
        let list_unsubscribe = message
            .header_raw("List-Unsubscribe")
            .expect("a List-Unsubscribe header");
        assert!(
            list_unsubscribe.contains("<https://dmarc.example.com/settings/alerts>"),
            "{list_unsubscribe}"
        );
        let content_type = message.content_type().unwrap();
        assert_eq!(
            (content_type.ctype(), content_type.subtype()),
            ("multipart", Some("alternative"))
        );
        // One plain text part, then one HTML part, as clients expect.
        let parts: Vec<String> = message
            .parts
            .iter()
            .skip(1)
            .map(|part| {
                let ct = part.content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(parts, vec!["text/plain", "text/html"]);
        let text = message.body_text(0).unwrap();
        assert!(text.contains("203.0.113.9 sent 42 messages"), "{text}");
        assert!(
            text.contains("Open in dmarcd: https://dmarc.example.com/explorer?domain=example.com"),
            "{text}"
        );
        let html = message.body_html(0).unwrap();
        assert!(html.contains("<h1"), "{html}");
        assert!(html.contains("<p>None passed DMARC.</p>"), "{html}");
        assert!(
            html.contains(r#"<a href="https://dmarc.example.com/explorer?domain=example.com">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="https://dmarc.example.com/settings/alerts""#),
            "{html}"
        );
        // Sent once: a second pass finds nothing due.
        let again = sender(&store, &mail_out(sink.port))
            .deliver_due(clock() + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(again.sent, 0);
    }
}

#[tokio::test]
async fn a_greylisting_relay_gets_the_mail_on_a_later_attempt() {
    let Some(sink) = SmtpSink::start(1).await else {
        return;
    };
    // The sink refuses the first message it sees, whichever backend's.
    let mut refused = false;
    for (_dir, store) in common::db::backends().await {
        let sender = sender(&store, &mail_out(sink.port));
        let id = queue(
            &store,
            OutboxItem::Mail(alert().mail(vec!["ops@example.com".to_string()], None)),
        )
        .await;
        let first = sender.deliver_due(clock()).await.unwrap();
        if !refused {
            refused = true;
            assert_eq!((first.sent, first.retried), (0, 1));
            let waiting = entry(&store, id).await;
            assert_eq!(waiting.status, "pending");
            assert!(
                waiting.last_error.as_deref().unwrap().contains("451"),
                "{waiting:?}"
            );
            assert_eq!(
                waiting.next_attempt_at,
                clock() + chrono::Duration::seconds(60)
            );
            // Not due yet a moment later.
            let early = sender
                .deliver_due(clock() + chrono::Duration::seconds(59))
                .await
                .unwrap();
            assert_eq!(early.sent, 0);
            let later = sender
                .deliver_due(clock() + chrono::Duration::seconds(60))
                .await
                .unwrap();
            assert_eq!(later.sent, 1);
            assert_eq!(entry(&store, id).await.attempts, 2);
        } else {
            assert_eq!(first.sent, 1);
        }
        assert_eq!(entry(&store, id).await.status, "sent");
    }
    assert_eq!(sink.wait_for(2).await.len(), 2);
}

#[tokio::test]
async fn a_relay_that_stays_down_is_given_up_with_the_reason_kept() {
    // A loopback port with nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (_dir, store) in common::db::backends().await {
        let sender = sender(&store, &mail_out(closed));
        let id = queue(
            &store,
            OutboxItem::Mail(alert().mail(vec!["ops@example.com".to_string()], None)),
        )
        .await;
        let mut now = clock();
        let mut passes = 0;
        loop {
            let pass = sender.deliver_due(now).await.unwrap();
            passes += 1;
            if pass.failed == 1 {
                break;
            }
            assert_eq!(pass.retried, 1);
            now = entry(&store, id).await.next_attempt_at;
            assert!(passes < 20);
        }
        let failed = entry(&store, id).await;
        assert_eq!(failed.status, "failed");
        // 60 s, 120, 240, 480, then 600 s apart: the seventh try would
        // fall past the two hours.
        assert!(now < clock() + chrono::Duration::hours(2));
        let reason = failed.last_error.unwrap();
        assert!(reason.starts_with("gave up after "), "{reason}");
        assert!(reason.contains("the relay"), "{reason}");

        // Mail with no way out fails at once, saying what to set.
        let off = OutboxSender::new(
            store.clone(),
            &MailOutConfig::default(),
            &outbox_config(),
            "test-node".to_string(),
        )
        .unwrap();
        let id = queue(
            &store,
            OutboxItem::Mail(alert().mail(vec!["ops@example.com".to_string()], None)),
        )
        .await;
        assert_eq!(off.deliver_due(now).await.unwrap().failed, 1);
        let reason = entry(&store, id).await.last_error.unwrap();
        assert!(reason.contains("mail_out.relay"), "{reason}");
    }
}

#[tokio::test]
async fn starttls_is_required_unless_turned_off() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let (_dir, store) = common::db::sqlite().await;
    let starttls = MailOutConfig {
        tls: MailTls::Starttls,
        ..mail_out(sink.port)
    };
    let id = queue(
        &store,
        OutboxItem::Mail(alert().mail(vec!["ops@example.com".to_string()], None)),
    )
    .await;
    let pass = sender(&store, &starttls)
        .deliver_due(clock())
        .await
        .unwrap();
    assert_eq!((pass.sent, pass.retried), (0, 1));
    let waiting = entry(&store, id).await;
    assert!(waiting.last_error.is_some(), "{waiting:?}");
    assert!(sink.messages().is_empty(), "sent in clear text");
}

fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let (time, mac) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{time}.").into_bytes();
    signed.extend_from_slice(body);
    let mac: Vec<u8> = (0..mac.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&mac[i..i + 2], 16).unwrap())
        .collect();
    ring::hmac::verify(&key, &signed, &mac).is_ok()
}

#[tokio::test]
async fn a_signed_webhook_answered_500_is_sent_again_and_then_delivered() {
    for (_dir, store) in common::db::backends().await {
        let server = WebhookServer::start(&[500, 200]).await;
        let sender = sender(&store, &MailOutConfig::default());
        let request = alert().webhook(
            &server.url(),
            WebhookFormat::Json,
            Some("s3cret".to_string()),
        );
        let id = queue(&store, OutboxItem::Webhook(request)).await;
        let first = sender.deliver_due(clock()).await.unwrap();
        assert_eq!((first.sent, first.retried), (0, 1));
        let waiting = entry(&store, id).await;
        assert!(
            waiting.last_error.as_deref().unwrap().contains("HTTP 500"),
            "{waiting:?}"
        );
        let second = sender
            .deliver_due(clock() + chrono::Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(second.sent, 1);
        assert_eq!(entry(&store, id).await.status, "sent");

        let received = server.received();
        assert_eq!(received.len(), 2);
        let last = &received[1];
        assert_eq!(last.header("content-type").unwrap(), "application/json");
        assert_eq!(last.header("x-dmarcd-delivery").unwrap(), id.to_string());
        assert_eq!(last.header("x-dmarcd-event").unwrap(), "alert.opened");
        let signature = last.header("x-dmarcd-signature").unwrap();
        assert!(
            signature.starts_with(&format!(
                "t={},v1=",
                (clock() + chrono::Duration::seconds(60)).timestamp()
            )),
            "{signature}"
        );
        assert!(verify("s3cret", &signature, &last.body));
        assert!(!verify("other", &signature, &last.body));
        let mut tampered = last.body.clone();
        tampered.push(b' ');
        assert!(!verify("s3cret", &signature, &tampered));
        let body = last.json();
        assert_eq!(body["event"], "alert.opened");
        assert_eq!(body["title"], "New source sending as example.com");
        assert_eq!(body["details"]["source"], "203.0.113.9");
        assert_eq!(
            body["link"],
            "https://dmarc.example.com/explorer?domain=example.com"
        );
    }
}

#[tokio::test]
async fn a_webhook_that_never_answers_times_out_and_is_tried_again() {
    for (_dir, store) in common::db::backends().await {
        let server = WebhookServer::hanging().await;
        let sender = sender(&store, &MailOutConfig::default());
        let id = queue(
            &store,
            OutboxItem::Webhook(alert().webhook(&server.url(), WebhookFormat::Slack, None)),
        )
        .await;
        let started = std::time::Instant::now();
        let pass = sender.deliver_due(clock()).await.unwrap();
        assert_eq!((pass.sent, pass.retried), (0, 1));
        assert!(started.elapsed() < Duration::from_secs(5));
        let waiting = entry(&store, id).await;
        assert_eq!(waiting.status, "pending");
        assert!(
            waiting
                .last_error
                .as_deref()
                .unwrap()
                .contains("did not answer within 1 s"),
            "{waiting:?}"
        );
        assert_eq!(server.received().len(), 1);
        assert!(server.received()[0].header("x-dmarcd-signature").is_none());
    }
}

#[tokio::test]
async fn chat_formats_arrive_as_their_services_read_them_and_a_404_is_not_retried() {
    for (_dir, store) in common::db::backends().await {
        let server = WebhookServer::start(&[200, 200, 200, 404]).await;
        let sender = sender(&store, &MailOutConfig::default());
        let mut ids = Vec::new();
        for format in [
            WebhookFormat::Slack,
            WebhookFormat::Mattermost,
            WebhookFormat::Teams,
        ] {
            ids.push(
                queue(
                    &store,
                    OutboxItem::Webhook(alert().webhook(&server.url(), format, None)),
                )
                .await,
            );
            sender.deliver_due(clock()).await.unwrap();
        }
        let received = server.received();
        let slack = received[0].json();
        assert!(slack["text"]
            .as_str()
            .unwrap()
            .starts_with("*New source sending as example.com*\n"));
        assert!(slack["text"]
            .as_str()
            .unwrap()
            .contains("<https://dmarc.example.com/explorer?domain=example.com|Open in dmarcd>"));
        let mattermost = received[1].json();
        assert!(mattermost["text"]
            .as_str()
            .unwrap()
            .contains("[Open in dmarcd](https://dmarc.example.com/explorer?domain=example.com)"));
        let teams = received[2].json();
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(
            card["content"]["body"][0]["text"],
            "New source sending as example.com"
        );
        assert_eq!(card["content"]["actions"][0]["type"], "Action.OpenUrl");
        for id in &ids {
            assert_eq!(entry(&store, *id).await.status, "sent");
        }

        let gone = queue(
            &store,
            OutboxItem::Webhook(alert().webhook(&server.url(), WebhookFormat::Json, None)),
        )
        .await;
        let pass = sender.deliver_due(clock()).await.unwrap();
        assert_eq!(pass.failed, 1);
        let failed = entry(&store, gone).await;
        assert_eq!(failed.status, "failed");
        assert_eq!(
            failed.last_error.as_deref(),
            Some("the webhook answered HTTP 404")
        );
    }
}

#[tokio::test]
async fn senders_claiming_at_once_never_take_the_same_message() {
    for (_dir, store) in common::db::backends().await {
        let items: Vec<_> = (0..60)
            .map(|n| {
                OutboxItem::Webhook(alert().webhook(
                    &format!("http://127.0.0.1:9/{n}"),
                    WebhookFormat::Json,
                    None,
                ))
                .queued(None)
            })
            .collect();
        assert_eq!(
            store.enqueue_outbox(&items, clock()).await.unwrap().len(),
            60
        );
        let claims = (0..4).map(|node| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_outbox(&format!("node-{node}"), 5, Duration::from_secs(60), clock())
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|item| item.id));
                }
            })
        });
        let mut all = Vec::new();
        for claim in claims {
            all.extend(claim.await.unwrap());
        }
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "a message was claimed twice");
        assert_eq!(all.len(), 60);
        // A claim whose lease ran out (its node died) is taken again.
        let retaken = store
            .claim_outbox(
                "node-9",
                100,
                Duration::from_secs(60),
                clock() + chrono::Duration::seconds(61),
            )
            .await
            .unwrap();
        assert_eq!(retaken.len(), 60);
        assert!(retaken.iter().all(|item| item.attempts == 2));
    }
}

#[tokio::test]
async fn the_same_dedup_key_is_queued_once() {
    for (_dir, store) in common::db::backends().await {
        let item = OutboxItem::Mail(alert().mail(vec!["ops@example.com".to_string()], None));
        let first = store
            .enqueue_outbox(&[item.queued(Some("alert:7:mail:1".to_string()))], clock())
            .await
            .unwrap();
        let second = store
            .enqueue_outbox(&[item.queued(Some("alert:7:mail:1".to_string()))], clock())
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(second.is_empty());
        assert_eq!(store.outbox_entries(10).await.unwrap().len(), 1);
    }
}
