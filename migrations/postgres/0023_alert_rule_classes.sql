-- New-source alert rules can watch only some source classes (issue 21's
-- classes: a JSON array of class keys such as ["suspicious",
-- "misconfigured"]); empty: every new source, as before.
ALTER TABLE alert_rules ADD COLUMN classes TEXT NOT NULL DEFAULT '[]';
