-- Who changed what, when and from where: one row per change (users, roles,
-- tokens, domains, approvals, alert rules and channels, digests, hosted
-- policies, reprocess requests) and per sign-in, failed sign-in and
-- sign-out. old_value and new_value are JSON text (NULL for none). Rows are
-- only ever added by the app and deleted by retention (retention.audit_days);
-- an UPDATE is refused by the database itself.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit log entries are never changed');
END;
