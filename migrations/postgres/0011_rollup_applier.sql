-- Rollups are brought up to date apart from the save (src/store/applier.rs):
-- a save writes a report's records and queues the report here; the applier
-- counts queued reports in every rollup and removes them from the queue in
-- one transaction, so each report is counted exactly once. Before, every
-- save summed its records into nine rollups and six derived totals inside
-- its own transaction: a report from 100,000 sources wrote about 900,000
-- rollup rows before it was acknowledged, and concurrent saves of reports
-- that share sources queued (and deadlocked) on those rows.
CREATE TABLE rollup_pending (
    report_id BIGINT PRIMARY KEY,
    records   BIGINT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- dmarcd deletes a report's records itself, in the transaction that deletes
-- the report (store requeue). The foreign key checked every inserted record
-- against its report, a third of the time of a bulk COPY of records
-- (100,000 records: 1.12 s with it, 0.76 s without, in psql).
ALTER TABLE aggregate_records DROP CONSTRAINT IF EXISTS aggregate_records_report_id_fkey;

-- The derived totals' insert and delete triggers go (the applier writes
-- those rows itself from the same deltas); migrate.rs recreates the update
-- trigger, which now serves description changes alone.

-- The records' JSON columns keep their text as written (json, not jsonb):
-- dmarcd reads them whole, as text, and never queries inside them, and
-- storing json skips jsonb's parse of every value (100,000 records by
-- COPY: 0.64 against 0.73 s in psql). On a large database this rewrites
-- the table once.
ALTER TABLE aggregate_records
    ALTER COLUMN reasons DROP DEFAULT,
    ALTER COLUMN dkim_results DROP DEFAULT,
    ALTER COLUMN spf_results DROP DEFAULT,
    ALTER COLUMN extensions DROP DEFAULT;
ALTER TABLE aggregate_records
    ALTER COLUMN reasons TYPE json USING reasons::json,
    ALTER COLUMN dkim_results TYPE json USING dkim_results::json,
    ALTER COLUMN spf_results TYPE json USING spf_results::json,
    ALTER COLUMN extensions TYPE json USING extensions::json;
ALTER TABLE aggregate_records
    ALTER COLUMN reasons SET DEFAULT '[]',
    ALTER COLUMN dkim_results SET DEFAULT '[]',
    ALTER COLUMN spf_results SET DEFAULT '[]',
    ALTER COLUMN extensions SET DEFAULT '[]';
