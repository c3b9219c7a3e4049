-- API keys for machine clients: `rk_<id>_<secret>`; only the SHA-256 of
-- the secret is stored. `scopes` holds the scope names separated by
-- spaces. Revoking a key deletes its row.
CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
CREATE INDEX api_keys_expiry ON api_keys (expires_at);
