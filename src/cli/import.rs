//! `dmarcd import` and `dmarcd reprocess`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use std::sync::Arc;

use crate::config::Config;
use crate::import::{run_import, ImportEvent, ImportSource};
use crate::inbox::MessageStatus;
use crate::store::Requeue;
use crate::worker::Processed;

pub(super) async fn import(config: &Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let files = collect_files(paths)?;
    let file_count = files.len();
    let progress = progress_bar(file_count as u64, "importing");

    // Files are read on a blocking thread and handed over through a small
    // queue: the database stores and processes while the disk is read.
    let (sender, receiver) = tokio::sync::mpsc::channel::<ImportSource>(16);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for path in files {
            for found in read_messages(&path)? {
                if sender.blocking_send(found).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    let bar = progress.clone();
    let on_event: Arc<dyn Fn(ImportEvent) + Send + Sync> = Arc::new(move |event| match event {
        ImportEvent::Stored { name } => {
            if bar.is_hidden() {
                println!("stored {name}");
            } else {
                bar.set_message(name);
            }
        }
        ImportEvent::Processed { count } => bar.inc(count as u64),
    });
    let worker_name = format!("import:{}", std::process::id());
    let outcome = run_import(
        store.clone(),
        config.decode.clone(),
        config.worker.clone(),
        &worker_name,
        receiver,
        on_event,
    )
    .await;
    reader.await??;
    let outcome = outcome?;
    progress.finish_and_clear();

    let summary = Summary::of(&outcome.processed);
    println!(
        "imported {file_count} files: {} new messages, {} already in the inbox",
        outcome.new_ids.len(),
        outcome.already.len()
    );
    for (name, id) in &outcome.already {
        let status = store
            .message(*id)
            .await?
            .map_or("unknown", |info| info.status.as_str());
        println!("  already stored: {name} (message {id}, {status})");
    }
    summary.print();
    print_rollup_lag(&store).await?;
    Ok(summary.exit_code())
}

/// The dashboard's totals count stored reports shortly after they are
/// stored (store::applier), in `dmarcd serve`: say so when some wait.
async fn print_rollup_lag(store: &crate::store::Store) -> anyhow::Result<()> {
    let lag = store.rollup_lag().await?;
    if lag.reports > 0 {
        println!(
            "dashboard totals: {} reports ({} records) wait to be counted; \
             `dmarcd serve` counts them in the background",
            lag.reports, lag.records
        );
    }
    Ok(())
}

pub(super) async fn reprocess(config: &Config, selection: &Requeue) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let queued = store.requeue(selection).await?;
    let change = match selection {
        Requeue::Ids(ids) => crate::audit::Change::of(
            crate::audit::Action::MessageReprocess,
            ids.iter()
                .map(|id| format!("message {id}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Requeue::Failed => crate::audit::Change::of(
            crate::audit::Action::MessagesReprocessFailed,
            "failed messages",
        ),
        Requeue::All => {
            crate::audit::Change::of(crate::audit::Action::MessagesReprocessAll, "every message")
        }
    };
    let change = change.to(&serde_json::json!({ "requeued": queued }));
    crate::audit::record(&store, &crate::audit::Actor::cli(), change).await?;
    println!("queued {queued} messages for reprocessing");
    let progress = progress_bar(queued, "processing");
    let (sender, receiver) = tokio::sync::mpsc::channel::<ImportSource>(1);
    drop(sender);
    let bar = progress.clone();
    let on_event: Arc<dyn Fn(ImportEvent) + Send + Sync> = Arc::new(move |event| {
        if let ImportEvent::Processed { count } = event {
            bar.inc(count as u64);
        }
    });
    let worker_name = format!("reprocess:{}", std::process::id());
    let outcome = run_import(
        store.clone(),
        config.decode.clone(),
        config.worker.clone(),
        &worker_name,
        receiver,
        on_event,
    )
    .await?;
    progress.finish_and_clear();
    let summary = Summary::of(&outcome.processed);
    summary.print();
    print_rollup_lag(&store).await?;
    Ok(summary.exit_code())
}

fn progress_bar(length: u64, label: &'static str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label);
    bar
}

/// Totals over processed messages.
#[derive(Default)]
struct Summary {
    stored: BTreeMap<&'static str, u64>,
    records: u64,
    duplicate_reports: u64,
    duplicate_messages: u64,
    ignored: Vec<(String, String)>,
    failed: Vec<(String, String)>,
}

impl Summary {
    fn of(processed: &[Processed]) -> Self {
        let mut summary = Summary::default();
        for message in processed {
            for (kind, count) in &message.summary.stored {
                *summary.stored.entry(kind).or_default() += count;
            }
            summary.records += message.summary.records;
            summary.duplicate_reports += message.summary.duplicates;
            let name = message
                .source_name
                .clone()
                .unwrap_or_else(|| format!("message {}", message.id));
            let reason = message.reason.clone().unwrap_or_default();
            match message.summary.status {
                Some(MessageStatus::Duplicate) => summary.duplicate_messages += 1,
                Some(MessageStatus::Ignored) => summary.ignored.push((name, reason)),
                Some(MessageStatus::Failed) => summary.failed.push((name, reason)),
                _ => {}
            }
        }
        summary
    }

    fn print(&self) {
        let count = |kind| self.stored.get(kind).copied().unwrap_or(0);
        println!(
            "stored: {} aggregate reports ({} records), {} TLS reports, {} failure reports",
            count("aggregate"),
            self.records,
            count("tlsrpt"),
            count("failure")
        );
        println!(
            "duplicates: {} reports already stored ({} messages held nothing new)",
            self.duplicate_reports, self.duplicate_messages
        );
        println!("ignored (not a report): {}", self.ignored.len());
        for (name, reason) in &self.ignored {
            println!("  {}", describe(name, reason));
        }
        println!("failed: {}", self.failed.len());
        for (name, reason) in &self.failed {
            println!("  {}", describe(name, reason));
        }
    }

    fn exit_code(&self) -> ExitCode {
        if self.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// A reason already starts with the input's name; don't say it twice.
fn describe(name: &str, reason: &str) -> String {
    if reason.starts_with(name) {
        reason.to_string()
    } else {
        format!("{name}: {reason}")
    }
}

/// Every file under the given paths, sorted, skipping Maildir `tmp/`
/// folders (messages still being delivered) and hidden files.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        if metadata.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let is_maildir = dir.join("cur").is_dir() && dir.join("new").is_dir();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| anyhow::anyhow!("{}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || (is_maildir && name == "tmp") {
            continue;
        }
        if entry.is_dir() {
            walk(&entry, files)?;
        } else {
            files.push(entry);
        }
    }
    Ok(())
}

/// The messages in a file: one, or several for an mbox.
fn read_messages(path: &Path) -> anyhow::Result<Vec<ImportSource>> {
    let raw =
        std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let name = path.display().to_string();
    if !raw.starts_with(b"From ") {
        return Ok(vec![ImportSource { name, raw }]);
    }
    Ok(split_mbox(&raw)
        .into_iter()
        .enumerate()
        .map(|(index, raw)| ImportSource {
            name: format!("{name} #{}", index + 1),
            raw,
        })
        .collect())
}

/// Splits an mbox at its `From ` separator lines and undoes the `>From `
/// quoting (mboxrd) of lines inside messages.
pub(crate) fn split_mbox(mbox: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in mbox.split_inclusive(|&byte| byte == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(message) = current.take() {
                messages.push(message);
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let quoted = line.iter().take_while(|&&byte| byte == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            message.extend_from_slice(&line[1..]);
        } else {
            message.extend_from_slice(line);
        }
    }
    messages.extend(current);
    messages
}

#[cfg(test)]
mod tests {
    use super::split_mbox;

    #[test]
    fn splits_an_mbox_and_unquotes_from_lines() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\nbody\nFrom c@d Tue Jan 2 00:00:00 2024\nSubject: two\n\n>>From there\n";
        let messages = split_mbox(mbox);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0], b"Subject: one\n\nFrom here\nbody\n".to_vec());
        assert_eq!(messages[1], b"Subject: two\n\n>From there\n".to_vec());
    }
}
