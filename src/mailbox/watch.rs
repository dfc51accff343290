//! A mailbox watched by `dmarcd serve`: hold the lease, pass over the
//! folder, then wait for new mail with IDLE (or poll), back off on errors;
//! and the single pass of `dmarcd mailbox pull NAME --once`.

use std::time::Duration;

use tokio::sync::watch;

use super::auth::CredentialSource;
use super::connect::{connect, timed, Connected};
use super::error::{MailboxError, MailboxErrorKind};
use super::pull::{Folders, PassSummary, Puller};

/// The first pause after an error; doubled for each error in a row up to
/// the mailbox's `max_backoff_seconds`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// A live connection with its folders found.
struct Link {
    connected: Connected,
    folders: Folders,
}

impl Puller {
    /// Connects, signs in and finds (or creates) the folders.
    async fn link(&self, credentials: &CredentialSource) -> Result<Link, MailboxError> {
        let secret = credentials.credentials().await?;
        let mut connected = match connect(&self.config, &secret).await {
            Err(error) if error.kind == MailboxErrorKind::Auth => {
                // A cached token the server no longer takes: fetch anew next time.
                credentials.forget_token().await;
                return Err(error);
            }
            other => other?,
        };
        let folders = self.folders(&mut connected.session, true).await?;
        Ok(Link { connected, folders })
    }

    /// `dmarcd mailbox pull NAME --once`: one pass under the lease (an
    /// error if a running node holds it), recorded as `serve` records it.
    pub async fn pull_once(&self) -> Result<PassSummary, MailboxError> {
        let store = self.inbox.store();
        let name = &self.config.name;
        let held = store
            .take_mailbox_lease(name, &self.owner, self.config.lease())
            .await
            .map_err(MailboxError::store)?;
        if !held {
            return Err(MailboxError::new(
                MailboxErrorKind::Leased,
                format!("another dmarcd process is pulling {name:?} now (it holds the lease)"),
            ));
        }
        let credentials = CredentialSource::new(self.config.clone());
        let result = async {
            let mut link = self.link(&credentials).await?;
            let summary = self.pass(&mut link.connected, &link.folders).await?;
            let _ = timed(&self.config, "signing out", async {
                link.connected
                    .session
                    .logout()
                    .await
                    .map_err(|error| MailboxError::imap("signing out", error))
            })
            .await;
            Ok(summary)
        }
        .await;
        self.record_outcome(result.as_ref().map(|_| None)).await;
        let _ = store.release_mailbox_lease(name, &self.owner).await;
        result
    }

    /// Keeps the mailbox pulled until `stopped` turns true.
    pub async fn run(&self, mut stopped: watch::Receiver<bool>) {
        let name = self.config.name.clone();
        let store = self.inbox.store().clone();
        let credentials = CredentialSource::new(self.config.clone());
        let renew_every = self.config.lease() / 3;
        let mut link: Option<Link> = None;
        let mut failures = 0u32;
        let mut standby_logged = false;
        while !*stopped.borrow() {
            match store
                .take_mailbox_lease(&name, &self.owner, self.config.lease())
                .await
            {
                Ok(true) => standby_logged = false,
                Ok(false) => {
                    if !standby_logged {
                        tracing::info!(mailbox = %name, "another node holds this mailbox; standing by");
                        standby_logged = true;
                    }
                    link = None;
                    pause(&mut stopped, renew_every).await;
                    continue;
                }
                Err(error) => {
                    failures += 1;
                    self.failed(&MailboxError::store(error), failures).await;
                    pause(&mut stopped, self.backoff(failures)).await;
                    continue;
                }
            }
            let result = async {
                if link.is_none() {
                    link = Some(self.link(&credentials).await?);
                    tracing::info!(mailbox = %name, "signed in");
                }
                let current = link.as_mut().expect("linked above");
                self.pass(&mut current.connected, &current.folders).await
            }
            .await;
            let summary = match result {
                Ok(summary) => summary,
                Err(error) => {
                    failures += 1;
                    link = None;
                    self.failed(&error, failures).await;
                    pause(&mut stopped, self.backoff(failures)).await;
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!(mailbox = %name, after = failures, "mailbox pull works again");
            }
            failures = 0;
            if summary.found > 0 {
                tracing::info!(
                    mailbox = %name,
                    new = summary.new,
                    duplicate = summary.duplicate,
                    skipped = summary.skipped,
                    "pulled"
                );
            }
            let Some(current) = link.take() else { continue };
            let idles = current.connected.idle && self.config.idle;
            self.record_outcome(Ok(Some(if idles { "idle" } else { "poll" })))
                .await;
            link = if idles {
                self.idle(current, &mut stopped, renew_every).await
            } else {
                self.poll_wait(&mut stopped, renew_every).await;
                Some(current)
            };
        }
        if let Some(mut current) = link {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), current.connected.session.logout())
                    .await;
        }
        let _ = store.release_mailbox_lease(&name, &self.owner).await;
    }

    /// Waits for the server to announce a change (or for `renew_every`, to
    /// renew the lease and look again); None when the connection broke.
    async fn idle(
        &self,
        link: Link,
        stopped: &mut watch::Receiver<bool>,
        renew_every: Duration,
    ) -> Option<Link> {
        let Link { connected, folders } = link;
        let Connected {
            session,
            peer,
            tls,
            idle,
            moves,
            uidplus,
        } = connected;
        let wait = renew_every.min(self.config.poll_interval());
        let mut handle = session.idle();
        if let Err(error) = timed(&self.config, "starting IDLE", async {
            handle
                .init()
                .await
                .map_err(|error| MailboxError::imap("starting IDLE", error))
        })
        .await
        {
            tracing::info!(mailbox = %self.config.name, %error, "IDLE failed; connecting again");
            return None;
        }
        {
            let (announced, _interrupt) = handle.wait_with_timeout(wait);
            tokio::select! {
                result = announced => {
                    if let Err(error) = result {
                        tracing::info!(mailbox = %self.config.name, %error, "the IDLE connection broke; connecting again");
                        return None;
                    }
                }
                _ = stopped.changed() => {}
            }
        }
        match timed(&self.config, "ending IDLE", async {
            handle
                .done()
                .await
                .map_err(|error| MailboxError::imap("ending IDLE", error))
        })
        .await
        {
            Ok(session) => Some(Link {
                connected: Connected {
                    session,
                    peer,
                    tls,
                    idle,
                    moves,
                    uidplus,
                },
                folders,
            }),
            Err(error) => {
                tracing::info!(mailbox = %self.config.name, %error, "ending IDLE failed; connecting again");
                None
            }
        }
    }

    /// Sleeps the poll interval, renewing the lease on the way.
    async fn poll_wait(&self, stopped: &mut watch::Receiver<bool>, renew_every: Duration) {
        let mut left = self.config.poll_interval();
        while !left.is_zero() && !*stopped.borrow() {
            let step = left.min(renew_every);
            pause(stopped, step).await;
            left = left.saturating_sub(step);
            let _ = self
                .inbox
                .store()
                .take_mailbox_lease(&self.config.name, &self.owner, self.config.lease())
                .await;
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let most = Duration::from_secs(self.config.max_backoff_seconds).max(FIRST_BACKOFF);
        FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)))
            .min(most)
    }

    async fn failed(&self, error: &MailboxError, failures: u32) {
        tracing::warn!(
            mailbox = %self.config.name,
            kind = error.kind.as_str(),
            failures,
            retry_in = ?self.backoff(failures),
            "mailbox pull failed: {error}"
        );
        self.record_outcome(Err(error)).await;
    }

    /// Stores the outcome of a pass for the dashboard and metrics.
    async fn record_outcome(&self, outcome: Result<Option<&str>, &MailboxError>) {
        let store = self.inbox.store();
        let name = &self.config.name;
        let written = match outcome {
            Ok(waiting) => store.mailbox_succeeded(name, waiting).await.map(|_| ()),
            Err(error) => {
                crate::metrics::count(
                    "dmarcd_mailbox_errors_total",
                    &[("mailbox", name), ("kind", error.kind.as_str())],
                    1,
                );
                store
                    .mailbox_failed(name, error.kind.as_str(), &error.message)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(error) = written {
            tracing::warn!(mailbox = %name, %error, "cannot record the mailbox's state");
        }
    }
}

/// Sleeps `duration`, or less if `stopped` changes.
async fn pause(stopped: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        changed = stopped.changed() => {
            // No sender left: nobody can stop us, so just sleep.
            if changed.is_err() {
                tokio::time::sleep(duration).await;
            }
        }
    }
}
