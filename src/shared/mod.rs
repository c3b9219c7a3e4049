//! State shared between instances through Redis (`redis.url`): rate-limit
//! counters, sessions and revocations. Each part has an in-process twin
//! used when Redis is not configured: `limiter::memory`, the SQL store's
//! sessions, and `auth::revocation::MemoryRevocations`.
//!
//! Every key and channel starts with `redis.key_prefix`. Requests never
//! hang on a dead Redis: connections and replies have short timeouts, and
//! the connection manager reconnects by itself when Redis returns.

mod limiter;
mod revocations;
mod sessions;

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use limiter::RedisLimiter;
pub use revocations::RedisRevocations;
pub use sessions::RedisSessions;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection manager and the key prefix; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    pub client: redis::Client,
    pub connection: ConnectionManager,
    pub prefix: String,
}

impl Redis {
    /// Connects (a first connection must succeed: a wrong URL should stop
    /// the start, not surface later).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("redis.url is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = tokio::time::timeout(CONNECT_TIMEOUT * 4, client.get_connection_manager_with_config(config))
            .await
            .context("redis.url: Redis did not answer in time")?
            .context("redis.url: cannot connect to Redis")?;
        Ok(Self { client, connection, prefix: prefix.to_owned() })
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// One PING with the response timeout, for `/ready`.
    pub async fn ping(&self) -> bool {
        let mut connection = self.connection.clone();
        let reply: Result<String, _> =
            tokio::time::timeout(RESPONSE_TIMEOUT, redis::cmd("PING").query_async(&mut connection))
                .await
                .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))));
        reply.is_ok()
    }
}
