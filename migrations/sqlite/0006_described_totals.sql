-- The totals per source carry what the source is (country, AS, name,
-- type), copied from ip_sources, so that country, AS and source views read
-- the totals alone instead of a join (see the PostgreSQL file). Triggers
-- keep the copies; SQLite's single writer needs no lock.
ALTER TABLE totals_source_day ADD COLUMN country TEXT;
ALTER TABLE totals_source_day ADD COLUMN asn INTEGER;
ALTER TABLE totals_source_day ADD COLUMN as_name TEXT;
ALTER TABLE totals_source_day ADD COLUMN source_name TEXT;
ALTER TABLE totals_source_day ADD COLUMN source_type TEXT;
ALTER TABLE totals_source_month ADD COLUMN country TEXT;
ALTER TABLE totals_source_month ADD COLUMN asn INTEGER;
ALTER TABLE totals_source_month ADD COLUMN as_name TEXT;
ALTER TABLE totals_source_month ADD COLUMN source_name TEXT;
ALTER TABLE totals_source_month ADD COLUMN source_type TEXT;
ALTER TABLE totals_source_all ADD COLUMN country TEXT;
ALTER TABLE totals_source_all ADD COLUMN asn INTEGER;
ALTER TABLE totals_source_all ADD COLUMN as_name TEXT;
ALTER TABLE totals_source_all ADD COLUMN source_name TEXT;
ALTER TABLE totals_source_all ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_day ADD COLUMN country TEXT;
ALTER TABLE totals_domain_source_day ADD COLUMN asn INTEGER;
ALTER TABLE totals_domain_source_day ADD COLUMN as_name TEXT;
ALTER TABLE totals_domain_source_day ADD COLUMN source_name TEXT;
ALTER TABLE totals_domain_source_day ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_month ADD COLUMN country TEXT;
ALTER TABLE totals_domain_source_month ADD COLUMN asn INTEGER;
ALTER TABLE totals_domain_source_month ADD COLUMN as_name TEXT;
ALTER TABLE totals_domain_source_month ADD COLUMN source_name TEXT;
ALTER TABLE totals_domain_source_month ADD COLUMN source_type TEXT;
ALTER TABLE totals_domain_source_all ADD COLUMN country TEXT;
ALTER TABLE totals_domain_source_all ADD COLUMN asn INTEGER;
ALTER TABLE totals_domain_source_all ADD COLUMN as_name TEXT;
ALTER TABLE totals_domain_source_all ADD COLUMN source_name TEXT;
ALTER TABLE totals_domain_source_all ADD COLUMN source_type TEXT;

UPDATE totals_source_day
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_source_day.source_ip);
UPDATE totals_source_month
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_source_month.source_ip);
UPDATE totals_source_all
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_source_all.source_ip);
UPDATE totals_domain_source_day
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_domain_source_day.source_ip);
UPDATE totals_domain_source_month
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_domain_source_month.source_ip);
UPDATE totals_domain_source_all
   SET (country, asn, as_name, source_name, source_type) =
       (SELECT country, asn, as_name, source_name, source_type
          FROM ip_sources s WHERE s.ip = totals_domain_source_all.source_ip);
-- The triggers find a source's rows by IP.
CREATE INDEX totals_domain_source_month_ip ON totals_domain_source_month (source_ip, date_begin);

CREATE TRIGGER ip_sources_copy_on_update
    AFTER UPDATE OF country, asn, as_name, source_name, source_type ON ip_sources
    FOR EACH ROW
    WHEN OLD.country IS NOT NEW.country OR OLD.asn IS NOT NEW.asn
         OR OLD.as_name IS NOT NEW.as_name OR OLD.source_name IS NOT NEW.source_name
         OR OLD.source_type IS NOT NEW.source_type
BEGIN
    UPDATE totals_source_day
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_source_month
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_source_all
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_day
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_month
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_all
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
END;

CREATE TRIGGER ip_sources_copy_on_insert
    AFTER INSERT ON ip_sources
    FOR EACH ROW
    WHEN NEW.country IS NOT NULL OR NEW.asn IS NOT NULL OR NEW.as_name IS NOT NULL
         OR NEW.source_name IS NOT NULL OR NEW.source_type IS NOT NULL
BEGIN
    UPDATE totals_source_day
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_source_month
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_source_all
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_day
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_month
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
    UPDATE totals_domain_source_all
       SET country = NEW.country, asn = NEW.asn, as_name = NEW.as_name,
           source_name = NEW.source_name, source_type = NEW.source_type
     WHERE source_ip = NEW.ip;
END;

CREATE TRIGGER ip_sources_copy_on_delete
    AFTER DELETE ON ip_sources
    FOR EACH ROW
BEGIN
    UPDATE totals_source_day
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
    UPDATE totals_source_month
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
    UPDATE totals_source_all
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
    UPDATE totals_domain_source_day
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
    UPDATE totals_domain_source_month
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
    UPDATE totals_domain_source_all
       SET country = NULL, asn = NULL, as_name = NULL, source_name = NULL, source_type = NULL
     WHERE source_ip = OLD.ip;
END;
