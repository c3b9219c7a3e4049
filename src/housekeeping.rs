//! Periodic upkeep that no request should wait for: audit retention
//! (events older than `audit.retention` are deleted every hour).

use std::{sync::Arc, time::Duration};

use crate::{clock::Clock, store::Store};

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Starts the upkeep task on the current runtime; it ends with it.
/// `retention`: how long audit events are kept (`audit.retention`).
pub fn spawn(store: Arc<dyn Store>, clock: Arc<dyn Clock>, retention: time::Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(RETENTION_EVERY);
        loop {
            ticks.tick().await;
            match store.purge_audit_events(clock.now() - retention).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "audit events past their retention deleted"),
                Err(error) => tracing::warn!(cause = %error, "audit retention failed"),
            }
        }
    });
}
