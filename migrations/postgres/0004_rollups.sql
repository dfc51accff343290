-- Daily rollups of aggregate records (src/store/rollup.rs): the dashboard
-- and the summary API read these instead of millions of records. Kept exact
-- in the transaction that stores or requeues a report. Column names match
-- aggregate_records: date_begin is the day (UTC), count the messages.
CREATE TABLE rollup_domain_day (
    date_begin      TIMESTAMPTZ NOT NULL,
    policy_domain   TEXT NOT NULL,
    disposition     TEXT,
    dkim_aligned    TEXT,
    spf_aligned     TEXT,
    dmarc_pass      BOOLEAN NOT NULL,
    count           BIGINT NOT NULL,
    records         BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass)
);
INSERT INTO rollup_domain_day (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, count, records)
SELECT date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, sum(count), count(*)
  FROM aggregate_records GROUP BY date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass;
CREATE TABLE rollup_org_day (
    date_begin      TIMESTAMPTZ NOT NULL,
    policy_domain   TEXT NOT NULL,
    disposition     TEXT,
    dkim_aligned    TEXT,
    spf_aligned     TEXT,
    dmarc_pass      BOOLEAN NOT NULL,
    org_name        TEXT NOT NULL,
    count           BIGINT NOT NULL,
    records         BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, org_name)
);
INSERT INTO rollup_org_day (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, org_name, count, records)
SELECT date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, org_name, sum(count), count(*)
  FROM aggregate_records GROUP BY date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, org_name;
CREATE TABLE rollup_source_day (
    date_begin      TIMESTAMPTZ NOT NULL,
    policy_domain   TEXT NOT NULL,
    disposition     TEXT,
    dkim_aligned    TEXT,
    spf_aligned     TEXT,
    dmarc_pass      BOOLEAN NOT NULL,
    source_ip       INET,
    invalid_source_ip TEXT,
    count           BIGINT NOT NULL,
    records         BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, source_ip, invalid_source_ip)
);
INSERT INTO rollup_source_day (date_begin, policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, source_ip, invalid_source_ip, count, records)
SELECT date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, source_ip, invalid_source_ip, sum(count), count(*)
  FROM aggregate_records GROUP BY date_trunc('day', date_begin, 'UTC'), policy_domain, disposition, dkim_aligned, spf_aligned, dmarc_pass, source_ip, invalid_source_ip;
CREATE INDEX rollup_org_day_domain ON rollup_org_day (policy_domain, date_begin);
CREATE INDEX rollup_source_day_domain ON rollup_source_day (policy_domain, date_begin);
CREATE INDEX rollup_source_day_ip ON rollup_source_day (source_ip);
-- The records list is newest first, with or without a domain.
CREATE INDEX aggregate_records_newest ON aggregate_records (date_begin DESC, id DESC);
