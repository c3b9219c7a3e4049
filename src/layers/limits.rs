//! URI length (414) and total header size (431) limits, checked before any
//! other work. Hyper's own buffer limit sits above these as a backstop; what
//! it refuses is answered by hyper before routing.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

#[derive(Clone, Copy)]
pub struct RequestLimits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
}

pub async fn enforce_limits(State(limits): State<RequestLimits>, request: Request, next: Next) -> Response {
    let uri_len = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return StatusCode::URI_TOO_LONG.into_response();
    }
    // Name, ": ", value and CRLF: the size as it came over the wire.
    let header_bytes: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if header_bytes > limits.max_header_bytes {
        return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response();
    }
    next.run(request).await
}
