-- Blocked clients: an address or a CIDR, until `expires_at` (or until
-- lifted, when it is NULL).
CREATE TABLE blocks (
    id         BLOB PRIMARY KEY NOT NULL,
    ip         TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT
);
CREATE INDEX blocks_expiry ON blocks (expires_at);
