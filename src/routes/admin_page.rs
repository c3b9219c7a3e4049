//! `/admin`: a small security overview for admins, served entirely by
//! Rampart (no CDN) under a strict CSP, plus `/api/admin/stats`, the
//! per-minute traffic it charts. The page is served to admins only (others
//! are sent to `/login`, or get 403); everything it shows comes from the
//! admin API, which the policy guards as well.

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
    metrics::TrafficMinute,
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

impl From<TrafficMinute> for Minute {
    fn from(minute: TrafficMinute) -> Self {
        let TrafficMinute { time, requests, unauthorized, forbidden, rate_limited } = minute;
        Self { time, requests, unauthorized, forbidden, rate_limited }
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
    let minutes = state.metrics.traffic.last_hour(state.clock.now()).into_iter().map(Minute::from).collect();
    Ok(Json(Stats { minutes }))
}
