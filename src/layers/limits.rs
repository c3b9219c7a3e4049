//! URI length (414) and total header size (431) limits, checked before any
//! other work. Hyper's own buffer limit sits above these as a backstop; what
//! it refuses is answered by hyper before routing.

use axum::{extract::Request, http::StatusCode};

#[derive(Clone, Copy)]
pub struct RequestLimits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
}

impl RequestLimits {
    /// The refusal's status, if the request is too big to look at.
    pub fn check(&self, request: &Request) -> Result<(), StatusCode> {
        let uri_len = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > self.max_uri_bytes {
            return Err(StatusCode::URI_TOO_LONG);
        }
        // Name, ": ", value and CRLF: the size as it came over the wire.
        let header_bytes: usize =
            request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if header_bytes > self.max_header_bytes {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(())
    }
}
