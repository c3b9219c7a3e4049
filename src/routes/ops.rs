//! Operations: `/health` (always cheap, never touches the database),
//! `/ready` (checks the database) and `/metrics` (admin listener only).

use std::{cell::RefCell, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::Routes;
use crate::{app::AppState, error::ApiError, openapi::tags, route_class::RouteClass};

const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Routes {
    Routes::new().routes_of(RouteClass::Liveness, routes!(health)).routes_of(RouteClass::Readiness, routes!(ready))
}

/// Routes of the admin listener.
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health))
}

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(value_type = String, pattern = "^healthy$")]
    status: &'static str,
    uptime_seconds: u64,
    #[schema(schema_with = crate::openapi::date_time)]
    timestamp: String,
    #[schema(value_type = String)]
    version: &'static str,
}

/// Liveness: answers without touching the database. Never rate limited,
/// and reachable even by a blocked client. The time is given to the whole
/// second, so the body changes once a second and each worker thread keeps
/// the last one it rendered: load balancers poll this often.
#[utoipa::path(
    get,
    path = "/health",
    tag = tags::OPS,
    responses((status = 200, description = "The server is up.", body = Health))
)]
async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let key = (now.unix_timestamp(), state.started.elapsed().as_secs());
    let cached =
        LAST_HEALTH.with_borrow(|last| last.as_ref().filter(|(at, _)| *at == key).map(|(_, body)| body.clone()));
    let body = match cached {
        Some(body) => body,
        None => {
            let health = Health {
                status: "healthy",
                uptime_seconds: key.1,
                timestamp: now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).map_err(anyhow::Error::from)?,
                version: env!("CARGO_PKG_VERSION"),
            };
            let body = super::render_json(&health)?;
            LAST_HEALTH.set(Some((key, body.clone())));
            body
        }
    };
    Ok(super::json_response(body))
}

thread_local! {
    /// The last `/health` body this thread rendered, by (Unix second, uptime second).
    static LAST_HEALTH: RefCell<Option<((i64, u64), Bytes)>> = const { RefCell::new(None) };
}

#[derive(Serialize, ToSchema)]
struct Ready {
    #[schema(value_type = String, pattern = "^ready$")]
    status: &'static str,
    #[schema(value_type = String, pattern = "^up$")]
    database: &'static str,
    /// Present when Redis is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, pattern = "^up$")]
    redis: Option<&'static str>,
}

/// Readiness: 200 when the database (and Redis, when configured) answer
/// within 2 s and, in protect mode, an upstream of the required routes is
/// up. Never rate limited.
#[utoipa::path(
    get,
    path = "/ready",
    tag = tags::OPS,
    responses(
        (status = 200, description = "The database (and Redis, when configured) answered.", body = Ready),
        (status = 503, description = "The database or Redis did not answer, or (protect mode) every upstream of a required route is down."),
    )
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let database_up = match tokio::time::timeout(READY_CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(cause = %error, "readiness check: database failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness check: database did not answer in time");
            false
        }
    };
    let redis_up = match &state.redis {
        Some(redis) => Some(redis.ping().await),
        None => None,
    };
    if !database_up || redis_up == Some(false) {
        return Err(ApiError::Unavailable);
    }
    if !state.gateway.ready() {
        tracing::warn!("readiness check: every upstream of a required route is down");
        return Err(ApiError::Unavailable);
    }
    Ok(Json(Ready { status: "ready", database: "up", redis: redis_up.map(|_| "up") }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Sessions in the SQL store are counted at scrape time (one query per
    // scrape); Redis sessions expire by themselves and are not counted.
    if state.redis.is_none()
        && let Ok(Ok(count)) =
            tokio::time::timeout(READY_CHECK_TIMEOUT, state.store.count_active_sessions(state.clock.now())).await
    {
        state.metrics.active_sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    if let Ok(Err(error)) = tokio::time::timeout(READY_CHECK_TIMEOUT, state.mailer.count_outbox(&*state.store)).await {
        tracing::warn!(cause = %error, "could not count the mail outbox");
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
