//! Prometheus metrics, held in `AppState` (no global registry, so every
//! test server counts for itself) and rendered on the admin listener only.
//!
//! Label values are bounded: routes are templates (`/api/posts/{id}`), never
//! raw paths, and unmatched requests share one label, so an attacker cannot
//! grow the series count.

use std::sync::Arc;

use crate::{
    audit::Auditor, defense::Defense, layers::rate_limit::RateLimiter, policy::DecisionLabels,
    routes::admin_page::TrafficStats,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: Arc<str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: Arc<str>,
}

/// Latency buckets from 0.5 ms to 10 s: an API request lives in this range.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram>,
    /// Password sign-ins by outcome: success, failure, throttled.
    pub logins: Family<OutcomeLabels, Counter>,
    /// Refresh-token uses by outcome: success, failure, reuse.
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    /// Sessions in force (SQL store), counted at each scrape.
    pub active_sessions: Gauge,
    /// Per-minute traffic for the `/admin` charts.
    pub traffic: TrafficStats,
}

impl Metrics {
    /// `authz_decisions` is owned by the policy's `Authorizer`, which counts
    /// into it; it is registered here so the scrape shows it.
    pub fn new(
        authz_decisions: &Family<DecisionLabels, Counter>,
        rate_limiter: &RateLimiter,
        defense: &Defense,
        audit: &Auditor,
    ) -> Self {
        let mut registry = Registry::with_prefix("rampart");
        registry.register("blocks", "Clients blocked, automatically or by an admin", defense.blocks_total.clone());
        registry.register("blocked_clients", "Blocks in force now", defense.blocked_clients.clone());
        registry.register(
            "rate_limited",
            "Requests refused with 429, by rate-limit group",
            rate_limiter.limited.clone(),
        );
        registry.register(
            "rate_limit_backend_errors",
            "Rate-limit decisions the backend could not make, by group",
            rate_limiter.backend_errors.clone(),
        );
        registry.register(
            "authz_decisions",
            "Authorization decisions, by action and outcome (allow/deny)",
            authz_decisions.clone(),
        );
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head, by route and method",
            http_request_duration.clone(),
        );
        let logins = Family::<OutcomeLabels, Counter>::default();
        registry.register("logins", "Password sign-ins by outcome (success, failure, throttled)", logins.clone());
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Refresh-token uses by outcome (success, failure, reuse)",
            token_refreshes.clone(),
        );
        registry.register("audit_queue_depth", "Audit events waiting to be stored", audit.depth.clone());
        registry.register("audit_dropped", "Audit events logged but not stored (queue full)", audit.dropped.clone());
        for outcome in ["success", "failure", "throttled"] {
            drop(logins.get_or_create(&OutcomeLabels { outcome }));
        }
        for outcome in ["success", "failure", "reuse"] {
            drop(token_refreshes.get_or_create(&OutcomeLabels { outcome }));
        }
        let active_sessions = Gauge::default();
        registry.register("active_sessions", "Browser sessions in force", active_sessions.clone());
        Self {
            registry,
            http_requests,
            http_request_duration,
            logins,
            token_refreshes,
            active_sessions,
            traffic: TrafficStats::default(),
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
