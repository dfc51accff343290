-- Totals keyed by what a source is rather than by which source it is
-- (src/store/derived.rs): per domain and country, and per domain and source
-- name, where a source without a name keeps its IP (as the summary by
-- source name shows it). A month of them is a few hundred rows where the
-- totals per source are one per source IP, so the overview's top sources
-- and countries over any period read hundreds of rows instead of a
-- hundred thousand.
--
-- They are derived from the totals per domain and source, whose rows carry
-- their source's description: migrate.rs fills them from those totals
-- after this file runs and adds the triggers that keep them, on every
-- change to those totals, whoever makes it (a save, a requeue, a
-- description that changed). Nothing else writes them.

CREATE TABLE totals_country_day (
    date_begin           TIMESTAMPTZ NOT NULL,
    policy_domain        TEXT NOT NULL,
    country              TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, country)
);
CREATE INDEX totals_country_day_empty ON totals_country_day (records) WHERE records <= 0;

CREATE TABLE totals_country_month (
    date_begin           TIMESTAMPTZ NOT NULL,
    policy_domain        TEXT NOT NULL,
    country              TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, country)
);
CREATE INDEX totals_country_month_empty ON totals_country_month (records) WHERE records <= 0;

CREATE TABLE totals_country_all (
    policy_domain        TEXT NOT NULL,
    country              TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (policy_domain, country)
);
CREATE INDEX totals_country_all_empty ON totals_country_all (records) WHERE records <= 0;

CREATE TABLE totals_name_day (
    date_begin           TIMESTAMPTZ NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
    source_ip            INET,
    invalid_source_ip    TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, source_name, source_type, source_ip, invalid_source_ip)
);
CREATE INDEX totals_name_day_empty ON totals_name_day (records) WHERE records <= 0;

CREATE TABLE totals_name_month (
    date_begin           TIMESTAMPTZ NOT NULL,
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
    source_ip            INET,
    invalid_source_ip    TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, source_name, source_type, source_ip, invalid_source_ip)
);
CREATE INDEX totals_name_month_empty ON totals_name_month (records) WHERE records <= 0;

CREATE TABLE totals_name_all (
    policy_domain        TEXT NOT NULL,
    source_name          TEXT,
    source_type          TEXT,
    source_ip            INET,
    invalid_source_ip    TEXT,
    count                BIGINT NOT NULL,
    records              BIGINT NOT NULL,
    dkim_pass            BIGINT NOT NULL,
    spf_pass             BIGINT NOT NULL,
    disp_none            BIGINT NOT NULL,
    disp_quarantine      BIGINT NOT NULL,
    disp_reject          BIGINT NOT NULL,
    fail_count           BIGINT NOT NULL,
    fail_records         BIGINT NOT NULL,
    fail_dkim_pass       BIGINT NOT NULL,
    fail_spf_pass        BIGINT NOT NULL,
    fail_disp_none       BIGINT NOT NULL,
    fail_disp_quarantine BIGINT NOT NULL,
    fail_disp_reject     BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (policy_domain, source_name, source_type, source_ip, invalid_source_ip)
);
CREATE INDEX totals_name_all_empty ON totals_name_all (records) WHERE records <= 0;
