//! Failed-login budgets, so a guesser is slowed and finally stopped while
//! the owner is never locked out by someone else's failures.
//!
//! Three counts, each of consecutive failures (a success clears them):
//! - per (email, client address): the first 4 failures are free, then the
//!   next attempt from that client must wait 1 s, 2 s, 4 s, ... up to
//!   15 minutes. Another client (the owner at home) is not slowed by it.
//! - per account (email, known or not, so nothing is revealed): at
//!   `CEILING` (100, NIST SP 800-63B-4) consecutive failures from clients
//!   without a device cookie, such clients are refused, even with the right
//!   password, until a success from a device cookie or a password reset
//!   (noticed because the stored hash changed; any process may reset it).
//! - per device cookie (`auth::device`, given to a client that signed in to
//!   this account before): that client's failures count only against its
//!   own delays, not the account's; at `CEILING` of them the cookie stops
//!   counting and the client is treated as any other.
//!
//! With Redis configured the counts live there (`<prefix>throttle:*`,
//! emails only as SHA-256), shared by every instance; otherwise in memory,
//! bounded: a client count is forgotten a day after its last failure, an
//! account or device count below the ceiling 30 days after, and when a map
//! is full the least telling entries go first (never one at the ceiling).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, LazyLock, Mutex},
};

use redis::Script;
use time::Duration;
use uuid::Uuid;

use crate::{clock::Clock, shared::Redis, store::StoreError};

const FREE_FAILURES: u32 = 4;
pub const MAX_DELAY: Duration = Duration::minutes(15);
/// Consecutive failures after which an account (or a device) stops.
pub const CEILING: u32 = 100;
const CLIENT_MEMORY: Duration = Duration::days(1);
const ACCOUNT_MEMORY: Duration = Duration::days(30);
const MAX_TRACKED: usize = 100_000;

/// The delay after `count` consecutive failures of one client.
pub fn delay_after(count: u32) -> Duration {
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = count - FREE_FAILURES - 1;
    if exponent >= 10 {
        return MAX_DELAY;
    }
    Duration::seconds(1 << exponent).min(MAX_DELAY)
}

/// One sign-in attempt as the throttle sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The email, trimmed and lower-cased.
    pub account: &'a str,
    /// The client address as the rate limiter keys it (`limiter::ip_subject`).
    pub client: u128,
    /// The id of a device cookie verified for this account.
    pub device: Option<Uuid>,
    /// SHA-256 of the account's stored password hash (`None` without one).
    pub password: Option<[u8; 32]>,
}

/// Which budget an attempt spends, from `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Device(Uuid),
    Client,
}

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    count: u32,
    last: i64,
    password: Option<[u8; 32]>,
}

impl Count {
    fn next_allowed_ms(&self) -> i64 {
        self.last.saturating_add(i64::try_from(delay_after(self.count).whole_milliseconds()).unwrap_or(i64::MAX))
    }
}

#[derive(Default)]
struct Tables {
    clients: HashMap<(String, u128), Count>,
    accounts: HashMap<String, Count>,
    devices: HashMap<Uuid, Count>,
}

enum Backend {
    Memory(Mutex<Tables>),
    Redis(Redis),
}

pub struct LoginThrottle {
    backend: Backend,
    clock: Arc<dyn Clock>,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.whole_milliseconds()).unwrap_or(i64::MAX)
}

/// Seconds to wait until `at_ms`, at least 1.
fn wait_secs(at_ms: i64, now_ms: i64) -> u64 {
    u64::try_from((at_ms - now_ms + 999) / 1000).unwrap_or(1).max(1)
}

/// Makes room in a full map: first drops what has been forgotten, then the
/// lowest counts, never a count at the ceiling. `false` when still full.
fn make_room<K: Eq + Hash + Clone>(map: &mut HashMap<K, Count>, key: &K, now: i64, memory: Duration) -> bool {
    if map.len() < MAX_TRACKED || map.contains_key(key) {
        return true;
    }
    let horizon = millis(memory);
    map.retain(|_, entry| entry.count >= CEILING || now - entry.last < horizon);
    let mut below = 1;
    while map.len() >= MAX_TRACKED * 3 / 4 && below < CEILING {
        map.retain(|_, entry| entry.count >= CEILING || entry.count > below);
        below = below.saturating_mul(2).min(CEILING);
    }
    map.len() < MAX_TRACKED
}

fn fresh(entry: Option<&Count>, now: i64, memory: Duration) -> Count {
    entry.copied().filter(|entry| entry.count >= CEILING || now - entry.last < millis(memory)).unwrap_or_default()
}

static FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local c = redis.call('HINCRBY', KEYS[1], 'c', 1)
redis.call('HSET', KEYS[1], 't', ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'p', ARGV[4]) end
if tonumber(ARGV[3]) > 0 and c >= tonumber(ARGV[3]) then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return c
",
    )
});

fn redis_error(error: redis::RedisError) -> StoreError {
    StoreError::Other(anyhow::anyhow!("redis: {error}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl LoginThrottle {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { backend: Backend::Memory(Mutex::new(Tables::default())), clock }
    }

    /// Counts kept in Redis, shared by every instance on it.
    pub fn shared(redis: Redis, clock: Arc<dyn Clock>) -> Self {
        Self { backend: Backend::Redis(redis), clock }
    }

    fn tables(tables: &Mutex<Tables>) -> std::sync::MutexGuard<'_, Tables> {
        tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn client_key(redis: &Redis, attempt: &Attempt<'_>) -> String {
        redis.key(&format!(
            "throttle:client:{:032x}:{}",
            attempt.client,
            hex(&crate::auth::secret::hash(attempt.account))
        ))
    }

    fn account_key(redis: &Redis, attempt: &Attempt<'_>) -> String {
        redis.key(&format!("throttle:account:{}", hex(&crate::auth::secret::hash(attempt.account))))
    }

    fn device_key(redis: &Redis, device: Uuid) -> String {
        redis.key(&format!("throttle:device:{}", device.simple()))
    }

    async fn read(redis: &Redis, key: &str) -> Result<Count, StoreError> {
        let mut connection = redis.connection.clone();
        let (count, last, password): (Option<u32>, Option<i64>, Option<String>) = redis::cmd("HMGET")
            .arg(key)
            .arg("c")
            .arg("t")
            .arg("p")
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let password = password.and_then(|text| {
            let bytes: Vec<u8> = (0..text.len())
                .step_by(2)
                .filter_map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                .collect();
            bytes.try_into().ok()
        });
        Ok(Count { count: count.unwrap_or(0), last: last.unwrap_or(0), password })
    }

    async fn delete(redis: &Redis, keys: Vec<String>) -> Result<(), StoreError> {
        let mut connection = redis.connection.clone();
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut connection).await.map_err(redis_error)
    }

    /// Which budget the attempt spends, or `Err(seconds)` to wait (429).
    pub async fn check(&self, attempt: &Attempt<'_>) -> Result<Result<Budget, u64>, StoreError> {
        let now = self.clock.unix_millis();
        let (device, account, client) = match &self.backend {
            Backend::Memory(tables) => {
                let tables = Self::tables(tables);
                (
                    attempt.device.map(|id| fresh(tables.devices.get(&id), now, ACCOUNT_MEMORY)),
                    fresh(tables.accounts.get(attempt.account), now, ACCOUNT_MEMORY),
                    fresh(tables.clients.get(&(attempt.account.to_owned(), attempt.client)), now, CLIENT_MEMORY),
                )
            }
            Backend::Redis(redis) => {
                let device = match attempt.device {
                    Some(id) => Some(Self::read(redis, &Self::device_key(redis, id)).await?),
                    None => None,
                };
                (
                    device,
                    Self::read(redis, &Self::account_key(redis, attempt)).await?,
                    Self::read(redis, &Self::client_key(redis, attempt)).await?,
                )
            }
        };
        if let (Some(id), Some(device)) = (attempt.device, device)
            && device.count < CEILING
        {
            let next = device.next_allowed_ms();
            return Ok(if next > now { Err(wait_secs(next, now)) } else { Ok(Budget::Device(id)) });
        }
        if account.count >= CEILING {
            if account.password == attempt.password {
                return Ok(Err(wait_secs(now + millis(MAX_DELAY), now)));
            }
            // The password was reset since: the ceiling no longer holds.
            self.forget_account(attempt).await?;
        }
        let next = client.next_allowed_ms();
        Ok(if next > now { Err(wait_secs(next, now)) } else { Ok(Budget::Client) })
    }

    async fn forget_account(&self, attempt: &Attempt<'_>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(tables) => {
                Self::tables(tables).accounts.remove(attempt.account);
                Ok(())
            }
            Backend::Redis(redis) => Self::delete(redis, vec![Self::account_key(redis, attempt)]).await,
        }
    }

    pub async fn record_failure(&self, attempt: &Attempt<'_>, budget: Budget) -> Result<(), StoreError> {
        let now = self.clock.unix_millis();
        match &self.backend {
            Backend::Memory(tables) => {
                let mut tables = Self::tables(tables);
                let bump = |entry: &mut Count, password| {
                    entry.count = entry.count.saturating_add(1);
                    entry.last = now;
                    entry.password = password;
                };
                match budget {
                    Budget::Device(id) => {
                        if make_room(&mut tables.devices, &id, now, ACCOUNT_MEMORY) {
                            let mut entry = fresh(tables.devices.get(&id), now, ACCOUNT_MEMORY);
                            bump(&mut entry, None);
                            tables.devices.insert(id, entry);
                        }
                    }
                    Budget::Client => {
                        let account = attempt.account.to_owned();
                        if make_room(&mut tables.accounts, &account, now, ACCOUNT_MEMORY) {
                            let mut entry = fresh(tables.accounts.get(&account), now, ACCOUNT_MEMORY);
                            bump(&mut entry, attempt.password);
                            tables.accounts.insert(account.clone(), entry);
                        } else {
                            tracing::warn!("the failed-login table is full of accounts at the ceiling");
                        }
                        let key = (account, attempt.client);
                        if make_room(&mut tables.clients, &key, now, CLIENT_MEMORY) {
                            let mut entry = fresh(tables.clients.get(&key), now, CLIENT_MEMORY);
                            bump(&mut entry, None);
                            tables.clients.insert(key, entry);
                        }
                    }
                }
                Ok(())
            }
            Backend::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let mut bump = async |key: String, memory: Duration, ceiling: u32, password: Option<[u8; 32]>| {
                    FAILED
                        .key(key)
                        .arg(now)
                        .arg(millis(memory))
                        .arg(ceiling)
                        .arg(password.map(|hash| hex(&hash)).unwrap_or_default())
                        .invoke_async::<i64>(&mut connection)
                        .await
                        .map_err(redis_error)
                };
                match budget {
                    Budget::Device(id) => {
                        bump(Self::device_key(redis, id), ACCOUNT_MEMORY, CEILING, None).await?;
                    }
                    Budget::Client => {
                        bump(Self::account_key(redis, attempt), ACCOUNT_MEMORY, CEILING, attempt.password).await?;
                        bump(Self::client_key(redis, attempt), CLIENT_MEMORY, 0, None).await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// A success clears the client's, the account's and the device's counts.
    pub async fn record_success(&self, attempt: &Attempt<'_>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(tables) => {
                let mut tables = Self::tables(tables);
                tables.clients.remove(&(attempt.account.to_owned(), attempt.client));
                tables.accounts.remove(attempt.account);
                if let Some(id) = attempt.device {
                    tables.devices.remove(&id);
                }
                Ok(())
            }
            Backend::Redis(redis) => {
                let mut keys = vec![Self::client_key(redis, attempt), Self::account_key(redis, attempt)];
                if let Some(id) = attempt.device {
                    keys.push(Self::device_key(redis, id));
                }
                Self::delete(redis, keys).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use time::OffsetDateTime;

    #[test]
    fn delays_grow_then_cap() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(4), Duration::ZERO);
        assert_eq!(delay_after(5), Duration::seconds(1));
        assert_eq!(delay_after(6), Duration::seconds(2));
        assert_eq!(delay_after(10), Duration::seconds(32));
        assert_eq!(delay_after(20), MAX_DELAY);
        assert_eq!(delay_after(99), MAX_DELAY);
        assert_eq!(delay_after(1_000), MAX_DELAY);
    }

    fn attempt(account: &str, client: u128) -> Attempt<'_> {
        Attempt { account, client, device: None, password: Some([7; 32]) }
    }

    #[tokio::test]
    async fn a_client_waits_after_failures_and_a_success_resets_it() {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + Duration::days(20_000));
        let throttle = LoginThrottle::new(Arc::new(clock.clone()));
        let ada = attempt("ada@example.com", 1);
        for _ in 0..4 {
            assert_eq!(throttle.check(&ada).await.unwrap(), Ok(Budget::Client));
            throttle.record_failure(&ada, Budget::Client).await.unwrap();
        }
        assert_eq!(throttle.check(&ada).await.unwrap(), Ok(Budget::Client), "four failures are free");
        throttle.record_failure(&ada, Budget::Client).await.unwrap();
        assert_eq!(throttle.check(&ada).await.unwrap(), Err(1));
        assert_eq!(throttle.check(&attempt("ada@example.com", 2)).await.unwrap(), Ok(Budget::Client), "another client");
        assert_eq!(
            throttle.check(&attempt("bob@example.com", 1)).await.unwrap(),
            Ok(Budget::Client),
            "another account"
        );
        clock.advance(Duration::seconds(1));
        assert_eq!(throttle.check(&ada).await.unwrap(), Ok(Budget::Client));
        throttle.record_failure(&ada, Budget::Client).await.unwrap();
        assert_eq!(throttle.check(&ada).await.unwrap(), Err(2));
        clock.advance(Duration::seconds(2));
        throttle.record_success(&ada).await.unwrap();
        throttle.record_failure(&ada, Budget::Client).await.unwrap();
        assert_eq!(throttle.check(&ada).await.unwrap(), Ok(Budget::Client), "the count restarted");
    }

    #[test]
    fn a_full_table_drops_low_counts_first_and_never_one_at_the_ceiling() {
        let now = 1_000_000;
        let mut map: HashMap<u32, Count> = (0..u32::try_from(MAX_TRACKED).unwrap())
            .map(|key| (key, Count { count: 1, last: now, password: None }))
            .collect();
        map.insert(0, Count { count: CEILING, last: 0, password: None });
        map.insert(1, Count { count: 50, last: now, password: None });
        assert!(make_room(&mut map, &u32::MAX, now, ACCOUNT_MEMORY), "room was made");
        assert!(map.len() < MAX_TRACKED);
        assert_eq!(map.get(&0).map(|entry| entry.count), Some(CEILING), "the ceiling stays");
        assert_eq!(map.get(&1).map(|entry| entry.count), Some(50), "a high count stays");
        let full_of_ceilings: HashMap<u32, Count> = (0..u32::try_from(MAX_TRACKED).unwrap())
            .map(|key| (key, Count { count: CEILING, last: 0, password: None }))
            .collect();
        let mut map = full_of_ceilings;
        assert!(!make_room(&mut map, &u32::MAX, now, ACCOUNT_MEMORY), "nothing at the ceiling is dropped");
        assert_eq!(map.len(), MAX_TRACKED);
    }

    #[tokio::test]
    async fn the_account_ceiling_holds_until_a_device_or_a_password_reset() {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + Duration::days(20_000));
        let throttle = LoginThrottle::new(Arc::new(clock.clone()));
        for client in 0..u128::from(CEILING) {
            throttle.record_failure(&attempt("ada@example.com", client), Budget::Client).await.unwrap();
        }
        assert!(throttle.check(&attempt("ada@example.com", 1_000)).await.unwrap().is_err(), "a new client is refused");
        clock.advance(Duration::days(365));
        assert!(throttle.check(&attempt("ada@example.com", 1_000)).await.unwrap().is_err(), "and stays refused");
        let device = Uuid::now_v7();
        let trusted = Attempt { device: Some(device), ..attempt("ada@example.com", 1_000) };
        assert_eq!(throttle.check(&trusted).await.unwrap(), Ok(Budget::Device(device)));
        let reset = Attempt { password: Some([8; 32]), ..attempt("ada@example.com", 1_000) };
        assert_eq!(throttle.check(&reset).await.unwrap(), Ok(Budget::Client), "a new password lifts it");
    }
}
