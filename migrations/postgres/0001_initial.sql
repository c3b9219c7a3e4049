-- The same tables as migrations/sqlite, in PostgreSQL's types. Only hashes
-- of session ids, refresh tokens and CSRF tokens are stored.
CREATE TABLE users (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'user')),
    department     TEXT,
    password_hash  TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE posts (
    id         UUID PRIMARY KEY,
    author_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX posts_author ON posts (author_id);
CREATE INDEX posts_created ON posts (created_at);

CREATE TABLE sessions (
    id_hash             BYTEA PRIMARY KEY,
    user_id             UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_hash           BYTEA NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    idle_expires_at     TIMESTAMPTZ NOT NULL,
    absolute_expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    family_id  UUID NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE revocations (
    kind           TEXT NOT NULL CHECK (kind IN ('token', 'family', 'user')),
    subject        UUID NOT NULL,
    revoked_before TIMESTAMPTZ,
    expires_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX revocations_expiry ON revocations (expires_at);

CREATE TABLE audit_events (
    id         UUID PRIMARY KEY,
    time       TIMESTAMPTZ NOT NULL,
    request_id TEXT,
    event      TEXT NOT NULL,
    user_id    UUID,
    client_ip  TEXT,
    route      TEXT,
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail     TEXT
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_event ON audit_events (event, time);
