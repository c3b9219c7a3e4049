-- Links mailed to prove an address (`verify_email`, 24 h) or to set a new
-- password (`reset_password`, 30 min). Only the SHA-256 of the token is
-- stored; a token is deleted when it is used. `email` is the address it
-- was sent to: a link proves that address, no other.
CREATE TABLE email_tokens (
    token_hash BYTEA PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose, created_at);
CREATE INDEX email_tokens_expiry ON email_tokens (expires_at);

-- The durable outbox: each mail is written in the transaction of what
-- caused it, as the finished RFC 5322 message (its Message-ID included, so
-- a resend is the same message), and deleted once the SMTP server accepted
-- it. `next_attempt_at` is also the lease of a worker that claimed it: a
-- worker that dies mid-send leaves it due again when the lease ends.
-- `failed_at` marks a mail given up (refused for good, or too old).
CREATE TABLE outbox (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL,
    sender          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    message         BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    failed_at       TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE failed_at IS NULL;
