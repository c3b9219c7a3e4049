-- Whether the account's email is proven: true for accounts made by the CLI,
-- `[bootstrap]` or a provider sign-in whose provider verified the address;
-- false for sign-ups (until Rampart's own verification) and for every
-- account that existed before. A provider sign-in is linked to an existing
-- account by email only when this is true (no pre-account hijacking).
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- A flow started with `?link=true` links the provider account to this
-- signed-in user instead of signing in; NULL for a sign-in.
ALTER TABLE oauth_flows ADD COLUMN link_user_id UUID REFERENCES users (id) ON DELETE CASCADE;
