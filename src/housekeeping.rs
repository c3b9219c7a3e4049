//! Periodic upkeep that no request should wait for: audit retention
//! (events older than `audit.retention` are deleted every hour).

use std::time::Duration;

use crate::app::AppState;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Starts the upkeep task on the current runtime; it ends with it.
pub fn spawn(state: &AppState) {
    let store = state.store.clone();
    let clock = state.clock.clone();
    let retention = time::Duration::try_from(state.config.audit.retention.0).unwrap_or(time::Duration::days(90));
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
