//! A panicking handler becomes a 500 problem; the process keeps serving.
//! The panic message goes to the log (through the `problem` layer), never
//! to the client.

use std::any::Any;

use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;

pub type PanicLayer = CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response>;

pub fn layer() -> PanicLayer {
    CatchPanicLayer::custom(panic_response as fn(Box<dyn Any + Send + 'static>) -> Response)
}

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
