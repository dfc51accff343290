-- Two-step sign-in for local accounts (src/totp.rs): the secret of a user
-- who turned it on, the one being set up (until its first code confirms
-- it), and the time step of the last code used (a code works only once).
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
