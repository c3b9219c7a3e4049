-- What a denied request tried (action and resource), for 403 audit events.
ALTER TABLE audit_events ADD COLUMN detail TEXT;
-- Newest-first listing walks the primary key backwards; this index serves
-- "posts by author" lookups for account deletion and dashboards.
CREATE INDEX IF NOT EXISTS posts_created ON posts (created_at);
