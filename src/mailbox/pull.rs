//! One pass over a mailbox's folder: every message past the last UID
//! handled is fetched (in batches), committed to dmarcd's inbox, and only
//! then moved, marked or deleted on the server; the UID reached is stored
//! after that. A crash anywhere in between leaves the message on the
//! server to be fetched again, and the inbox recognises its bytes
//! (SHA-256): a duplicate is skipped, a report is never lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use tokio::sync::mpsc;

use super::config::{AfterPull, MailboxConfig};
use super::connect::{timed, Connected, Session};
use super::error::{MailboxError, MailboxErrorKind};
use crate::decode::Limits;
use crate::inbox::{Envelope, Inbox, Intake};
use crate::store::MailboxProgress;

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Messages past the last UID when the pass began.
    pub found: u64,
    pub new: u64,
    pub duplicate: u64,
    /// Left on the server: over `max_message_bytes`, or gone before fetched.
    pub skipped: u64,
    /// Messages sent to the non-report folder (with `after = "move"`).
    pub not_reports: u64,
}

/// Progress of a pass, for whoever watches (the CLI prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// These UIDs are committed to the inbox; nothing is done on the
    /// server yet.
    Committed { uids: Vec<u32> },
    /// Every message up to `last_uid` is handled; `remaining` are left.
    Handled { last_uid: u32, remaining: u64 },
}

/// Pulls one mailbox. `owner` names this process in the mailbox's lease.
#[derive(Clone)]
pub struct Puller {
    pub(super) config: Arc<MailboxConfig>,
    pub(super) inbox: Inbox,
    pub(super) owner: String,
    limits: Arc<Limits>,
    events: Option<mpsc::Sender<PullEvent>>,
}

/// Server folder names, with `/` in the configured names turned into the
/// server's own hierarchy separator.
pub(super) struct Folders {
    pub watched: String,
    pub archive: String,
    pub non_reports: String,
}

impl Puller {
    pub fn new(
        config: Arc<MailboxConfig>,
        inbox: Inbox,
        owner: impl Into<String>,
        limits: Limits,
    ) -> Self {
        Puller {
            config,
            inbox,
            owner: owner.into(),
            limits: Arc::new(limits),
            events: None,
        }
    }

    /// Sends progress to `events` (a full channel holds the pass back).
    pub fn with_events(mut self, events: mpsc::Sender<PullEvent>) -> Self {
        self.events = Some(events);
        self
    }

    pub fn config(&self) -> &MailboxConfig {
        &self.config
    }

    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Finds the server's separator and (with `create`) makes the archive
    /// folders exist when `after = "move"`.
    pub(super) async fn folders(
        &self,
        session: &mut Session,
        create: bool,
    ) -> Result<Folders, MailboxError> {
        let config = &self.config;
        let separator = timed(config, "listing folders", async {
            let names: Vec<_> = session
                // LIST "" "": the hierarchy separator (RFC 3501 section 6.3.8).
                .list(None, None)
                .await
                .map_err(|error| MailboxError::imap("listing folders", error))?
                .try_collect()
                .await
                .map_err(|error| MailboxError::imap("listing folders", error))?;
            Ok(names
                .first()
                .and_then(|name| name.delimiter().map(str::to_string)))
        })
        .await?;
        let server_name = |name: &str| match separator.as_deref() {
            Some(separator) if separator != "/" => name.replace('/', separator),
            _ => name.to_string(),
        };
        let folders = Folders {
            watched: server_name(&config.folder),
            archive: server_name(&config.archive_folder),
            non_reports: server_name(&config.non_report_folder),
        };
        if config.after == AfterPull::Move && create {
            for folder in [&folders.archive, &folders.non_reports] {
                self.ensure_folder(session, folder).await?;
            }
        }
        Ok(folders)
    }

    /// Whether `folder` exists on the server.
    pub(super) async fn folder_exists(
        &self,
        session: &mut Session,
        folder: &str,
    ) -> Result<bool, MailboxError> {
        let doing = format!("looking for the folder {folder:?}");
        timed(&self.config, &doing, async {
            let found: Vec<_> = session
                .list(None, Some(&quoted(folder)))
                .await
                .map_err(|error| MailboxError::imap(&doing, error))?
                .try_collect()
                .await
                .map_err(|error| MailboxError::imap(&doing, error))?;
            Ok(!found.is_empty())
        })
        .await
    }

    async fn ensure_folder(&self, session: &mut Session, folder: &str) -> Result<(), MailboxError> {
        let exists = self.folder_exists(session, folder).await?;
        timed(&self.config, "creating a folder", async {
            if !exists {
                tracing::info!(mailbox = %self.config.name, folder, "creating the archive folder");
                session.create(folder).await.map_err(|error| {
                    let mut error =
                        MailboxError::imap(&format!("creating the folder {folder:?}"), error);
                    if error.kind == MailboxErrorKind::Protocol {
                        error.kind = MailboxErrorKind::Folder;
                    }
                    error
                })?;
            }
            Ok(())
        })
        .await
    }

    /// One pass over the watched folder (see the module comment).
    pub(super) async fn pass(
        &self,
        connected: &mut Connected,
        folders: &Folders,
    ) -> Result<PassSummary, MailboxError> {
        let config = &self.config;
        let store = self.inbox.store();
        let selecting = format!("selecting the folder {:?}", folders.watched);
        let selected = timed(config, &selecting, async {
            connected
                .session
                .select(&folders.watched)
                .await
                .map_err(|error| {
                    let mut error = MailboxError::imap(&selecting, error);
                    if error.kind == MailboxErrorKind::Folder {
                        error.message = format!(
                            "the folder {:?} does not exist on the server (folder = {:?})",
                            folders.watched, config.folder
                        );
                    }
                    error
                })
        })
        .await?;
        let uidvalidity = selected.uid_validity.ok_or_else(|| {
            MailboxError::new(
                MailboxErrorKind::Protocol,
                format!("the server gave no UIDVALIDITY for {:?}", folders.watched),
            )
        })?;
        let state = store
            .mailbox_state(&config.name)
            .await
            .map_err(MailboxError::store)?;
        let mut last_uid = match &state {
            Some(state) if state.uidvalidity == Some(i64::from(uidvalidity)) => {
                u32::try_from(state.last_uid).unwrap_or(0)
            }
            Some(state) if state.uidvalidity.is_some() => {
                // RFC 3501 section 2.3.1.1: the old UIDs mean nothing now.
                tracing::warn!(
                    mailbox = %config.name,
                    old = state.uidvalidity,
                    new = uidvalidity,
                    "the folder's UIDVALIDITY changed: looking at every message again \
                     (those already in the inbox are recognised and skipped)"
                );
                0
            }
            _ => 0,
        };
        let mut summary = PassSummary::default();
        if selected.exists == 0 {
            self.record(uidvalidity, last_uid, &PassSummary::default(), 0)
                .await?;
            return Ok(summary);
        }
        let searching = "searching for new messages";
        let mut uids: Vec<u32> = timed(config, searching, async {
            connected
                .session
                .uid_search(format!("UID {}:*", u64::from(last_uid) + 1))
                .await
                .map_err(|error| MailboxError::imap(searching, error))
        })
        .await?
        .into_iter()
        // `n:*` always matches the last message, even below n.
        .filter(|uid| *uid > last_uid)
        .collect();
        uids.sort_unstable();
        summary.found = uids.len() as u64;
        if !uids.is_empty() {
            tracing::info!(mailbox = %config.name, messages = uids.len(), "new messages to pull");
        }
        let mut remaining = uids.len() as u64;
        for batch in uids.chunks(config.batch_size as usize) {
            let done = self.batch(connected, folders, batch).await?;
            summary.new += done.new;
            summary.duplicate += done.duplicate;
            summary.skipped += done.skipped;
            summary.not_reports += done.not_reports;
            remaining -= batch.len() as u64;
            last_uid = batch.last().copied().unwrap_or(last_uid);
            self.record(uidvalidity, last_uid, &done, remaining).await?;
            self.count(&done);
            if summary.found > u64::from(config.batch_size) {
                tracing::info!(
                    mailbox = %config.name,
                    done = summary.found - remaining,
                    of = summary.found,
                    "pulling"
                );
            }
            self.emit(PullEvent::Handled {
                last_uid,
                remaining,
            })
            .await;
        }
        Ok(summary)
    }

    /// Stores the UID reached (and renews the lease); a lost lease ends the pass.
    async fn record(
        &self,
        uidvalidity: u32,
        last_uid: u32,
        done: &PassSummary,
        remaining: u64,
    ) -> Result<(), MailboxError> {
        let progress = MailboxProgress {
            uidvalidity,
            last_uid,
            new: done.new,
            duplicate: done.duplicate,
            skipped: done.skipped,
            backlog: remaining,
        };
        let held = self
            .inbox
            .store()
            .mailbox_progress(
                &self.config.name,
                &self.owner,
                &progress,
                self.config.lease(),
            )
            .await
            .map_err(MailboxError::store)?;
        if held {
            Ok(())
        } else {
            Err(MailboxError::new(
                MailboxErrorKind::Leased,
                "another dmarcd node took over this mailbox (its lease ran out here)",
            ))
        }
    }

    fn count(&self, done: &PassSummary) {
        let name = self.config.name.as_str();
        for (outcome, by) in [
            ("new", done.new),
            ("duplicate", done.duplicate),
            ("skipped", done.skipped),
        ] {
            crate::metrics::count(
                "dmarcd_mailbox_messages_total",
                &[("mailbox", name), ("outcome", outcome)],
                by,
            );
        }
    }

    async fn emit(&self, event: PullEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event).await;
        }
    }

    /// One batch: sizes, bodies (in groups of at most `batch_bytes`),
    /// commit, then what `after` says on the server.
    async fn batch(
        &self,
        connected: &mut Connected,
        folders: &Folders,
        uids: &[u32],
    ) -> Result<PassSummary, MailboxError> {
        let config = &self.config;
        let mut done = PassSummary::default();
        let sizes = self.sizes(&mut connected.session, uids).await?;
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut group_bytes = 0u64;
        for uid in uids {
            let Some(size) = sizes.get(uid).copied() else {
                // Expunged by someone else since the search.
                done.skipped += 1;
                continue;
            };
            if size > config.max_message_bytes {
                tracing::warn!(
                    mailbox = %config.name,
                    uid,
                    size,
                    limit = config.max_message_bytes,
                    "a message is larger than max_message_bytes: left on the server, untouched"
                );
                done.skipped += 1;
                continue;
            }
            match groups.last_mut() {
                Some(group) if group_bytes + size <= config.batch_bytes => {
                    group.push(*uid);
                    group_bytes += size;
                }
                _ => {
                    groups.push(vec![*uid]);
                    group_bytes = size;
                }
            }
        }
        for group in groups {
            let stored = self.fetch_and_commit(connected, &group).await?;
            done.new += stored.new;
            done.duplicate += stored.duplicate;
            done.skipped += stored.skipped;
            self.emit(PullEvent::Committed {
                uids: stored
                    .reports
                    .iter()
                    .chain(&stored.not_reports)
                    .copied()
                    .collect(),
            })
            .await;
            done.not_reports += stored.not_reports.len() as u64;
            self.dispose(connected, folders, &stored.reports, &stored.not_reports)
                .await?;
        }
        Ok(done)
    }

    async fn sizes(
        &self,
        session: &mut Session,
        uids: &[u32],
    ) -> Result<BTreeMap<u32, u64>, MailboxError> {
        let doing = "reading message sizes";
        timed(&self.config, doing, async {
            let fetched: Vec<_> = session
                .uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
                .await
                .map_err(|error| MailboxError::imap(doing, error))?
                .try_collect()
                .await
                .map_err(|error| MailboxError::imap(doing, error))?;
            Ok(fetched
                .iter()
                .filter_map(|fetch| Some((fetch.uid?, u64::from(fetch.size?))))
                .collect())
        })
        .await
    }

    /// Fetches a group's bodies (without setting \Seen) and commits them
    /// to the inbox in one transaction.
    async fn fetch_and_commit(
        &self,
        connected: &mut Connected,
        uids: &[u32],
    ) -> Result<Committed, MailboxError> {
        let config = &self.config;
        let doing = "fetching messages";
        let fetched: Vec<_> = timed(config, doing, async {
            connected
                .session
                .uid_fetch(uid_set(uids), "(UID BODY.PEEK[])")
                .await
                .map_err(|error| MailboxError::imap(doing, error))?
                .try_collect()
                .await
                .map_err(|error| MailboxError::imap(doing, error))
        })
        .await?;
        let bodies: Vec<(u32, &[u8])> = fetched
            .iter()
            .filter_map(|fetch| Some((fetch.uid?, fetch.body()?)))
            .filter(|(uid, _)| uids.contains(uid))
            .collect();
        let envelopes: Vec<Envelope> = bodies
            .iter()
            .map(|(uid, _)| Envelope {
                intake: Intake::Imap,
                // RFC 5092's form of an IMAP URL naming the message.
                source_name: Some(format!(
                    "imap://{}@{}/{};UID={uid}",
                    config.user, config.host, config.folder
                )),
                peer_ip: Some(connected.peer.ip()),
                helo: None,
                mail_from: None,
                rcpt_to: Vec::new(),
                tls: connected.tls,
            })
            .collect();
        let messages: Vec<(&[u8], &Envelope)> = bodies
            .iter()
            .zip(&envelopes)
            .map(|((_, raw), envelope)| (*raw, envelope))
            .collect();
        let accepted = self
            .inbox
            .accept_many(&messages)
            .await
            .map_err(MailboxError::store)?;
        let mut committed = Committed {
            skipped: (uids.len() - bodies.len()) as u64,
            ..Committed::default()
        };
        for ((uid, raw), accepted) in bodies.iter().zip(accepted) {
            if accepted.is_new {
                committed.new += 1;
            } else {
                committed.duplicate += 1;
            }
            let sorted_apart =
                config.after == AfterPull::Move && !super::sort::holds_report(raw, &self.limits);
            if sorted_apart {
                committed.not_reports.push(*uid);
            } else {
                committed.reports.push(*uid);
            }
        }
        Ok(committed)
    }

    /// Moves, marks or deletes committed messages on the server.
    async fn dispose(
        &self,
        connected: &mut Connected,
        folders: &Folders,
        reports: &[u32],
        not_reports: &[u32],
    ) -> Result<(), MailboxError> {
        let config = &self.config;
        match config.after {
            AfterPull::Move => {
                for (uids, folder) in [
                    (reports, &folders.archive),
                    (not_reports, &folders.non_reports),
                ] {
                    if uids.is_empty() {
                        continue;
                    }
                    let doing = format!("moving messages to {folder:?}");
                    timed(config, &doing, async {
                        if connected.moves {
                            connected
                                .session
                                .uid_mv(uid_set(uids), folder)
                                .await
                                .map_err(|error| MailboxError::imap(&doing, error))
                        } else {
                            connected
                                .session
                                .uid_copy(uid_set(uids), folder)
                                .await
                                .map_err(|error| MailboxError::imap(&doing, error))?;
                            delete(connected, uids, &doing).await
                        }
                    })
                    .await?;
                }
                Ok(())
            }
            AfterPull::Seen => {
                let uids: Vec<u32> = reports.iter().chain(not_reports).copied().collect();
                let doing = "marking messages seen";
                timed(config, doing, async {
                    store_flags(
                        &mut connected.session,
                        &uids,
                        "+FLAGS.SILENT (\\Seen)",
                        doing,
                    )
                    .await
                })
                .await
            }
            AfterPull::Delete => {
                let uids: Vec<u32> = reports.iter().chain(not_reports).copied().collect();
                let doing = "deleting messages";
                timed(config, doing, delete(connected, &uids, doing)).await
            }
        }
    }
}

#[derive(Debug, Default)]
struct Committed {
    new: u64,
    duplicate: u64,
    skipped: u64,
    reports: Vec<u32>,
    not_reports: Vec<u32>,
}

async fn store_flags(
    session: &mut Session,
    uids: &[u32],
    change: &str,
    doing: &str,
) -> Result<(), MailboxError> {
    if uids.is_empty() {
        return Ok(());
    }
    session
        .uid_store(uid_set(uids), change)
        .await
        .map_err(|error| MailboxError::imap(doing, error))?
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(|error| MailboxError::imap(doing, error))
}

/// Flags messages \Deleted and expunges them: only them with UIDPLUS (RFC
/// 4315); without it, EXPUNGE also removes whatever else was flagged.
async fn delete(connected: &mut Connected, uids: &[u32], doing: &str) -> Result<(), MailboxError> {
    if uids.is_empty() {
        return Ok(());
    }
    store_flags(
        &mut connected.session,
        uids,
        "+FLAGS.SILENT (\\Deleted)",
        doing,
    )
    .await?;
    if connected.uidplus {
        connected
            .session
            .uid_expunge(uid_set(uids))
            .await
            .map_err(|error| MailboxError::imap(doing, error))?
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|error| MailboxError::imap(doing, error))
    } else {
        connected
            .session
            .expunge()
            .await
            .map_err(|error| MailboxError::imap(doing, error))?
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|error| MailboxError::imap(doing, error))
    }
}

/// A quoted string (async-imap passes a LIST pattern as written).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A UID set in IMAP's compact form: `1:3,7,9:10` (sorted input).
pub fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = uids.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().unwrap_or(last);
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}:{last}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn list_patterns_are_quoted() {
        assert_eq!(quoted("Archive.dmarcd"), "\"Archive.dmarcd\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
