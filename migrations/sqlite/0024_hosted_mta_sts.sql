-- Hosted MTA-STS and hosted DNS records: see migrations/postgres/0026_hosted_mta_sts.sql.
--
-- The policy dmarcd serves at https://mta-sts.<domain>/.well-known/mta-sts.txt
-- and whose id its DNS listener publishes in <domain>._mta-sts.<zone>.
-- mx is a JSON array of patterns; policy_id changes with every change.
CREATE TABLE mta_sts_policies (
    domain      TEXT PRIMARY KEY,
    mode        TEXT NOT NULL CHECK (mode IN ('none', 'testing', 'enforce')),
    mx          TEXT NOT NULL,
    max_age     INTEGER NOT NULL CHECK (max_age BETWEEN 86400 AND 31557600),
    policy_id   TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Every change to a policy: who, when, old -> new (JSON of the policy;
-- old is null for the first), and whether enforce was forced past a
-- failed safety check. Never updated.
CREATE TABLE mta_sts_policy_history (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_at  TEXT NOT NULL,
    old_policy  TEXT,
    new_policy  TEXT NOT NULL,
    forced      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mta_sts_policy_history_by_domain ON mta_sts_policy_history (domain, id);

-- The DMARC record dmarcd serves in <domain>._dmarc.<zone> (the TXT
-- text, checked before it is stored).
CREATE TABLE hosted_dmarc_records (
    domain      TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Certificates for the mta-sts.<domain> hosts, issued by ACME and kept
-- here so that every node serves them. A row exists from the first
-- attempt: its failures and next attempt are what the pages show.
CREATE TABLE tls_certificates (
    host             TEXT PRIMARY KEY,
    cert_pem         TEXT,
    key_pem          TEXT,
    not_before       TEXT,
    not_after        TEXT,
    issued_at        TEXT,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    -- A node working on an order holds it until then.
    claimed_until    TEXT
);

-- The ACME account per directory URL (instant-acme's credentials JSON,
-- which holds the account key).
CREATE TABLE acme_accounts (
    directory_url  TEXT PRIMARY KEY,
    credentials    TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

-- Challenges being validated: kind 'http-01' keyed by token, kind
-- 'tls-alpn-01' keyed by host; any node answers the validation request.
CREATE TABLE acme_challenges (
    kind               TEXT NOT NULL CHECK (kind IN ('http-01', 'tls-alpn-01')),
    name               TEXT NOT NULL,
    key_authorization  TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
