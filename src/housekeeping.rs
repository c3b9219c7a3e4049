//! Periodic upkeep that no request should wait for, every hour: audit
//! retention (events older than `audit.retention` are deleted) and the
//! purge of expired sessions, refresh tokens, OAuth flows and revocations
//! (`Store::purge_expired`), which a revocation also triggers but which must
//! not wait for one.

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
