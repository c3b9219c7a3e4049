-- TOTP: one authenticator per user. `confirmed_at` is NULL while an
-- enrolment waits for its first code; `last_step` is the last 30-second
-- step whose code was accepted (a code, or an older step's, never works
-- twice).
CREATE TABLE totp_factors (
    user_id      BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret       BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    confirmed_at TEXT,
    last_step    INTEGER
);

-- Recovery codes, SHA-256 only; each used once.
CREATE TABLE recovery_codes (
    code_hash BLOB PRIMARY KEY NOT NULL,
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at   TEXT
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- A sign-in waiting for its second step: the SHA-256 of the `mfa_token`,
-- the kind of login it completes ('tokens' or 'session'), how the first
-- factor was given ('pwd', 'oauth'), the attempts made.
CREATE TABLE mfa_challenges (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login_kind TEXT NOT NULL,
    sign_in    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

-- How the refresh family's sign-in was made, kept through rotations so
-- that every access token of the family reports the same amr.
ALTER TABLE refresh_tokens ADD COLUMN sign_in TEXT NOT NULL DEFAULT 'pwd';
