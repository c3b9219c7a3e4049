//! The revocation list every access token and session is checked against,
//! with no database read on the request path.
//!
//! `MemoryRevocations` keeps three exact maps (revoked `jti`s, revoked
//! refresh families, per-user "revoked before" marks) in memory, loaded
//! from the store at start and written through to it on every change, so a
//! restart forgets nothing. Entries leave once every credential they could
//! match has expired, which bounds the memory by the number of live tokens.
//! The `RevocationList` trait is what a shared (Redis) list implements for
//! several instances. API keys are stopped through it too
//! (`revoke_api_keys`): their durable state is the store's key table, so
//! only the verified-key cache (`api_keys::KeyCache`) is told.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    api_keys::{KeyCache, KeyRevocation},
    tokens::{AccessClaims, uuid_v7_nanos},
};
use crate::{
    clock::Clock,
    store::{Revocation, RevocationKind, Store, StoreError},
};

#[async_trait]
pub trait RevocationList: Send + Sync + 'static {
    /// Whether a verified access token has been revoked.
    fn is_token_revoked(&self, claims: &AccessClaims) -> bool;
    /// Whether a session created at `created_at` was cut by a user mark.
    fn is_session_revoked(&self, user_id: Uuid, created_at: OffsetDateTime) -> bool;
    /// Takes effect for the next check, then is made durable.
    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError>;
    /// Drops API keys from the verified-key cache of every instance; the
    /// caller has deleted them from the store first.
    async fn revoke_api_keys(&self, revocation: KeyRevocation);
}

#[derive(Default)]
struct Lists {
    tokens: HashMap<Uuid, OffsetDateTime>,
    families: HashMap<Uuid, OffsetDateTime>,
    /// User id → (mark in ns since the epoch, expiry).
    users: HashMap<Uuid, (i128, OffsetDateTime)>,
}

impl Lists {
    fn apply(&mut self, revocation: &Revocation) {
        let expires = revocation.expires_at;
        match revocation.kind {
            RevocationKind::Token => {
                self.tokens.insert(revocation.subject, expires);
            }
            RevocationKind::Family => {
                self.families.insert(revocation.subject, expires);
            }
            RevocationKind::User => {
                let mark = revocation.revoked_before.map_or(i128::MAX, nanos);
                let entry = self.users.entry(revocation.subject).or_insert((mark, expires));
                entry.0 = entry.0.max(mark);
                entry.1 = entry.1.max(expires);
            }
        }
    }

    fn purge(&mut self, now: OffsetDateTime) {
        self.tokens.retain(|_, expires| *expires > now);
        self.families.retain(|_, expires| *expires > now);
        self.users.retain(|_, (_, expires)| *expires > now);
    }
}

fn nanos(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos()
}

const PURGE_EVERY: time::Duration = time::Duration::minutes(1);

pub struct MemoryRevocations {
    lists: RwLock<Lists>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    last_purge: Mutex<OffsetDateTime>,
    keys: Arc<KeyCache>,
}

impl MemoryRevocations {
    /// Loads every revocation that can still matter; key revocations drop
    /// entries from `keys`, the cache API keys are verified through.
    pub async fn load(store: Arc<dyn Store>, clock: Arc<dyn Clock>, keys: Arc<KeyCache>) -> Result<Self, StoreError> {
        let now = clock.now();
        let mut lists = Lists::default();
        for revocation in store.active_revocations(now).await? {
            lists.apply(&revocation);
        }
        Ok(Self { lists: RwLock::new(lists), store, clock, last_purge: Mutex::new(now), keys })
    }

    /// Applies a key revocation another instance made.
    pub fn apply_key_revocation(&self, revocation: KeyRevocation) {
        self.keys.forget(revocation);
    }

    /// Applies a revocation another instance made (already durable).
    pub fn apply(&self, revocation: &Revocation) {
        self.lists.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(revocation);
    }

    /// Re-reads the durable list, to catch up after a gap; verified keys
    /// are read again from the store too.
    pub async fn reload(&self) -> Result<(), StoreError> {
        self.keys.clear();
        let revocations = self.store.active_revocations(self.clock.now()).await?;
        let mut lists = self.lists.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for revocation in &revocations {
            lists.apply(revocation);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Lists> {
        self.lists.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl RevocationList for MemoryRevocations {
    fn is_token_revoked(&self, claims: &AccessClaims) -> bool {
        let lists = self.read();
        if lists.tokens.contains_key(&claims.jti) || lists.families.contains_key(&claims.fam) {
            return true;
        }
        match lists.users.get(&claims.sub) {
            // A jti without a v7 timestamp cannot be placed in time: refuse.
            Some((mark, _)) => uuid_v7_nanos(&claims.jti).is_none_or(|issued| issued < *mark),
            None => false,
        }
    }

    fn is_session_revoked(&self, user_id: Uuid, created_at: OffsetDateTime) -> bool {
        self.read().users.get(&user_id).is_some_and(|(mark, _)| nanos(created_at) < *mark)
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        let now = self.clock.now();
        {
            let mut lists = self.lists.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            lists.apply(&revocation);
        }
        self.store.insert_revocation(&revocation).await?;
        let purge_due = {
            let mut last = self.last_purge.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = now - *last >= PURGE_EVERY;
            if due {
                *last = now;
            }
            due
        };
        if purge_due {
            self.lists.write().unwrap_or_else(|poisoned| poisoned.into_inner()).purge(now);
            self.store.purge_expired(now).await?;
        }
        Ok(())
    }

    async fn revoke_api_keys(&self, revocation: KeyRevocation) {
        self.keys.forget(revocation);
    }
}
