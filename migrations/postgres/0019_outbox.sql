-- The outbox (src/store/outbox.rs): every message dmarcd sends (mail
-- through [mail_out], webhooks) is a row here, committed before anything
-- is sent, so that nothing is lost across restarts. A sender claims due
-- rows with FOR UPDATE SKIP LOCKED (several nodes never take the same
-- row) for a lease; a row whose lease ran out (a node died while sending)
-- is claimed again, so delivery is at least once: each message carries
-- its id (Message-ID, X-Dmarcd-Delivery) for the receiver to drop a
-- repeat. A temporary failure puts the row back with a later
-- next_attempt_at; a permanent one, or one past the give-up time, ends it
-- as 'failed' with the reason kept. dedup_key: the same event queued
-- twice (an alert for one channel) is stored once.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('mail', 'webhook')),
    dedup_key       TEXT UNIQUE,
    -- What to send, as JSON (src/outbox: OutboxItem), rendered when queued.
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    claimed_by      TEXT,
    claimed_until   TIMESTAMPTZ,
    last_error      TEXT,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status IN ('pending', 'sending');
