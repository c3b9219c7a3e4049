-- Revocations that must outlive a restart: single access tokens (by jti),
-- refresh families, and per-user "everything issued before this moment"
-- marks (which outlive the user row, so a deleted user's tokens stay dead).
-- Each row expires once every token it could match has expired.
CREATE TABLE revocations (
    kind           TEXT NOT NULL CHECK (kind IN ('token', 'family', 'user')),
    subject        BLOB NOT NULL,
    revoked_before TEXT,
    expires_at     TEXT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX revocations_expiry ON revocations (expires_at);

-- The CSRF token is kept as a hash too; it is shown once, at sign-in.
ALTER TABLE sessions RENAME COLUMN csrf_token TO csrf_hash;
