-- The totals per source carry what the source is (country, AS, name,
-- type), copied from ip_sources, so that country, AS and source views over
-- millions of records read the totals alone instead of joining every row
-- to ip_sources. A description change rewrites the source's rows (up to
-- one per day and domain); it is rare, and done by the enrichment task.
--
-- The copies are kept by triggers on ip_sources, whatever writes it. A
-- save reads the descriptions of its sources when it adds a new totals row;
-- it holds advisory lock 7363012946 shared for its whole transaction
-- (store::postgres, SOURCE_DESCRIPTIONS_LOCK), and a statement that changes
-- descriptions takes it exclusively before its first row, so a new row can
-- never keep a description that changed while it was being written.
ALTER TABLE totals_source_day
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;
ALTER TABLE totals_source_month
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;
ALTER TABLE totals_source_all
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_day
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_month
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_all
    ADD COLUMN country TEXT,
    ADD COLUMN asn BIGINT,
    ADD COLUMN as_name TEXT,
    ADD COLUMN source_name TEXT,
    ADD COLUMN source_type TEXT;

UPDATE totals_source_day t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
UPDATE totals_source_month t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
UPDATE totals_source_all t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
UPDATE totals_domain_source_day t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
UPDATE totals_domain_source_month t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
UPDATE totals_domain_source_all t
   SET country = s.country, asn = s.asn, as_name = s.as_name,
       source_name = s.source_name, source_type = s.source_type
  FROM ip_sources s WHERE s.ip = t.source_ip;
-- The triggers find a source's rows by IP.
CREATE INDEX totals_domain_source_month_ip ON totals_domain_source_month (source_ip, date_begin);
ANALYZE totals_source_day;
ANALYZE totals_source_month;
ANALYZE totals_source_all;
ANALYZE totals_domain_source_day;
ANALYZE totals_domain_source_month;
ANALYZE totals_domain_source_all;

CREATE FUNCTION ip_sources_lock_descriptions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7363012946);
    RETURN NULL;
END $$;

CREATE FUNCTION ip_sources_copy_description() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    described ip_sources;
BEGIN
    IF TG_OP = 'DELETE' THEN
        described := OLD;
        described.country := NULL;
        described.asn := NULL;
        described.as_name := NULL;
        described.source_name := NULL;
        described.source_type := NULL;
    ELSE
        described := NEW;
    END IF;
    UPDATE totals_source_day
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    UPDATE totals_source_month
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    UPDATE totals_source_all
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    UPDATE totals_domain_source_day
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    UPDATE totals_domain_source_month
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    UPDATE totals_domain_source_all
       SET country = described.country, asn = described.asn, as_name = described.as_name,
           source_name = described.source_name, source_type = described.source_type
     WHERE source_ip = described.ip;
    RETURN NULL;
END $$;

CREATE TRIGGER ip_sources_lock_on_update
    BEFORE UPDATE OF country, asn, as_name, source_name, source_type ON ip_sources
    FOR EACH STATEMENT EXECUTE FUNCTION ip_sources_lock_descriptions();
CREATE TRIGGER ip_sources_lock_on_delete
    BEFORE DELETE ON ip_sources
    FOR EACH STATEMENT EXECUTE FUNCTION ip_sources_lock_descriptions();
CREATE TRIGGER ip_sources_copy_on_update
    AFTER UPDATE OF country, asn, as_name, source_name, source_type ON ip_sources
    FOR EACH ROW
    WHEN ((OLD.country, OLD.asn, OLD.as_name, OLD.source_name, OLD.source_type)
          IS DISTINCT FROM (NEW.country, NEW.asn, NEW.as_name, NEW.source_name, NEW.source_type))
    EXECUTE FUNCTION ip_sources_copy_description();
-- Saves insert new sources undescribed; an insert with a description (a
-- bulk load) copies it too.
CREATE TRIGGER ip_sources_copy_on_insert
    AFTER INSERT ON ip_sources
    FOR EACH ROW
    WHEN (NEW.country IS NOT NULL OR NEW.asn IS NOT NULL OR NEW.as_name IS NOT NULL
          OR NEW.source_name IS NOT NULL OR NEW.source_type IS NOT NULL)
    EXECUTE FUNCTION ip_sources_copy_description();
CREATE TRIGGER ip_sources_copy_on_delete
    AFTER DELETE ON ip_sources
    FOR EACH ROW EXECUTE FUNCTION ip_sources_copy_description();
