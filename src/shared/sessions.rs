//! Browser sessions in Redis, so a session made on one instance works on
//! every other. A session is one key (`<prefix>session:<hash of id>`)
//! that expires with the session's absolute timeout; a per-user set lists
//! them for logout-all. Only hashes are stored, as in SQL.

use async_trait::async_trait;
use base64::Engine;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Redis;
use crate::store::{SessionRecord, SessionStore, StoreError};

pub struct RedisSessions {
    redis: Redis,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    user_id: Uuid,
    csrf_hash: String,
    created_at: i128,
    idle_expires_at: i128,
    absolute_expires_at: i128,
    /// Absent in sessions written before it was kept: a password sign-in.
    #[serde(default)]
    sign_in: crate::domain::SignInMethod,
}

fn encode(hash: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
}

fn other(error: impl std::fmt::Display) -> StoreError {
    StoreError::Other(anyhow::anyhow!("redis: {error}"))
}

fn time_of(nanos: i128) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(other)
}

impl RedisSessions {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn session_key(&self, id_hash: &[u8; 32]) -> String {
        self.redis.key(&format!("session:{}", encode(id_hash)))
    }

    fn user_key(&self, user_id: Uuid) -> String {
        self.redis.key(&format!("user-sessions:{user_id}"))
    }

    /// Stores `record`; with `only_if_present`, only over a session that is
    /// still there (`SET … XX`), so a session deleted in between (a logout
    /// racing a request of the same session) is never brought back.
    async fn write(&self, record: &SessionRecord, only_if_present: bool) -> Result<(), StoreError> {
        let stored = Stored {
            user_id: record.user_id,
            csrf_hash: encode(&record.csrf_hash),
            created_at: record.created_at.unix_timestamp_nanos(),
            idle_expires_at: record.idle_expires_at.unix_timestamp_nanos(),
            absolute_expires_at: record.absolute_expires_at.unix_timestamp_nanos(),
            sign_in: record.sign_in,
        };
        let ttl_ms = (record.absolute_expires_at - OffsetDateTime::now_utc()).whole_milliseconds().max(1);
        let json = serde_json::to_string(&stored).map_err(other)?;
        let mut connection = self.redis.connection.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(&record.id_hash)).arg(json).arg("PX").arg(u64::try_from(ttl_ms).unwrap_or(1));
        if only_if_present {
            set.arg("XX");
        }
        // `XX` on a missing key answers nil: nothing was written, as wanted.
        let _: Option<String> = set.query_async(&mut connection).await.map_err(other)?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.write(record, false).await?;
        let mut connection = self.redis.connection.clone();
        let user_key = self.user_key(record.user_id);
        let _: () = connection.sadd(&user_key, encode(&record.id_hash)).await.map_err(other)?;
        let ttl = (record.absolute_expires_at - OffsetDateTime::now_utc()).whole_seconds().max(1);
        let _: () = connection.expire(&user_key, ttl).await.map_err(other)?;
        Ok(())
    }

    async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let mut connection = self.redis.connection.clone();
        let json: Option<String> = connection.get(self.session_key(id_hash)).await.map_err(other)?;
        let Some(json) = json else { return Ok(None) };
        let stored: Stored = serde_json::from_str(&json).map_err(other)?;
        let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&stored.csrf_hash).map_err(other)?;
        Ok(Some(SessionRecord {
            id_hash: *id_hash,
            user_id: stored.user_id,
            csrf_hash: csrf.try_into().map_err(|_| other("bad csrf hash"))?,
            created_at: time_of(stored.created_at)?,
            idle_expires_at: time_of(stored.idle_expires_at)?,
            absolute_expires_at: time_of(stored.absolute_expires_at)?,
            sign_in: stored.sign_in,
        }))
    }

    async fn extend_session(&self, id_hash: &[u8; 32], idle_expires_at: OffsetDateTime) -> Result<(), StoreError> {
        if let Some(mut record) = self.session(id_hash).await? {
            record.idle_expires_at = idle_expires_at;
            self.write(&record, true).await?;
        }
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        let mut connection = self.redis.connection.clone();
        let _: () = connection.del(self.session_key(id_hash)).await.map_err(other)?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user_id: Uuid) -> Result<(), StoreError> {
        let mut connection = self.redis.connection.clone();
        let user_key = self.user_key(user_id);
        let members: Vec<String> = connection.smembers(&user_key).await.map_err(other)?;
        let mut keys: Vec<String> = members.iter().map(|m| self.redis.key(&format!("session:{m}"))).collect();
        keys.push(user_key);
        let _: () = connection.del(keys).await.map_err(other)?;
        Ok(())
    }
}
