//! `CachedStore`: short-lived read caches around any `Store`, so that the
//! hottest reads skip a database round trip (on SQLite also two thread
//! hand-offs): users by id (a profile, a session's owner) and the first
//! page of posts.
//!
//! Entries live `TTL`; every write through this wrapper drops what it
//! could have changed at once, here and only here; another instance's
//! writes show after at most `TTL`. Nothing that refuses access depends on
//! these caches: tokens and sessions are checked against the revocation
//! list on every request. A cached value is handed out as the same `Arc`
//! until it is dropped, which the API uses to render its JSON once per
//! value (`routes::shared_json`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiKeyRecord, ApiKeyStore, AuditFilter, AuditStore, Block, BlockStore, DashboardCounts, EmailPurpose,
    EmailTokenRecord, Identity, IdentityStore, MailStore, MfaChallenge, OAuthFlow, OutboxCounts, OutboxMail,
    PasskeyRecord, PasskeyStore, PendingPasskey, PostStore, PostsPage, RefreshSuccessor, RefreshTokenRecord,
    RefreshUse, Revocation, SecondFactorStore, SessionRecord, SessionStore, Store, StoreError, TokenStore, TotpFactor,
    UnitOfWork, UserChange, UserChanges, UserCredentials, UserStore,
};
use crate::domain::{AuditEvent, Email, NewUser, Post, PostBody, PostTitle, PostWithAuthor, User};

const TTL: Duration = Duration::from_secs(1);
/// Past this many entries the user cache starts over (a burst of distinct
/// users must not grow memory).
const MAX_ENTRIES: usize = 10_000;

/// A store with read caches in front of it.
pub struct CachedStore<S> {
    inner: S,
    caches: Arc<Caches>,
}

#[derive(Default)]
struct Caches {
    users: UserCache,
    latest_posts: LatestPostsCache,
}

impl Caches {
    /// After a write whose reach is not known (a unit of work).
    fn forget_everything(&self) {
        self.users.clear();
        self.latest_posts.invalidate();
    }
}

impl<S: Store> CachedStore<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, caches: Arc::default() }
    }
}

#[derive(Default)]
struct UserCache {
    entries: Mutex<HashMap<Uuid, (Instant, Arc<User>)>>,
}

impl UserCache {
    fn get(&self, id: Uuid) -> Option<Arc<User>> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).filter(|(read, _)| read.elapsed() < TTL).map(|(_, user)| user.clone())
    }

    fn put(&self, user: &Arc<User>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(user.id, (Instant::now(), user.clone()));
        }
    }

    fn forget(&self, id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

struct CachedPage {
    read: Instant,
    generation: u64,
    limit: u32,
    page: Arc<PostsPage>,
}

/// The newest posts (the first page, `before = None`) for one `limit`.
/// A read that started before a write must not store what it saw, so each
/// write bumps a generation and `put` only keeps rows of the current one.
#[derive(Default)]
struct LatestPostsCache {
    generation: AtomicU64,
    page: Mutex<Option<CachedPage>>,
}

impl LatestPostsCache {
    /// The cached page, or the generation to hand to `put` after reading.
    fn get(&self, limit: u32) -> Result<Arc<PostsPage>, u64> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Ok(cached) = self.page.lock()
            && let Some(cached) = cached.as_ref()
            && cached.generation == generation
            && cached.limit == limit
            && cached.read.elapsed() < TTL
        {
            return Ok(cached.page.clone());
        }
        Err(generation)
    }

    fn put(&self, generation: u64, limit: u32, page: &Arc<PostsPage>) {
        if let Ok(mut cached) = self.page.lock()
            && self.generation.load(Ordering::Acquire) == generation
        {
            *cached = Some(CachedPage { read: Instant::now(), generation, limit, page: page.clone() });
        }
    }

    /// After any write to posts (or to users, whose deletion removes posts).
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut page) = self.page.lock() {
            *page = None;
        }
    }
}

/// `impl $trait for CachedStore<S>`: the methods listed by signature pass
/// straight through to the inner store; the items after them are the ones
/// this wrapper caches or invalidates.
macro_rules! cached_store_impl {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* } $($own:item)*) => {
        #[async_trait]
        impl<S: Store> $trait for CachedStore<S> {
            $(async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                self.inner.$name($($arg),*).await
            })*
            $($own)*
        }
    };
}

cached_store_impl!(UserStore {
    fn create_user(&self, new_user: NewUser) -> User;
    fn credentials_by_email(&self, email: &Email) -> Option<UserCredentials>;
    fn password_hash(&self, id: Uuid) -> Option<String>;
    fn set_password_hash(&self, id: Uuid, phc: &str) -> ();
    fn list_users(&self, after: Option<Uuid>, limit: u32) -> Vec<User>;
    fn count_admins(&self) -> u64;
}
    async fn user_shared(&self, id: Uuid) -> Result<Arc<User>, StoreError> {
        if let Some(user) = self.caches.users.get(id) {
            return Ok(user);
        }
        let user = self.inner.user_shared(id).await?;
        self.caches.users.put(&user);
        Ok(user)
    }

    // A read that ran during a write may have cached the old row, so each
    // write forgets the user after it lands, not before.
    async fn apply_user_change(&self, id: Uuid, changes: &UserChanges) -> Result<UserChange, StoreError> {
        let result = self.inner.apply_user_change(id, changes).await;
        self.caches.users.forget(id);
        result
    }

    async fn delete_user(&self, id: Uuid) -> Result<(), StoreError> {
        let result = self.inner.delete_user(id).await;
        self.caches.users.forget(id);
        self.caches.latest_posts.invalidate();
        result
    }
);

cached_store_impl!(PostStore {
    fn post_by_id(&self, id: Uuid) -> PostWithAuthor;
}
    async fn create_post(&self, author_id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError> {
        let result = self.inner.create_post(author_id, title, body).await;
        self.caches.latest_posts.invalidate();
        result
    }

    async fn update_post(&self, id: Uuid, title: &PostTitle, body: &PostBody) -> Result<Post, StoreError> {
        let result = self.inner.update_post(id, title, body).await;
        self.caches.latest_posts.invalidate();
        result
    }

    async fn delete_post(&self, id: Uuid) -> Result<(), StoreError> {
        let result = self.inner.delete_post(id).await;
        self.caches.latest_posts.invalidate();
        result
    }

    async fn list_posts(&self, before: Option<Uuid>, limit: u32) -> Result<Arc<PostsPage>, StoreError> {
        if before.is_some() {
            return self.inner.list_posts(before, limit).await;
        }
        let generation = match self.caches.latest_posts.get(limit) {
            Ok(page) => return Ok(page),
            Err(generation) => generation,
        };
        let page = self.inner.list_posts(None, limit).await?;
        self.caches.latest_posts.put(generation, limit, &page);
        Ok(page)
    }
);

cached_store_impl!(ApiKeyStore {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> ();
    fn api_key(&self, id: Uuid) -> Option<ApiKeyRecord>;
    fn api_key_and_owner(&self, id: Uuid) -> Option<(ApiKeyRecord, User)>;
    fn list_api_keys(&self, user_id: Option<Uuid>, now: OffsetDateTime, after: Option<Uuid>, limit: u32) -> Vec<ApiKeyRecord>;
    fn delete_api_key(&self, id: Uuid, owner: Option<Uuid>) -> ApiKeyRecord;
    fn delete_user_api_keys(&self, user_id: Uuid) -> u64;
    fn touch_api_keys(&self, uses: &[(Uuid, OffsetDateTime)]) -> ();
});

cached_store_impl!(Store {
    fn migrate(&self) -> ();
    fn ping(&self) -> ();
    fn purge_expired(&self, now: OffsetDateTime) -> ();
    fn count_active_sessions(&self, now: OffsetDateTime) -> u64;
    fn dashboard_counts(&self, now: OffsetDateTime) -> DashboardCounts;
}
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        Ok(Box::new(CachedUnitOfWork { inner: self.inner.begin().await?, caches: self.caches.clone() }))
    }
);

// The aggregates below have no cache: they pass straight through.

cached_store_impl!(TokenStore {
    fn insert_refresh_token(&self, record: &RefreshTokenRecord) -> ();
    fn rotate_refresh_token(&self, token_hash: &[u8; 32], successor: &RefreshSuccessor, now: OffsetDateTime) -> RefreshUse;
    fn revoke_refresh_family(&self, family_id: Uuid, now: OffsetDateTime) -> ();
    fn revoke_user_refresh_tokens(&self, user_id: Uuid, now: OffsetDateTime) -> ();
    fn insert_revocation(&self, revocation: &Revocation) -> ();
    fn active_revocations(&self, now: OffsetDateTime) -> Vec<Revocation>;
});

cached_store_impl!(SessionStore {
    fn insert_session(&self, record: &SessionRecord) -> ();
    fn session(&self, id_hash: &[u8; 32]) -> Option<SessionRecord>;
    fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> ();
    fn delete_session(&self, id_hash: &[u8; 32]) -> ();
    fn delete_user_sessions(&self, user_id: Uuid) -> ();
});

cached_store_impl!(AuditStore {
    fn insert_audit_events(&self, events: &[AuditEvent]) -> ();
    fn purge_audit_events(&self, before: OffsetDateTime) -> u64;
    fn list_audit_events(&self, filter: &AuditFilter, before: Option<Uuid>, limit: u32) -> Vec<AuditEvent>;
});

cached_store_impl!(BlockStore {
    fn insert_block(&self, block: &Block) -> ();
    fn delete_block(&self, id: Uuid) -> Block;
    fn list_blocks(&self, now: OffsetDateTime, before: Option<Uuid>, limit: u32) -> Vec<Block>;
});

cached_store_impl!(MailStore {
    fn email_token(&self, token_hash: &[u8; 32], purpose: EmailPurpose, now: OffsetDateTime) -> Option<EmailTokenRecord>;
    fn latest_email_token_at(&self, user_id: Uuid, purpose: EmailPurpose) -> Option<OffsetDateTime>;
    fn claim_mail(&self, now: OffsetDateTime, lease_until: OffsetDateTime, limit: u32) -> Vec<OutboxMail>;
    fn mail_sent(&self, id: Uuid) -> ();
    fn mail_deferred(&self, id: Uuid, next_attempt_at: OffsetDateTime, error: &str) -> ();
    fn mail_failed(&self, id: Uuid, at: OffsetDateTime, error: &str) -> ();
    fn outbox_counts(&self) -> OutboxCounts;
});

cached_store_impl!(SecondFactorStore {
    fn totp_factor(&self, user_id: Uuid) -> Option<TotpFactor>;
    fn begin_totp(&self, user_id: Uuid, secret: &[u8], now: OffsetDateTime) -> ();
    fn accept_totp_step(&self, user_id: Uuid, step: i64) -> bool;
    fn use_recovery_code(&self, user_id: Uuid, code_hash: &[u8; 32], now: OffsetDateTime) -> bool;
    fn recovery_codes_left(&self, user_id: Uuid) -> u64;
    fn insert_mfa_challenge(&self, challenge: &MfaChallenge) -> ();
    fn attempt_mfa_challenge(&self, token_hash: &[u8; 32], now: OffsetDateTime, max_attempts: i32) -> Option<MfaChallenge>;
    fn mfa_challenge(&self, token_hash: &[u8; 32], now: OffsetDateTime, max_attempts: i32) -> Option<MfaChallenge>;
    fn set_mfa_passkey_state(&self, token_hash: &[u8; 32], passkey_state: &str) -> ();
    fn take_mfa_challenge(&self, token_hash: &[u8; 32]) -> bool;
    fn delete_user_mfa_challenges(&self, user_id: Uuid) -> ();
});

cached_store_impl!(PasskeyStore {
    fn passkeys(&self, user_id: Uuid) -> Vec<PasskeyRecord>;
    fn passkey_by_credential(&self, credential_id: &[u8]) -> Option<PasskeyRecord>;
    fn record_passkey_use(&self, id: Uuid, passkey: &str, now: OffsetDateTime) -> ();
    fn begin_passkey_registration(&self, user_id: Uuid, pending: &PendingPasskey, expires_at: OffsetDateTime) -> ();
    fn take_passkey_registration(&self, user_id: Uuid, now: OffsetDateTime) -> Option<PendingPasskey>;
    fn insert_passkey_sign_in(&self, id: Uuid, state: &str, expires_at: OffsetDateTime) -> ();
    fn take_passkey_sign_in(&self, id: Uuid, now: OffsetDateTime) -> Option<String>;
});

cached_store_impl!(IdentityStore {
    fn user_by_identity(&self, identity: &Identity) -> Option<User>;
    fn link_identity(&self, identity: &Identity, user_id: Uuid) -> ();
    fn insert_oauth_flow(&self, flow: &OAuthFlow) -> ();
    fn take_oauth_flow(&self, id_hash: &[u8; 32], now: OffsetDateTime) -> Option<OAuthFlow>;
});

/// A unit of work whose commit drops every cached read.
struct CachedUnitOfWork {
    inner: Box<dyn UnitOfWork>,
    caches: Arc<Caches>,
}

#[async_trait]
impl UnitOfWork for CachedUnitOfWork {
    async fn create_user(&mut self, new_user: NewUser) -> Result<User, StoreError> {
        self.inner.create_user(new_user).await
    }

    async fn link_identity(&mut self, identity: &Identity, user_id: Uuid) -> Result<(), StoreError> {
        self.inner.link_identity(identity, user_id).await
    }

    async fn set_password_hash(&mut self, id: Uuid, phc: &str) -> Result<(), StoreError> {
        self.inner.set_password_hash(id, phc).await
    }

    async fn unlink_identities(&mut self, user_id: Uuid) -> Result<u64, StoreError> {
        self.inner.unlink_identities(user_id).await
    }

    async fn set_email_verified(&mut self, id: Uuid, email: &str) -> Result<bool, StoreError> {
        self.inner.set_email_verified(id, email).await
    }

    async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.insert_api_key(key).await
    }

    async fn insert_email_token(&mut self, token: &EmailTokenRecord) -> Result<(), StoreError> {
        self.inner.insert_email_token(token).await
    }

    async fn take_email_token(
        &mut self,
        token_hash: &[u8; 32],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<EmailTokenRecord>, StoreError> {
        self.inner.take_email_token(token_hash, purpose, now).await
    }

    async fn delete_email_tokens(&mut self, user_id: Uuid, purpose: EmailPurpose) -> Result<(), StoreError> {
        self.inner.delete_email_tokens(user_id, purpose).await
    }

    async fn enqueue_mail(&mut self, mail: &OutboxMail) -> Result<(), StoreError> {
        self.inner.enqueue_mail(mail).await
    }

    async fn confirm_totp(
        &mut self,
        user_id: Uuid,
        step: i64,
        recovery_code_hashes: &[[u8; 32]],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.confirm_totp(user_id, step, recovery_code_hashes, now).await
    }

    async fn delete_totp(&mut self, user_id: Uuid) -> Result<bool, StoreError> {
        self.inner.delete_totp(user_id).await
    }

    async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
        self.inner.insert_passkey(passkey).await
    }

    async fn delete_passkey(&mut self, id: Uuid, owner: Uuid) -> Result<PasskeyRecord, StoreError> {
        self.inner.delete_passkey(id, owner).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let result = self.inner.commit().await;
        self.caches.forget_everything();
        result
    }
}
