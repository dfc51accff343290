-- An alert channel a group's analyst made belongs to that group: its
-- members see and use it, nobody else's rules do. NULL: an admin's,
-- shared by every rule an admin makes.
ALTER TABLE alert_channels ADD COLUMN group_id BIGINT REFERENCES domain_groups (id) ON DELETE CASCADE;
