//! Forward auth (PROTECT.md "Forward auth"): another proxy (nginx
//! `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`, Envoy
//! `ext_authz`) asks whether to let a request through. The answer comes
//! from the same route table, authentication, policy and route rate limit
//! as the gateway's: 200 with the identity headers and the assertion for
//! the proxy to copy upstream, or 401 (with `Location` on a login route),
//! 403, 404, 405, 429.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};

use crate::{
    app::AppState,
    error::ApiError,
    openapi::tags,
    proxy::{
        Dispatch,
        gateway::{Asked, Proxied, Refusal, asks_for_websocket},
    },
    request_context::RequestContext,
    route_class::RouteClass,
    routes::Routes,
};

pub fn router() -> Routes {
    Routes::new()
        .routes_of(RouteClass::ForwardAuth, utoipa_axum::routes!(forward_auth))
        .class_under("/auth/forward/", RouteClass::ForwardAuth)
        // Envoy calls `/auth/forward/<original path>` with the original method.
        .route("/auth/forward/{*path}", any(forward_auth_any))
}

/// Ask about a request another proxy holds
///
/// Served only to peers in `server.trusted_proxies`. The original request
/// is read from `X-Forwarded-Method`, `X-Forwarded-Proto`,
/// `X-Forwarded-Host`, `X-Forwarded-Uri` (Traefik, Caddy) or
/// `X-Original-Method`, `X-Original-URI` (nginx); Envoy calls
/// `/auth/forward/<original path>` with the original method. Credentials
/// are the forwarded `Authorization` and `Cookie`. Any method is accepted.
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/auth/forward",
    tag = tags::AUTH,
    params(
        ("X-Original-URI" = Option<String>, Header, description = "The original path and query (nginx)."),
        ("X-Original-Method" = Option<String>, Header, description = "The original method (nginx)."),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original path and query (Traefik, Caddy)."),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original method (Traefik, Caddy)."),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The original Host."),
    ),
    responses(
        (status = 200, description = "Let the request through; copy the X-Rampart-* identity headers and the assertion upstream."),
        (status = 400, description = "The original path has a refused shape (dot segments, encoded slashes, …)."),
        (status = 401, description = "Valid credentials are required; on a login route `Location` is the sign-in page."),
        (status = 403, description = "The caller is not a trusted proxy, or the policy refuses the request."),
        (status = 404, description = "No route matches the original request."),
        (status = 405, description = "The route does not allow the original method."),
        (status = 429, description = "The route's rate limit is exhausted (Retry-After)."),
    )
)]
async fn forward_auth(State(state): State<AppState>, request: Request) -> Response {
    answer(&state, request, false).await
}

async fn forward_auth_any(State(state): State<AppState>, request: Request) -> Response {
    let envoy = request.uri().path().starts_with("/auth/forward/");
    answer(&state, request, envoy).await
}

/// The original request's method, host and path and query, as the proxy
/// described it.
struct Original {
    method: Method,
    host: Option<String>,
    path_and_query: String,
}

fn original(
    headers: &HeaderMap,
    method: &Method,
    uri: &axum::http::Uri,
    envoy: bool,
) -> Result<Original, &'static str> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    // Two names for one fact must agree: a proxy that sets only one of them
    // passes the client's own copy of the other through.
    let one_of = |first: &str, second: &str| match (text(first), text(second)) {
        (Some(a), Some(b)) if a != b => Err("X-Forwarded-Uri/-Method and X-Original-URI/-Method disagree."),
        (a, b) => Ok(a.or(b)),
    };
    let host = text("x-forwarded-host").or_else(|| text("host")).map(str::to_owned);
    if envoy {
        let path = uri.path().strip_prefix("/auth/forward").ok_or("Ask at /auth/forward/<original path>.")?;
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        return Ok(Original { method: method.clone(), host, path_and_query });
    }
    let method = match one_of("x-forwarded-method", "x-original-method")? {
        Some(name) => Method::from_bytes(name.as_bytes())
            .map_err(|_| "X-Forwarded-Method or X-Original-Method is not an HTTP method.")?,
        None => Method::GET,
    };
    let path_and_query = one_of("x-forwarded-uri", "x-original-uri")?
        .ok_or("Name the original request in X-Original-URI or X-Forwarded-Uri.")?
        .to_owned();
    Ok(Original { method, host, path_and_query })
}

async fn answer(state: &AppState, request: Request, envoy: bool) -> Response {
    let (parts, _body) = request.into_parts();
    let Some(context) = parts.extensions.get::<Arc<RequestContext>>().cloned() else {
        return ApiError::Internal(anyhow::anyhow!("no request context")).into_response();
    };
    if !state.gateway.from_trusted_proxy(&context) {
        return ApiError::forbidden("Forward auth answers only the proxies in server.trusted_proxies.").into_response();
    }
    let original = match original(&parts.headers, &parts.method, &parts.uri, envoy) {
        Ok(original) => original,
        Err(detail) => return ApiError::bad_request(detail).into_response(),
    };
    let (path, _query) = original.path_and_query.split_once('?').unwrap_or((original.path_and_query.as_str(), ""));
    let gateway = &state.gateway;
    let proxied = match gateway.dispatch_path(&original.method, original.host.as_deref(), path) {
        Dispatch::Proxy(proxied) => proxied,
        Dispatch::Refuse(refusal) => return refusal.into_response(),
        Dispatch::Rampart => return ApiError::NotFound.into_response(),
    };
    let _ = context.proxy_route.set((proxied.label.clone(), proxied.upstream.name.clone()));
    let route = &proxied.route;
    let origin = gateway.origin(&context, &parts.headers);
    let asked = Asked {
        method: &original.method,
        path,
        path_and_query: &original.path_and_query,
        headers: &parts.headers,
        origin: &origin,
    };
    // Counted before the route's rules and the policy, as the gateway
    // counts: refusals use up the route's budget too.
    let limiter = state.rate_limiter.clone();
    let admission = match limiter.admit_route(&parts, &route.rate_limit).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    let mut response = decide(state, &proxied, &asked, &context).await;
    limiter.finish(admission, &mut response).await;
    response
}

/// The answer for an admitted question: 200 with the identity headers, or
/// the refusal.
async fn decide(state: &AppState, proxied: &Proxied, asked: &Asked<'_>, context: &RequestContext) -> Response {
    let (gateway, route) = (&state.gateway, &proxied.route);
    // The question carries no `Upgrade` (nginx and Envoy drop it), but a
    // websocket's key says what the client asked for.
    if asks_for_websocket(asked.headers) && !route.websockets {
        return ApiError::forbidden("This route does not take websockets.").into_response();
    }
    let identity = match gateway.admit(state, route, asked, context) {
        Ok(identity) => identity,
        // A proxy cannot pass a 303 on: a login route's guest gets 401 with
        // the sign-in page in `Location` (deploy/nginx turns it into a redirect).
        Err(Refusal::Login(location)) => {
            let mut answer = ApiError::Unauthorized { token_sent: false }.into_response();
            answer.headers_mut().insert(header::LOCATION, location);
            return answer;
        }
        Err(Refusal::Api(error)) => return error.into_response(),
    };
    let mut response = StatusCode::OK.into_response();
    if let Some(identity) = &identity {
        match gateway.identity_headers(state, route, identity, asked, context.request_id.as_str()).await {
            Ok(headers) => {
                for (name, value) in headers {
                    response.headers_mut().insert(name, value);
                }
            }
            Err(error) => return error.into_response(),
        }
    }
    if let Ok(value) = HeaderValue::from_str(&route.id) {
        response.headers_mut().insert("x-rampart-route", value);
    }
    response
}
