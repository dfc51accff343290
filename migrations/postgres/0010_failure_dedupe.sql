-- Failure reports are stored once (issue 17): dedupe_key is computed by
-- dmarcd (report::failure::dedupe_key: a SHA-256 of the reported domain,
-- source IP, arrival date and the original's Message-ID, or a hash of the
-- original's headers without one), so that both backends store the same
-- value; a second copy is counted as a duplicate, like aggregate reports.
ALTER TABLE failure_reports ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX failure_reports_dedupe_key ON failure_reports (dedupe_key);

-- What the parser had to tolerate, kept as it is for aggregate reports.
ALTER TABLE failure_reports ADD COLUMN warnings JSONB NOT NULL DEFAULT '[]';
ALTER TABLE tls_reports ADD COLUMN warnings JSONB NOT NULL DEFAULT '[]';

-- Rows stored before now have no key. SQL cannot compute it on SQLite (no
-- SHA-256 there), and a NULL key would let a later import of the same mail
-- store it again, so:
-- 1. Exact copies among them (same domains, source IP, arrival date and
--    original message) go, the oldest stays; a message left holding no
--    report is a duplicate.
CREATE TEMPORARY TABLE failure_copies ON COMMIT DROP AS
    SELECT id, message_id FROM (
        SELECT id, message_id, row_number() OVER (
            PARTITION BY reported_domain, source_ip, arrival_date, original_message_id,
                         original_from, original_to, original_subject, original_date
            ORDER BY id) AS copy
        FROM failure_reports) AS numbered
    WHERE copy > 1;
DELETE FROM failure_reports WHERE id IN (SELECT id FROM failure_copies);
UPDATE inbox_messages SET status = 'duplicate', error = NULL
 WHERE id IN (SELECT message_id FROM failure_copies)
   AND id NOT IN (SELECT message_id FROM failure_reports WHERE message_id IS NOT NULL)
   AND id NOT IN (SELECT message_id FROM aggregate_reports WHERE message_id IS NOT NULL)
   AND id NOT IN (SELECT message_id FROM tls_reports WHERE message_id IS NOT NULL);

-- 2. The messages that hold failure reports and nothing else are read
--    again by the workers, as `dmarcd reprocess` would, in the order they
--    came: each report is stored with its key, and a copy the SQL above
--    could not see (a domain in other case) is counted as a duplicate.
CREATE TEMPORARY TABLE failure_messages ON COMMIT DROP AS
    SELECT DISTINCT message_id AS id FROM failure_reports
     WHERE message_id IS NOT NULL
       AND message_id NOT IN (SELECT message_id FROM aggregate_reports WHERE message_id IS NOT NULL)
       AND message_id NOT IN (SELECT message_id FROM tls_reports WHERE message_id IS NOT NULL);
DELETE FROM failure_reports WHERE message_id IN (SELECT id FROM failure_messages);
UPDATE inbox_messages
   SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
 WHERE id IN (SELECT id FROM failure_messages);
