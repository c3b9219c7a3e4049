//! Durable data behind one trait, so handlers never know which database
//! they talk to.
//!
//! `Store` speaks domain types and returns `StoreError`; it never imports
//! axum and never builds HTTP errors. SQLite (`sqlite.rs`) is the embedded
//! default; PostgreSQL (`postgres.rs`, chosen by a `postgres://` URL) is
//! for several instances. Both are held to one conformance suite
//! (`tests/store.rs`). Migrations are embedded per backend under
//! `migrations/<backend>/`.

mod cache;
mod postgres;
mod sqlite;

use std::{
    ops::Deref,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use bytes::Bytes;
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::{
    audit::AuditEvent,
    config::DatabaseConfig,
    domain::{Email, NewUser, Post, PostBody, PostTitle, PostWithAuthor, Role, User, UserName},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; names the field, e.g. `"email"`.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Other(other.into()),
        }
    }
}

/// What the store read, shared rather than copied: a cached value goes to
/// every reader as it is. `rendered` is for the API to keep its JSON of
/// this exact value, so that a cached one is serialised once rather than
/// per request (twenty posts were two thirds of `GET /api/posts`:
/// docs/performance.md, "Design choices and what they saved"). The store
/// never reads it; a write makes a new snapshot, so a kept body never
/// outlives the data it shows.
#[derive(Debug, Default)]
pub struct Snapshot<T> {
    pub value: T,
    pub rendered: OnceLock<Bytes>,
}

impl<T> Snapshot<T> {
    pub fn new(value: T) -> Arc<Self> {
        Arc::new(Self { value, rendered: OnceLock::new() })
    }
}

impl<T> Deref for Snapshot<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A page of posts, newest first (`Store::list_posts`).
pub type PostsPage = Snapshot<Vec<Post>>;

/// An account at an OAuth/OIDC provider, named by the provider's stable
/// subject identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: String,
    pub subject: String,
}

/// A sign-in in progress at a provider (see `auth::oauth`). Secrets of the
/// browser side (flow id, `state`) are kept only as hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFlow {
    pub id_hash: [u8; 32],
    pub provider: String,
    pub state_hash: [u8; 32],
    pub pkce_verifier: String,
    /// Empty for plain OAuth 2.0 providers, which have no ID token.
    pub nonce: String,
    pub redirect_to: String,
    pub expires_at: OffsetDateTime,
}

/// A user together with the password hash that only login may see.
#[derive(Debug)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: Option<String>,
}

/// An admin's change to a user; `None` leaves a field as it is, and
/// `department: Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub department: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// A refresh token as stored: only the SHA-256 of the token.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: [u8; 32],
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now spent; the caller issues the next one in `family_id`.
    Rotated { family_id: Uuid, user_id: Uuid },
    /// Already spent once: a copy is in someone else's hands.
    Reused { family_id: Uuid, user_id: Uuid },
    /// Revoked (logout, password change), expired, or never issued.
    Invalid,
}

/// A browser session as stored: hashes of its id and CSRF token only.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id_hash: [u8; 32],
    pub user_id: Uuid,
    pub csrf_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// Every access and refresh token of a refresh family.
    Family,
    /// Every token and session of a user issued before `revoked_before`.
    User,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Family => "family",
            Self::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub subject: Uuid,
    /// For `User`: the moment before which everything is void.
    pub revoked_before: Option<OffsetDateTime>,
    /// When every credential this could match has expired anyway.
    pub expires_at: OffsetDateTime,
}

/// Counts for the admin dashboard.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DashboardCounts {
    pub users: u64,
    pub admins: u64,
    pub managers: u64,
    pub plain_users: u64,
    pub disabled_users: u64,
    pub posts: u64,
    pub active_sessions: u64,
}

/// What `GET /api/admin/audit` may filter on; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub user_id: Option<Uuid>,
    pub client_ip: Option<std::net::IpAddr>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// A blocked client: an address or a network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Block {
    pub id: Uuid,
    /// An IP or CIDR, normalised (`203.0.113.7`, `2001:db8::/64`).
    pub ip: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = crate::openapi::date_time)]
    pub created_at: OffsetDateTime,
    /// `null`: the block never ends.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(schema_with = crate::openapi::nullable_date_time, required = true)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct BlockRow {
    id: Uuid,
    ip: String,
    reason: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
}

impl From<BlockRow> for Block {
    fn from(row: BlockRow) -> Self {
        Self { id: row.id, ip: row.ip, reason: row.reason, created_at: row.created_at, expires_at: row.expires_at }
    }
}

/// An audit row as both backends read it.
#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    id: Uuid,
    time: OffsetDateTime,
    request_id: Option<String>,
    event: String,
    user_id: Option<Uuid>,
    client_ip: Option<String>,
    route: Option<String>,
    outcome: String,
    detail: Option<String>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let outcome = crate::audit::Outcome::parse(&row.outcome)
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("audit_events.outcome holds {:?}", row.outcome)))?;
        Ok(AuditEvent {
            id: row.id,
            time: row.time,
            request_id: row.request_id,
            event: row.event.into(),
            user_id: row.user_id,
            client_ip: row.client_ip.and_then(|ip| ip.parse().ok()),
            route: row.route,
            outcome,
            detail: row.detail,
        })
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// One round trip, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    // Users.
    /// Fails with `Conflict("email")` when the email is taken, in any case.
    async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<User, StoreError>;
    /// `user_by_id`, shared (from the 1 s cache when it has the user): for
    /// `GET /api/profile`, which keeps its JSON in the snapshot.
    async fn user_snapshot(&self, id: Uuid) -> Result<Arc<Snapshot<User>>, StoreError>;
    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError>;
    async fn set_password_hash(&self, id: Uuid, phc: &str) -> Result<(), StoreError>;
    async fn rename_user(&self, id: Uuid, name: &UserName) -> Result<User, StoreError>;
    async fn change_user(&self, id: Uuid, changes: &UserChanges) -> Result<User, StoreError>;
    async fn delete_user(&self, id: Uuid) -> Result<(), StoreError>;
    /// Users ordered by id (creation order), after `after`, at most `limit`.
    async fn list_users(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, StoreError>;
    async fn count_admins(&self) -> Result<u64, StoreError>;
    /// Admins that are not disabled: the ones who can still administer.
    async fn count_active_admins(&self) -> Result<u64, StoreError>;

    // Refresh tokens.
    async fn insert_refresh_token(&self, record: &RefreshTokenRecord) -> Result<(), StoreError>;
    /// Atomically spends the token if it is live, and says what it found.
    async fn use_refresh_token(&self, token_hash: &[u8; 32], now: OffsetDateTime) -> Result<RefreshUse, StoreError>;
    async fn revoke_refresh_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError>;
    async fn revoke_user_refresh_tokens(&self, user_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError>;

    // Sessions.
    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError>;
    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError>;

    // Revocations (the durable copy of the in-memory list).
    async fn insert_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;
    async fn active_revocations(&self, now: OffsetDateTime) -> Result<Vec<Revocation>, StoreError>;
    /// Drops revocations, sessions, refresh tokens and OAuth flows that can no
    /// longer matter.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<(), StoreError>;

    // OAuth identities and flows.
    /// The user linked to a provider account, if any.
    async fn user_by_identity(&self, identity: &Identity) -> Result<Option<User>, StoreError>;
    /// Links a provider account to an existing user; `Conflict("identity")`
    /// when that provider account is already linked.
    async fn link_identity(&self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError>;
    /// Creates a password-less user and its link in one transaction.
    async fn create_user_with_identity(&self, new_user: NewUser, identity: &Identity) -> Result<User, StoreError>;
    async fn insert_oauth_flow(&self, flow: &OAuthFlow) -> Result<(), StoreError>;
    /// Deletes the flow and returns it when it has not expired: each flow
    /// can be finished once.
    async fn take_oauth_flow(&self, id_hash: &[u8; 32], now: OffsetDateTime) -> Result<Option<OAuthFlow>, StoreError>;

    // Posts.
    async fn create_post(&self, author_id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError>;
    /// The post and its author's department and role (for the policy).
    async fn post_by_id(&self, id: Uuid) -> Result<PostWithAuthor, StoreError>;
    async fn update_post(&self, id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError>;
    async fn delete_post(&self, id: Uuid) -> Result<(), StoreError>;
    /// Newest first, older than `before`, at most `limit`.
    async fn list_posts(&self, before: Option<Uuid>, limit: u32) -> Result<Arc<PostsPage>, StoreError>;
    async fn dashboard_counts(&self, now: OffsetDateTime) -> Result<DashboardCounts, StoreError>;

    // Blocks.
    async fn insert_block(&self, block: &Block) -> Result<(), StoreError>;
    async fn delete_block(&self, id: Uuid) -> Result<Block, StoreError>;
    /// Blocks in force at `now`, newest first, after `before`.
    async fn list_blocks(
        &self,
        now: OffsetDateTime,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Block>, StoreError>;

    // Audit.
    async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Deletes audit events older than `before`; returns how many.
    async fn purge_audit_events(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
    /// Sessions in force at `now` in the SQL store.
    async fn count_active_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
    /// Newest first, matching every filter given, older than `before`.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

/// Where browser sessions live: the SQL store by default (`SqlSessions`),
/// Redis when configured, so that sessions are shared by every instance.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError>;
    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError>;
}

/// Sessions in the SQL store's `sessions` table.
pub struct SqlSessions(pub Arc<dyn Store>);

#[async_trait]
impl SessionStore for SqlSessions {
    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.0.insert_session(record).await
    }
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.0.session(id_hash).await
    }
    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError> {
        self.0.extend_session(id_hash, idle_expires_at).await
    }
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.0.delete_session(id_hash).await
    }
    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError> {
        self.0.delete_user_sessions(user_id).await
    }
}

/// "Now" as the stores record it: to the microsecond, the precision
/// PostgreSQL keeps, so a value reads back exactly as it was returned.
pub fn now_stored() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now)
}

/// Opens the store that `database.url` names.
pub async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, config.max_connections).await?))
    } else {
        Ok(Arc::new(PostgresStore::connect(url, config.max_connections, None).await?))
    }
}
