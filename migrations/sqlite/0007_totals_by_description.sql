-- Totals keyed by what a source is rather than by which source it is:
-- per domain and country, and per domain and source name (see the
-- PostgreSQL file and src/store/derived.rs). migrate.rs fills them and adds
-- the triggers that keep them.

CREATE TABLE totals_country_day (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    country              TEXT,
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
CREATE INDEX totals_country_day_key ON totals_country_day (date_begin, policy_domain, country);
CREATE INDEX totals_country_day_empty ON totals_country_day (records) WHERE records <= 0;

CREATE TABLE totals_country_month (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    country              TEXT,
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
CREATE INDEX totals_country_month_key ON totals_country_month (date_begin, policy_domain, country);
CREATE INDEX totals_country_month_empty ON totals_country_month (records) WHERE records <= 0;

CREATE TABLE totals_country_all (
    policy_domain        TEXT NOT NULL,
    country              TEXT,
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
CREATE INDEX totals_country_all_key ON totals_country_all (policy_domain, country);
CREATE INDEX totals_country_all_empty ON totals_country_all (records) WHERE records <= 0;

CREATE TABLE totals_name_day (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
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
CREATE INDEX totals_name_day_key ON totals_name_day (date_begin, policy_domain, source_name, source_type, source_ip, invalid_source_ip);
CREATE INDEX totals_name_day_empty ON totals_name_day (records) WHERE records <= 0;

CREATE TABLE totals_name_month (
    date_begin           TEXT NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
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
CREATE INDEX totals_name_month_key ON totals_name_month (date_begin, policy_domain, source_name, source_type, source_ip, invalid_source_ip);
CREATE INDEX totals_name_month_empty ON totals_name_month (records) WHERE records <= 0;

CREATE TABLE totals_name_all (
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
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
CREATE INDEX totals_name_all_key ON totals_name_all (policy_domain, source_name, source_type, source_ip, invalid_source_ip);
CREATE INDEX totals_name_all_empty ON totals_name_all (records) WHERE records <= 0;
