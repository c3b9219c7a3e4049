//! `AppState` and the router with its layer stack: the request pipeline in
//! one place, outermost layer first (tower's `ServiceBuilder` order).

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::{from_fn, from_fn_with_state},
};
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
};

use crate::{
    auth::password::PasswordHasher,
    clock::Clock,
    config::Config,
    error::ApiError,
    layers::{
        access_log::access_log,
        limits::{RequestLimits, enforce_limits},
        panic,
        problem::render_problems,
        request_id::request_id,
        security_headers::{SecurityHeaders, security_headers},
        timeout::{RequestTimeout, enforce_timeout},
    },
    metrics::Metrics,
    routes,
    store::Store,
};

/// Everything a handler may need, cheap to clone (all shared pointers).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub hasher: PasswordHasher,
    pub started: Instant,
    /// Whether the public listener speaks TLS (HSTS, `Secure` cookies).
    pub tls: bool,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let hasher = PasswordHasher::new(&config.auth.password_hash)?;
        Ok(Self {
            config,
            store,
            metrics: Arc::new(Metrics::new()),
            clock,
            hasher,
            started: Instant::now(),
            tls,
        })
    }
}

/// The public API.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The public API plus `extra` routes under the same layers (tests use this
/// for routes that panic or echo).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let config = &state.config;
    let hsts = state.tls || config.is_production();
    let limits = RequestLimits {
        max_uri_bytes: config.server.max_uri_bytes.as_usize(),
        max_header_bytes: config.server.max_header_bytes.as_usize(),
    };
    let stack = ServiceBuilder::new()
        .layer(from_fn(request_id))
        .layer(from_fn_with_state(
            SecurityHeaders::new(hsts),
            security_headers,
        ))
        .layer(from_fn_with_state(state.metrics.clone(), access_log))
        .layer(from_fn(render_problems))
        .layer(panic::layer())
        .layer(from_fn_with_state(limits, enforce_limits))
        .layer(from_fn_with_state(
            RequestTimeout(config.server.request_timeout.0),
            enforce_timeout,
        ));

    // `Router::layer` wraps inside out: the body limit is innermost, CORS
    // just outside it, then the stack above.
    let mut router = Router::new()
        .merge(routes::ops::router())
        .merge(extra)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(
            config.server.body_limit.as_usize(),
        ));
    if let Some(cors) = cors(&config.server.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(stack).with_state(state)
}

/// The admin listener: `/metrics` (and `/health`), with the same headers
/// and error bodies but no access log, so scrapes do not flood it.
pub fn admin_router(state: AppState) -> Router {
    let hsts = state.config.is_production();
    let stack = ServiceBuilder::new()
        .layer(from_fn(request_id))
        .layer(from_fn_with_state(
            SecurityHeaders::new(hsts),
            security_headers,
        ))
        .layer(from_fn(render_problems))
        .layer(panic::layer());
    routes::ops::admin_router()
        .fallback(not_found)
        .layer(stack)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// CORS stays closed (no CORS headers at all) unless origins are configured.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let request_id = HeaderName::from_static("x-request-id");
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
                request_id.clone(),
            ])
            .expose_headers([
                request_id,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
            ])
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
