-- How the session's user signed in: 'pwd' (a password) or 'oauth' (a
-- provider), reported as the session's amr. Earlier sessions were passwords'.
ALTER TABLE sessions ADD COLUMN sign_in TEXT NOT NULL DEFAULT 'pwd';
