-- Sender approvals: see migrations/postgres/0016_sender_approvals.sql.
CREATE TABLE sender_approvals (
    id          INTEGER PRIMARY KEY,
    domain      TEXT,
    action      TEXT NOT NULL CHECK (action IN ('approve', 'ignore')),
    match_kind  TEXT NOT NULL CHECK (match_kind IN ('name', 'ip', 'cidr', 'asn', 'ptr')),
    match_value TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_by  TEXT,
    revoked_at  TEXT
);
CREATE INDEX sender_approvals_active ON sender_approvals (domain) WHERE revoked_at IS NULL;
