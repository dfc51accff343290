-- Domain posture (src/dns/, src/store/posture.rs). Each check keeps what
-- it found and the records it saw, read whole per check, so as JSON; a
-- record that differs from the previous check's is an event (old -> new).
CREATE TABLE domain_checks (
    id           BIGSERIAL PRIMARY KEY,
    domain       TEXT NOT NULL,
    checked_at   TIMESTAMPTZ NOT NULL,
    grades       JSONB NOT NULL,
    findings     JSONB NOT NULL,
    observations JSONB NOT NULL,
    spf          JSONB
);
CREATE INDEX domain_checks_by_domain ON domain_checks (domain, id DESC);

CREATE TABLE domain_record_events (
    id          BIGSERIAL PRIMARY KEY,
    domain      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    record_type TEXT NOT NULL,
    old_values  JSONB NOT NULL,
    new_values  JSONB NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX domain_record_events_by_domain ON domain_record_events (domain, id DESC);

-- When each monitored domain is checked next. A node claims due domains
-- by moving their time forward (FOR UPDATE SKIP LOCKED), so two nodes
-- never check one domain at once; the time moved to is a lease, replaced
-- by the real next time when the check is stored.
CREATE TABLE domain_check_schedule (
    domain        TEXT PRIMARY KEY,
    next_check_at TIMESTAMPTZ NOT NULL
);

-- DKIM selectors added by hand (those seen in reports come from them).
CREATE TABLE domain_dkim_selectors (
    domain     TEXT NOT NULL,
    selector   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (domain, selector)
);
