-- Single sign-on (src/oidc): a user who signs in through the OpenID
-- provider is tied to it by `issuer|sub` (a local user of the same name is
-- never taken over), and each sign-in under way keeps its state (hashed),
-- nonce and PKCE verifier here until the provider sends the browser back,
-- so that any node can finish it, once.
ALTER TABLE users ADD COLUMN sso_subject TEXT;
CREATE UNIQUE INDEX users_sso_subject ON users (sso_subject);

CREATE TABLE sso_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    next TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
