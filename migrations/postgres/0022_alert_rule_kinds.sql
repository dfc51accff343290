-- More kinds of alert rules (issue 22): per-source failing volume, pass
-- rates below their baseline, the first TLS failures after a clean period,
-- DNS records changed or broken. The kind is checked where rules are read
-- (`RuleKind::parse`), not by a constraint that every new kind (MTA-STS,
-- certificates) would have to replace.
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check;

-- Defaults for every domain. Per-source rules and the first-TLS-failure
-- rule start switched off: the domain-wide rules already tell of the same
-- cause, and a user who wants the finer view switches them on.
INSERT INTO alert_rules (domain, kind, threshold, window_days, enabled, created_by, created_at) VALUES
    (NULL, 'pass_rate_drop', 15, 7, true, 'dmarcd', now()),
    (NULL, 'dns_changed', 1, 7, true, 'dmarcd', now()),
    (NULL, 'dns_broken', 1, 1, true, 'dmarcd', now()),
    (NULL, 'source_failing_volume', 100, 1, false, 'dmarcd', now()),
    (NULL, 'source_pass_rate_drop', 25, 7, false, 'dmarcd', now()),
    (NULL, 'tlsrpt_first_failure', 1, 7, false, 'dmarcd', now());

-- DNS events are read past cursors as failure and TLS reports are; an
-- upgrade starts at the present, not with the whole history.
INSERT INTO alert_cursors (name, last_id)
    SELECT 'domain_record_events', coalesce(max(id), 0) FROM domain_record_events;
INSERT INTO alert_cursors (name, last_id)
    SELECT 'domain_checks', coalesce(max(id), 0) FROM domain_checks;
