-- Wrong authenticator codes in a row after a right password, and when the
-- last one came: past a few, two-step sign-in waits before it checks
-- another code, whatever address the guesses come from.
ALTER TABLE users ADD COLUMN totp_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_failed_at TIMESTAMPTZ;
