-- What each sending IP is. A row appears (in the same transaction as the
-- records) when an IP is first seen; the enrichment task fills it in after.
-- The dashboard and API join records to this table to filter and group by
-- country, ASN, PTR, base domain and source, with no lookups per request.
CREATE TABLE ip_sources (
    ip              INET PRIMARY KEY,
    country         TEXT,
    asn             BIGINT,
    as_name         TEXT,
    as_domain       TEXT,
    ptr             TEXT,
    base_domain     TEXT,
    source_name     TEXT,
    source_type     TEXT,
    -- NULL: country, ASN and name still to be worked out (a new IP, or
    -- after `dmarcd enrich --refresh`).
    described_at    TIMESTAMPTZ,
    -- pending | resolving | done (PTR found) | none (no PTR) | failed
    dns_state       TEXT NOT NULL DEFAULT 'pending',
    dns_attempts    INTEGER NOT NULL DEFAULT 0,
    dns_checked_at  TIMESTAMPTZ,
    -- pending: when to look up (now, on insert); resolving: when the claim
    -- lapses; failed: when to try again (NULL: gave up); done/none: when
    -- the answer goes stale (then queued again, checked every ten minutes).
    dns_due_at      TIMESTAMPTZ
);
CREATE INDEX ip_sources_undescribed ON ip_sources (ip) WHERE described_at IS NULL;
CREATE INDEX ip_sources_dns_work ON ip_sources (dns_due_at)
    WHERE dns_state IN ('pending', 'resolving', 'failed');
