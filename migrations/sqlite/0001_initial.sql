-- SQLite flavour of postgres/0001_initial.sql: timestamps as RFC 3339 text,
-- IPs as text, arrays and JSON as JSON text.
-- Inbox: every message exactly as received, stored before it is acknowledged.
CREATE TABLE inbox_messages (
    id              INTEGER PRIMARY KEY,
    sha256          BLOB NOT NULL UNIQUE,
    size            INTEGER NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    intake          TEXT NOT NULL CHECK (intake IN ('smtp', 'http', 'import')),
    source_name     TEXT,
    peer_ip         TEXT,
    helo            TEXT,
    mail_from       TEXT,
    rcpt_to         TEXT NOT NULL DEFAULT '[]',
    tls             BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'failed', 'duplicate', 'ignored')),
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     TEXT,
    claimed_by      TEXT,
    processed_at    TEXT
);
CREATE INDEX inbox_messages_queue ON inbox_messages (id) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_messages_status ON inbox_messages (status, received_at);

-- The raw bytes live apart from the status columns, so that claiming and
-- finishing a message never rewrites (or re-reads) a message of megabytes;
-- in chunks of a few MiB, so that storing a 64 MiB message never needs
-- more than one chunk's copy of it in memory on its way to the database.
CREATE TABLE inbox_raw (
    message_id      INTEGER NOT NULL REFERENCES inbox_messages (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    raw             BLOB NOT NULL,
    PRIMARY KEY (message_id, seq)
);

CREATE TABLE domains (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    origin      TEXT NOT NULL DEFAULT 'report' CHECK (origin IN ('report', 'user')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);

CREATE TABLE aggregate_reports (
    id                  INTEGER PRIMARY KEY,
    message_id          INTEGER REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location            TEXT,
    org_name            TEXT NOT NULL,
    email               TEXT,
    extra_contact_info  TEXT,
    report_id           TEXT NOT NULL,
    date_begin          TEXT NOT NULL,
    date_end            TEXT NOT NULL,
    errors              TEXT NOT NULL DEFAULT '[]',
    generator           TEXT,
    schema              TEXT NOT NULL,
    version             TEXT,
    namespace           TEXT,
    policy_domain       TEXT NOT NULL,
    adkim               TEXT,
    aspf                TEXT,
    p                   TEXT,
    sp                  TEXT,
    np                  TEXT,
    pct                 INTEGER,
    fo                  TEXT,
    testing             TEXT,
    discovery_method    TEXT,
    extensions          TEXT NOT NULL DEFAULT '[]',
    warnings            TEXT NOT NULL DEFAULT '[]',
    record_count        INTEGER NOT NULL,
    message_count       INTEGER NOT NULL,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    -- RFC 9990 §2.1.4: the same report re-sent is the same report.
    UNIQUE (org_name, report_id, policy_domain, date_begin)
);
CREATE INDEX aggregate_reports_domain_time ON aggregate_reports (policy_domain, date_begin);
CREATE INDEX aggregate_reports_message ON aggregate_reports (message_id);

CREATE TABLE aggregate_records (
    id                  INTEGER PRIMARY KEY,
    report_id           INTEGER NOT NULL REFERENCES aggregate_reports (id) ON DELETE CASCADE,
    policy_domain       TEXT NOT NULL,
    org_name            TEXT NOT NULL,
    date_begin          TEXT NOT NULL,
    date_end            TEXT NOT NULL,
    source_ip           TEXT,
    invalid_source_ip   TEXT,
    count               INTEGER NOT NULL,
    disposition         TEXT,
    dkim_aligned        TEXT,
    spf_aligned         TEXT,
    dmarc_pass          BOOLEAN NOT NULL,
    reasons             TEXT NOT NULL DEFAULT '[]',
    header_from         TEXT,
    envelope_from       TEXT,
    envelope_to         TEXT,
    dkim_results        TEXT NOT NULL DEFAULT '[]',
    spf_results         TEXT NOT NULL DEFAULT '[]',
    extensions          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX aggregate_records_report ON aggregate_records (report_id);
CREATE INDEX aggregate_records_domain_time ON aggregate_records (policy_domain, date_begin);
CREATE INDEX aggregate_records_source_ip ON aggregate_records (source_ip);

CREATE TABLE tls_reports (
    id                  INTEGER PRIMARY KEY,
    message_id          INTEGER REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location            TEXT,
    organization_name   TEXT NOT NULL,
    report_id           TEXT NOT NULL,
    date_begin          TEXT NOT NULL,
    date_end            TEXT NOT NULL,
    contact_info        TEXT,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')),
    UNIQUE (organization_name, report_id)
);

CREATE TABLE tls_policies (
    id                  INTEGER PRIMARY KEY,
    report_id           INTEGER NOT NULL REFERENCES tls_reports (id) ON DELETE CASCADE,
    policy_type         TEXT NOT NULL,
    policy_domain       TEXT NOT NULL,
    policy_strings      TEXT NOT NULL DEFAULT '[]',
    mx_hosts            TEXT NOT NULL DEFAULT '[]',
    successful_sessions INTEGER NOT NULL,
    failed_sessions     INTEGER NOT NULL
);
CREATE INDEX tls_policies_domain ON tls_policies (policy_domain);

CREATE TABLE tls_failure_details (
    id                      INTEGER PRIMARY KEY,
    policy_id               INTEGER NOT NULL REFERENCES tls_policies (id) ON DELETE CASCADE,
    result_type             TEXT NOT NULL,
    sending_mta_ip          TEXT,
    receiving_mx_hostname   TEXT,
    receiving_mx_helo       TEXT,
    receiving_ip            TEXT,
    failed_sessions         INTEGER NOT NULL,
    additional_information  TEXT,
    failure_reason_code     TEXT
);
CREATE INDEX tls_failure_details_policy ON tls_failure_details (policy_id);

CREATE TABLE failure_reports (
    id                      INTEGER PRIMARY KEY,
    message_id              INTEGER REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location                TEXT,
    format                  TEXT NOT NULL,
    feedback_type           TEXT,
    version                 TEXT,
    user_agent              TEXT,
    auth_failure            TEXT NOT NULL DEFAULT '[]',
    identity_alignment      TEXT,
    delivery_result         TEXT,
    arrival_date            TEXT,
    arrival_date_raw        TEXT,
    source_ip               TEXT,
    source_port             INTEGER,
    reporting_mta           TEXT,
    original_envelope_id    TEXT,
    original_mail_from      TEXT,
    original_rcpt_to        TEXT NOT NULL DEFAULT '[]',
    reported_domain         TEXT NOT NULL DEFAULT '[]',
    reported_uri            TEXT NOT NULL DEFAULT '[]',
    authentication_results  TEXT NOT NULL DEFAULT '[]',
    incidents               INTEGER,
    dkim_domain             TEXT,
    dkim_identity           TEXT,
    dkim_selector           TEXT,
    dkim_selector_dns       TEXT,
    spf_dns                 TEXT NOT NULL DEFAULT '[]',
    other_fields            TEXT NOT NULL DEFAULT '[]',
    report_subject          TEXT,
    original_from           TEXT,
    original_to             TEXT,
    original_subject        TEXT,
    original_message_id     TEXT,
    original_date           TEXT,
    original_headers_only   BOOLEAN,
    created_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);
CREATE INDEX failure_reports_arrival ON failure_reports (arrival_date);
CREATE INDEX failure_reports_message ON failure_reports (message_id);
