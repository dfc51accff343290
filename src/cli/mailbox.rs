//! `dmarcd mailbox test NAME` and `dmarcd mailbox pull NAME [--once]`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::inbox::Inbox;
use crate::mailbox::{AfterPull, MailboxConfig, PullEvent, Puller};

#[derive(Debug, Subcommand)]
pub enum MailboxAction {
    /// Connect, sign in, look at the folder and say what a pull would do;
    /// changes nothing on the server or in dmarcd.
    Test {
        /// The mailbox's `name` in the config.
        name: String,
    },
    /// Pull the mailbox now (under its lease, as `serve` does), then
    /// process what arrived; without --once, keep pulling until Ctrl-C.
    Pull {
        name: String,
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
    },
}

pub(super) async fn mailbox(config: &Config, action: MailboxAction) -> anyhow::Result<ExitCode> {
    let name = match &action {
        MailboxAction::Test { name } | MailboxAction::Pull { name, .. } => name,
    };
    let mailbox = find(config, name)?;
    let store = super::open_store(config).await?;
    let puller = Puller::new(
        Arc::new(mailbox.clone()),
        Inbox::new(store.clone()),
        format!("{}:cli", super::serve::node_name()),
        config.decode.clone(),
    );
    match action {
        MailboxAction::Test { .. } => test(&puller).await,
        MailboxAction::Pull { once: true, .. } => pull_once(config, puller).await,
        MailboxAction::Pull { once: false, .. } => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(async move { puller.run(stopped).await });
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
            task.await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn find<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c MailboxConfig> {
    config
        .mailboxes
        .iter()
        .find(|mailbox| mailbox.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
            anyhow::anyhow!(
                "no [[mailbox]] named {name:?} in the config (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
}

async fn test(puller: &Puller) -> anyhow::Result<ExitCode> {
    let config = puller.config();
    let check = match puller.check().await {
        Ok(check) => check,
        Err(error) => {
            println!("{}: FAILED ({}): {error}", config.name, error.kind.as_str());
            return Ok(ExitCode::FAILURE);
        }
    };
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    println!(
        "{}: connected to {}:{} ({}), signed in as {}",
        config.name,
        config.host,
        check.peer.port(),
        if check.tls { "TLS" } else { "no TLS" },
        config.user
    );
    println!(
        "server: IDLE {} (new mail {}), MOVE {}",
        yes_no(check.idle),
        if check.idle && config.idle {
            "at once".to_string()
        } else {
            format!("every {} s", config.poll_seconds)
        },
        yes_no(check.moves)
    );
    println!(
        "folder {:?}: {} messages, {} to pull",
        check.folder, check.messages, check.to_pull
    );
    match config.after {
        AfterPull::Move => {
            for ((folder, exists), what) in
                check.archive_folders.iter().zip(["reports", "other mail"])
            {
                println!(
                    "after pulling: would move {what} to {folder:?} ({})",
                    if *exists {
                        "exists"
                    } else {
                        "would be created"
                    }
                );
            }
        }
        AfterPull::Seen => println!("after pulling: would mark each message seen and leave it"),
        AfterPull::Delete => println!("after pulling: would delete each message from the server"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull_once(config: &Config, puller: Puller) -> anyhow::Result<ExitCode> {
    let (events, mut progress) = tokio::sync::mpsc::channel(16);
    let printer = tokio::spawn(async move {
        while let Some(event) = progress.recv().await {
            if let PullEvent::Handled { remaining, .. } = event {
                if remaining > 0 {
                    eprintln!("{remaining} messages left");
                }
            }
        }
    });
    let name = puller.config().name.clone();
    let store = puller_store(&puller);
    let result = puller.with_events(events).pull_once().await;
    let _ = printer.await;
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            println!("{name}: FAILED ({}): {error}", error.kind.as_str());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "{name}: {} messages found, {} stored, {} already stored, {} left on the server ({} not reports)",
        summary.found, summary.new, summary.duplicate, summary.skipped, summary.not_reports
    );
    if config.worker.enabled && summary.new > 0 {
        let worker = crate::worker::Worker::new(
            store,
            config.decode.clone(),
            format!("mailbox:{}", std::process::id()),
            config.worker.clone(),
        );
        let processed = worker.run_until_idle().await?;
        println!("processed {} messages", processed.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn puller_store(puller: &Puller) -> crate::store::Store {
    puller.inbox().store().clone()
}
