-- Who changed what, when and from where: one row per change (users, roles,
-- tokens, domains, approvals, alert rules and channels, digests, hosted
-- policies, reprocess requests) and per sign-in, failed sign-in and
-- sign-out. old_value and new_value are JSON text (NULL for none). Rows are
-- only ever added by the app and deleted by retention (retention.audit_days);
-- an UPDATE is refused by the database itself.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
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

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit log entries are never changed';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
