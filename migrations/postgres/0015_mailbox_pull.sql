-- Mailbox pull over IMAP (src/mailbox/, src/store/mailboxes.rs).
--
-- A message pulled from a mailbox enters the inbox like any other, as
-- intake 'imap'. NOT VALID: every existing row passed the narrower check,
-- so there is nothing to scan; new rows are checked as before.
ALTER TABLE inbox_messages DROP CONSTRAINT inbox_messages_intake_check;
ALTER TABLE inbox_messages ADD CONSTRAINT inbox_messages_intake_check
    CHECK (intake IN ('smtp', 'http', 'import', 'imap')) NOT VALID;

-- One row per configured [[mailbox]] (by its name): where the pull stands
-- (the folder's UIDVALIDITY and the last UID handled, so a restart resumes
-- and a new UIDVALIDITY rescans), who holds it (a lease, so that two nodes
-- never pull one mailbox), and what the dashboard shows.
CREATE TABLE mailbox_state (
    name                 TEXT PRIMARY KEY,
    uidvalidity          BIGINT,
    last_uid             BIGINT NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_until          TIMESTAMPTZ,
    last_attempt_at      TIMESTAMPTZ,
    last_success_at      TIMESTAMPTZ,
    last_error           TEXT,
    last_error_kind      TEXT,
    last_error_at        TIMESTAMPTZ,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- Messages stored new, already in the inbox, and left on the server
    -- (over the size limit, or unreadable), since the first pull.
    messages_new         BIGINT NOT NULL DEFAULT 0,
    messages_duplicate   BIGINT NOT NULL DEFAULT 0,
    messages_skipped     BIGINT NOT NULL DEFAULT 0,
    -- Messages found but not yet handled by the pass under way.
    backlog              BIGINT NOT NULL DEFAULT 0,
    -- 'idle' or 'poll': how the puller waits for new mail.
    waiting              TEXT
);
