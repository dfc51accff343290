//! `dmarcd mailbox test NAME`: connect, sign in, look at the folder, and
//! say what a pull would do, changing nothing on the server or in dmarcd.

use std::net::SocketAddr;

use super::auth::CredentialSource;
use super::config::AfterPull;
use super::connect::{connect, timed};
use super::error::MailboxError;
use super::pull::Puller;

/// What the test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCheck {
    pub peer: SocketAddr,
    pub tls: bool,
    pub idle: bool,
    pub moves: bool,
    /// The watched folder as the server names it.
    pub folder: String,
    pub messages: u32,
    /// Messages a pull would fetch (past the last UID stored, or all of
    /// them when the folder's UIDVALIDITY is new).
    pub to_pull: u64,
    /// Archive folders (server names) and whether they exist, with `after = "move"`.
    pub archive_folders: Vec<(String, bool)>,
}

impl Puller {
    pub async fn check(&self) -> Result<MailboxCheck, MailboxError> {
        let credentials = CredentialSource::new(self.config.clone());
        let secret = credentials.credentials().await?;
        let mut connected = connect(&self.config, &secret).await?;
        let folders = self.folders(&mut connected.session, false).await?;
        let mut archive_folders = Vec::new();
        if self.config.after == AfterPull::Move {
            for folder in [&folders.archive, &folders.non_reports] {
                let exists = self.folder_exists(&mut connected.session, folder).await?;
                archive_folders.push((folder.clone(), exists));
            }
        }
        let examining = format!("opening the folder {:?} read-only", folders.watched);
        let mailbox = timed(&self.config, &examining, async {
            connected
                .session
                .examine(&folders.watched)
                .await
                .map_err(|error| MailboxError::imap(&examining, error))
        })
        .await?;
        let state = self
            .inbox
            .store()
            .mailbox_state(&self.config.name)
            .await
            .map_err(MailboxError::store)?;
        let last_uid = match (state, mailbox.uid_validity) {
            (Some(state), Some(validity)) if state.uidvalidity == Some(i64::from(validity)) => {
                u32::try_from(state.last_uid).unwrap_or(0)
            }
            _ => 0,
        };
        let to_pull = if mailbox.exists == 0 {
            0
        } else {
            let searching = "searching for new messages";
            timed(&self.config, searching, async {
                connected
                    .session
                    .uid_search(format!("UID {}:*", u64::from(last_uid) + 1))
                    .await
                    .map_err(|error| MailboxError::imap(searching, error))
            })
            .await?
            .into_iter()
            .filter(|uid| *uid > last_uid)
            .count() as u64
        };
        let _ = timed(&self.config, "signing out", async {
            connected
                .session
                .logout()
                .await
                .map_err(|error| MailboxError::imap("signing out", error))
        })
        .await;
        Ok(MailboxCheck {
            peer: connected.peer,
            tls: connected.tls,
            idle: connected.idle,
            moves: connected.moves,
            folder: folders.watched,
            messages: mailbox.exists,
            to_pull,
            archive_folders,
        })
    }
}
