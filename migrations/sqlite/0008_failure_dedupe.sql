-- Failure reports are stored once: see the PostgreSQL file (0010) for why
-- and how. The same steps in SQLite's dialect.
ALTER TABLE failure_reports ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX failure_reports_dedupe_key ON failure_reports (dedupe_key);

ALTER TABLE failure_reports ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tls_reports ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';

CREATE TEMPORARY TABLE failure_copies AS
    SELECT id, message_id FROM (
        SELECT id, message_id, row_number() OVER (
            PARTITION BY reported_domain, source_ip, arrival_date, original_message_id,
                         original_from, original_to, original_subject, original_date
            ORDER BY id) AS copy
        FROM failure_reports)
    WHERE copy > 1;
DELETE FROM failure_reports WHERE id IN (SELECT id FROM failure_copies);
UPDATE inbox_messages SET status = 'duplicate', error = NULL
 WHERE id IN (SELECT message_id FROM failure_copies)
   AND id NOT IN (SELECT message_id FROM failure_reports WHERE message_id IS NOT NULL)
   AND id NOT IN (SELECT message_id FROM aggregate_reports WHERE message_id IS NOT NULL)
   AND id NOT IN (SELECT message_id FROM tls_reports WHERE message_id IS NOT NULL);
DROP TABLE failure_copies;

CREATE TEMPORARY TABLE failure_messages AS
    SELECT DISTINCT message_id AS id FROM failure_reports
     WHERE message_id IS NOT NULL
       AND message_id NOT IN (SELECT message_id FROM aggregate_reports WHERE message_id IS NOT NULL)
       AND message_id NOT IN (SELECT message_id FROM tls_reports WHERE message_id IS NOT NULL);
DELETE FROM failure_reports WHERE message_id IN (SELECT id FROM failure_messages);
UPDATE inbox_messages
   SET status = 'pending', error = NULL, processed_at = NULL, lease_until = NULL, claimed_by = NULL
 WHERE id IN (SELECT id FROM failure_messages);
DROP TABLE failure_messages;
