-- The failing rows of the totals per source, by period: a summary of
-- failures (result=fail) reads only the rows with a failing record
-- (src/query/aggregate.rs leaves the others out before summing). On the
-- load seed three day rows in four have none, and fetching them only to
-- drop them was a fifth of the per-source failures summary over a month
-- (68 against 54 ms in psql). SQLite, for small databases, goes without.
CREATE INDEX totals_source_day_failing ON totals_source_day (date_begin) WHERE fail_records <> 0;
CREATE INDEX totals_source_month_failing ON totals_source_month (date_begin) WHERE fail_records <> 0;
ANALYZE totals_source_day;
ANALYZE totals_source_month;
