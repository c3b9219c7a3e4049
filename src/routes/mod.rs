//! HTTP routes. Each module exports a `router()` returning `Routes`;
//! `app::public_routes` merges them under the shared layer stack. Handlers
//! stay thin: parse input, ask the store (and, as it lands, the policy),
//! shape the response.
//!
//! A route the pipeline treats differently (never rate limited, never
//! blocked, a sign-in) is registered with its `RouteClass` in the same call
//! (`Routes::routes_of`): the layers read the class, not the path.

pub mod admin_page;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod blocks;
pub mod docs;
pub mod email;
pub mod forward_auth;
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod passkeys;
pub mod posts;
pub mod users;

use std::{cell::RefCell, collections::HashMap, sync::Arc, thread::LocalKey};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use serde::Serialize;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::{
    app::AppState,
    error::ApiError,
    route_class::{RouteClass, RouteClasses},
};

/// Routes with their OpenAPI descriptions and their route classes: an
/// `OpenApiRouter` that also keeps each route's `RouteClass`, declared in
/// the call that registers the route.
#[derive(Default)]
pub struct Routes {
    router: OpenApiRouter<AppState>,
    classes: RouteClasses,
}

/// What `Routes` builds: the axum router, the OpenAPI document of its
/// operations, and the route classes for the pipeline.
pub struct RouteParts {
    pub router: Router<AppState>,
    pub document: utoipa::openapi::OpenApi,
    pub classes: RouteClasses,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes added to `document` (info, tags, shared schemas).
    pub fn with_openapi(document: utoipa::openapi::OpenApi) -> Self {
        Self { router: OpenApiRouter::with_openapi(document), classes: RouteClasses::default() }
    }

    /// Registers handlers with their descriptions (`utoipa_axum::routes!`),
    /// as `Normal` routes (or their namespace's class, `class_under`).
    pub fn routes(self, routes: UtoipaMethodRouter<AppState>) -> Self {
        Self { router: self.router.routes(routes), classes: self.classes }
    }

    /// `routes` for handlers the pipeline treats as `class`; the path is the
    /// one their description names.
    pub fn routes_of(mut self, class: RouteClass, routes: UtoipaMethodRouter<AppState>) -> Self {
        for path in routes.1.paths.keys() {
            self.classes.declare(path, class);
        }
        self.routes(routes)
    }

    /// A route without an OpenAPI description (HTML pages and their files).
    pub fn route(self, path: &str, method_router: MethodRouter<AppState>) -> Self {
        Self { router: self.router.route(path, method_router), classes: self.classes }
    }

    /// Gives every path under `prefix`, routed or not, `class` unless it
    /// has its own.
    pub fn class_under(mut self, prefix: &str, class: RouteClass) -> Self {
        self.classes.declare_prefix(prefix, class);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.classes.merge(other.classes);
        Self { router: self.router.merge(other.router), classes: self.classes }
    }

    pub fn into_parts(self) -> RouteParts {
        let (router, document) = self.router.split_for_parts();
        RouteParts { router, document, classes: self.classes }
    }
}

/// JSON bodies of values the store shares: while a read is cached the store
/// hands out the same `Arc` again (`store::CachedStore`), so its body is
/// rendered once and reused; a write makes a new value and so a new body.
/// Each route keeps one per worker thread (`thread_local!`), so the hot path
/// takes no lock. Holding the `Arc` keeps its address from being reused
/// while it is a key here.
pub struct RenderedBodies<T> {
    bodies: HashMap<usize, (Arc<T>, Bytes)>,
    capacity: usize,
}

impl<T> RenderedBodies<T> {
    /// At most `capacity` bodies; past that the memory starts over.
    pub fn new(capacity: usize) -> Self {
        Self { bodies: HashMap::new(), capacity }
    }
}

/// A 200 JSON response showing `value`, rendered once per shared value:
/// `render` makes the body (with `render_json`) and must depend on nothing
/// else that can change.
pub fn shared_json<T: 'static>(
    memory: &'static LocalKey<RefCell<RenderedBodies<T>>>,
    value: &Arc<T>,
    render: impl FnOnce(&T) -> Result<Bytes, ApiError>,
) -> Result<Response, ApiError> {
    let key = Arc::as_ptr(value) as usize;
    if let Some(body) = memory.with_borrow(|memory| memory.bodies.get(&key).map(|(_, body)| body.clone())) {
        return Ok(json_response(body));
    }
    let body = render(value)?;
    memory.with_borrow_mut(|memory| {
        if memory.bodies.len() >= memory.capacity {
            memory.bodies.clear();
        }
        memory.bodies.insert(key, (value.clone(), body.clone()));
    });
    Ok(json_response(body))
}

/// `value` as JSON bytes, to keep and answer with `json_response`.
pub fn render_json(value: &impl Serialize) -> Result<Bytes, ApiError> {
    Ok(Bytes::from(serde_json::to_vec(value).map_err(anyhow::Error::from)?))
}

/// A 200 response of JSON rendered before (what `Json` would answer).
pub fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
