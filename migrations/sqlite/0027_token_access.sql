-- What an API token may do: 'read' (GET and HEAD only) or 'write'; and
-- when it stops working. Tokens made before this migration keep writing
-- (scripts that use them keep working); `dmarcd token create` now makes
-- read-only tokens unless asked for --write.
ALTER TABLE api_tokens ADD COLUMN access TEXT NOT NULL DEFAULT 'write';
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
