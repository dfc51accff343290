//! `dmarcd outbox`: queue a test message to check `[mail_out]` or a
//! webhook end to end, and list what the outbox holds.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::outbox::{Notification, OutboxItem, OutboxSender, WebhookFormat};

#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// Queue a test mail to ADDRESS and send it now (through [mail_out]).
    TestMail { address: String },
    /// Queue a test call to a webhook URL and send it now.
    TestWebhook {
        url: String,
        /// json, slack, mattermost or teams.
        #[arg(long, default_value = "json")]
        format: String,
        /// Sign the body with this secret (X-Dmarcd-Signature).
        #[arg(long)]
        secret: Option<String>,
    },
    /// The newest outbox messages and how they stand.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub(super) async fn outbox(config: &Config, action: OutboxAction) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let item = match action {
        OutboxAction::List { limit } => {
            for entry in store.outbox_entries(limit).await? {
                println!(
                    "{:>6}  {:<7}  {:<7}  attempts {:<3}  queued {}  {}",
                    entry.id,
                    entry.kind,
                    entry.status,
                    entry.attempts,
                    entry.created_at.format("%Y-%m-%d %H:%M:%S"),
                    entry.last_error.unwrap_or_default()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        OutboxAction::TestMail { address } => {
            if !config.mail_out.is_enabled() {
                anyhow::bail!("mail is off: set mail_out.relay or mail_out.sendmail");
            }
            OutboxItem::Mail(Notification::test(&config.outbox).mail(vec![address], None))
        }
        OutboxAction::TestWebhook {
            url,
            format,
            secret,
        } => {
            crate::outbox::webhook::check_url(&url).map_err(|error| anyhow::anyhow!(error))?;
            let format = WebhookFormat::parse(&format).map_err(|error| anyhow::anyhow!(error))?;
            OutboxItem::Webhook(Notification::test(&config.outbox).webhook(&url, format, secret))
        }
    };
    let now = chrono::Utc::now();
    let ids = store.enqueue_outbox(&[item.queued(None)], now).await?;
    let sender = OutboxSender::new(
        store.clone(),
        &config.mail_out,
        &config.outbox,
        super::serve::node_name(),
    )
    .map_err(|error| anyhow::anyhow!(error))?;
    sender.deliver_due(now).await?;
    let entries = store.outbox_entries(100).await?;
    let Some(entry) = entries.iter().find(|entry| ids.contains(&entry.id)) else {
        anyhow::bail!("the test message is not in the outbox");
    };
    match entry.status.as_str() {
        "sent" => {
            println!("sent (outbox id {})", entry.id);
            Ok(ExitCode::SUCCESS)
        }
        status => {
            println!(
                "{status} (outbox id {}): {}",
                entry.id,
                entry.last_error.as_deref().unwrap_or("")
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
