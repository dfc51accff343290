-- See migrations/postgres/0023_alert_rule_classes.sql.
ALTER TABLE alert_rules ADD COLUMN classes TEXT NOT NULL DEFAULT '[]';
