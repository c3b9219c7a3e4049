//! `X-Request-Id`: kept when the client's is 1..=64 characters of
//! `[A-Za-z0-9._-]`, otherwise replaced by a fresh UUIDv7. Anything else
//! could inject into logs or smuggle data, so it is not echoed back.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    response::Response,
};

use crate::{
    auth::tokens::uuid_v7_at,
    clock::{Clock, SystemClock},
    request_context::RequestId,
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
            // `Uuid::now_v7` keeps one process-wide context (strictly
            // increasing ids) that the workers contend for; a request id
            // needs to be unique and roughly time-ordered, nothing more.
            let fresh = uuid_v7_at(SystemClock.now());
            let mut text = uuid::Uuid::encode_buffer();
            let text = fresh.hyphenated().encode_lower(&mut text);
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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
    use super::{assign, is_acceptable};

    fn fresh_id() -> uuid::Uuid {
        let request = axum::extract::Request::new(axum::body::Body::empty());
        uuid::Uuid::parse_str(assign(&request).as_str()).unwrap()
    }

    #[test]
    fn fresh_ids_are_distinct_current_uuid_v7s() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| fresh_id()).collect();
        assert_eq!(ids.len(), 1000);
        let id = fresh_id();
        assert_eq!(id.get_version_num(), 7);
        let (seconds, _) = id.get_timestamp().expect("v7 has a time").to_unix();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(seconds) <= 2);
    }

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
