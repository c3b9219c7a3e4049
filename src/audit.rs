//! Security audit events: every one goes to the JSON log (target
//! `rampart::audit`) and to the store's `audit_events` table.
//!
//! Recording never waits on the database: events go into a bounded queue
//! that a background task writes in batches. When the queue is full the
//! event is still logged, counted as dropped, and the request goes on, so
//! an attack cannot slow requests down through the audit trail. Security
//! events (sign-ins, account and role changes, blocks) are kept over
//! traffic events (401, 403, 429, 5xx): a full queue makes room for one by
//! dropping the newest traffic event, and the writer stores security
//! events first, so a flood of refusals cannot crowd out a sign-in.
//!
//! The event itself (`AuditEvent`, `AuditKind`, `Outcome`) is a domain
//! type; this module makes, logs and stores them.
//!
//! Security: an event holds ids, an IP and a route template, never a
//! password, token, cookie or body.

use std::{
    collections::VecDeque,
    net::IpAddr,
    sync::{Arc, Mutex, atomic::Ordering},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::request::Parts,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    domain::{AuditEvent, AuditKind, AuditPriority, Outcome},
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: &'static str,
}

/// The events waiting for the writer, one lane per priority, sharing one
/// capacity.
#[derive(Default)]
struct Lanes {
    security: VecDeque<AuditEvent>,
    traffic: VecDeque<AuditEvent>,
    /// The `Auditor` is gone: the writer stores what is left and ends.
    closed: bool,
}

impl Lanes {
    fn len(&self) -> usize {
        self.security.len() + self.traffic.len()
    }
}

struct Queue {
    lanes: Mutex<Lanes>,
    capacity: usize,
    /// Wakes the writer (a permit is kept when it is busy, so no push is missed).
    ready: Notify,
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Self { lanes: Mutex::new(Lanes::default()), capacity, ready: Notify::new() }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `event`; past the capacity a security event takes the place
    /// of the newest traffic event. Answers the priority of the event
    /// dropped, if one was, and the queue's length.
    fn push(&self, event: AuditEvent) -> (Option<AuditPriority>, usize) {
        let priority = event.event.priority();
        let mut lanes = self.lanes();
        let mut dropped = None;
        if lanes.len() >= self.capacity {
            if priority == AuditPriority::Security && lanes.traffic.pop_back().is_some() {
                dropped = Some(AuditPriority::Traffic);
            } else {
                return (Some(priority), lanes.len());
            }
        }
        match priority {
            AuditPriority::Security => lanes.security.push_back(event),
            AuditPriority::Traffic => lanes.traffic.push_back(event),
        }
        let length = lanes.len();
        drop(lanes);
        self.ready.notify_one();
        (dropped, length)
    }

    /// Up to `BATCH` events, security first, into `batch`; waits while
    /// there are none. False once the queue is closed and empty.
    async fn take(&self, batch: &mut Vec<AuditEvent>) -> bool {
        loop {
            {
                let mut lanes = self.lanes();
                let from_security = lanes.security.len().min(BATCH);
                batch.extend(lanes.security.drain(..from_security));
                let from_traffic = lanes.traffic.len().min(BATCH - batch.len());
                batch.extend(lanes.traffic.drain(..from_traffic));
                if !batch.is_empty() {
                    return true;
                }
                if lanes.closed {
                    return false;
                }
            }
            self.ready.notified().await;
        }
    }
}

pub struct Auditor {
    queue: Arc<Queue>,
    /// Events waiting for the writer (a gauge on the metrics listener).
    depth: Gauge,
    /// Events logged but not stored because the queue was full, by priority.
    dropped: Family<PriorityLabels, Counter>,
}

impl Auditor {
    /// Adds the queue's gauge and drop counter to the scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register("audit_queue_depth", "Audit events waiting to be stored", self.depth.clone());
        registry.register(
            "audit_dropped",
            "Audit events logged but not stored (queue full), by priority (security, traffic)",
            self.dropped.clone(),
        );
    }

    /// Starts the background writer on the current runtime.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let auditor = Self::unstarted(QUEUE_CAPACITY);
        let queue = auditor.queue.clone();
        let writer_depth = auditor.depth.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.take(&mut batch).await {
                writer_depth.set(i64::try_from(queue.lanes().len()).unwrap_or(i64::MAX));
                if let Err(error) = store.insert_audit_events(&batch).await {
                    tracing::error!(cause = %error, events = batch.len(), "audit events could not be stored");
                }
                batch.clear();
            }
        });
        auditor
    }

    /// An auditor whose queue nothing reads yet.
    fn unstarted(capacity: usize) -> Self {
        let dropped = Family::<PriorityLabels, Counter>::default();
        for priority in AuditPriority::ALL {
            drop(dropped.get_or_create(&PriorityLabels { priority: priority.as_str() }));
        }
        Self { queue: Arc::new(Queue::new(capacity)), depth: Gauge::default(), dropped }
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
        let (dropped, length) = self.queue.push(event);
        if let Some(priority) = dropped {
            self.dropped.get_or_create(&PriorityLabels { priority: priority.as_str() }).inc();
        }
        self.depth.set(i64::try_from(length).unwrap_or(i64::MAX));
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        self.queue.lanes().closed = true;
        self.queue.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn event(kind: AuditKind) -> AuditEvent {
        AuditContext::default().event(OffsetDateTime::UNIX_EPOCH, kind, None, Outcome::Denied)
    }

    fn scrape(auditor: &Auditor) -> String {
        let mut registry = Registry::with_prefix("rampart");
        auditor.register_metrics(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        text
    }

    #[tokio::test]
    async fn a_full_queue_keeps_sign_ins_and_role_changes_over_traffic_and_counts_the_drops() {
        let auditor = Auditor::unstarted(4);
        for _ in 0..4 {
            auditor.record(event(AuditKind::Forbidden));
        }
        auditor.record(event(AuditKind::RateLimited));
        auditor.record(event(AuditKind::LoginSuccess));
        auditor.record(event(AuditKind::RoleChange));
        auditor.record(event(AuditKind::Unauthorized));
        auditor.record(event(AuditKind::IpBlocked));
        auditor.record(event(AuditKind::LoginFailure));
        auditor.record(event(AuditKind::Logout));

        let text = scrape(&auditor);
        assert!(text.contains("rampart_audit_dropped_total{priority=\"traffic\"} 6"), "{text}");
        assert!(text.contains("rampart_audit_dropped_total{priority=\"security\"} 1"), "{text}");
        assert!(text.contains("rampart_audit_queue_depth 4"), "{text}");

        let mut batch = Vec::new();
        assert!(auditor.queue.take(&mut batch).await);
        let kinds: Vec<&str> = batch.iter().map(|event| event.event.as_str()).collect();
        assert_eq!(kinds, ["login_success", "role_change", "ip_blocked", "login_failure"], "the logout found no room");
    }

    #[tokio::test]
    async fn the_writer_takes_security_events_first_and_ends_when_the_auditor_goes() {
        let auditor = Auditor::unstarted(10);
        auditor.record(event(AuditKind::Unauthorized));
        auditor.record(event(AuditKind::PasswordChange));
        let queue = auditor.queue.clone();
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch).await);
        let kinds: Vec<&str> = batch.iter().map(|event| event.event.as_str()).collect();
        assert_eq!(kinds, ["password_change", "unauthorized"]);
        assert!(scrape(&auditor).contains("rampart_audit_dropped_total{priority=\"security\"} 0"));
        drop(auditor);
        batch.clear();
        assert!(!queue.take(&mut batch).await, "closed and empty");
    }
}
