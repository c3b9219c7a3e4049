//! The request pipeline as two services calling the layers of this folder
//! in the order `STAGES` lists, the one place that order is written down
//! (`layers/mod.rs`, `app.rs` and ARCHITECTURE.md point here):
//!
//! - `Edge`, around everything, made per connection;
//! - `Gate`, just outside the router (inside CORS, so preflights pass
//!   freely).
//!
//! Why hand-written services rather than one `middleware::from_fn` per
//! layer: each `from_fn` layer boxes and clones the whole stack inside it
//! on every request, and that bookkeeping cost more than the work of the
//! layers themselves (docs/performance.md, "Design choices and what they
//! saved"). Here a request costs one boxed future per service and a few
//! reference counts.

use std::{
    convert::Infallible,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::{MatchedPath, Request},
    http::{Method, header},
    response::{IntoResponse, Response},
};
use futures_util::{FutureExt, future::BoxFuture};
use http_body_util::Limited;
use tower::{Layer, Service};

use super::{
    access_log::AccessLog,
    authenticate::{authenticate, enrolment_refusal, unverified_refusal},
    block,
    client_ip::{self, TrustedProxies},
    limits::RequestLimits,
    panic, problem, request_id,
    security_headers::SecurityHeaders,
};
use crate::{
    app::AppState,
    connection::{Activity, Busy},
    defense::Defense,
    error::ApiError,
    proxy::{Dispatch, FromUpstream, Gateway, Proxied},
    request_context::RequestContext,
    route_class::RouteClasses,
};

/// Which part of the pipeline runs a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `Edge`, on the way in, or on the way out once the response is made.
    Edge,
    /// The CORS layer between `Edge` and `Gate` (`app::router_with`), when
    /// `server.cors_origins` is set.
    Cors,
    /// `Gate`, on the way in, or on the way out of the router.
    Gate,
    /// The router, its `RecordRoute` route layer and the handler.
    Router,
}

/// One stage of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Stage {
    pub name: &'static str,
    pub runner: Runner,
    /// What it does, and where.
    pub work: &'static str,
}

const fn stage(name: &'static str, runner: Runner, work: &'static str) -> Stage {
    Stage { name, runner, work }
}

/// The pipeline, outermost first: a request passes these stages in this
/// order; its response passes the stages named "… out" on the way back.
/// The order matters where a stage refuses early: a blocked client is
/// refused before authentication or rate limiting counts it, and signed-in
/// callers are rate limited by user id because authentication comes first.
pub const STAGES: [Stage; 19] = [
    stage("request id", Runner::Edge, "keep a safe client X-Request-Id or mint one (request_id.rs)"),
    stage("client IP", Runner::Edge, "the socket peer, or the forwarded client behind trusted proxies (client_ip.rs)"),
    stage("route class", Runner::Edge, "the path's RouteClass, as the routers declared it, into the RequestContext"),
    stage(
        "protect mode",
        Runner::Edge,
        "a path for an upstream is marked Proxied; refused path shapes 400, 405 (proxy/gateway.rs)",
    ),
    stage("access log in", Runner::Edge, "note the start time, method and URI (access_log.rs)"),
    stage("blocked clients", Runner::Edge, "403 for a blocked client where the route class is blockable (block.rs)"),
    stage("size limits", Runner::Edge, "414 for a long URI, 431 for large headers (limits.rs)"),
    stage("timeout", Runner::Edge, "503 past server.request_timeout (not on proxied routes)"),
    stage("panic catching", Runner::Edge, "a panic becomes a 500 (panic.rs)"),
    stage("CORS", Runner::Cors, "preflights answered, CORS headers added, when origins are configured"),
    stage("body limit", Runner::Gate, "413 by Content-Length; any other body is cut off as it is read"),
    stage("authenticate", Runner::Gate, "bearer token, then session cookie, into the context (authenticate.rs)"),
    stage(
        "rate limit",
        Runner::Gate,
        "429 or admitted (proxied: the route's group only); on the way out RateLimit fields",
    ),
    stage(
        "verified email",
        Runner::Gate,
        "403 email_unverified for an unproven address with auth.require_verified_email (authenticate.rs)",
    ),
    stage(
        "second factor",
        Runner::Gate,
        "403 mfa_enrolment_required for a one-factor credential of a role in auth.require_mfa_for (authenticate.rs)",
    ),
    stage(
        "route",
        Runner::Router,
        "record the matched route, run the handler (proxied: the gateway); 404 and 405 otherwise",
    ),
    stage(
        "problem out",
        Runner::Edge,
        "render every error as problem+json with the request id, not an upstream's (problem.rs)",
    ),
    stage("access log out", Runner::Edge, "metrics, audit of 401/403/429/5xx, defence counting, the log line"),
    stage("headers out", Runner::Edge, "the security headers and X-Request-Id (security_headers.rs, request_id.rs)"),
];

/// What the outer service needs, built once.
pub struct EdgeSettings {
    pub trusted: TrustedProxies,
    pub headers: SecurityHeaders,
    pub limits: RequestLimits,
    pub timeout: Duration,
    /// The public listener logs and blocks; the admin listener does neither.
    pub access_log: Option<AccessLog>,
    pub defense: Option<Arc<Defense>>,
    /// The routers' route classes, looked up once per request into its
    /// `RequestContext`.
    pub route_classes: RouteClasses,
    /// Protect mode's gateway, on the public listener.
    pub gateway: Option<Arc<Gateway>>,
}

/// The outer service: the `Runner::Edge` stages of `STAGES`. The server makes one per
/// connection (`for_connection`), so the peer address needs no request
/// extension, and requests in progress keep the connection from being
/// closed as idle (`connection.rs`).
#[derive(Clone)]
pub struct Edge<S> {
    settings: Arc<EdgeSettings>,
    peer: Option<SocketAddr>,
    activity: Option<Arc<Activity>>,
    inner: S,
}

impl<S: Clone> Edge<S> {
    pub fn new(settings: EdgeSettings, inner: S) -> Self {
        Self { settings: Arc::new(settings), peer: None, activity: None, inner }
    }

    /// This service for one connection from `peer`.
    pub fn for_connection(&self, peer: SocketAddr, activity: Arc<Activity>) -> Self {
        Self { settings: self.settings.clone(), peer: Some(peer), activity: Some(activity), inner: self.inner.clone() }
    }
}

impl<S, B> Service<axum::http::Request<B>> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        // The ready service goes into the future; a fresh clone stays for next time.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let busy = self.activity.as_ref().map(Activity::begin);
        // `edge` itself is the boxed future: a wrapping `async` block would
        // hold a second copy of its arguments and be copied once more.
        Box::pin(edge(self.settings.clone(), self.peer, inner, request.map(Body::new), busy))
    }
}

/// `busy` marks the connection active until the response is made.
async fn edge<S>(
    settings: Arc<EdgeSettings>,
    peer: Option<SocketAddr>,
    mut inner: S,
    mut request: Request,
    busy: Option<Busy>,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let settings = &*settings;
    let id = request_id::assign(&request);
    let ip = peer.map(|peer| client_ip::client_ip(peer.ip(), request.headers(), &settings.trusted));
    let route_class = settings.route_classes.classify(request.uri().path());
    let mut context = RequestContext::new(id.clone(), ip, route_class);
    context.peer = peer.map(|peer| client_ip::canonical(peer.ip()));
    // Protect mode: a request for an upstream is marked here, before any
    // layer that treats it differently (timeout, limits, the gate).
    let dispatch =
        settings.gateway.as_ref().map(|gateway| gateway.dispatch(request.method(), request.headers(), request.uri()));
    let (proxied, path_refusal) = match dispatch {
        Some(Dispatch::Proxy(proxied)) => {
            let _ = context.proxy_route.set((proxied.label.clone(), proxied.upstream.name.clone()));
            request.extensions_mut().insert(proxied);
            (true, None)
        }
        Some(Dispatch::Refuse(refusal)) => (false, Some(refusal)),
        Some(Dispatch::Rampart) | None => (false, None),
    };
    let context = Arc::new(context);
    request.extensions_mut().insert(context.clone());
    let started = settings.access_log.as_ref().map(|log| log.start(&request, context.clone()));

    let response = match early_refusal(settings, &request, &context) {
        Some(refusal) => refusal,
        None if path_refusal.is_some() => path_refusal.map(IntoResponse::into_response).unwrap_or_default(),
        // `server.request_timeout` does not apply to proxied routes: the
        // upstream's own timeouts do (`proxy::gateway`).
        None if proxied => match AssertUnwindSafe(inner.call(request)).catch_unwind().await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(payload) => panic::response(payload),
        },
        None => {
            let handled = AssertUnwindSafe(inner.call(request)).catch_unwind();
            match tokio::time::timeout(settings.timeout, handled).await {
                Ok(Ok(Ok(response))) => response,
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(payload)) => panic::response(payload),
                Err(_elapsed) => ApiError::Timeout.into_response(),
            }
        }
    };

    // An upstream's own answer keeps its body and the headers it set.
    let from_upstream = response.extensions().get::<FromUpstream>().is_some();
    let mut response = if from_upstream { response } else { problem::render(response, &id) };
    if let (Some(log), Some(started)) = (&settings.access_log, started) {
        log.finish(started, response.status(), from_upstream).await;
    }
    if from_upstream {
        settings.headers.fill(response.headers_mut());
    } else {
        settings.headers.apply(response.headers_mut());
    }
    request_id::stamp(&mut response, id);
    drop(busy);
    Ok(response)
}

/// Blocked clients (403), then oversized URIs and headers (414/431).
fn early_refusal(settings: &EdgeSettings, request: &Request, context: &RequestContext) -> Option<Response> {
    if let Some(defense) = &settings.defense
        && let Some(refusal) = block::refusal(defense, context)
    {
        return Some(refusal);
    }
    settings.limits.check(request).err().map(IntoResponse::into_response)
}

/// The inner service: the `Runner::Gate` stages of `STAGES`.
#[derive(Clone)]
pub struct Gate {
    state: AppState,
    router: Router,
    body_limit: usize,
}

impl Gate {
    pub fn new(state: AppState, router: Router) -> Self {
        let body_limit = state.config.server.body_limit.as_usize();
        Self { state, router, body_limit }
    }
}

impl Service<Request> for Gate {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Box::pin(gate(self.clone(), request))
    }
}

async fn gate(mut gate: Gate, request: Request) -> Result<Response, Infallible> {
    if let Some(proxied) = request.extensions().get::<Proxied>().cloned() {
        return Ok(Box::pin(proxied_gate(gate, request, proxied)).await);
    }
    // A declared length past the limit is refused unread; any other body is
    // cut off at the limit while it is read (the extractors answer 413).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > gate.body_limit as u64) {
        return Ok(ApiError::PayloadTooLarge.into_response());
    }
    let (parts, body) = request.into_parts();
    if let Some(context) = parts.extensions.get::<Arc<RequestContext>>() {
        authenticate(&gate.state, &parts.headers, context).await;
    }
    let limiter = gate.state.rate_limiter.clone();
    let admission = match limiter.admit(&parts).await {
        Ok(admission) => admission,
        Err(refusal) => return Ok(refusal),
    };
    if let Some(context) = parts.extensions.get::<Arc<RequestContext>>()
        && let Some(refusal) = account_refusal(&gate.state, context, &parts.method, parts.uri.path(), false).await
    {
        let mut response = refusal.into_response();
        limiter.finish(admission, &mut response).await;
        return Ok(response);
    }
    let request = Request::from_parts(parts, Body::new(Limited::new(body, gate.body_limit)));
    let mut response = match gate.router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    limiter.finish(admission, &mut response).await;
    Ok(response)
}

/// The "verified email" and "second factor" stages, in that order.
async fn account_refusal(
    state: &AppState,
    context: &RequestContext,
    method: &Method,
    path: &str,
    proxied: bool,
) -> Option<ApiError> {
    match unverified_refusal(state, context, method, path, proxied).await {
        Some(refusal) => Some(refusal),
        None => enrolment_refusal(state, context, method, path, proxied),
    }
}

/// `gate` for a protect-mode route: the upstream's body limit, the same
/// authentication, the route's own rate-limit group, then the gateway.
async fn proxied_gate(gate: Gate, request: Request, proxied: Proxied) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > proxied.upstream.max_body) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let (parts, body) = request.into_parts();
    let Some(context) = parts.extensions.get::<Arc<RequestContext>>().cloned() else {
        return ApiError::Internal(anyhow::anyhow!("no request context")).into_response();
    };
    authenticate(&gate.state, &parts.headers, &context).await;
    let limiter = gate.state.rate_limiter.clone();
    let admission = match limiter.admit_route(&parts, &proxied.route.rate_limit).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    if let Some(refusal) = account_refusal(&gate.state, &context, &parts.method, parts.uri.path(), true).await {
        let mut response = refusal.into_response();
        limiter.finish(admission, &mut response).await;
        return response;
    }
    let request = Request::from_parts(parts, body);
    let mut response = gate.state.gateway.serve(&gate.state, &proxied, request, &context).await;
    limiter.finish(admission, &mut response).await;
    response
}

/// Records the matched route template in the request's `RequestContext`
/// for the access log and metrics, which run outside the router. Applied
/// with `Router::route_layer`, so unmatched requests stay unmatched.
#[derive(Clone, Copy)]
pub struct RecordRouteLayer;

impl<S> Layer<S> for RecordRouteLayer {
    type Service = RecordRoute<S>;

    fn layer(&self, inner: S) -> RecordRoute<S> {
        RecordRoute { inner }
    }
}

#[derive(Clone)]
pub struct RecordRoute<S> {
    inner: S,
}

impl<S> Service<Request> for RecordRoute<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> S::Future {
        if let (Some(context), Some(route)) =
            (request.extensions().get::<Arc<RequestContext>>(), request.extensions().get::<MatchedPath>())
        {
            let _ = context.route.set(route.clone());
        }
        self.inner.call(request)
    }
}
