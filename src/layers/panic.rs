//! A panicking handler becomes a 500 problem; the process keeps serving.
//! The panic message goes to the log (through the `problem` layer), never
//! to the client. The pipeline catches the unwind; this turns it into the
//! response.

use std::any::Any;

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub fn response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
