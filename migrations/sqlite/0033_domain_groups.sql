-- Domain groups (tenants): see migrations/postgres/0035_domain_groups.sql.
CREATE TABLE domain_groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);
INSERT INTO domain_groups (id, name) VALUES (1, 'default');

-- (SQLite adds a column with REFERENCES only if its default is NULL:
-- dmarcd moves a removed group's domains back to group 1 itself.)
ALTER TABLE domains ADD COLUMN group_id INTEGER NOT NULL DEFAULT 1;
CREATE INDEX domains_group ON domains (group_id, name);

CREATE TABLE group_members (
    group_id    INTEGER NOT NULL REFERENCES domain_groups (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'analyst', 'viewer')),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
INSERT INTO group_members (group_id, user_id, role)
    SELECT 1, id, 'viewer' FROM users WHERE role <> 'admin';

ALTER TABLE api_tokens ADD COLUMN group_id INTEGER REFERENCES domain_groups (id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN group_role TEXT CHECK (group_role IN ('owner', 'analyst', 'viewer'));
