//! `X-Request-Id`: kept when the client's is 1..=64 characters of
//! `[A-Za-z0-9._-]`, otherwise replaced by a fresh UUIDv7. Anything else
//! could inject into logs or smuggle data, so it is not echoed back.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ids of safe ASCII are ever built.
        self.0.to_str().unwrap_or_default()
    }
}

pub fn is_acceptable(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client's id when acceptable, otherwise a fresh one. It travels in
/// the request's `RequestContext`.
pub fn assign(request: &Request) -> RequestId {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(value) if is_acceptable(value.as_bytes()) => value.clone(),
        _ => {
            let fresh = uuid::Uuid::now_v7().hyphenated().to_string();
            HeaderValue::try_from(fresh).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        }
    };
    RequestId(id)
}

/// Echoes the id on the response.
pub fn stamp(response: &mut Response, id: RequestId) {
    response.headers_mut().insert(&X_REQUEST_ID, id.0);
}

#[cfg(test)]
mod tests {
    use super::is_acceptable;

    #[test]
    fn only_short_safe_ids_are_kept() {
        assert!(is_acceptable(b"abc-123_X.y"));
        assert!(is_acceptable(&[b'a'; 64]));
        assert!(!is_acceptable(&[b'a'; 65]));
        assert!(!is_acceptable(b""));
        for bad in [&b"has space"[..], b"semi;colon", b"new\nline", b"slash/", "ünï".as_bytes()] {
            assert!(!is_acceptable(bad));
        }
    }
}
