//! Durable data behind traits, so handlers never know which database they
//! talk to.
//!
//! One trait per aggregate (`UserStore`, `TokenStore`, `SessionStore`,
//! `PostStore`, `AuditStore`, `BlockStore`, `IdentityStore`, `ApiKeyStore`,
//! `MailStore`); `Store` is
//! all of them plus what spans them (migrations, purging, dashboard counts,
//! a `UnitOfWork`). Every method speaks domain types and returns
//! `StoreError`; nothing here imports axum or builds HTTP errors.
//!
//! The SQL is written once (`sql.rs`, `$N` placeholders, which sqlx binds by
//! number on SQLite too) and instantiated for SQLite (`sqlite.rs`, the
//! embedded default) and PostgreSQL (`postgres.rs`, chosen by a
//! `postgres://` URL, for several instances); each of those two files holds
//! only its dialect: connecting, migrations, how a write transaction takes
//! its locks. `CachedStore` (`cache.rs`) wraps either with the short read
//! caches; it is the only place that knows them. Both backends are held to
//! one conformance suite (`tests/store.rs`). Migrations are embedded per
//! backend under `migrations/<backend>/`.

mod cache;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use uuid::Uuid;

pub use cache::CachedStore;
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

use crate::{
    config::DatabaseConfig,
    domain::{
        AuditEvent, Department, Email, NewUser, Post, PostBody, PostTitle, PostWithAuthor, Role, Scopes, User,
        UserName, text_enum,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; names the field, e.g. `"email"`.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The change would leave no active admin (see `UserStore::change_user`).
    #[error("the last active admin")]
    LastActiveAdmin,
    /// The database could not be reached or did not answer in time
    /// (`database.timeout`): 503, not a fault of the request.
    #[error("database unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            // The connection, not the statement: the database is down,
            // unreachable or saturated.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.into()),
            // PostgreSQL's statement_timeout (query_canceled), and
            // connection exceptions and shutdowns (class 08, 57P0x).
            sqlx::Error::Database(ref database)
                if database
                    .code()
                    .is_some_and(|code| code == "57014" || code.starts_with("08") || code.starts_with("57P")) =>
            {
                StoreError::Unavailable(error.into())
            }
            // SQLite's write lock held past busy_timeout.
            sqlx::Error::Database(ref database) if database.message().contains("database is locked") => {
                StoreError::Unavailable(error.into())
            }
            other => StoreError::Other(other.into()),
        }
    }
}

/// A page of posts, newest first (`PostStore::list_posts`), shared: a cached
/// page goes to every reader as it is.
pub type PostsPage = Vec<Post>;

/// An account at an OAuth/OIDC provider, named by the provider's stable
/// subject identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: String,
    pub subject: String,
}

/// A sign-in in progress at a provider (see `auth::oauth`). Secrets of the
/// browser side (flow id, `state`) are kept only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthFlow {
    #[sqlx(try_from = "Vec<u8>")]
    pub id_hash: [u8; 32],
    pub provider: String,
    #[sqlx(try_from = "Vec<u8>")]
    pub state_hash: [u8; 32],
    pub pkce_verifier: String,
    /// Empty for plain OAuth 2.0 providers, which have no ID token.
    pub nonce: String,
    pub redirect_to: String,
    pub expires_at: OffsetDateTime,
    /// Set by `start?link=true`: the signed-in user the provider account is
    /// linked to; `None` for a sign-in.
    pub link_user_id: Option<Uuid>,
}

/// A user together with the password hash that only login may see.
#[derive(Debug, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: Option<String>,
}

/// A change to a user (a rename by the user, or an admin's change); `None`
/// leaves a field as it is, and `department: Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub name: Option<UserName>,
    pub role: Option<Role>,
    pub department: Option<Option<Department>>,
    pub disabled: Option<bool>,
}

/// What `UserStore::apply_user_change` did, decided inside its transaction
/// from the row as it was (no cache).
#[derive(Debug, Clone)]
pub struct UserChange {
    pub user: User,
    pub role_changed: bool,
    /// The role or department changed, or the user was disabled: what the
    /// user's credentials were issued under no longer holds (their API keys
    /// are already deleted).
    pub access_changed: bool,
}

/// A refresh token as stored: only the SHA-256 of the token.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: [u8; 32],
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// How the family's sign-in was made; its successors keep it.
    pub sign_in: crate::domain::SignInMethod,
}

/// The refresh token that replaces a spent one in its family
/// (`TokenStore::rotate_refresh_token`): only its hash is stored.
#[derive(Debug, Clone)]
pub struct RefreshSuccessor {
    pub token_hash: [u8; 32],
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now spent; its successor is stored in `family_id`.
    Rotated { family_id: Uuid, user_id: Uuid, sign_in: crate::domain::SignInMethod },
    /// Already spent once: a copy is in someone else's hands.
    Reused { family_id: Uuid, user_id: Uuid },
    /// Revoked (logout, password change; marked on the token or in the
    /// stored revocations), expired, never issued, or its user is disabled
    /// or gone.
    Invalid,
}

/// A user's TOTP authenticator.
#[derive(Debug, Clone)]
pub struct TotpFactor {
    pub user_id: Uuid,
    pub secret: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// `None` while the enrolment waits for its first code.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The last 30-second step whose code was accepted.
    pub last_step: Option<i64>,
}

text_enum! {
    /// The login a second step completes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LoginKind {
        /// `POST /auth/login`: an access and a refresh token.
        Tokens = "tokens",
        /// `POST /auth/session` or a provider's callback: a browser session.
        Session = "session",
    }
    unknown = "must be tokens or session";
}

/// A sign-in waiting for its second step (`POST /auth/mfa`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaChallenge {
    #[sqlx(try_from = "Vec<u8>")]
    pub token_hash: [u8; 32],
    pub user_id: Uuid,
    pub login_kind: LoginKind,
    /// How the first factor was given.
    pub sign_in: crate::domain::SignInMethod,
    /// Attempts made, this one included once counted.
    pub attempts: i32,
    pub expires_at: OffsetDateTime,
    /// The passkey ceremony the challenge started (JSON), when the user
    /// has passkeys.
    pub passkey_state: Option<String>,
}

/// A registered passkey.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The authenticator's name for the credential.
    pub credential_id: Vec<u8>,
    pub name: String,
    /// webauthn-rs's `Passkey` as JSON: public key and signature counter.
    pub passkey: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A passkey registration waiting for the authenticator's answer.
#[derive(Debug, Clone)]
pub struct PendingPasskey {
    pub name: String,
    /// The ceremony state (JSON).
    pub state: String,
}

/// A browser session as stored: hashes of its id and CSRF token only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    #[sqlx(try_from = "Vec<u8>")]
    pub id_hash: [u8; 32],
    pub user_id: Uuid,
    #[sqlx(try_from = "Vec<u8>")]
    pub csrf_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    /// How the user signed in (the session's `amr`).
    pub sign_in: crate::domain::SignInMethod,
}

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RevocationKind {
        /// One access token, by `jti`.
        Token = "token",
        /// Every access and refresh token of a refresh family.
        Family = "family",
        /// Every token and session of a user issued before `revoked_before`.
        User = "user",
    }
    unknown = "not a revocation kind";
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub subject: Uuid,
    /// For `User`: the moment before which everything is void.
    pub revoked_before: Option<OffsetDateTime>,
    /// When every credential this could match has expired anyway.
    pub expires_at: OffsetDateTime,
}

/// An API key as stored: the SHA-256 of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// To the minute; `None` until first used.
    pub last_used_at: Option<OffsetDateTime>,
}

text_enum! {
    /// What a mailed link's token is for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum EmailPurpose {
        /// Proves the address (`POST /auth/email/verify`).
        VerifyEmail = "verify_email",
        /// Sets a new password (`POST /auth/password/reset`).
        ResetPassword = "reset_password",
    }
    unknown = "not an email token purpose";
}

/// A mailed link's token as stored: its SHA-256, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTokenRecord {
    pub token_hash: [u8; 32],
    pub purpose: EmailPurpose,
    pub user_id: Uuid,
    /// The address the link went to: it proves that address only.
    pub email: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A mail in the outbox: the finished message and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: Uuid,
    /// What it is (`verify_email`, `notice_password_changed`...), for logs.
    pub kind: String,
    /// Envelope sender and recipient (bare addresses).
    pub sender: String,
    pub recipient: String,
    /// The RFC 5322 message, its `Message-ID` included.
    pub message: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// Claims so far, this one included.
    pub attempts: u32,
}

/// Mails waiting in the outbox, and mails given up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub queued: u64,
    pub failed: u64,
}

/// Counts for the admin dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Block {
    pub id: Uuid,
    /// An IP or CIDR, normalised (`203.0.113.7`, `2001:db8::/64`).
    pub ip: String,
    pub reason: String,
    pub created_at: OffsetDateTime,
    /// `None`: the block never ends.
    pub expires_at: Option<OffsetDateTime>,
}

/// Accounts. The "last active admin" rule lives here, as one atomic step:
/// two concurrent demotions of the last two admins cannot both pass.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with `Conflict("email")` when the email is taken, in any case.
    async fn create_user(&self, new_user: NewUser) -> Result<User, StoreError>;
    /// The user, shared: the same `Arc` while a cached copy is current, a
    /// new one after any write to the user.
    async fn user_shared(&self, id: Uuid) -> Result<Arc<User>, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<User, StoreError> {
        Ok(User::clone(&*self.user_shared(id).await?))
    }
    async fn credentials_by_email(&self, email: &Email) -> Result<Option<UserCredentials>, StoreError>;
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError>;
    async fn set_password_hash(&self, id: Uuid, phc: &str) -> Result<(), StoreError>;
    /// Applies a change; `LastActiveAdmin` when it would demote or disable
    /// the only active admin. A change of role or department, or disabling,
    /// deletes the user's API keys in the same transaction, and says so.
    async fn apply_user_change(&self, id: Uuid, changes: &UserChanges) -> Result<UserChange, StoreError>;
    /// `apply_user_change`, for callers that need only the user.
    async fn change_user(&self, id: Uuid, changes: &UserChanges) -> Result<User, StoreError> {
        Ok(self.apply_user_change(id, changes).await?.user)
    }
    /// `LastActiveAdmin` when `id` is the only active admin.
    async fn delete_user(&self, id: Uuid) -> Result<(), StoreError>;
    /// Users ordered by id (creation order), after `after`, at most `limit`.
    async fn list_users(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<User>, StoreError>;
    async fn count_admins(&self) -> Result<u64, StoreError>;
}

/// Refresh tokens and the durable copy of the in-memory revocation list.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The first token of a family (a sign-in); `NotFound` when the user
    /// is gone (deleted while signing in).
    async fn insert_refresh_token(&self, record: &RefreshTokenRecord) -> Result<(), StoreError>;
    /// Spends the token and stores `successor` (issued at `now`) in its
    /// family, in one transaction that holds the lock its user's revocations
    /// take: the token must be live and unspent, its family and user not
    /// revoked (on the token or in the stored revocations), its user there
    /// and not disabled. Anything else writes nothing and says what it found.
    async fn rotate_refresh_token(
        &self,
        token_hash: &[u8; 32],
        successor: &RefreshSuccessor,
        now: OffsetDateTime,
    ) -> Result<RefreshUse, StoreError>;
    /// Marks every token of the family revoked, a successor of a rotation
    /// running meanwhile included (it waits for the rotation's lock).
    async fn revoke_refresh_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError>;
    /// As `revoke_refresh_family`, for every family of the user.
    async fn revoke_user_refresh_tokens(&self, user_id: Uuid, now: OffsetDateTime) -> Result<(), StoreError>;
    async fn insert_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;
    async fn active_revocations(&self, now: OffsetDateTime) -> Result<Vec<Revocation>, StoreError>;
}

/// Where browser sessions live: the SQL store by default, Redis
/// (`shared::RedisSessions`) when configured, so that every instance sees
/// them.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// `NotFound` when the user is gone (the SQL store's foreign key).
    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError>;
    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError>;
}

#[async_trait]
pub trait PostStore: Send + Sync {
    async fn create_post(&self, author_id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError>;
    /// The post and its author's department and role (for the policy).
    async fn post_by_id(&self, id: Uuid) -> Result<PostWithAuthor, StoreError>;
    async fn update_post(&self, id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError>;
    async fn delete_post(&self, id: Uuid) -> Result<(), StoreError>;
    /// Newest first, older than `before`, at most `limit`; shared like
    /// `UserStore::user_shared`.
    async fn list_posts(&self, before: Option<Uuid>, limit: u32) -> Result<Arc<PostsPage>, StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Deletes audit events older than `before`; returns how many.
    async fn purge_audit_events(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
    /// Newest first, matching every filter given, older than `before`.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;
}

#[async_trait]
pub trait BlockStore: Send + Sync {
    async fn insert_block(&self, block: &Block) -> Result<(), StoreError>;
    async fn delete_block(&self, id: Uuid) -> Result<Block, StoreError>;
    /// Blocks in force at `now`, newest first, after `before`.
    async fn list_blocks(
        &self,
        now: OffsetDateTime,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Block>, StoreError>;
}

/// OAuth identities (provider, subject) → user, and single-use sign-in flows.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The user linked to a provider account, if any.
    async fn user_by_identity(&self, identity: &Identity) -> Result<Option<User>, StoreError>;
    /// Links a provider account to an existing user; `Conflict("identity")`
    /// when that provider account is already linked.
    async fn link_identity(&self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError>;
    async fn insert_oauth_flow(&self, flow: &OAuthFlow) -> Result<(), StoreError>;
    /// Deletes the flow and returns it when it has not expired: each flow
    /// can be finished once.
    async fn take_oauth_flow(&self, id_hash: &[u8; 32], now: OffsetDateTime) -> Result<Option<OAuthFlow>, StoreError>;
}

/// API keys. Revoking one deletes it; a user's keys go with the user.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// `NotFound` when the user is gone.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// The key with this id, expired or not.
    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// The key and its owner as the database has them now (never cached);
    /// `None` when either is gone.
    async fn api_key_and_owner(&self, id: Uuid) -> Result<Option<(ApiKeyRecord, User)>, StoreError>;
    /// Keys still in force at `now`, by id after `after`, at most `limit`:
    /// one user's, or (`None`) everyone's.
    async fn list_api_keys(
        &self,
        user_id: Option<Uuid>,
        now: OffsetDateTime,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Deletes the key and returns it; with `owner`, only that user's key
    /// (another user's is `NotFound`, as a missing one).
    async fn delete_api_key(&self, id: Uuid, owner: Option<Uuid>) -> Result<ApiKeyRecord, StoreError>;
    /// Deletes every key of the user; returns how many.
    async fn delete_user_api_keys(&self, user_id: Uuid) -> Result<u64, StoreError>;
    /// Records when keys were last used; an older time never replaces a
    /// newer one.
    async fn touch_api_keys(&self, uses: &[(Uuid, OffsetDateTime)]) -> Result<(), StoreError>;
}

/// Second factors: the TOTP authenticator, recovery codes, and sign-ins
/// waiting for their second step. Turning TOTP on or off goes with its
/// notice mail, in `UnitOfWork`.
#[async_trait]
pub trait SecondFactorStore: Send + Sync {
    /// The user's TOTP factor, confirmed or pending.
    async fn totp_factor(&self, user_id: Uuid) -> Result<Option<TotpFactor>, StoreError>;
    /// Starts an enrolment (a new pending secret replaces a pending one);
    /// `Conflict("totp")` when the user's TOTP is already on, `NotFound`
    /// when the user is gone.
    async fn begin_totp(&self, user_id: Uuid, secret: &[u8], now: OffsetDateTime) -> Result<(), StoreError>;
    /// Records `step` as the last one accepted when it is later than the
    /// last; whether it was (of two uses of one code, one wins).
    async fn accept_totp_step(&self, user_id: Uuid, step: i64) -> Result<bool, StoreError>;
    /// Marks the user's unused recovery code with this hash used; whether
    /// it was unused.
    async fn use_recovery_code(
        &self,
        user_id: Uuid,
        code_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Recovery codes not used yet.
    async fn recovery_codes_left(&self, user_id: Uuid) -> Result<u64, StoreError>;
    /// `NotFound` when the user is gone.
    async fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> Result<(), StoreError>;
    /// Counts an attempt and returns the challenge, unless it is unknown,
    /// expired at `now`, or had `max_attempts` already.
    async fn attempt_mfa_challenge(
        &self,
        token_hash: &[u8; 32],
        now: OffsetDateTime,
        max_attempts: i32,
    ) -> Result<Option<MfaChallenge>, StoreError>;
    /// The challenge, unless it is unknown, expired at `now`, or had
    /// `max_attempts` already; no attempt is counted.
    async fn mfa_challenge(
        &self,
        token_hash: &[u8; 32],
        now: OffsetDateTime,
        max_attempts: i32,
    ) -> Result<Option<MfaChallenge>, StoreError>;
    /// Gives the challenge a new passkey ceremony (replacing its last).
    async fn set_mfa_passkey_state(&self, token_hash: &[u8; 32], passkey_state: &str) -> Result<(), StoreError>;
    /// Deletes the challenge; whether it was there (whoever deletes it
    /// finishes the sign-in, once).
    async fn take_mfa_challenge(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError>;
    /// Deletes every challenge of the user (sign-ins half done when their
    /// credentials are revoked).
    async fn delete_user_mfa_challenges(&self, user_id: Uuid) -> Result<(), StoreError>;
}

/// Passkeys and their ceremonies waiting for an authenticator's answer
/// (kept here, not in memory, so that any instance finishes them). Adding
/// and removing one goes with its notice mail, in `UnitOfWork`.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// The user's passkeys, oldest first.
    async fn passkeys(&self, user_id: Uuid) -> Result<Vec<PasskeyRecord>, StoreError>;
    async fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError>;
    /// Keeps the credential's new state (its signature counter) after a use.
    async fn record_passkey_use(&self, id: Uuid, passkey: &str, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Starts a registration, replacing the user's pending one; `NotFound`
    /// when the user is gone.
    async fn begin_passkey_registration(
        &self,
        user_id: Uuid,
        pending: &PendingPasskey,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Deletes the user's pending registration and returns it when it was
    /// unexpired at `now`: each ceremony is finished once.
    async fn take_passkey_registration(
        &self,
        user_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<PendingPasskey>, StoreError>;
    async fn insert_passkey_sign_in(&self, id: Uuid, state: &str, expires_at: OffsetDateTime)
    -> Result<(), StoreError>;
    /// Deletes the sign-in ceremony and returns its state when it was
    /// unexpired at `now`.
    async fn take_passkey_sign_in(&self, id: Uuid, now: OffsetDateTime) -> Result<Option<String>, StoreError>;
}

/// Mailed links' tokens and the outbox. Writes that go with what caused
/// them (a sign-up and its verification mail) are in `UnitOfWork`.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// The unexpired token with this hash and purpose, left in place.
    async fn email_token(
        &self,
        token_hash: &[u8; 32],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<EmailTokenRecord>, StoreError>;
    /// When the user's newest token of this purpose was made.
    async fn latest_email_token_at(
        &self,
        user_id: Uuid,
        purpose: EmailPurpose,
    ) -> Result<Option<OffsetDateTime>, StoreError>;
    /// Claims up to `limit` mails due at `now` for one worker until
    /// `lease_until` (when, unsent, they are due again), counting the
    /// attempt. Mails another worker holds are skipped, not waited for.
    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMail>, StoreError>;
    /// The server accepted the mail: it leaves the outbox.
    async fn mail_sent(&self, id: Uuid) -> Result<(), StoreError>;
    /// Not sent; due again at `next_attempt_at`.
    async fn mail_deferred(&self, id: Uuid, next_attempt_at: OffsetDateTime, error: &str) -> Result<(), StoreError>;
    /// Given up at `at`: kept, never sent.
    async fn mail_failed(&self, id: Uuid, at: OffsetDateTime, error: &str) -> Result<(), StoreError>;
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
}

/// Every aggregate, plus what spans them.
#[async_trait]
pub trait Store:
    UserStore
    + TokenStore
    + SessionStore
    + PostStore
    + AuditStore
    + BlockStore
    + IdentityStore
    + ApiKeyStore
    + MailStore
    + SecondFactorStore
    + PasskeyStore
{
    /// Applies pending migrations; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// One round trip, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Drops revocations, sessions, refresh tokens, OAuth flows, API keys
    /// and mailed links' tokens that can no longer matter, and mails given
    /// up more than 30 days ago.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Sessions in force at `now` in the SQL store.
    async fn count_active_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
    async fn dashboard_counts(&self, now: OffsetDateTime) -> Result<DashboardCounts, StoreError>;
    /// One transaction across aggregates: every write in it lands, or none.
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError>;
}

/// Writes that must land together (a user and their provider link; a mail
/// and what caused it). Dropped without `commit`, nothing it wrote
/// remains.
#[async_trait]
pub trait UnitOfWork: Send {
    /// As `UserStore::create_user`.
    async fn create_user(&mut self, new_user: NewUser) -> Result<User, StoreError>;
    /// As `IdentityStore::link_identity`.
    async fn link_identity(&mut self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError>;
    /// As `UserStore::set_password_hash`.
    async fn set_password_hash(&mut self, id: Uuid, phc: &str) -> Result<(), StoreError>;
    /// Removes every provider account linked to the user; how many.
    async fn unlink_identities(&mut self, user_id: Uuid) -> Result<u64, StoreError>;
    /// Marks the user's address proven when it is still `email`; whether it is.
    async fn set_email_verified(&mut self, id: Uuid, email: &str) -> Result<bool, StoreError>;
    /// As `ApiKeyStore::insert_api_key`.
    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// `NotFound` when the user is gone.
    async fn insert_email_token(&mut self, token: &EmailTokenRecord) -> Result<(), StoreError>;
    /// Deletes the token and returns it when it was unexpired: each token
    /// is used once.
    async fn take_email_token(
        &mut self,
        token_hash: &[u8; 32],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<EmailTokenRecord>, StoreError>;
    /// Deletes every token of this purpose of the user.
    async fn delete_email_tokens(&mut self, user_id: Uuid, purpose: EmailPurpose) -> Result<(), StoreError>;
    /// Puts a mail in the outbox, due at once (`created_at`).
    async fn enqueue_mail(&mut self, mail: &OutboxMail) -> Result<(), StoreError>;
    /// Turns the pending TOTP factor on, `step` (its first code's) as the
    /// last accepted, with these recovery codes (replacing any); whether a
    /// factor was pending.
    async fn confirm_totp(
        &mut self,
        user_id: Uuid,
        step: i64,
        recovery_code_hashes: &[[u8; 32]],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Removes the TOTP factor and the recovery codes; whether there was one.
    async fn delete_totp(&mut self, user_id: Uuid) -> Result<bool, StoreError>;
    /// `Conflict("passkey")` when the credential is registered already
    /// (to anyone), `NotFound` when the user is gone.
    async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<(), StoreError>;
    /// Deletes the owner's passkey and returns it; another user's is
    /// `NotFound`, as a missing one.
    async fn delete_passkey(&mut self, id: Uuid, owner: Uuid) -> Result<PasskeyRecord, StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// "Now" as the stores record it: to the microsecond, the precision
/// PostgreSQL keeps, so a value reads back exactly as it was returned.
pub fn now_stored() -> OffsetDateTime {
    truncate_to_stored(OffsetDateTime::now_utc())
}

/// `at` to the microsecond, as the stores keep it.
pub fn truncate_to_stored(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000).unwrap_or(at)
}

/// Opens the store that `database.url` names, with its read caches.
pub async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.expose_secret();
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_with_timeout(url, config.max_connections, config.timeout.0).await?;
        Ok(Arc::new(CachedStore::new(store)))
    } else {
        let store = PostgresStore::connect_with_timeout(url, config.max_connections, config.timeout.0).await?;
        Ok(Arc::new(CachedStore::new(store)))
    }
}
