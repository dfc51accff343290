-- Where each dashboard session was signed in from, so that users can tell
-- their sessions apart on the Account page and sign out the ones they do
-- not recognize. Sessions from before this migration have neither.
ALTER TABLE sessions ADD COLUMN address TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
CREATE INDEX sessions_user ON sessions (user_id);
