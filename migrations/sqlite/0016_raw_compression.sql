-- Compressed raw mail (issue 27): how each chunk is kept (store::raw_codec);
-- the rows written before are as received.
ALTER TABLE inbox_raw ADD COLUMN compression TEXT NOT NULL DEFAULT 'none'
    CHECK (compression IN ('none', 'deflate'));
-- The Subject, decoded at intake, so that the inbox lists it without
-- reading (and inflating) the message, and keeps it after retention.
ALTER TABLE inbox_messages ADD COLUMN subject TEXT;
