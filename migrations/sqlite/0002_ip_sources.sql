-- What each sending IP is: see migrations/postgres/0002_ip_sources.sql.
-- `ip` is the text form dmarcd writes to aggregate_records.source_ip.
CREATE TABLE ip_sources (
    ip              TEXT PRIMARY KEY,
    country         TEXT,
    asn             INTEGER,
    as_name         TEXT,
    as_domain       TEXT,
    ptr             TEXT,
    base_domain     TEXT,
    source_name     TEXT,
    source_type     TEXT,
    described_at    TEXT,
    dns_state       TEXT NOT NULL DEFAULT 'pending',
    dns_attempts    INTEGER NOT NULL DEFAULT 0,
    dns_checked_at  TEXT,
    dns_due_at      TEXT
) WITHOUT ROWID;
CREATE INDEX ip_sources_undescribed ON ip_sources (ip) WHERE described_at IS NULL;
CREATE INDEX ip_sources_dns_work ON ip_sources (dns_due_at)
    WHERE dns_state IN ('pending', 'resolving', 'failed');
