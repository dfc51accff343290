-- Alerts by rule, domain and subject whatever their state: a rule firing
-- looks for its alert (open, or resolved within the cooldown), and a batch
-- of new sources asks which of its findings have one. The partial index on
-- open alerts serves neither, and without this each lookup read every
-- alert ever opened.
CREATE INDEX alerts_by_key ON alerts (rule_id, domain, subject, resolved_at);
