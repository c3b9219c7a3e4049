//! Users recently read by id, kept for `TTL` so that the hot read paths (a
//! profile, a session's owner) skip a database round trip, which on SQLite
//! also means two thread hand-offs. This instance's own writes to a user
//! drop its entry at once; another instance's write shows here after at
//! most `TTL`. Nothing that refuses access depends on it: tokens and
//! sessions are checked against the revocation list on every request.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::domain::User;

const TTL: Duration = Duration::from_secs(1);
/// Past this many entries the cache starts over (a burst of distinct users
/// must not grow memory).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct UserCache {
    entries: Mutex<HashMap<Uuid, (Instant, User)>>,
}

impl UserCache {
    pub fn get(&self, id: Uuid) -> Option<User> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).filter(|(read, _)| read.elapsed() < TTL).map(|(_, user)| user.clone())
    }

    pub fn put(&self, user: &User) {
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
