-- Domain posture: see migrations/postgres/0012_domain_posture.sql.
CREATE TABLE domain_checks (
    id           INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,
    checked_at   TEXT NOT NULL,
    grades       TEXT NOT NULL,
    findings     TEXT NOT NULL,
    observations TEXT NOT NULL,
    spf          TEXT
);
CREATE INDEX domain_checks_by_domain ON domain_checks (domain, id DESC);

CREATE TABLE domain_record_events (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    record_type TEXT NOT NULL,
    old_values  TEXT NOT NULL,
    new_values  TEXT NOT NULL,
    changed_at  TEXT NOT NULL
);
CREATE INDEX domain_record_events_by_domain ON domain_record_events (domain, id DESC);

CREATE TABLE domain_check_schedule (
    domain        TEXT PRIMARY KEY,
    next_check_at TEXT NOT NULL
);

CREATE TABLE domain_dkim_selectors (
    domain     TEXT NOT NULL,
    selector   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (domain, selector)
);
