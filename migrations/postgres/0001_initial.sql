-- Inbox: every message exactly as received, stored before it is acknowledged.
CREATE TABLE inbox_messages (
    id              BIGSERIAL PRIMARY KEY,
    sha256          BYTEA NOT NULL UNIQUE,
    size            BIGINT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    intake          TEXT NOT NULL CHECK (intake IN ('smtp', 'http', 'import')),
    source_name     TEXT,
    peer_ip         INET,
    helo            TEXT,
    mail_from       TEXT,
    rcpt_to         TEXT[] NOT NULL DEFAULT '{}',
    tls             BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'failed', 'duplicate', 'ignored')),
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     TIMESTAMPTZ,
    claimed_by      TEXT,
    processed_at    TIMESTAMPTZ
);
CREATE INDEX inbox_messages_queue ON inbox_messages (id) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_messages_status ON inbox_messages (status, received_at);

-- The raw bytes live apart from the status columns, so that claiming and
-- finishing a message never rewrites (or re-reads) a message of megabytes;
-- in chunks of a few MiB, so that storing a 64 MiB message never needs
-- more than one chunk's copy of it in memory on its way to the database.
CREATE TABLE inbox_raw (
    message_id      BIGINT NOT NULL REFERENCES inbox_messages (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    raw             BYTEA NOT NULL,
    PRIMARY KEY (message_id, seq)
);
-- Raw messages are mostly compressed attachments already: don't spend
-- time recompressing them with pglz on the way in.
ALTER TABLE inbox_raw ALTER COLUMN raw SET STORAGE EXTERNAL;

CREATE TABLE domains (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    origin      TEXT NOT NULL DEFAULT 'report' CHECK (origin IN ('report', 'user')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE aggregate_reports (
    id                  BIGSERIAL PRIMARY KEY,
    message_id          BIGINT REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location            TEXT,
    org_name            TEXT NOT NULL,
    email               TEXT,
    extra_contact_info  TEXT,
    report_id           TEXT NOT NULL,
    date_begin          TIMESTAMPTZ NOT NULL,
    date_end            TIMESTAMPTZ NOT NULL,
    errors              TEXT[] NOT NULL DEFAULT '{}',
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
    pct                 SMALLINT,
    fo                  TEXT,
    testing             TEXT,
    discovery_method    TEXT,
    extensions          JSONB NOT NULL DEFAULT '[]',
    warnings            JSONB NOT NULL DEFAULT '[]',
    record_count        INTEGER NOT NULL,
    message_count       BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- RFC 9990 §2.1.4: the same report re-sent is the same report.
    UNIQUE (org_name, report_id, policy_domain, date_begin)
);
CREATE INDEX aggregate_reports_domain_time ON aggregate_reports (policy_domain, date_begin);
CREATE INDEX aggregate_reports_message ON aggregate_reports (message_id);

CREATE TABLE aggregate_records (
    id                  BIGSERIAL PRIMARY KEY,
    report_id           BIGINT NOT NULL REFERENCES aggregate_reports (id) ON DELETE CASCADE,
    policy_domain       TEXT NOT NULL,
    org_name            TEXT NOT NULL,
    date_begin          TIMESTAMPTZ NOT NULL,
    date_end            TIMESTAMPTZ NOT NULL,
    source_ip           INET,
    invalid_source_ip   TEXT,
    count               BIGINT NOT NULL,
    disposition         TEXT,
    dkim_aligned        TEXT,
    spf_aligned         TEXT,
    dmarc_pass          BOOLEAN NOT NULL,
    reasons             JSONB NOT NULL DEFAULT '[]',
    header_from         TEXT,
    envelope_from       TEXT,
    envelope_to         TEXT,
    dkim_results        JSONB NOT NULL DEFAULT '[]',
    spf_results         JSONB NOT NULL DEFAULT '[]',
    extensions          JSONB NOT NULL DEFAULT '[]'
);
CREATE INDEX aggregate_records_report ON aggregate_records (report_id);
CREATE INDEX aggregate_records_domain_time ON aggregate_records (policy_domain, date_begin);
CREATE INDEX aggregate_records_source_ip ON aggregate_records (source_ip);

CREATE TABLE tls_reports (
    id                  BIGSERIAL PRIMARY KEY,
    message_id          BIGINT REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location            TEXT,
    organization_name   TEXT NOT NULL,
    report_id           TEXT NOT NULL,
    date_begin          TIMESTAMPTZ NOT NULL,
    date_end            TIMESTAMPTZ NOT NULL,
    contact_info        TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_name, report_id)
);

CREATE TABLE tls_policies (
    id                  BIGSERIAL PRIMARY KEY,
    report_id           BIGINT NOT NULL REFERENCES tls_reports (id) ON DELETE CASCADE,
    policy_type         TEXT NOT NULL,
    policy_domain       TEXT NOT NULL,
    policy_strings      TEXT[] NOT NULL DEFAULT '{}',
    mx_hosts            TEXT[] NOT NULL DEFAULT '{}',
    successful_sessions BIGINT NOT NULL,
    failed_sessions     BIGINT NOT NULL
);
CREATE INDEX tls_policies_domain ON tls_policies (policy_domain);

CREATE TABLE tls_failure_details (
    id                      BIGSERIAL PRIMARY KEY,
    policy_id               BIGINT NOT NULL REFERENCES tls_policies (id) ON DELETE CASCADE,
    result_type             TEXT NOT NULL,
    sending_mta_ip          TEXT,
    receiving_mx_hostname   TEXT,
    receiving_mx_helo       TEXT,
    receiving_ip            TEXT,
    failed_sessions         BIGINT NOT NULL,
    additional_information  TEXT,
    failure_reason_code     TEXT
);
CREATE INDEX tls_failure_details_policy ON tls_failure_details (policy_id);

CREATE TABLE failure_reports (
    id                      BIGSERIAL PRIMARY KEY,
    message_id              BIGINT REFERENCES inbox_messages (id) ON DELETE SET NULL,
    location                TEXT,
    format                  TEXT NOT NULL,
    feedback_type           TEXT,
    version                 TEXT,
    user_agent              TEXT,
    auth_failure            TEXT[] NOT NULL DEFAULT '{}',
    identity_alignment      TEXT,
    delivery_result         TEXT,
    arrival_date            TIMESTAMPTZ,
    arrival_date_raw        TEXT,
    source_ip               INET,
    source_port             INTEGER,
    reporting_mta           TEXT,
    original_envelope_id    TEXT,
    original_mail_from      TEXT,
    original_rcpt_to        TEXT[] NOT NULL DEFAULT '{}',
    reported_domain         TEXT[] NOT NULL DEFAULT '{}',
    reported_uri            TEXT[] NOT NULL DEFAULT '{}',
    authentication_results  TEXT[] NOT NULL DEFAULT '{}',
    incidents               INTEGER,
    dkim_domain             TEXT,
    dkim_identity           TEXT,
    dkim_selector           TEXT,
    dkim_selector_dns       TEXT,
    spf_dns                 TEXT[] NOT NULL DEFAULT '{}',
    other_fields            JSONB NOT NULL DEFAULT '[]',
    report_subject          TEXT,
    original_from           TEXT,
    original_to             TEXT,
    original_subject        TEXT,
    original_message_id     TEXT,
    original_date           TIMESTAMPTZ,
    original_headers_only   BOOLEAN,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX failure_reports_arrival ON failure_reports (arrival_date);
CREATE INDEX failure_reports_message ON failure_reports (message_id);
