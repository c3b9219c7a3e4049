//! Revocations shared by every instance: each revocation is applied
//! locally, written to the durable store, then published on
//! `<prefix>revocations`; every instance's subscriber applies what others
//! publish to its own in-memory list. The request path still only reads
//! memory. On every (re)subscription, and every `RELOAD_EVERY` while
//! subscribed, the list is reloaded from the store, so a message missed
//! (published while an instance was cut off, or never published) costs
//! seconds. A publish that fails is retried in the background
//! (`PUBLISH_RETRIES`, growing pauses); the request does not wait for it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Redis;
use crate::{
    auth::{
        api_keys::KeyRevocation,
        revocation::{MemoryRevocations, RevocationList},
        tokens::AccessClaims,
    },
    store::{Revocation, RevocationKind, StoreError},
};

#[derive(Serialize, Deserialize)]
struct Message {
    kind: String,
    subject: Uuid,
    revoked_before: Option<i128>,
    expires_at: i128,
}

impl Message {
    fn from_revocation(revocation: &Revocation) -> Self {
        Self {
            kind: revocation.kind.as_str().to_owned(),
            subject: revocation.subject,
            revoked_before: revocation.revoked_before.map(OffsetDateTime::unix_timestamp_nanos),
            expires_at: revocation.expires_at.unix_timestamp_nanos(),
        }
    }

    fn from_key_revocation(revocation: KeyRevocation) -> Self {
        let (kind, subject) = match revocation {
            KeyRevocation::Key(id) => (KEY_KIND, id),
            KeyRevocation::User(user_id) => (USER_KEYS_KIND, user_id),
        };
        Self { kind: kind.to_owned(), subject, revoked_before: None, expires_at: 0 }
    }

    fn into_received(self) -> Option<Received> {
        let kind = match self.kind.as_str() {
            "token" => RevocationKind::Token,
            "family" => RevocationKind::Family,
            "user" => RevocationKind::User,
            KEY_KIND => return Some(Received::Keys(KeyRevocation::Key(self.subject))),
            USER_KEYS_KIND => return Some(Received::Keys(KeyRevocation::User(self.subject))),
            _ => return None,
        };
        Some(Received::Revocation(Revocation {
            kind,
            subject: self.subject,
            revoked_before: match self.revoked_before {
                Some(nanos) => Some(OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?),
                None => None,
            },
            expires_at: OffsetDateTime::from_unix_timestamp_nanos(self.expires_at).ok()?,
        }))
    }
}

/// Message kinds of key revocations (not stored revocations: a revoked
/// key is deleted from the store).
const KEY_KIND: &str = "api_key";
const USER_KEYS_KIND: &str = "user_api_keys";

enum Received {
    Revocation(Revocation),
    Keys(KeyRevocation),
}

/// How often a subscribed instance re-reads the durable list anyway.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// Further attempts at a failed publish, after 100 ms, 200 ms, 400 ms, ...
const PUBLISH_RETRIES: u32 = 5;

pub struct RedisRevocations {
    local: Arc<MemoryRevocations>,
    redis: Redis,
    channel: String,
}

impl RedisRevocations {
    /// Starts the subscriber; it lives as long as the runtime.
    pub fn start(local: Arc<MemoryRevocations>, redis: Redis) -> Self {
        Self::start_with_reload(local, redis, RELOAD_EVERY)
    }

    /// `start` with another reload period (tests).
    pub fn start_with_reload(local: Arc<MemoryRevocations>, redis: Redis, reload_every: Duration) -> Self {
        let channel = redis.key("revocations");
        tokio::spawn(subscribe(local.clone(), redis.client.clone(), channel.clone(), reload_every));
        Self { local, redis, channel }
    }
}

async fn publish(redis: &Redis, channel: &str, payload: &str) -> Result<i64, redis::RedisError> {
    let mut connection = redis.connection.clone();
    redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut connection).await
}

async fn subscribe(local: Arc<MemoryRevocations>, client: redis::Client, channel: String, reload_every: Duration) {
    let mut logged_down = false;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    if let Err(error) = local.reload().await {
                        tracing::warn!(cause = %error, "could not reload revocations after subscribing");
                    }
                    if logged_down {
                        tracing::info!("revocation channel connected again");
                        logged_down = false;
                    }
                    let mut messages = pubsub.on_message();
                    let mut reload = tokio::time::interval(reload_every);
                    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    reload.tick().await;
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                let Some(message) = message else { break };
                                let Ok(payload) = message.get_payload::<String>() else { continue };
                                match serde_json::from_str::<Message>(&payload).ok().and_then(Message::into_received)
                                {
                                    Some(Received::Revocation(revocation)) => local.apply(&revocation),
                                    Some(Received::Keys(revocation)) => local.apply_key_revocation(revocation),
                                    None => tracing::warn!("ignored a malformed revocation message"),
                                }
                            }
                            _ = reload.tick() => {
                                if let Err(error) = local.reload().await {
                                    tracing::warn!(cause = %error, "could not reload revocations");
                                }
                            }
                        }
                    }
                }
            }
            Err(error) if !logged_down => {
                tracing::warn!(cause = %error, "revocation channel unavailable; retrying");
                logged_down = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[async_trait]
impl RevocationList for RedisRevocations {
    fn is_token_revoked(&self, claims: &AccessClaims) -> bool {
        self.local.is_token_revoked(claims)
    }

    fn is_session_revoked(&self, user_id: Uuid, created_at: OffsetDateTime) -> bool {
        self.local.is_session_revoked(user_id, created_at)
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        self.local.revoke(revocation.clone()).await?;
        let payload = serde_json::to_string(&Message::from_revocation(&revocation)).map_err(anyhow::Error::from)?;
        self.publish_with_retries(payload).await;
        Ok(())
    }

    async fn revoke_api_keys(&self, revocation: KeyRevocation) {
        self.local.apply_key_revocation(revocation);
        match serde_json::to_string(&Message::from_key_revocation(revocation)) {
            Ok(payload) => self.publish_with_retries(payload).await,
            Err(error) => tracing::warn!(cause = %error, "could not encode a key revocation"),
        }
    }
}

impl RedisRevocations {
    /// Publishes; a failure is retried in the background, off the request.
    async fn publish_with_retries(&self, payload: String) {
        if let Err(error) = publish(&self.redis, &self.channel, &payload).await {
            // Durable already, and every instance reloads within
            // `RELOAD_EVERY`; retrying makes it sooner, off the request.
            tracing::warn!(cause = %error, "could not publish a revocation; retrying");
            let (redis, channel) = (self.redis.clone(), self.channel.clone());
            tokio::spawn(async move {
                let mut pause = Duration::from_millis(100);
                for _ in 0..PUBLISH_RETRIES {
                    tokio::time::sleep(pause).await;
                    if publish(&redis, &channel, &payload).await.is_ok() {
                        return;
                    }
                    pause *= 2;
                }
                tracing::warn!("gave up publishing a revocation; other instances reload it from the store");
            });
        }
    }
}
