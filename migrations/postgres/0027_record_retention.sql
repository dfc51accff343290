-- Retention of aggregate records (issue 27): when retention deleted a
-- report's records. The report row stays: it is what recognises the same
-- report sent again (the unique key of 0001), and what the reports list
-- and the inbox still show; the rollups keep its counts (retention never
-- takes anything from them), and a message with such a report is never
-- reprocessed (taking its counts away would find no records).
ALTER TABLE aggregate_reports ADD COLUMN records_pruned_at TIMESTAMPTZ;
-- The prune's scan: reports that still hold their records, oldest first.
CREATE INDEX aggregate_reports_prunable ON aggregate_reports (date_begin, id)
    WHERE records_pruned_at IS NULL;
