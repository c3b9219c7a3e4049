//! Periodic upkeep that no request should wait for, every hour: audit
//! retention (events older than `audit.retention` are deleted) and the
//! purge of expired sessions, refresh tokens, OAuth flows and revocations
//! (`Store::purge_expired`), which a revocation also triggers but which must
//! not wait for one. And, every couple of seconds, a nudge that lets the
//! allocator give back the memory of a burst that has ended
//! (`spawn_allocator_nudge`).

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;

use crate::{
    clock::Clock,
    store::{Store, StoreError},
};

/// How often `hourly` runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Starts the upkeep task on the current runtime; it ends with it.
/// `retention`: how long audit events are kept (`audit.retention`).
pub fn spawn(store: Arc<dyn Store>, clock: Arc<dyn Clock>, retention: time::Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            if let Err(error) = hourly(&*store, clock.now(), retention).await {
                tracing::warn!(cause = %error, "housekeeping failed");
            }
        }
    });
}

/// How often every worker thread is given a little to allocate.
pub const NUDGE_EVERY: Duration = Duration::from_secs(2);

/// mimalloc returns a thread's freed pages to the system only when that
/// thread next goes down its slow allocation path (where the frees other
/// threads made of its memory are taken in, and empty pages given back):
/// a process that gets no request at all keeps the memory of its last
/// burst (measured: 135 MiB after a million client addresses, still 140
/// MiB two idle minutes later). A few tasks every `NUDGE_EVERY`, spread
/// over the workers, each ask for a large block, which always takes that
/// path; the block is never written, so it costs no resident memory.
pub fn spawn_allocator_nudge() {
    tokio::spawn(async {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let mut ticks = tokio::time::interval(NUDGE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for _ in 0..workers * 2 {
                tokio::spawn(async {
                    tokio::task::yield_now().await;
                    std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
                });
            }
        }
    });
}

/// One round of upkeep at `now`: both steps run even when one fails.
pub async fn hourly(store: &dyn Store, now: OffsetDateTime, retention: time::Duration) -> Result<(), StoreError> {
    let audit = match store.purge_audit_events(now - retention).await {
        Ok(0) => Ok(()),
        Ok(removed) => {
            tracing::info!(removed, "audit events past their retention deleted");
            Ok(())
        }
        Err(error) => Err(error),
    };
    let expired = store.purge_expired(now).await;
    audit.and(expired)
}
