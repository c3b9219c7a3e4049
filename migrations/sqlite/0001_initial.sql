-- Users: email_key is the lower-cased email and carries uniqueness, so
-- Ada@x and ada@x cannot both exist.
CREATE TABLE users (
    id             BLOB PRIMARY KEY NOT NULL,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'user')),
    department     TEXT,
    password_hash  TEXT,
    disabled       INTEGER NOT NULL DEFAULT 0,
    -- tokens and sessions issued before this moment are void (logout-all,
    -- password and role changes); NULL means none revoked
    revoked_before TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE posts (
    id         BLOB PRIMARY KEY NOT NULL,
    author_id  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX posts_author ON posts (author_id);

-- Only hashes of session ids and refresh tokens are stored: a copy of the
-- database does not let anyone sign in.
CREATE TABLE sessions (
    id_hash             BLOB PRIMARY KEY NOT NULL,
    user_id             BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    idle_expires_at     TEXT NOT NULL,
    absolute_expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    family_id  BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE audit_events (
    id         BLOB PRIMARY KEY NOT NULL,
    time       TEXT NOT NULL,
    request_id TEXT,
    event      TEXT NOT NULL,
    user_id    BLOB,
    client_ip  TEXT,
    route      TEXT,
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied'))
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_event ON audit_events (event, time);
