-- Sender approvals (src/store/approvals.rs): an admin's rule that a
-- source sending as a domain (or as every domain, domain NULL) is
-- approved or ignored, matched by sender name, IP, CIDR block, AS number
-- or PTR base domain. Source classes are worked out when read
-- (src/senders), so a rule counts from the moment it is stored. A revoked
-- rule stays, with who revoked it and when, as the record of what was
-- decided.
CREATE TABLE sender_approvals (
    id          BIGSERIAL PRIMARY KEY,
    domain      TEXT,
    action      TEXT NOT NULL CHECK (action IN ('approve', 'ignore')),
    match_kind  TEXT NOT NULL CHECK (match_kind IN ('name', 'ip', 'cidr', 'asn', 'ptr')),
    match_value TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_by  TEXT,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX sender_approvals_active ON sender_approvals (domain) WHERE revoked_at IS NULL;
