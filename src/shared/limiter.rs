//! Rate-limit counters in Redis, one round trip per decision: each
//! strategy is a Lua script that reads the key's state, decides and writes
//! it back atomically, with the same arithmetic as `limiter::strategy`.
//! The script returns the state it found; the decision's numbers
//! (remaining, reset, retry) are then computed by the very same Rust code
//! the in-memory backend runs, so both backends answer alike.

use async_trait::async_trait;
use redis::Script;

use super::Redis;
use crate::{
    clock::Clock,
    limiter::{
        BackendError, LimitKey, LimiterBackend, Subject,
        strategy::{Decision, Quota, State, Strategy},
    },
};
use std::sync::{Arc, LazyLock};

static FIXED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local consume = ARGV[4] == '1'
local index = math.floor(now / window)
local s = redis.call('HMGET', KEYS[1], 'w', 'c')
local w, c = tonumber(s[1]), tonumber(s[2]) or 0
if w == nil then w = index; c = 0 end
local pre_w, pre_c = w, c
if w ~= index then w = index; c = 0 end
local allowed = 0
if c < limit then allowed = 1 end
if allowed == 1 and consume then
  c = c + 1
  redis.call('HSET', KEYS[1], 'w', w, 'c', c)
  redis.call('PEXPIREAT', KEYS[1], (w + 1) * window)
end
return {allowed, pre_w, pre_c, 0}
",
    )
});

static SLIDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local consume = ARGV[4] == '1'
local index = math.floor(now / window)
local s = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w, c, p = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
if w == nil then w = index; c = 0; p = 0 end
local pre_w, pre_c, pre_p = w, c, p
if index ~= w then
  if index == w + 1 then p = c else p = 0 end
  c = 0
  w = index
end
local left = (w + 1) * window - now
local weight = math.floor((1000 * left + window - 1) / window)
local allowed = 0
if p * weight + c * 1000 + 1000 <= limit * 1000 then allowed = 1 end
if allowed == 1 and consume then
  c = c + 1
  redis.call('HSET', KEYS[1], 'w', w, 'c', c, 'p', p)
  redis.call('PEXPIREAT', KEYS[1], (w + 2) * window)
end
return {allowed, pre_w, pre_c, pre_p}
",
    )
});

static BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local consume = ARGV[4] == '1'
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local interval = math.max(math.floor(window / math.max(limit, 1)), 1)
local new_tat = math.max(tat, now) + interval
local allowed = 0
if new_tat - window <= now then allowed = 1 end
if allowed == 1 and consume then
  redis.call('SET', KEYS[1], new_tat, 'PX', math.max(new_tat - now, 1))
end
return {allowed, tat, 0, 0}
",
    )
});

pub struct RedisLimiter {
    redis: Redis,
    clock: Arc<dyn Clock>,
}

impl RedisLimiter {
    pub fn new(redis: Redis, clock: Arc<dyn Clock>) -> Self {
        Self { redis, clock }
    }

    /// Keys are readable so an operator can inspect them with redis-cli.
    fn key(&self, key: &LimitKey) -> String {
        let subject = match key.subject {
            Subject::Ip(ip) => format!("ip:{ip:032x}"),
            Subject::User(user) => format!("user:{user}"),
            Subject::IpAndAccount(ip, account) => format!("login:{ip:032x}:{account:016x}"),
            Subject::Account(account) => format!("account:{account:016x}"),
        };
        let kind = if key.audit { "audited" } else { "rl" };
        self.redis.key(&format!("{kind}:{}:{subject}", key.group))
    }
}

#[async_trait]
impl LimiterBackend for RedisLimiter {
    async fn decide(&self, key: &LimitKey, quota: &Quota, consume: bool) -> Result<Decision, BackendError> {
        let now = self.clock.unix_millis();
        let script = match quota.strategy {
            Strategy::FixedWindow => &*FIXED,
            Strategy::SlidingWindow => &*SLIDING,
            Strategy::TokenBucket => &*BUCKET,
        };
        let mut connection = self.redis.connection.clone();
        let reply: Vec<i64> = script
            .key(self.key(key))
            .arg(now)
            .arg(quota.limit)
            .arg(quota.window_ms.max(1))
            .arg(if consume { "1" } else { "0" })
            .invoke_async(&mut connection)
            .await
            .map_err(|error| BackendError(error.to_string()))?;
        let [allowed, a, b, c] = reply[..] else {
            return Err(BackendError("unexpected script reply".into()));
        };
        let mut found = match quota.strategy {
            Strategy::FixedWindow => State::Fixed { window: a, count: u32::try_from(b).unwrap_or(u32::MAX) },
            Strategy::SlidingWindow => State::Sliding {
                window: a,
                current: u32::try_from(b).unwrap_or(u32::MAX),
                previous: u32::try_from(c).unwrap_or(u32::MAX),
            },
            Strategy::TokenBucket => State::Bucket { tat: a },
        };
        let mut decision = quota.decide(&mut found, now, consume);
        // Redis decided atomically; its verdict is the one that counts.
        decision.allowed = allowed == 1;
        Ok(decision)
    }
}
