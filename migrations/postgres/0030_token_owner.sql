-- Tokens a user made for themselves on the Account page belong to them:
-- listed and revoked there, and gone with the user. Tokens made with
-- `dmarcd token create` belong to nobody (NULL).
ALTER TABLE api_tokens ADD COLUMN user_id BIGINT REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_user ON api_tokens (user_id);
