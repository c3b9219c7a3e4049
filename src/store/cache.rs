//! Short-lived read caches inside the store, so that the hottest reads skip
//! a database round trip (on SQLite also two thread hand-offs): users by id
//! (a profile, a session's owner) and the first page of posts. Entries live
//! `TTL`; this instance's own writes drop them at once, another instance's
//! writes show here after at most `TTL`. Nothing that refuses access
//! depends on them: tokens and sessions are checked against the revocation
//! list on every request.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::{PostsPage, Snapshot};
use crate::domain::User;

const TTL: Duration = Duration::from_secs(1);
/// Past this many entries the cache starts over (a burst of distinct users
/// must not grow memory).
const MAX_ENTRIES: usize = 10_000;

type SharedUser = Arc<Snapshot<User>>;

#[derive(Default)]
pub struct UserCache {
    entries: Mutex<HashMap<Uuid, (Instant, SharedUser)>>,
}

impl UserCache {
    pub fn get(&self, id: Uuid) -> Option<SharedUser> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).filter(|(read, _)| read.elapsed() < TTL).map(|(_, user)| user.clone())
    }

    pub fn put(&self, user: &SharedUser) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(user.id, (Instant::now(), user.clone()));
        }
    }

    pub fn forget(&self, id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
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
pub struct LatestPostsCache {
    generation: AtomicU64,
    page: Mutex<Option<CachedPage>>,
}

impl LatestPostsCache {
    /// The cached page, or the generation to hand to `put` after reading.
    pub fn get(&self, limit: u32) -> Result<Arc<PostsPage>, u64> {
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

    pub fn put(&self, generation: u64, limit: u32, page: &Arc<PostsPage>) {
        if let Ok(mut cached) = self.page.lock()
            && self.generation.load(Ordering::Acquire) == generation
        {
            *cached = Some(CachedPage { read: Instant::now(), generation, limit, page: page.clone() });
        }
    }

    /// After any write to posts (or to users, whose deletion removes posts).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut page) = self.page.lock() {
            *page = None;
        }
    }
}
