//! The embedded default: SQLite in WAL mode with foreign keys on.
//!
//! Timestamps are stored by sqlx's `OffsetDateTime` encoding, always in UTC,
//! so text order is time order. Ids are UUIDv7 blobs, ordered by creation.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AuditFilter, AuditRow, Block, BlockRow, DashboardCounts, Identity, OAuthFlow, PostsPage, RefreshTokenRecord,
    RefreshUse, Revocation, RevocationKind, SessionRecord, Snapshot, Store, StoreError, UserChanges, UserCredentials,
    cache::{LatestPostsCache, UserCache},
};
use crate::{
    audit::AuditEvent,
    domain::{Email, NewUser, Post, PostBody, PostTitle, PostWithAuthor, Role, User, UserName},
};

pub struct SqliteStore {
    pool: SqlitePool,
    users: UserCache,
    latest_posts: LatestPostsCache,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, and its folder.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .context("database.url is not a valid sqlite: URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(folder) = Path::new(options.get_filename()).parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fs::create_private_dir(folder).context("the database folder")?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("cannot open the SQLite database")?;
        Ok(Self { pool, users: UserCache::default(), latest_posts: LatestPostsCache::default() })
    }
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::from_str(&role).map_err(|_| anyhow::anyhow!("users.role holds unknown value {role:?}"))?,
        department: row.try_get("department")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn post_from_row(row: &SqliteRow) -> Result<Post, StoreError> {
    Ok(Post {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        author_id: row.try_get("author_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn hash_from_row(row: &SqliteRow, column: &str) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes.try_into().map_err(|_| StoreError::Other(anyhow::anyhow!("{column} is not a 32-byte hash")))
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: hash_from_row(row, "id_hash")?,
        user_id: row.try_get("user_id")?,
        csrf_hash: hash_from_row(row, "csrf_hash")?,
        created_at: row.try_get("created_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
    })
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

async fn insert_user<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    new_user: NewUser,
) -> Result<User, StoreError> {
    let now = super::now_stored();
    let user = User {
        id: Uuid::now_v7(),
        email: new_user.email.as_str().to_owned(),
        name: new_user.name.as_str().to_owned(),
        role: new_user.role,
        department: new_user.department,
        disabled: false,
        created_at: now,
    };
    let result = sqlx::query(
        "INSERT INTO users (id, email, email_key, name, role, department, password_hash, disabled, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
    )
    .bind(user.id)
    .bind(&user.email)
    .bind(new_user.email.key())
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(&user.department)
    .bind(&new_user.password_hash)
    .bind(now)
    .bind(now)
    .execute(executor)
    .await;
    match result {
        Ok(_) => Ok(user),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict("email")),
        Err(error) => Err(error.into()),
    }
}

async fn insert_identity<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    identity: &Identity,
    user_id: Uuid,
) -> Result<(), StoreError> {
    let result =
        sqlx::query("INSERT INTO oauth_identities (provider, subject, user_id, created_at) VALUES (?, ?, ?, ?)")
            .bind(&identity.provider)
            .bind(&identity.subject)
            .bind(user_id)
            .bind(super::now_stored())
            .execute(executor)
            .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict("identity")),
        Err(error) => Err(error.into()),
    }
}

fn oauth_flow_from_row(row: &SqliteRow) -> Result<OAuthFlow, StoreError> {
    Ok(OAuthFlow {
        id_hash: hash_from_row(row, "id_hash")?,
        provider: row.try_get("provider")?,
        state_hash: hash_from_row(row, "state_hash")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        nonce: row.try_get("nonce")?,
        redirect_to: row.try_get("redirect_to")?,
        expires_at: row.try_get("expires_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await.context("applying SQLite migrations")?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError> {
        insert_user(&self.pool, new_user).await
    }

    async fn user_by_id(&self, id: Uuid) -> Result<User, StoreError> {
        Ok(self.user_snapshot(id).await?.value.clone())
    }

    async fn user_snapshot(&self, id: Uuid) -> Result<Arc<Snapshot<User>>, StoreError> {
        if let Some(user) = self.users.get(id) {
            return Ok(user);
        }
        let row = sqlx::query("SELECT id, email, name, role, department, disabled, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        let user = Snapshot::new(user_from_row(&row)?);
        self.users.put(&user);
        Ok(user)
    }

    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, role, department, disabled, created_at, password_hash FROM users WHERE email_key = ?",
        )
            .bind(email.key())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(UserCredentials { user: user_from_row(&row)?, password_hash: row.try_get("password_hash")? }))
            .transpose()
    }

    async fn count_admins(&self) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetch_one(&self.pool).await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?").bind(id).fetch_one(&self.pool).await?;
        Ok(hash)
    }

    async fn set_password_hash(&self, id: Uuid, phc: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(phc)
            .bind(super::now_stored())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn rename_user(&self, id: Uuid, name: &UserName) -> Result<User, StoreError> {
        let done = sqlx::query("UPDATE users SET name = ?, updated_at = ? WHERE id = ?")
            .bind(name.as_str())
            .bind(super::now_stored())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // A read during the update may have cached the old row.
        self.users.forget(id);
        self.user_by_id(id).await
    }

    async fn change_user(&self, id: Uuid, changes: &UserChanges) -> Result<User, StoreError> {
        // One statement: a read-then-write transaction could fail in WAL
        // mode when another connection writes in between.
        let done = sqlx::query(
            "UPDATE users SET role = COALESCE(?, role), \
                              department = CASE WHEN ? THEN ? ELSE department END, \
                              disabled = COALESCE(?, disabled), \
                              updated_at = ? \
             WHERE id = ?",
        )
        .bind(changes.role.map(Role::as_str))
        .bind(changes.department.is_some())
        .bind(changes.department.clone().flatten())
        .bind(changes.disabled)
        .bind(super::now_stored())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // A read during the update may have cached the old row.
        self.users.forget(id);
        self.user_by_id(id).await
    }

    async fn delete_user(&self, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?").bind(id).execute(&self.pool).await?;
        self.users.forget(id);
        self.latest_posts.invalidate();
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn list_users(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, StoreError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, email, name, role, department, disabled, created_at FROM users WHERE 1 = 1",
        );
        if let Some(after) = after {
            query.push(" AND id > ").push_bind(after);
        }
        query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_active_admins(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn insert_refresh_token(&self, record: &RefreshTokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&record.token_hash[..])
        .bind(record.family_id)
        .bind(record.user_id)
        .bind(record.issued_at)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn use_refresh_token(&self, token_hash: &[u8; 32], now: OffsetDateTime) -> Result<RefreshUse, StoreError> {
        // The conditional UPDATE is the single-use guarantee: of two
        // concurrent uses, exactly one changes the row.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? \
             RETURNING family_id, user_id",
        )
        .bind(now)
        .bind(&token_hash[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = spent {
            return Ok(RefreshUse::Rotated { family_id: row.try_get("family_id")?, user_id: row.try_get("user_id")? });
        }
        let found =
            sqlx::query("SELECT family_id, user_id, used_at, revoked_at FROM refresh_tokens WHERE token_hash = ?")
                .bind(&token_hash[..])
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = found else { return Ok(RefreshUse::Invalid) };
        let used_at: Option<OffsetDateTime> = row.try_get("used_at")?;
        if used_at.is_some() {
            return Ok(RefreshUse::Reused { family_id: row.try_get("family_id")?, user_id: row.try_get("user_id")? });
        }
        Ok(RefreshUse::Invalid)
    }

    async fn revoke_refresh_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(family_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_user_refresh_tokens(&self, user_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_hash, created_at, idle_expires_at, absolute_expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.id_hash[..])
        .bind(record.user_id)
        .bind(&record.csrf_hash[..])
        .bind(record.created_at)
        .bind(record.idle_expires_at)
        .bind(record.absolute_expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, user_id, csrf_hash, created_at, idle_expires_at, absolute_expires_at \
             FROM sessions WHERE id_hash = ?",
        )
        .bind(&id_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET idle_expires_at = ? WHERE id_hash = ?")
            .bind(idle_expires_at)
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(&id_hash[..]).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocations (kind, subject, revoked_before, expires_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (kind, subject) DO UPDATE SET \
             revoked_before = excluded.revoked_before, expires_at = MAX(expires_at, excluded.expires_at)",
        )
        .bind(revocation.kind.as_str())
        .bind(revocation.subject)
        .bind(revocation.revoked_before)
        .bind(revocation.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn active_revocations(&self, now: OffsetDateTime) -> Result<Vec<Revocation>, StoreError> {
        let rows =
            sqlx::query("SELECT kind, subject, revoked_before, expires_at FROM revocations WHERE expires_at > ?")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let kind = match kind.as_str() {
                    "token" => RevocationKind::Token,
                    "family" => RevocationKind::Family,
                    "user" => RevocationKind::User,
                    other => return Err(StoreError::Other(anyhow::anyhow!("unknown revocation kind {other:?}"))),
                };
                Ok(Revocation {
                    kind,
                    subject: row.try_get("subject")?,
                    revoked_before: row.try_get("revoked_before")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .collect()
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM revocations WHERE expires_at <= ?").bind(now).execute(&self.pool).await?;
        sqlx::query("DELETE FROM sessions WHERE idle_expires_at <= ? OR absolute_expires_at <= ?")
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= ?").bind(now).execute(&self.pool).await?;
        sqlx::query("DELETE FROM oauth_flows WHERE expires_at <= ?").bind(now).execute(&self.pool).await?;
        Ok(())
    }

    async fn user_by_identity(&self, identity: &Identity) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.role, u.department, u.disabled, u.created_at \
             FROM oauth_identities i JOIN users u ON u.id = i.user_id WHERE i.provider = ? AND i.subject = ?",
        )
        .bind(&identity.provider)
        .bind(&identity.subject)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn link_identity(&self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError> {
        insert_identity(&self.pool, identity, user_id).await
    }

    async fn create_user_with_identity(&self, new_user: NewUser, identity: &Identity) -> Result<User, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let user = insert_user(&mut *transaction, new_user).await?;
        insert_identity(&mut *transaction, identity, user.id).await?;
        transaction.commit().await?;
        Ok(user)
    }

    async fn insert_oauth_flow(&self, flow: &OAuthFlow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_flows (id_hash, provider, state_hash, pkce_verifier, nonce, redirect_to, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&flow.id_hash[..])
        .bind(&flow.provider)
        .bind(&flow.state_hash[..])
        .bind(&flow.pkce_verifier)
        .bind(&flow.nonce)
        .bind(&flow.redirect_to)
        .bind(flow.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_oauth_flow(&self, id_hash: &[u8; 32], now: OffsetDateTime) -> Result<Option<OAuthFlow>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oauth_flows WHERE id_hash = ? \
             RETURNING id_hash, provider, state_hash, pkce_verifier, nonce, redirect_to, expires_at",
        )
        .bind(&id_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        let flow = row.as_ref().map(oauth_flow_from_row).transpose()?;
        Ok(flow.filter(|flow| flow.expires_at > now))
    }

    async fn purge_audit_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_events WHERE time < ?").bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn count_active_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE idle_expires_at > ? AND absolute_expires_at > ?")
                .bind(now)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, time, request_id, event, user_id, client_ip, route, outcome, detail FROM audit_events WHERE 1 = 1",
        );
        if let Some(event) = &filter.event {
            query.push(" AND event = ").push_bind(event.clone());
        }
        if let Some(user_id) = filter.user_id {
            query.push(" AND user_id = ").push_bind(user_id);
        }
        if let Some(ip) = filter.client_ip {
            query.push(" AND client_ip = ").push_bind(ip.to_string());
        }
        if let Some(from) = filter.from {
            query.push(" AND time >= ").push_bind(from);
        }
        if let Some(to) = filter.to {
            query.push(" AND time <= ").push_bind(to);
        }
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    async fn insert_block(&self, block: &Block) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO blocks (id, ip, reason, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(block.id)
            .bind(&block.ip)
            .bind(&block.reason)
            .bind(block.created_at)
            .bind(block.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_block(&self, id: Uuid) -> Result<Block, StoreError> {
        let row: BlockRow =
            sqlx::query_as("DELETE FROM blocks WHERE id = ? RETURNING id, ip, reason, created_at, expires_at")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.into())
    }

    async fn list_blocks(
        &self,
        now: OffsetDateTime,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Block>, StoreError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, ip, reason, created_at, expires_at FROM blocks WHERE (expires_at IS NULL OR expires_at > ",
        );
        query.push_bind(now).push(")");
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<BlockRow> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Block::from).collect())
    }

    async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO audit_events (id, time, request_id, event, user_id, client_ip, route, outcome, detail) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(event.id)
            .bind(event.time)
            .bind(&event.request_id)
            .bind(event.event.as_ref())
            .bind(event.user_id)
            .bind(event.client_ip.map(|ip| ip.to_string()))
            .bind(&event.route)
            .bind(event.outcome.as_str())
            .bind(&event.detail)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn create_post(&self, author_id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError> {
        let now = super::now_stored();
        let post = Post {
            id: Uuid::now_v7(),
            title: title.as_str().to_owned(),
            body: body.as_str().to_owned(),
            author_id,
            created_at: now,
            updated_at: now,
        };
        sqlx::query("INSERT INTO posts (id, author_id, title, body, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(post.id)
            .bind(post.author_id)
            .bind(&post.title)
            .bind(&post.body)
            .bind(post.created_at)
            .bind(post.updated_at)
            .execute(&self.pool)
            .await?;
        self.latest_posts.invalidate();
        Ok(post)
    }

    async fn post_by_id(&self, id: Uuid) -> Result<PostWithAuthor, StoreError> {
        let row = sqlx::query(
            "SELECT p.id, p.title, p.body, p.author_id, p.created_at, p.updated_at, \
                    u.department AS author_department, u.role AS author_role \
             FROM posts p LEFT JOIN users u ON u.id = p.author_id WHERE p.id = ?",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let role: Option<String> = row.try_get("author_role")?;
        Ok(PostWithAuthor {
            post: post_from_row(&row)?,
            author_department: row.try_get("author_department")?,
            author_role: role.and_then(|role| Role::from_str(&role).ok()),
        })
    }

    async fn update_post(&self, id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError> {
        let row = sqlx::query(
            "UPDATE posts SET title = ?, body = ?, updated_at = ? WHERE id = ? \
             RETURNING id, title, body, author_id, created_at, updated_at",
        )
        .bind(title.as_str())
        .bind(body.as_str())
        .bind(super::now_stored())
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        self.latest_posts.invalidate();
        post_from_row(&row)
    }

    async fn delete_post(&self, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM posts WHERE id = ?").bind(id).execute(&self.pool).await?;
        self.latest_posts.invalidate();
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn list_posts(&self, before: Option<Uuid>, limit: u32) -> Result<Arc<PostsPage>, StoreError> {
        let generation = match before {
            None => match self.latest_posts.get(limit) {
                Ok(posts) => return Ok(posts),
                Err(generation) => Some(generation),
            },
            Some(_) => None,
        };
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, title, body, author_id, created_at, updated_at FROM posts WHERE 1 = 1",
        );
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        let page = PostsPage::new(rows.iter().map(post_from_row).collect::<Result<Vec<_>, _>>()?);
        if let Some(generation) = generation {
            self.latest_posts.put(generation, limit, &page);
        }
        Ok(page)
    }

    async fn dashboard_counts(&self, now: OffsetDateTime) -> Result<DashboardCounts, StoreError> {
        let users = sqlx::query(
            "SELECT COUNT(*) AS total, \
                    COALESCE(SUM(role = 'admin'), 0) AS admins, \
                    COALESCE(SUM(role = 'manager'), 0) AS managers, \
                    COALESCE(SUM(role = 'user'), 0) AS plain_users, \
                    COALESCE(SUM(disabled), 0) AS disabled \
             FROM users",
        )
        .fetch_one(&self.pool)
        .await?;
        let posts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM posts").fetch_one(&self.pool).await?;
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE idle_expires_at > ? AND absolute_expires_at > ?")
                .bind(now)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(DashboardCounts {
            users: count(users.try_get("total")?),
            admins: count(users.try_get("admins")?),
            managers: count(users.try_get("managers")?),
            plain_users: count(users.try_get("plain_users")?),
            disabled_users: count(users.try_get("disabled")?),
            posts: count(posts),
            active_sessions: count(sessions),
        })
    }
}
