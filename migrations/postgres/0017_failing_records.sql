-- The failing records of a domain, newest first (src/query/senders.rs
-- reads the newest few thousand for failure causes and override reasons):
-- without it, the read visits every record of the domain to keep one in
-- five (426 ms on the 1M-record load seed; 10 ms with it).
CREATE INDEX aggregate_records_failing ON aggregate_records (policy_domain, date_begin DESC)
    WHERE NOT dmarc_pass;
