//! Blocked clients get 403 on every route but `/health`, before any other
//! work (no authentication, no rate-limit counting, no handler).

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};

use crate::{defense::Defense, error::ApiError};

/// The 403 for a blocked client, if this one is.
pub fn refusal(defense: &Defense, ip: Option<IpAddr>, path: &str) -> Option<Response> {
    let ip = ip?;
    (path != "/health" && defense.is_blocked(ip))
        .then(|| ApiError::forbidden("This client is blocked.").into_response())
}
