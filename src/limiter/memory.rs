//! The in-memory backend: one instance's counters, sharded so concurrent
//! decisions rarely wait on each other, and bounded in memory.
//!
//! Keys are stored as a 64-bit keyed hash (SipHash with a per-process
//! random key, so no client can aim collisions), next to their strategy
//! state and the instant the state goes idle: about 40 bytes per key.
//! Memory bound: at most `max_keys` keys. A background sweep drops idle
//! keys every few seconds; when a shard is full anyway, its idle keys are
//! dropped first, then the key that goes idle soonest among a sample of 16
//! (an approximate LRU, as Redis does). Each decision holds one shard's
//! lock, so N concurrent requests against a limit L admit exactly L.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;

use super::{
    BackendError, LimitKey, LimiterBackend, Subject,
    strategy::{Decision, Millis, Quota, State},
};
use crate::clock::Clock;

const SHARDS: usize = 64;
const EVICTION_SAMPLE: usize = 16;
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Entry {
    state: State,
    idle_at: Millis,
}

/// The map key is already a keyed hash; hashing it again would be waste.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

pub struct MemoryLimiter {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    clock: Arc<dyn Clock>,
}

impl MemoryLimiter {
    pub fn new(max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Self {
            shards,
            shard_capacity: (max_keys / SHARDS).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
            clock,
        }
    }

    /// Starts the idle-key sweep, which also sets `held` to the keys kept;
    /// it stops when the limiter is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, held: Gauge) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                let kept = limiter.sweep();
                held.set(i64::try_from(kept).unwrap_or(i64::MAX));
            }
        });
    }

    /// Drops every idle key, and gives back the room of a shard that is
    /// mostly empty now (a map never shrinks by itself: after a burst of
    /// a million clients it would keep its peak size for good).
    /// Returns the keys kept.
    pub fn sweep(&self) -> usize {
        let now = self.clock.unix_millis();
        let mut kept = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, entry| entry.idle_at > now);
            if shard.capacity() > 64 && shard.len() < shard.capacity() / 4 {
                let keep = shard.len() * 2;
                shard.shrink_to(keep);
            }
            kept += shard.len();
        }
        kept
    }

    /// Room for keys, held now (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).capacity()).sum()
    }

    /// Keys held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key's fields laid out at fixed offsets and hashed in one write:
    /// SipHash costs per call, and the derived `Hash` made eight.
    fn fingerprint(&self, key: &LimitKey) -> u64 {
        let mut bytes = [0u8; 28];
        bytes[..2].copy_from_slice(&key.group.to_le_bytes());
        bytes[2] = u8::from(key.audit);
        match key.subject {
            Subject::Ip(ip) => bytes[4..20].copy_from_slice(&ip.to_le_bytes()),
            Subject::User(user) => {
                bytes[3] = 1;
                bytes[4..20].copy_from_slice(user.as_bytes());
            }
            Subject::IpAndAccount(ip, account) => {
                bytes[3] = 2;
                bytes[4..20].copy_from_slice(&ip.to_le_bytes());
                bytes[20..].copy_from_slice(&account.to_le_bytes());
            }
            Subject::Account(account) => {
                bytes[3] = 3;
                bytes[20..].copy_from_slice(&account.to_le_bytes());
            }
        }
        let mut hasher = self.hasher.build_hasher();
        hasher.write(&bytes);
        hasher.finish()
    }

    /// The decision itself; synchronous, one shard lock.
    pub fn decide_now(&self, key: &LimitKey, quota: &Quota, consume: bool) -> Decision {
        let now = self.clock.unix_millis();
        let fingerprint = self.fingerprint(key);
        let index = usize::try_from(fingerprint % SHARDS as u64).unwrap_or(0);
        let mut shard = lock(&self.shards[index]);
        if !shard.contains_key(&fingerprint) {
            let mut state = quota.fresh_state(now);
            if !consume {
                // Peeking at an unknown key changes nothing; do not store it.
                return quota.decide(&mut state, now, false);
            }
            if shard.len() >= self.shard_capacity {
                make_room(&mut shard, now, self.shard_capacity);
            }
            shard.insert(fingerprint, Entry { state, idle_at: now });
        }
        let Some(entry) = shard.get_mut(&fingerprint) else {
            return quota.decide(&mut quota.fresh_state(now), now, consume);
        };
        let decision = quota.decide(&mut entry.state, now, consume);
        entry.idle_at = quota.idle_at(&entry.state);
        decision
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Frees one place in a full shard: idle keys first, else the sampled key
/// that would go idle soonest.
fn make_room(shard: &mut Shard, now: Millis, capacity: usize) {
    shard.retain(|_, entry| entry.idle_at > now);
    if shard.len() < capacity {
        return;
    }
    let victim = shard.iter().take(EVICTION_SAMPLE).min_by_key(|(_, entry)| entry.idle_at).map(|(key, _)| *key);
    if let Some(victim) = victim {
        shard.remove(&victim);
    }
}

#[async_trait]
impl LimiterBackend for MemoryLimiter {
    async fn decide(&self, key: &LimitKey, quota: &Quota, consume: bool) -> Result<Decision, BackendError> {
        Ok(self.decide_now(key, quota, consume))
    }

    fn decide_at_once(&self, key: &LimitKey, quota: &Quota, consume: bool) -> Option<Decision> {
        Some(self.decide_now(key, quota, consume))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, limiter::strategy::Strategy};

    /// The start of an hour: windows are aligned to the epoch, so a test
    /// started from the wall clock near a boundary would see a window end
    /// (the eviction test once failed at 09:59:5x for that reason).
    const START: time::OffsetDateTime = time::macros::datetime!(2026-01-01 00:00 UTC);

    fn key(n: u128) -> LimitKey {
        LimitKey { group: 0, subject: Subject::Ip(n), audit: false }
    }

    #[test]
    fn fingerprints_tell_every_field_apart() {
        let limiter = MemoryLimiter::new(16, Arc::new(ManualClock::new(START)));
        let ip = 0x2001_0db8_0000_0000_0000_0000_0000_0001_u128;
        let user = uuid::Uuid::from_u128(ip);
        let keys = [
            LimitKey { group: 0, subject: Subject::Ip(ip), audit: false },
            LimitKey { group: 1, subject: Subject::Ip(ip), audit: false },
            LimitKey { group: 0, subject: Subject::Ip(ip), audit: true },
            LimitKey { group: 0, subject: Subject::User(user), audit: false },
            LimitKey { group: 0, subject: Subject::IpAndAccount(ip, 0), audit: false },
            LimitKey { group: 0, subject: Subject::IpAndAccount(ip, 1), audit: false },
            LimitKey { group: 0, subject: Subject::Ip(ip + 1), audit: false },
        ];
        let prints: std::collections::HashSet<u64> = keys.iter().map(|key| limiter.fingerprint(key)).collect();
        assert_eq!(prints.len(), keys.len());
        assert_eq!(limiter.fingerprint(&keys[3]), limiter.fingerprint(&keys[3].clone()), "stable");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_admit_exactly_the_limit() {
        for strategy in [Strategy::FixedWindow, Strategy::SlidingWindow, Strategy::TokenBucket] {
            let limiter = Arc::new(MemoryLimiter::new(10_000, Arc::new(ManualClock::new(START))));
            let quota = Quota { strategy, limit: 100, window_ms: 60_000 };
            let tasks: Vec<_> = (0..1_000)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(async move { limiter.decide(&key(7), &quota, true).await.map(|d| d.allowed) })
                })
                .collect();
            let mut admitted = 0;
            for task in tasks {
                if task.await.expect("task").expect("decision") {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, 100, "{strategy:?}");
        }
    }

    #[test]
    fn memory_stays_within_the_key_cap_and_idle_keys_are_swept() {
        let clock = ManualClock::new(START);
        let limiter = MemoryLimiter::new(SHARDS * 100, Arc::new(clock.clone()));
        let quota = Quota { strategy: Strategy::FixedWindow, limit: 5, window_ms: 1_000 };
        for n in 0..50_000 {
            limiter.decide_now(&key(n), &quota, true);
        }
        assert!(limiter.len() <= SHARDS * 100, "{} keys held", limiter.len());
        let peak = limiter.capacity();
        let held = limiter.len();
        assert_eq!(limiter.sweep(), held, "a sweep before the windows end keeps every key");
        clock.advance(time::Duration::seconds(2));
        assert_eq!(limiter.sweep(), 0, "the sweep reports what it kept");
        assert!(limiter.is_empty(), "every key went idle");
        assert!(limiter.capacity() < peak / 4, "the room is given back: {} of {peak}", limiter.capacity());
        // Peeking at unknown keys stores nothing.
        for n in 0..100 {
            limiter.decide_now(&key(n), &quota, false);
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn an_active_key_survives_eviction_pressure_longer_than_idle_ones() {
        let clock = ManualClock::new(START);
        let limiter = MemoryLimiter::new(SHARDS * 10, Arc::new(clock.clone()));
        let short = Quota { strategy: Strategy::FixedWindow, limit: 1, window_ms: 1_000 };
        let long = Quota { strategy: Strategy::FixedWindow, limit: 1, window_ms: 3_600_000 };
        limiter.decide_now(&key(u128::MAX), &long, true);
        for n in 0..10_000 {
            limiter.decide_now(&key(n), &short, true);
            if n % 1_000 == 0 {
                clock.advance(time::Duration::seconds(2));
            }
        }
        assert!(!limiter.decide_now(&key(u128::MAX), &long, true).allowed, "the hour-long count is still there");
    }
}
