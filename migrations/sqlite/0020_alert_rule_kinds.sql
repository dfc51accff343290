-- More kinds of alert rules: see migrations/postgres/0022_alert_rule_kinds.sql.
-- SQLite cannot drop a CHECK constraint, so alert_rules is rebuilt without
-- it (with foreign keys off: `rebuilds_tables`; alerts keep their rule ids).
CREATE TABLE alert_rules_new (
    id               INTEGER PRIMARY KEY,
    domain           TEXT,
    kind             TEXT NOT NULL,
    threshold        BIGINT NOT NULL DEFAULT 1,
    window_days      INTEGER NOT NULL DEFAULT 1,
    cooldown_minutes INTEGER NOT NULL DEFAULT 360,
    channels         TEXT NOT NULL DEFAULT '[]',
    enabled          INTEGER NOT NULL DEFAULT 1,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
INSERT INTO alert_rules_new
    SELECT id, domain, kind, threshold, window_days, cooldown_minutes, channels, enabled,
           created_by, created_at
      FROM alert_rules;
DROP TABLE alert_rules;
ALTER TABLE alert_rules_new RENAME TO alert_rules;

INSERT INTO alert_rules (domain, kind, threshold, window_days, enabled, created_by, created_at) VALUES
    (NULL, 'pass_rate_drop', 15, 7, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'dns_changed', 1, 7, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'dns_broken', 1, 1, 1, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'source_failing_volume', 100, 1, 0, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'source_pass_rate_drop', 25, 7, 0, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    (NULL, 'tlsrpt_first_failure', 1, 7, 0, 'dmarcd', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'));

INSERT INTO alert_cursors (name, last_id)
    SELECT 'domain_record_events', coalesce(max(id), 0) FROM domain_record_events;
INSERT INTO alert_cursors (name, last_id)
    SELECT 'domain_checks', coalesce(max(id), 0) FROM domain_checks;
