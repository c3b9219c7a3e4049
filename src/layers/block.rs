//! Blocked clients get 403 on every route but `/health`, before any other
//! work (no authentication, no rate-limit counting, no handler).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ClientAddr, client_ip::ClientIp};
use crate::{defense::Defense, error::ApiError};

pub async fn refuse_blocked(State(defense): State<Arc<Defense>>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map(|ip| ip.0)
        .or_else(|| request.extensions().get::<ClientAddr>().map(|addr| addr.0.ip()));
    if let Some(ip) = ip
        && request.uri().path() != "/health"
        && defense.is_blocked(ip)
    {
        return ApiError::forbidden("This client is blocked.").into_response();
    }
    next.run(request).await
}
