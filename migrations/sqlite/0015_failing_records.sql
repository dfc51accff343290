-- See migrations/postgres/0017_failing_records.sql.
CREATE INDEX aggregate_records_failing ON aggregate_records (policy_domain, date_begin DESC)
    WHERE dmarc_pass = 0;
