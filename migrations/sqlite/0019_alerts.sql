-- Alerts: see migrations/postgres/0021_alerts.sql.
CREATE TABLE alert_channels (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    -- Email: addresses separated by commas; webhook: the URL.
    target      TEXT NOT NULL,
    format      TEXT NOT NULL DEFAULT 'json'
                CHECK (format IN ('json', 'slack', 'mattermost', 'teams')),
    secret      TEXT,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE alert_rules (
    id               INTEGER PRIMARY KEY,
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
    enabled          INTEGER NOT NULL DEFAULT 1,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL
);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
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
    opened_at    TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    resolved_at  TEXT,
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
    (NULL, 'new_source', 1, 7, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'failing_volume', 100, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'failure_report', 1, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'tlsrpt_failure', 1, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'domain_silent', 1, 3, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'reporter_silent', 1, 3, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'));
INSERT INTO alert_cursors (name, last_id)
    SELECT 'failure_reports', coalesce(max(id), 0) FROM failure_reports;
INSERT INTO alert_cursors (name, last_id)
    SELECT 'tls_reports', coalesce(max(id), 0) FROM tls_reports;
