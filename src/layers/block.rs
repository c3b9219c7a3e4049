//! Blocked clients get 403 on every route a blocked client may not reach
//! (`RouteClass::blockable`: all but the liveness check), before any other
//! work (no authentication, no rate-limit counting, no handler).

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};

use crate::{defense::Defense, error::ApiError, route_class::RouteClass};

/// The 403 for a blocked client, if this one is.
pub fn refusal(defense: &Defense, ip: Option<IpAddr>, route_class: RouteClass) -> Option<Response> {
    let ip = ip?;
    (route_class.blockable() && defense.is_blocked(ip))
        .then(|| ApiError::forbidden("This client is blocked.").into_response())
}
