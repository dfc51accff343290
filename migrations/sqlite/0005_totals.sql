-- Totals (src/store/rollup.rs): one row per key and period with the DMARC
-- results as counter columns, at day, month and all-time grains, so that
-- source, country and AS views over millions of records read a few
-- thousand rows. They are filled from the stored records after this file
-- runs (migrate.rs), and kept exact in the save and requeue transactions.
-- The per-source result rollup they replace is dropped: filters on
-- disposition or aligned DKIM/SPF together with a source read the records.
DROP TABLE rollup_source_day;

CREATE TABLE totals_org_day (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    org_name             TEXT NOT NULL,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_org_day_key ON totals_org_day (date_begin, policy_domain, org_name);
CREATE INDEX totals_org_day_domain ON totals_org_day (policy_domain, date_begin);
CREATE INDEX totals_org_day_empty ON totals_org_day (records) WHERE records <= 0;

CREATE TABLE totals_source_day (
    date_begin           TEXT NOT NULL,
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_source_day_key ON totals_source_day (date_begin, source_ip, invalid_source_ip);
CREATE INDEX totals_source_day_ip ON totals_source_day (source_ip, date_begin);
CREATE INDEX totals_source_day_empty ON totals_source_day (records) WHERE records <= 0;

CREATE TABLE totals_source_month (
    date_begin           TEXT NOT NULL,
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_source_month_key ON totals_source_month (date_begin, source_ip, invalid_source_ip);
CREATE INDEX totals_source_month_ip ON totals_source_month (source_ip, date_begin);
CREATE INDEX totals_source_month_empty ON totals_source_month (records) WHERE records <= 0;

CREATE TABLE totals_source_all (
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_source_all_key ON totals_source_all (source_ip, invalid_source_ip);
CREATE INDEX totals_source_all_empty ON totals_source_all (records) WHERE records <= 0;

CREATE TABLE totals_domain_source_day (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_domain_source_day_key ON totals_domain_source_day (date_begin, policy_domain, source_ip, invalid_source_ip);
CREATE INDEX totals_domain_source_day_domain ON totals_domain_source_day (policy_domain, date_begin);
CREATE INDEX totals_domain_source_day_ip ON totals_domain_source_day (source_ip, date_begin);
CREATE INDEX totals_domain_source_day_empty ON totals_domain_source_day (records) WHERE records <= 0;

CREATE TABLE totals_domain_source_month (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_domain_source_month_key ON totals_domain_source_month (date_begin, policy_domain, source_ip, invalid_source_ip);
CREATE INDEX totals_domain_source_month_domain ON totals_domain_source_month (policy_domain, date_begin);
CREATE INDEX totals_domain_source_month_empty ON totals_domain_source_month (records) WHERE records <= 0;

CREATE TABLE totals_domain_source_all (
    policy_domain        TEXT NOT NULL,
    source_ip            TEXT,
    invalid_source_ip    TEXT,
    count                INTEGER NOT NULL,
    records              INTEGER NOT NULL,
    dkim_pass            INTEGER NOT NULL,
    spf_pass             INTEGER NOT NULL,
    disp_none            INTEGER NOT NULL,
    disp_quarantine      INTEGER NOT NULL,
    disp_reject          INTEGER NOT NULL,
    fail_count           INTEGER NOT NULL,
    fail_records         INTEGER NOT NULL,
    fail_dkim_pass       INTEGER NOT NULL,
    fail_spf_pass        INTEGER NOT NULL,
    fail_disp_none       INTEGER NOT NULL,
    fail_disp_quarantine INTEGER NOT NULL,
    fail_disp_reject     INTEGER NOT NULL
);
CREATE INDEX totals_domain_source_all_key ON totals_domain_source_all (policy_domain, source_ip, invalid_source_ip);
CREATE INDEX totals_domain_source_all_ip ON totals_domain_source_all (source_ip);
CREATE INDEX totals_domain_source_all_empty ON totals_domain_source_all (records) WHERE records <= 0;

-- Rows emptied by a requeue are found through these, not a full scan.
CREATE INDEX rollup_domain_day_empty ON rollup_domain_day (records) WHERE records <= 0;
CREATE INDEX rollup_org_day_empty ON rollup_org_day (records) WHERE records <= 0;
-- The newest records of one source (source detail page).
DROP INDEX aggregate_records_source_ip;
CREATE INDEX aggregate_records_source_ip ON aggregate_records (source_ip, date_begin DESC, id DESC);
