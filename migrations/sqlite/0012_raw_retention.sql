-- Retention of raw messages (issue 27): when a processed message's bytes
-- were deleted; its row stays, so pages and the API can say so and nothing
-- reprocesses a message it no longer has.
ALTER TABLE inbox_messages ADD COLUMN raw_pruned_at TEXT;
-- The prune's scan: processed messages still holding their bytes, oldest first.
CREATE INDEX inbox_messages_prunable ON inbox_messages (processed_at)
    WHERE raw_pruned_at IS NULL AND status IN ('done', 'duplicate', 'ignored');
