//! Prometheus metrics, held in `AppState` (no global registry, so every
//! test server counts for itself) and rendered on the admin listener only.
//!
//! Label values are bounded: routes are templates (`/api/posts/{id}`), never
//! raw paths, and unmatched requests share one label, so an attacker cannot
//! grow the series count.

use std::{
    cell::RefCell,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use time::OffsetDateTime;

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

static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(0);

/// Series handles a thread keeps (`Metrics::observe_request`).
const CACHED_SERIES: usize = 64;

struct CachedSeries {
    metrics: u64,
    method: &'static str,
    status: u16,
    route: Box<str>,
    requests: Counter,
    duration: Histogram,
}

thread_local! {
    static SERIES: RefCell<Vec<CachedSeries>> = const { RefCell::new(Vec::new()) };
}

/// Latency buckets from 0.5 ms to 10 s: an API request lives in this range.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

/// The second-factor events counted in `rampart_second_factor_events_total`
/// (the audit kinds of the same name, and `mfa_challenge`).
pub const SECOND_FACTOR_EVENTS: [&str; 8] = [
    "mfa_challenge",
    "mfa_success",
    "mfa_failure",
    "mfa_enabled",
    "mfa_disabled",
    "recovery_code_used",
    "passkey_added",
    "passkey_removed",
];

pub struct Metrics {
    /// Tells apart the `Metrics` of several servers in one process, for the
    /// per-thread series cache.
    id: u64,
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram>,
    /// Password sign-ins by outcome: success, failure, throttled.
    pub logins: Family<OutcomeLabels, Counter>,
    /// Refresh-token uses by outcome: success, failure, reuse.
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    /// Sessions in force (SQL store), counted at each scrape.
    pub active_sessions: Gauge,
    /// Second-factor events by name (`SECOND_FACTOR_EVENTS`).
    pub second_factor: Family<EventLabels, Counter>,
    /// Per-minute traffic for the `/admin` charts.
    pub traffic: TrafficStats,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry with the HTTP, sign-in and session series; each
    /// component adds its own (`register_metrics` on `Auditor`, `Defense`,
    /// `RateLimiter` and the policy's `Authorizer`) through `registry`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rampart");
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
        for outcome in ["success", "failure", "throttled"] {
            drop(logins.get_or_create(&OutcomeLabels { outcome }));
        }
        for outcome in ["success", "failure", "reuse"] {
            drop(token_refreshes.get_or_create(&OutcomeLabels { outcome }));
        }
        let active_sessions = Gauge::default();
        registry.register("active_sessions", "Browser sessions in force", active_sessions.clone());
        let second_factor = Family::<EventLabels, Counter>::default();
        registry.register(
            "second_factor_events",
            "Second-factor events: challenges, second steps, enrolments, recovery codes used",
            second_factor.clone(),
        );
        for event in SECOND_FACTOR_EVENTS {
            drop(second_factor.get_or_create(&EventLabels { event }));
        }
        Self {
            id: NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            http_requests,
            http_request_duration,
            logins,
            token_refreshes,
            active_sessions,
            second_factor,
            traffic: TrafficStats::default(),
        }
    }

    /// Where components register their series, before the server starts.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one answered request and its latency. The series handles of
    /// recent (route, method, status) triples are kept per thread: looking
    /// them up in the families takes a shared lock and two label hashes,
    /// which cost more than the counting itself.
    pub fn observe_request(&self, method: &'static str, route: &str, status: u16, latency_seconds: f64) {
        let families = (self.id, &self.http_requests, &self.http_request_duration);
        observe_request(families, method, route, status, latency_seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Requests per minute over the last hour (the `/admin` charts), kept in a
/// 60-slot ring that the access-log layer feeds. Counts are approximate at
/// a minute's turn (a slot is reset by whichever request first sees the new
/// minute).
pub struct TrafficStats {
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    minute: AtomicI64,
    requests: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    rate_limited: AtomicU64,
}

/// One minute of `TrafficStats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficMinute {
    /// The minute's start.
    pub time: OffsetDateTime,
    pub requests: u64,
    pub unauthorized: u64,
    pub forbidden: u64,
    pub rate_limited: u64,
}

impl Default for TrafficStats {
    fn default() -> Self {
        Self { slots: (0..60).map(|_| Slot::default()).collect() }
    }
}

impl TrafficStats {
    pub fn record(&self, unix_millis: i64, status: u16) {
        let minute = unix_millis.div_euclid(60_000);
        let slot = &self.slots[usize::try_from(minute.rem_euclid(60)).unwrap_or(0)];
        let seen = slot.minute.load(Ordering::Relaxed);
        if seen != minute && slot.minute.compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            for counter in [&slot.requests, &slot.unauthorized, &slot.forbidden, &slot.rate_limited] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        let by_status = match status {
            401 => Some(&slot.unauthorized),
            403 => Some(&slot.forbidden),
            429 => Some(&slot.rate_limited),
            _ => None,
        };
        if let Some(counter) = by_status {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last 60 minutes up to `now`, oldest first.
    pub fn last_hour(&self, now: OffsetDateTime) -> Vec<TrafficMinute> {
        let current = now.unix_timestamp().div_euclid(60);
        (current - 59..=current)
            .map(|minute| {
                let slot = &self.slots[usize::try_from(minute.rem_euclid(60)).unwrap_or(0)];
                let live = slot.minute.load(Ordering::Relaxed) == minute;
                let read = |counter: &AtomicU64| if live { counter.load(Ordering::Relaxed) } else { 0 };
                TrafficMinute {
                    time: OffsetDateTime::from_unix_timestamp(minute * 60).unwrap_or(now),
                    requests: read(&slot.requests),
                    unauthorized: read(&slot.unauthorized),
                    forbidden: read(&slot.forbidden),
                    rate_limited: read(&slot.rate_limited),
                }
            })
            .collect()
    }
}

fn observe_request(
    (id, http_requests, http_request_duration): (u64, &Family<RequestLabels, Counter>, &Family<RouteLabels, Histogram>),
    method: &'static str,
    route: &str,
    status: u16,
    latency_seconds: f64,
) {
    let lookup = || {
        let route: Arc<str> = Arc::from(route);
        let requests = http_requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).clone();
        let duration = http_request_duration.get_or_create(&RouteLabels { method, route }).clone();
        (requests, duration)
    };
    let cached = SERIES.try_with(|cell| {
        let Ok(mut series) = cell.try_borrow_mut() else { return false };
        let found = series.iter().find(|entry| {
            entry.metrics == id && entry.status == status && entry.method == method && &*entry.route == route
        });
        let entry = match found {
            Some(entry) => entry,
            None => {
                let (requests, duration) = lookup();
                let entry = CachedSeries { metrics: id, method, status, route: Box::from(route), requests, duration };
                // Bounded: past the limit, the oldest half makes room.
                if series.len() >= CACHED_SERIES {
                    series.drain(..CACHED_SERIES / 2);
                }
                series.push(entry);
                let Some(entry) = series.last() else { return false };
                entry
            }
        };
        entry.requests.inc();
        entry.duration.observe(latency_seconds);
        true
    });
    if cached != Ok(true) {
        let (requests, duration) = lookup();
        requests.inc();
        duration.observe(latency_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> (Family<RequestLabels, Counter>, Family<RouteLabels, Histogram>) {
        (Family::default(), Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)))
    }

    #[test]
    fn cached_series_count_into_their_own_families() {
        let (first, second) = (families(), families());
        for _ in 0..3 {
            observe_request((1_000_001, &first.0, &first.1), "GET", "/health", 200, 0.001);
            observe_request((1_000_002, &second.0, &second.1), "GET", "/health", 200, 0.001);
            observe_request((1_000_001, &first.0, &first.1), "GET", "/health", 404, 0.001);
        }
        // Enough other series to push the first ones out of the cache.
        for n in 0..2 * CACHED_SERIES {
            observe_request((1_000_002, &second.0, &second.1), "POST", &format!("/r/{n}"), 201, 0.001);
        }
        observe_request((1_000_001, &first.0, &first.1), "GET", "/health", 200, 0.001);
        let count = |family: &Family<RequestLabels, Counter>, status| {
            family.get_or_create(&RequestLabels { method: "GET", route: Arc::from("/health"), status }).get()
        };
        assert_eq!((count(&first.0, 200), count(&first.0, 404)), (4, 3));
        assert_eq!((count(&second.0, 200), count(&second.0, 404)), (3, 0));
        let mut text = String::new();
        let mut registry = Registry::default();
        registry.register("seconds", "", first.1.clone());
        encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"seconds_count{method="GET",route="/health"} 7"#), "{text}");
    }

    #[test]
    fn minutes_roll_and_old_slots_read_as_zero() {
        let stats = TrafficStats::default();
        // A whole minute (29,999,999 × 60 s).
        let start = OffsetDateTime::from_unix_timestamp(1_799_999_940).expect("time");
        let millis = |at: OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;
        stats.record(millis(start), 200);
        stats.record(millis(start), 401);
        stats.record(millis(start + time::Duration::minutes(1)), 429);
        let hour = stats.last_hour(start + time::Duration::minutes(1));
        assert_eq!(hour.len(), 60);
        let (previous, current) = (&hour[58], &hour[59]);
        assert_eq!((previous.requests, previous.unauthorized), (2, 1));
        assert_eq!((current.requests, current.rate_limited), (1, 1));
        // An hour later the first minute's slot holds the new minute: the
        // window shows minute 1 (still in it) and minute 60, nothing else.
        stats.record(millis(start + time::Duration::minutes(60)), 200);
        let later = stats.last_hour(start + time::Duration::minutes(60));
        assert_eq!((later[0].requests, later[59].requests), (1, 1));
        assert!(later[1..59].iter().all(|m| m.requests == 0));
    }
}
