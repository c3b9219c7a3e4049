//! `RequestContext`, the one per-request extension: what the edge knows on
//! arrival (request id, client IP, route class) and what inner layers learn
//! for the access log and the audit trail (matched route, caller, whether
//! the request was audited). The layers fill it in (`layers::pipeline`);
//! handlers, `audit` and `auth::principal` read it.
//!
//! It holds facts only: no layer, route or error type is named here.

use std::{
    net::IpAddr,
    sync::{OnceLock, atomic::AtomicBool},
};

use axum::{extract::MatchedPath, http::HeaderValue};
use uuid::Uuid;

use crate::{auth::principal::Authentication, route_class::RouteClass};

/// The id of the current request (kept or minted by `layers::request_id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ids of safe ASCII are ever built.
        self.0.to_str().unwrap_or_default()
    }
}

/// Per-request facts, in the request's extensions (one entry rather than
/// one per fact): what the edge knows on arrival, and what inner layers
/// learn for the access log.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: RequestId,
    /// The client, as `client_ip` resolved it (trusted proxies applied).
    pub client_ip: Option<IpAddr>,
    /// The socket peer (a trusted proxy, or the client itself).
    pub peer: Option<IpAddr>,
    /// How the pipeline treats the route of the request's path, as the
    /// routers declared it.
    pub route_class: RouteClass,
    /// The matched route template, recorded by `pipeline::RecordRoute`.
    pub route: OnceLock<MatchedPath>,
    /// For a request through a protect-mode route: `proxy:<route id>`,
    /// and the upstream's name.
    pub proxy_route: OnceLock<(std::sync::Arc<str>, std::sync::Arc<str>)>,
    /// Who is calling, set by `authenticate` (unset: a guest).
    pub authentication: OnceLock<Authentication>,
    /// Set by `authenticate` when an API key was refused: the key's id (if
    /// it had one) and why, for the `api_key_refused` event of the 401.
    pub refused_key: OnceLock<String>,
    /// Set when a handler recorded its own audit event for this request.
    pub audited: AtomicBool,
}

impl RequestContext {
    /// The signed-in user, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        match self.authentication.get() {
            Some(Authentication::Signed(principal)) => Some(principal.user_id),
            _ => None,
        }
    }

    /// The route for logs, metrics and audit: the matched template, or the
    /// protect-mode route.
    pub fn route_label(&self) -> Option<&str> {
        self.route.get().map(MatchedPath::as_str).or_else(|| self.proxy_route.get().map(|(label, _)| &**label))
    }

    /// The upstream a proxied request went to.
    pub fn upstream(&self) -> Option<&str> {
        self.proxy_route.get().map(|(_, upstream)| &**upstream)
    }

    pub fn new(request_id: RequestId, client_ip: Option<IpAddr>, route_class: RouteClass) -> Self {
        Self {
            request_id,
            client_ip,
            peer: None,
            route_class,
            route: OnceLock::new(),
            proxy_route: OnceLock::new(),
            authentication: OnceLock::new(),
            refused_key: OnceLock::new(),
            audited: AtomicBool::new(false),
        }
    }
}
