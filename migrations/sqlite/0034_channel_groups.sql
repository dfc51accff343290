-- See migrations/postgres/0036_channel_groups.sql.
ALTER TABLE alert_channels ADD COLUMN group_id INTEGER REFERENCES domain_groups (id) ON DELETE CASCADE;
