-- Passkeys (WebAuthn discoverable credentials). `credential_id` is what an
-- authenticator names the credential by; `passkey` is webauthn-rs's record
-- of it as JSON (public key, signature counter): nothing secret.
CREATE TABLE passkeys (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id BYTEA NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- A registration waiting for the authenticator's answer: one per user (a
-- new start replaces it), its ceremony state as JSON, for any instance.
CREATE TABLE passkey_registrations (
    user_id    UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- A passwordless sign-in waiting for the authenticator's answer.
CREATE TABLE passkey_sign_ins (
    id         UUID PRIMARY KEY,
    state      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX passkey_sign_ins_expiry ON passkey_sign_ins (expires_at);

-- A second step by passkey: the ceremony state the challenge started.
ALTER TABLE mfa_challenges ADD COLUMN passkey_state TEXT;
