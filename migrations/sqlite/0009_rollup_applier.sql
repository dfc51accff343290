-- Rollups are brought up to date apart from the save (src/store/applier.rs;
-- see migrations/postgres/0011_rollup_applier.sql for why). SQLite keeps
-- the records' foreign key: removing it means rebuilding the table, and
-- its check is an in-process index probe.
CREATE TABLE rollup_pending (
    report_id INTEGER PRIMARY KEY,
    records   INTEGER NOT NULL,
    queued_at TEXT NOT NULL
);
