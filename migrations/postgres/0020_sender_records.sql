-- A domain's records from one source IP, newest first: the sender page
-- (src/query/senders.rs) reads the newest few of each of a sender's IPs
-- for its DKIM and SPF results, reporters and failure causes. The index
-- by source IP alone spans every domain, so a busy IP's newest records
-- of one domain sit among thousands of other domains' records.
CREATE INDEX aggregate_records_domain_source ON aggregate_records (policy_domain, source_ip, date_begin DESC);
