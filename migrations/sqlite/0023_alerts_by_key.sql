-- See migrations/postgres/0025_alerts_by_key.sql.
CREATE INDEX alerts_by_key ON alerts (rule_id, domain, subject, resolved_at);
