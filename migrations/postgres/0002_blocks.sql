-- Blocked clients: an address or a CIDR, until `expires_at` (or until
-- lifted, when it is NULL).
CREATE TABLE blocks (
    id         UUID PRIMARY KEY,
    ip         TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ
);
CREATE INDEX blocks_expiry ON blocks (expires_at);
