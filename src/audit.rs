//! Security audit events: every one goes to the JSON log (target
//! `rampart::audit`) and to the store's `audit_events` table.
//!
//! Recording never waits on the database: events go into a bounded queue
//! that a background task writes in batches. When the queue is full the
//! event is still logged, counted as dropped, and the request goes on, so
//! an attack cannot slow requests down through the audit trail.
//!
//! The event itself (`AuditEvent`, `AuditKind`, `Outcome`) is a domain
//! type; this module makes, logs and stores them.
//!
//! Security: an event holds ids, an IP and a route template, never a
//! password, token, cookie or body.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::request::Parts,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    domain::{AuditEvent, AuditKind, Outcome},
    request_context::RequestContext,
    store::Store,
};

/// Where an event happened, taken from the request. Making an event marks
/// the request as audited, so the access-log layer does not add a generic
/// `unauthorized`/`forbidden` event for the same request.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub client_ip: Option<IpAddr>,
    /// Given by `from_facts`; in a handler read from `request` only when an
    /// event is made (most requests make none, so they copy nothing).
    request_id: Option<String>,
    route: Option<String>,
    matched: Option<MatchedPath>,
    request: Option<Arc<RequestContext>>,
}

impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request = parts.extensions.get::<Arc<RequestContext>>().cloned();
        Ok(Self {
            client_ip: request.as_ref().and_then(|context| context.client_ip),
            request_id: None,
            route: None,
            matched: parts.extensions.get::<MatchedPath>().cloned(),
            request,
        })
    }
}

impl AuditContext {
    /// A context built from facts, for layers that have no extractor.
    pub fn from_facts(request_id: Option<String>, client_ip: Option<IpAddr>, route: Option<String>) -> Self {
        Self { client_ip, request_id, route, matched: None, request: None }
    }

    pub fn event(&self, now: OffsetDateTime, event: AuditKind, user_id: Option<Uuid>, outcome: Outcome) -> AuditEvent {
        if let Some(request) = &self.request {
            request.audited.store(true, Ordering::Relaxed);
        }
        AuditEvent {
            id: Uuid::now_v7(),
            time: now,
            request_id: self
                .request_id
                .clone()
                .or_else(|| self.request.as_ref().map(|context| context.request_id.as_str().to_owned())),
            event,
            user_id,
            client_ip: self.client_ip,
            route: self.route.clone().or_else(|| self.matched.as_ref().map(|path| path.as_str().to_owned())),
            outcome,
            detail: None,
        }
    }
}

const QUEUE_CAPACITY: usize = 10_000;
const BATCH: usize = 256;

pub struct Auditor {
    queue: mpsc::Sender<AuditEvent>,
    /// Events waiting for the writer (a gauge on the metrics listener).
    depth: Gauge,
    /// Events logged but not stored because the queue was full.
    dropped: Counter,
}

impl Auditor {
    /// Adds the queue's gauge and drop counter to the scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register("audit_queue_depth", "Audit events waiting to be stored", self.depth.clone());
        registry.register("audit_dropped", "Audit events logged but not stored (queue full)", self.dropped.clone());
    }

    /// Starts the background writer on the current runtime.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (queue, mut receiver) = mpsc::channel::<AuditEvent>(QUEUE_CAPACITY);
        let depth = Gauge::default();
        let writer_depth = depth.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                writer_depth.set(i64::try_from(receiver.len()).unwrap_or(i64::MAX));
                if let Err(error) = store.insert_audit_events(&batch).await {
                    tracing::error!(cause = %error, events = batch.len(), "audit events could not be stored");
                }
                batch.clear();
            }
        });
        Self { queue, depth, dropped: Counter::default() }
    }

    pub fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "rampart::audit",
            event = event.event.as_str(),
            outcome = event.outcome.as_str(),
            user_id = event.user_id.map(|id| id.to_string()),
            client_ip = event.client_ip.map(|ip| ip.to_string()),
            route = event.route.as_deref(),
            request_id = event.request_id.as_deref(),
            detail = event.detail.as_deref(),
            "audit"
        );
        if self.queue.try_send(event).is_err() {
            self.dropped.inc();
        }
        self.depth.set(i64::try_from(self.queue.max_capacity() - self.queue.capacity()).unwrap_or(i64::MAX));
    }
}
