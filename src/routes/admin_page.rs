//! `/admin`: a small security overview for admins, served entirely by
//! Rampart (no CDN) under a strict CSP, plus `/api/admin/stats`, the
//! per-minute traffic it charts. The page is served to admins only (others
//! are sent to `/login`, or get 403); everything it shows comes from the
//! admin API, which the policy guards as well.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::Routes;
use crate::{
    app::AppState,
    audit::AuditContext,
    auth::principal::Caller,
    error::ApiError,
    openapi::tags,
    policy::{Action, Resource},
};

const PAGE: &str = include_str!("admin_page/index.html");
const SCRIPT: &str = include_str!("admin_page/admin.js");
const STYLE: &str = include_str!("admin_page/admin.css");

/// The page may load its own script and style and talk to its own origin;
/// nothing else.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                        form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page and its files are not API operations: they are registered
/// without OpenAPI descriptions (`tests/api/openapi.rs` lists them).
pub fn router() -> Routes {
    Routes::new()
        .route("/admin", get(page))
        .route("/admin/admin.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/admin/admin.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .routes(routes!(stats))
}

/// The page for admins only: without a valid session (or token) the
/// browser goes to `/login` and comes back; a signed-in non-admin gets 403.
async fn page(
    State(state): State<AppState>,
    audit: AuditContext,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    let Ok(caller @ Caller::User(_)) = caller else {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, HeaderValue::from_static("/login?next=%2Fadmin"))])
            .into_response());
    };
    state.authorize(&caller, Action::ViewDashboard, Resource::AdminArea, &audit)?;
    Ok(asset(PAGE, "text/html; charset=utf-8"))
}

pub(crate) fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    response
}

/// Requests per minute over the last hour, kept in a 60-slot ring that the
/// access-log layer feeds. Counts are approximate at a minute's turn (a
/// slot is reset by whichever request first sees the new minute).
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

#[derive(Serialize, ToSchema)]
struct Minute {
    /// The minute's start.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(schema_with = crate::openapi::date_time)]
    time: OffsetDateTime,
    requests: u64,
    unauthorized: u64,
    forbidden: u64,
    rate_limited: u64,
}

#[derive(Serialize, ToSchema)]
struct Stats {
    /// The last 60 minutes, oldest first.
    #[schema(min_items = 60, max_items = 60)]
    minutes: Vec<Minute>,
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

    fn last_hour(&self, now: OffsetDateTime) -> Vec<Minute> {
        let current = now.unix_timestamp().div_euclid(60);
        (current - 59..=current)
            .map(|minute| {
                let slot = &self.slots[usize::try_from(minute.rem_euclid(60)).unwrap_or(0)];
                let live = slot.minute.load(Ordering::Relaxed) == minute;
                let read = |counter: &AtomicU64| if live { counter.load(Ordering::Relaxed) } else { 0 };
                Minute {
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

/// Requests per minute over the last hour, as counted by this instance,
/// with the 401, 403 and 429 answers among them.
#[utoipa::path(
    get,
    path = "/api/admin/stats",
    tag = tags::ADMIN,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Requests per minute over the last hour.", body = Stats),
        (status = 403, description = "Only admins may see the statistics."),
    )
)]
async fn stats(State(state): State<AppState>, audit: AuditContext, caller: Caller) -> Result<Json<Stats>, ApiError> {
    state.authorize(&caller, Action::ViewDashboard, Resource::AdminArea, &audit)?;
    Ok(Json(Stats { minutes: state.metrics.traffic.last_hour(state.clock.now()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
