//! `dmarcd import` and `dmarcd reprocess`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::inbox::Inbox;
use crate::store::{Envelope, MessageStatus, Requeue};
use crate::worker::{Processed, Worker};

/// One message found on disk.
struct Found {
    name: String,
    raw: Vec<u8>,
}

pub(super) async fn import(config: &Config, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let inbox = Inbox::new(store.clone());
    let files = collect_files(paths)?;
    let progress = progress_bar(files.len() as u64, "storing");
    let mut new_ids = Vec::new();
    let mut already = Vec::new();
    for path in &files {
        for found in read_messages(path)? {
            let accepted = inbox
                .accept(&found.raw, &Envelope::import(found.name.clone()))
                .await?;
            if accepted.is_new {
                new_ids.push(accepted.id);
            } else {
                already.push((found.name, accepted.id));
            }
        }
        progress.inc(1);
        if progress.is_hidden() {
            println!("stored {}", path.display());
        }
    }
    progress.finish_and_clear();

    let processed = process_all(config, store.clone(), new_ids.len() as u64).await?;
    let summary = Summary::of(&processed);
    println!(
        "imported {} files: {} new messages, {} already in the inbox",
        files.len(),
        new_ids.len(),
        already.len()
    );
    for (name, id) in &already {
        let status = store
            .message(*id)
            .await?
            .map_or("unknown", |info| info.status.as_str());
        println!("  already stored: {name} (message {id}, {status})");
    }
    summary.print();
    Ok(summary.exit_code())
}

pub(super) async fn reprocess(config: &Config, selection: &Requeue) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config).await?;
    let queued = store.requeue(selection).await?;
    println!("queued {queued} messages for reprocessing");
    let processed = process_all(config, store, queued).await?;
    let summary = Summary::of(&processed);
    summary.print();
    Ok(summary.exit_code())
}

/// Runs the configured number of workers until the queue is empty.
async fn process_all(
    config: &Config,
    store: crate::store::Store,
    expected: u64,
) -> anyhow::Result<Vec<Processed>> {
    let progress = progress_bar(expected, "processing");
    let base = Worker::new(
        store,
        config.decode.clone(),
        format!("import:{}", std::process::id()),
        config.worker.clone(),
    );
    let mut tasks = Vec::new();
    for index in 0..config.worker.concurrency {
        let worker = base.named(format!("import:{}:{index}", std::process::id()));
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut all = Vec::new();
            loop {
                let batch = worker.run_batch().await?;
                if batch.is_empty() {
                    return Ok::<_, crate::store::StoreError>(all);
                }
                progress.inc(batch.len() as u64);
                all.extend(batch);
            }
        }));
    }
    let mut processed = Vec::new();
    for task in tasks {
        processed.extend(task.await??);
    }
    progress.finish_and_clear();
    processed.sort_by_key(|message| message.id);
    Ok(processed)
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
fn read_messages(path: &Path) -> anyhow::Result<Vec<Found>> {
    let raw =
        std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let name = path.display().to_string();
    if !raw.starts_with(b"From ") {
        return Ok(vec![Found { name, raw }]);
    }
    Ok(split_mbox(&raw)
        .into_iter()
        .enumerate()
        .map(|(index, raw)| Found {
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
