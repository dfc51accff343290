-- Domain groups (tenants): each domain belongs to one group; users other
-- than global admins see the domains of the groups they are members of,
-- with a role per group (owner, analyst, viewer). Group 1, "default",
-- holds every domain not given to another group, and every user who was
-- a viewer before groups existed, so a single-team install sees no change.
CREATE TABLE domain_groups (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO domain_groups (id, name) VALUES (1, 'default');
SELECT setval(pg_get_serial_sequence('domain_groups', 'id'), 1);

ALTER TABLE domains ADD COLUMN group_id BIGINT NOT NULL DEFAULT 1 REFERENCES domain_groups (id);
CREATE INDEX domains_group ON domains (group_id, name);

CREATE TABLE group_members (
    group_id    BIGINT NOT NULL REFERENCES domain_groups (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'analyst', 'viewer')),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
INSERT INTO group_members (group_id, user_id, role)
    SELECT 1, id, 'viewer' FROM users WHERE role <> 'admin';

-- A token may be limited to one group, with a role in it (viewer: read
-- only). NULL: the token sees what its maker sees.
ALTER TABLE api_tokens ADD COLUMN group_id BIGINT REFERENCES domain_groups (id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN group_role TEXT CHECK (group_role IN ('owner', 'analyst', 'viewer'));
