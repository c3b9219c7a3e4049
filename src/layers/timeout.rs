//! A whole-request deadline: a handler that takes longer is cut off with a
//! 503 problem, so slow work cannot pile up without bound.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::ApiError;

#[derive(Clone, Copy)]
pub struct RequestTimeout(pub Duration);

pub async fn enforce_timeout(State(timeout): State<RequestTimeout>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout.0, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
