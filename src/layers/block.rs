//! Blocked clients get 403 on every route a blocked client may not reach
//! (`RouteClass::blockable`: all but the liveness check), before any other
//! work (no authentication, no rate-limit counting, no handler). The
//! refusals are audited in aggregate (`Defense::refused`), one event per
//! client and minute, so a blocked client that keeps sending cannot flood
//! the audit trail.

use std::sync::atomic::Ordering;

use axum::response::{IntoResponse, Response};

use crate::{defense::Defense, error::ApiError, request_context::RequestContext};

/// The 403 for a blocked client, if this one is.
pub fn refusal(defense: &Defense, context: &RequestContext) -> Option<Response> {
    let ip = context.client_ip?;
    if !(context.route_class.blockable() && defense.is_blocked(ip)) {
        return None;
    }
    defense.refused(ip, context.request_id.as_str());
    // Counted for the aggregate event: the access log adds none of its own.
    context.audited.store(true, Ordering::Relaxed);
    Some(ApiError::forbidden("This client is blocked.").into_response())
}
