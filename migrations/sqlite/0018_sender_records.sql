-- See migrations/postgres/0020_sender_records.sql.
CREATE INDEX aggregate_records_domain_source ON aggregate_records (policy_domain, source_ip, date_begin DESC);
