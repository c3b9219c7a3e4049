//! Periodic upkeep that no request should wait for: audit retention
//! (events older than `audit.retention` are deleted every hour) and the
//! active-sessions gauge (refreshed every 15 s from the SQL store).

use std::{sync::Arc, time::Duration};

use crate::app::AppState;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);
const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// Starts the upkeep tasks on the current runtime; they end with it.
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

    // Sessions live in Redis when it is configured; the gauge counts SQL ones.
    if state.redis.is_some() {
        return;
    }
    let store = state.store.clone();
    let clock = state.clock.clone();
    let gauge = state.metrics.active_sessions.clone();
    let metrics = Arc::downgrade(&state.metrics);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(GAUGES_EVERY);
        loop {
            ticks.tick().await;
            if metrics.upgrade().is_none() {
                return;
            }
            if let Ok(count) = store.count_active_sessions(clock.now()).await {
                gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    });
}
