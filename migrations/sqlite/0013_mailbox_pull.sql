-- Mailbox pull over IMAP (src/mailbox/, src/store/mailboxes.rs).
--
-- A message pulled from a mailbox enters the inbox like any other, as
-- intake 'imap'. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt (SQLite's own 12-step procedure); the runner turns
-- foreign key enforcement off around it, or dropping the old table would
-- cascade to inbox_raw and unlink every report from its message.
CREATE TABLE inbox_messages_rebuilt (
    id              INTEGER PRIMARY KEY,
    sha256          BLOB NOT NULL UNIQUE,
    size            INTEGER NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    intake          TEXT NOT NULL CHECK (intake IN ('smtp', 'http', 'import', 'imap')),
    source_name     TEXT,
    peer_ip         TEXT,
    helo            TEXT,
    mail_from       TEXT,
    rcpt_to         TEXT NOT NULL DEFAULT '[]',
    tls             BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'failed', 'duplicate', 'ignored')),
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     TEXT,
    claimed_by      TEXT,
    processed_at    TEXT,
    raw_pruned_at   TEXT
);
INSERT INTO inbox_messages_rebuilt
    (id, sha256, size, received_at, intake, source_name, peer_ip, helo, mail_from,
     rcpt_to, tls, status, error, attempts, lease_until, claimed_by, processed_at, raw_pruned_at)
SELECT id, sha256, size, received_at, intake, source_name, peer_ip, helo, mail_from,
       rcpt_to, tls, status, error, attempts, lease_until, claimed_by, processed_at, raw_pruned_at
  FROM inbox_messages;
DROP TABLE inbox_messages;
ALTER TABLE inbox_messages_rebuilt RENAME TO inbox_messages;
CREATE INDEX inbox_messages_queue ON inbox_messages (id) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_messages_status ON inbox_messages (status, received_at);
CREATE INDEX inbox_messages_prunable ON inbox_messages (processed_at)
    WHERE raw_pruned_at IS NULL AND status IN ('done', 'duplicate', 'ignored');

-- One row per configured [[mailbox]] (by its name): where the pull stands
-- (the folder's UIDVALIDITY and the last UID handled, so a restart resumes
-- and a new UIDVALIDITY rescans), who holds it (a lease, so that two nodes
-- never pull one mailbox), and what the dashboard shows.
CREATE TABLE mailbox_state (
    name                 TEXT PRIMARY KEY,
    uidvalidity          INTEGER,
    last_uid             INTEGER NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_until          TEXT,
    last_attempt_at      TEXT,
    last_success_at      TEXT,
    last_error           TEXT,
    last_error_kind      TEXT,
    last_error_at        TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- Messages stored new, already in the inbox, and left on the server
    -- (over the size limit, or unreadable), since the first pull.
    messages_new         INTEGER NOT NULL DEFAULT 0,
    messages_duplicate   INTEGER NOT NULL DEFAULT 0,
    messages_skipped     INTEGER NOT NULL DEFAULT 0,
    -- Messages found but not yet handled by the pass under way.
    backlog              INTEGER NOT NULL DEFAULT 0,
    -- 'idle' or 'poll': how the puller waits for new mail.
    waiting              TEXT
);
