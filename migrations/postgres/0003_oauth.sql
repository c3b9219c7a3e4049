-- Accounts at OAuth/OIDC providers linked to users, by the provider's
-- stable subject (never by email alone).
CREATE TABLE oauth_identities (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user ON oauth_identities (user_id);

-- Sign-ins in progress: the browser holds a random flow id in a short-lived
-- cookie; only its hash is stored, with the hash of `state`, the PKCE
-- verifier and the OIDC nonce. A row is deleted when its callback arrives.
CREATE TABLE oauth_flows (
    id_hash       BYTEA PRIMARY KEY,
    provider      TEXT NOT NULL,
    state_hash    BYTEA NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    redirect_to   TEXT NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_flows_expiry ON oauth_flows (expires_at);
