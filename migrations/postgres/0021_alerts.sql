-- Alerts (src/alerts, src/store/alerts.rs). Rules say what to watch, per
-- domain or for every domain (domain NULL); channels say where to tell
-- (mail addresses, a webhook); alerts are what fired, one open alert per
-- rule, domain and subject (a source IP, a reporter, or ''), refreshed
-- while its cause lasts and resolved when it goes. Rules are evaluated on
-- the rollup applier's deltas as reports are stored and, for what only
-- time reveals (silence, a cause gone), on a schedule; notifications go
-- through the outbox in the same transaction.
CREATE TABLE alert_channels (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    -- Email: addresses separated by commas; webhook: the URL.
    target      TEXT NOT NULL,
    format      TEXT NOT NULL DEFAULT 'json'
                CHECK (format IN ('json', 'slack', 'mattermost', 'teams')),
    secret      TEXT,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE alert_rules (
    id               BIGSERIAL PRIMARY KEY,
    domain           TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('new_source', 'failing_volume',
                         'domain_silent', 'reporter_silent', 'failure_report', 'tlsrpt_failure')),
    -- failing_volume: failing messages; tlsrpt_failure: failed sessions.
    threshold        BIGINT NOT NULL DEFAULT 1,
    -- The window the cause is counted over, in days (silence: days quiet).
    window_days      INTEGER NOT NULL DEFAULT 1,
    -- A resolved alert that fires again within this time is reopened
    -- without telling anyone again.
    cooldown_minutes INTEGER NOT NULL DEFAULT 360,
    -- Channel ids (JSON array); empty: every channel.
    channels         TEXT NOT NULL DEFAULT '[]',
    enabled          BOOLEAN NOT NULL DEFAULT true,
    created_by       TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    rule_id      BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    domain       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    title        TEXT NOT NULL,
    detail       TEXT NOT NULL,
    -- The dashboard path and query that shows the cause.
    link         TEXT NOT NULL,
    occurrences  BIGINT NOT NULL DEFAULT 1,
    opened_at    TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    resolved_at  TIMESTAMPTZ,
    resolved_by  TEXT
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, domain, subject) WHERE state = 'open';
CREATE INDEX alerts_newest ON alerts (opened_at DESC);

-- How far the scheduled pass has read failure and TLS reports.
CREATE TABLE alert_cursors (
    name    TEXT PRIMARY KEY,
    last_id BIGINT NOT NULL
);

-- Defaults for every domain, new ones included: a new source, 100
-- failing messages in a day, a day of failure reports, TLS failures, and
-- no reports for 3 days.
INSERT INTO alert_rules (domain, kind, threshold, window_days, created_by, created_at) VALUES
    (NULL, 'new_source', 1, 7, 'dmarcd', now()),
    (NULL, 'failing_volume', 100, 1, 'dmarcd', now()),
    (NULL, 'failure_report', 1, 1, 'dmarcd', now()),
    (NULL, 'tlsrpt_failure', 1, 1, 'dmarcd', now()),
    (NULL, 'domain_silent', 1, 3, 'dmarcd', now()),
    (NULL, 'reporter_silent', 1, 3, 'dmarcd', now());
INSERT INTO alert_cursors (name, last_id)
    SELECT 'failure_reports', coalesce(max(id), 0) FROM failure_reports;
INSERT INTO alert_cursors (name, last_id)
    SELECT 'tls_reports', coalesce(max(id), 0) FROM tls_reports;
