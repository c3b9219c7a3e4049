//! API keys for machine clients (API.md "API keys"): made, verified and
//! forgotten here; the routes in `routes/api_keys.rs` and the
//! `authenticate` layer call in.
//!
//! A key is `rk_<id>_<secret>`; the store keeps the SHA-256 of the secret.
//! Verifying looks the key up by id in `KeyCache` (its owner's id, role
//! and department, its scopes, expiry and hash), then compares the hash in
//! constant time: no database read while the entry is fresh, and none for
//! an id the store recently did not have (the bounded negative cache).
//! Everything that stops a key (revocation, the owner disabled, deleted,
//! given another role or department, logout-all, a password reset) goes
//! through the revocation list (`RevocationList::revoke_api_keys`), which
//! drops the entries on this instance and, with Redis, on every other one;
//! a subscribed instance also drops the whole cache at every reload of the
//! list, so a missed message costs seconds. A read that raced with any
//! drop is used once and not cached.
//!
//! `last_used_at` is kept to the minute: the first use of a key in a
//! minute is noted in memory and written in batches (`spawn_flusher`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{metrics::counter::Counter, metrics::family::Family, registry::Registry};
use time::OffsetDateTime;
use uuid::Uuid;

use super::secret;
use crate::{
    clock::Clock,
    domain::{API_KEY_PREFIX, ApiKeyName, PresentedKey, Role, Scopes},
    metrics::OutcomeLabels,
    store::{ApiKeyRecord, Store, StoreError, UnitOfWork, truncate_to_stored},
};

/// How long a verified key is used without reading the store again.
const FRESH_FOR: time::Duration = time::Duration::seconds(60);
/// How long the store's "no such key" is believed.
const ABSENT_FOR: time::Duration = time::Duration::seconds(60);
/// Bounds of the two caches; past them, stale entries go, then all.
const MAX_KEYS: usize = 100_000;
const MAX_ABSENT: usize = 100_000;
/// How often noted uses are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// What stops keys: one, or every key of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRevocation {
    Key(Uuid),
    User(Uuid),
}

/// A key as verified: what a request made with it acts as.
#[derive(Debug)]
pub struct VerifiedKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub department: Option<String>,
    pub scopes: Scopes,
    secret_hash: [u8; 32],
    pub expires_at: OffsetDateTime,
    cached_at: OffsetDateTime,
    /// The minute (Unix minutes) of the last use noted.
    last_used_minute: AtomicI64,
}

/// Why a presented key was refused; `as_str` is the metric's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not `rk_<uuid>_<secret>`.
    Malformed,
    /// No such key (never made, revoked, or its owner gone or disabled).
    Unknown,
    WrongSecret,
    Expired,
    /// The store could not be asked.
    Unavailable,
}

impl KeyRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRefusal::Malformed => "malformed",
            KeyRefusal::Unknown => "unknown",
            KeyRefusal::WrongSecret => "wrong_secret",
            KeyRefusal::Expired => "expired",
            KeyRefusal::Unavailable => "unavailable",
        }
    }
}

/// The verified keys and the ids the store did not have.
#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<Keys>,
    absent: Mutex<HashMap<Uuid, OffsetDateTime>>,
}

#[derive(Default)]
struct Keys {
    /// Bumped by every drop: a read that started before one is not cached.
    generation: u64,
    by_id: HashMap<Uuid, Arc<VerifiedKey>>,
}

impl KeyCache {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops what `revocation` stops.
    pub fn forget(&self, revocation: KeyRevocation) {
        let mut keys = self.write();
        keys.generation += 1;
        match revocation {
            KeyRevocation::Key(id) => {
                keys.by_id.remove(&id);
            }
            KeyRevocation::User(user_id) => keys.by_id.retain(|_, key| key.user_id != user_id),
        }
    }

    /// Drops every entry (after the revocation list was reloaded).
    pub fn clear(&self) {
        let mut keys = self.write();
        keys.generation += 1;
        keys.by_id.clear();
    }

    fn fresh(&self, id: Uuid, now: OffsetDateTime) -> Result<Arc<VerifiedKey>, u64> {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match keys.by_id.get(&id) {
            Some(key) if now - key.cached_at < FRESH_FOR => Ok(key.clone()),
            _ => Err(keys.generation),
        }
    }

    fn put(&self, key: Arc<VerifiedKey>, generation: u64, now: OffsetDateTime) {
        let mut keys = self.write();
        if keys.generation != generation {
            return;
        }
        if keys.by_id.len() >= MAX_KEYS {
            keys.by_id.retain(|_, key| now - key.cached_at < FRESH_FOR);
            if keys.by_id.len() >= MAX_KEYS {
                keys.by_id.clear();
            }
        }
        keys.by_id.insert(key.id, key);
    }

    fn is_absent(&self, id: Uuid, now: OffsetDateTime) -> bool {
        let absent = self.absent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        absent.get(&id).is_some_and(|at| now - *at < ABSENT_FOR)
    }

    fn note_absent(&self, id: Uuid, now: OffsetDateTime) {
        let mut absent = self.absent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if absent.len() >= MAX_ABSENT {
            absent.retain(|_, at| now - *at < ABSENT_FOR);
            if absent.len() >= MAX_ABSENT {
                absent.clear();
            }
        }
        absent.insert(id, now);
    }

    fn note_present(&self, id: Uuid) {
        self.absent.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    }
}

/// A key just made: the record stored and the key, shown once.
pub struct NewKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

pub struct ApiKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<KeyCache>,
    /// Uses noted and not yet written: key id → the minute.
    pending: Mutex<HashMap<Uuid, OffsetDateTime>>,
    outcomes: Family<OutcomeLabels, Counter>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cache: Arc<KeyCache>) -> Self {
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["success", "malformed", "unknown", "wrong_secret", "expired", "unavailable"] {
            drop(outcomes.get_or_create(&OutcomeLabels { outcome }));
        }
        Self { store, clock, cache, pending: Mutex::new(HashMap::new()), outcomes }
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "api_key_authentications",
            "Requests that presented an API key, by outcome (success, malformed, unknown, wrong_secret, expired, \
             unavailable)",
            self.outcomes.clone(),
        );
    }

    /// Makes a key for `user_id`; only the hash of its secret is stored.
    pub async fn create(
        &self,
        user_id: Uuid,
        name: &ApiKeyName,
        scopes: Scopes,
        expires_at: OffsetDateTime,
    ) -> Result<NewKey, StoreError> {
        let mut work = self.store.begin().await?;
        let key = self.create_in(&mut *work, user_id, name, scopes, expires_at).await?;
        work.commit().await?;
        Ok(key)
    }

    /// `create` as part of `work` (with the notice of the new key); the
    /// key exists once `work` is committed.
    pub async fn create_in(
        &self,
        work: &mut dyn UnitOfWork,
        user_id: Uuid,
        name: &ApiKeyName,
        scopes: Scopes,
        expires_at: OffsetDateTime,
    ) -> Result<NewKey, StoreError> {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        // 256 random bits, URL-safe base64.
        let secret = secret::new_token("");
        let record = ApiKeyRecord {
            id,
            user_id,
            name: name.as_str().to_owned(),
            scopes,
            secret_hash: secret::hash(&secret),
            created_at: truncate_to_stored(now.to_offset(time::UtcOffset::UTC)),
            expires_at: truncate_to_stored(expires_at.to_offset(time::UtcOffset::UTC)),
            last_used_at: None,
        };
        work.insert_api_key(&record).await?;
        self.cache.note_present(id);
        Ok(NewKey { key: format!("{API_KEY_PREFIX}{id}_{secret}"), record })
    }

    /// Whether a bearer credential is meant as an API key.
    pub fn is_api_key(token: &str) -> bool {
        token.starts_with(API_KEY_PREFIX)
    }

    /// Verifies a presented key, counting the outcome.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedKey>, KeyRefusal> {
        let outcome = self.verify_uncounted(token).await;
        let label = match &outcome {
            Ok(_) => "success",
            Err(refusal) => refusal.as_str(),
        };
        self.outcomes.get_or_create(&OutcomeLabels { outcome: label }).inc();
        outcome
    }

    async fn verify_uncounted(&self, token: &str) -> Result<Arc<VerifiedKey>, KeyRefusal> {
        let presented = PresentedKey::parse(token).ok_or(KeyRefusal::Malformed)?;
        let now = self.clock.now();
        let key = match self.cache.fresh(presented.id, now) {
            Ok(key) => key,
            Err(generation) => self.load(presented.id, generation, now).await?,
        };
        if !secret::matches(presented.secret, &key.secret_hash) {
            return Err(KeyRefusal::WrongSecret);
        }
        if key.expires_at <= now {
            return Err(KeyRefusal::Expired);
        }
        self.note_use(&key, now);
        Ok(key)
    }

    /// Whether a key verified earlier still stands (websocket tunnels ask
    /// every second): the cache, or the store when the entry was dropped.
    pub async fn still_valid(&self, id: Uuid) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let key = match self.cache.fresh(id, now) {
            Ok(key) => key,
            Err(generation) => match self.load(id, generation, now).await {
                Ok(key) => key,
                Err(KeyRefusal::Unavailable) => return Err(StoreError::Other(anyhow::anyhow!("store unavailable"))),
                Err(_) => return Ok(false),
            },
        };
        Ok(key.expires_at > now)
    }

    async fn load(&self, id: Uuid, generation: u64, now: OffsetDateTime) -> Result<Arc<VerifiedKey>, KeyRefusal> {
        if self.cache.is_absent(id, now) {
            return Err(KeyRefusal::Unknown);
        }
        let unavailable = |error: StoreError| {
            tracing::error!(cause = %error, "API key lookup failed");
            KeyRefusal::Unavailable
        };
        // The owner as the database has them, not the short user cache: a
        // role read here is the role the key acts with for `FRESH_FOR`.
        let Some((record, owner)) = self.store.api_key_and_owner(id).await.map_err(unavailable)? else {
            self.cache.note_absent(id, now);
            return Err(KeyRefusal::Unknown);
        };
        if owner.disabled {
            // Disabling deletes the keys too; a read that raced with it
            // finds the owner already so.
            return Err(KeyRefusal::Unknown);
        }
        let key = Arc::new(VerifiedKey {
            id,
            user_id: record.user_id,
            role: owner.role,
            department: owner.department.as_ref().map(|department| department.as_str().to_owned()),
            scopes: record.scopes,
            secret_hash: record.secret_hash,
            expires_at: record.expires_at,
            cached_at: now,
            last_used_minute: AtomicI64::new(record.last_used_at.map_or(i64::MIN, unix_minute)),
        });
        self.cache.put(key.clone(), generation, now);
        Ok(key)
    }

    fn note_use(&self, key: &VerifiedKey, now: OffsetDateTime) {
        let minute = unix_minute(now);
        if key.last_used_minute.swap(minute, Ordering::Relaxed) != minute {
            let at = OffsetDateTime::from_unix_timestamp(minute * 60).unwrap_or(now);
            self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key.id, at);
        }
    }

    /// The use noted on this instance and not yet written, if later than
    /// the stored one (so a listing right after a use shows it).
    pub fn last_used(&self, record: &ApiKeyRecord) -> Option<OffsetDateTime> {
        let pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&record.id).copied();
        record.last_used_at.max(pending)
    }

    /// Writes the uses noted since the last flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let uses: Vec<(Uuid, OffsetDateTime)> = {
            let pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.iter().map(|(id, at)| (*id, *at)).collect()
        };
        if uses.is_empty() {
            return Ok(());
        }
        self.store.touch_api_keys(&uses).await?;
        // Only what was written leaves: a newer use noted meanwhile stays.
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, at) in uses {
            if pending.get(&id) == Some(&at) {
                pending.remove(&id);
            }
        }
        Ok(())
    }

    /// Writes noted uses every `FLUSH_EVERY` for as long as the runtime
    /// lives.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FLUSH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                if let Err(error) = keys.flush().await {
                    tracing::warn!(cause = %error, "could not record API key uses; retrying");
                }
            }
        });
    }
}

fn unix_minute(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::ManualClock,
        domain::{Email, NewUser, Role, UserName},
        store::SqliteStore,
    };

    /// A fresh SQLite store with one user, the keys service on a frozen
    /// clock, and the store itself to change behind the service's back.
    async fn service() -> (ApiKeys, Arc<dyn Store>, ManualClock, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let sqlite = SqliteStore::connect(&format!("sqlite://{}/keys.db", dir.path().display()), 2).await.expect("db");
        sqlite.migrate().await.expect("migrations");
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let user = store
            .create_user(NewUser {
                email: Email::parse("keys@example.com").expect("email"),
                name: UserName::parse("Keys").expect("name"),
                role: Role::User,
                department: None,
                password_hash: None,
                email_verified: true,
            })
            .await
            .expect("user");
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let keys = ApiKeys::new(store.clone(), Arc::new(clock.clone()), Arc::default());
        (keys, store, clock, user.id, dir)
    }

    async fn make(keys: &ApiKeys, user_id: Uuid, clock: &ManualClock) -> NewKey {
        let name = ApiKeyName::parse("test").expect("name");
        let scopes = Scopes::parse(["posts:read"]).expect("scopes");
        keys.create(user_id, &name, scopes, clock.now() + time::Duration::days(1)).await.expect("created")
    }

    #[tokio::test]
    async fn a_verified_key_is_served_from_memory_until_it_goes_stale_or_is_dropped() {
        let (keys, store, clock, user_id, _dir) = service().await;
        let made = make(&keys, user_id, &clock).await;
        assert!(keys.verify(&made.key).await.is_ok());
        // Deleted behind the cache's back: still served, so no store read.
        store.delete_api_key(made.record.id, None).await.expect("deleted");
        assert!(keys.verify(&made.key).await.is_ok(), "served from the cache");
        let wrong = format!("{}x", made.key);
        assert_eq!(keys.verify(&wrong).await.err(), Some(KeyRefusal::WrongSecret));
        // Stale after FRESH_FOR: read again, and gone.
        clock.advance(FRESH_FOR);
        assert_eq!(keys.verify(&made.key).await.err(), Some(KeyRefusal::Unknown));

        // A revocation drops the entry at once.
        let made = make(&keys, user_id, &clock).await;
        assert!(keys.verify(&made.key).await.is_ok());
        store.delete_api_key(made.record.id, None).await.expect("deleted");
        keys.cache.forget(KeyRevocation::User(user_id));
        assert_eq!(keys.verify(&made.key).await.err(), Some(KeyRefusal::Unknown));
    }

    #[tokio::test]
    async fn an_absent_id_is_believed_absent_without_asking_the_store_again() {
        let (keys, store, clock, user_id, _dir) = service().await;
        let made = make(&keys, user_id, &clock).await;
        let record = made.record.clone();
        store.delete_api_key(record.id, None).await.expect("deleted");
        assert_eq!(keys.verify(&made.key).await.err(), Some(KeyRefusal::Unknown));
        // Back in the store, unknown to the service: the "absent" answer
        // stands for ABSENT_FOR, so no store read was made.
        store.insert_api_key(&record).await.expect("back");
        assert_eq!(keys.verify(&made.key).await.err(), Some(KeyRefusal::Unknown));
        clock.advance(ABSENT_FOR);
        assert!(keys.verify(&made.key).await.is_ok(), "asked again once the answer is stale");
    }

    #[tokio::test]
    async fn a_read_that_raced_with_a_drop_is_not_cached() {
        let (keys, _store, clock, user_id, _dir) = service().await;
        let made = make(&keys, user_id, &clock).await;
        let now = clock.now();
        // A lookup misses and notes the generation, a drop happens, then
        // the lookup's result arrives: it must not be kept.
        let generation = keys.cache.fresh(made.record.id, now).expect_err("not cached yet");
        let loaded = keys.load(made.record.id, generation, now).await.expect("loaded");
        assert!(keys.cache.fresh(made.record.id, now).is_ok(), "an undisturbed read is kept");
        keys.cache.forget(KeyRevocation::Key(made.record.id));
        keys.cache.put(loaded, generation, now);
        assert!(keys.cache.fresh(made.record.id, now).is_err(), "a read from before the drop is not kept");
    }

    #[tokio::test]
    async fn uses_are_noted_once_a_minute_and_written_in_a_batch() {
        let (keys, store, clock, user_id, _dir) = service().await;
        let made = make(&keys, user_id, &clock).await;
        for _ in 0..3 {
            keys.verify(&made.key).await.expect("valid");
        }
        let stored = store.api_key(made.record.id).await.expect("read").expect("there");
        assert_eq!(stored.last_used_at, None, "no write per request");
        let noted = keys.last_used(&stored).expect("noted in memory");
        assert_eq!(noted.second(), 0);
        keys.flush().await.expect("flushed");
        let stored = store.api_key(made.record.id).await.expect("read").expect("there");
        assert_eq!(stored.last_used_at, Some(noted));
        assert!(keys.pending.lock().expect("lock").is_empty(), "written uses leave the queue");
    }
}
