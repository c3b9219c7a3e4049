//! The cookie path before authentication: `session_cookie` (the
//! `rampart_session` value from any `Cookie` header) and the CSRF check the
//! `Caller` extractor applies to a session-authenticated request.
//!
//! Input is text, so handwritten seeds and text mutations work well:
//! line 1 the method, line 2 the session's CSRF token (as issued at sign-in),
//! line 3 `session` or `bearer` (how the caller signed in), then header
//! lines `name: value` (`Cookie`, `X-CSRF-Token`, anything).
//!
//! Properties checked, beyond "never panics":
//! - a session id is returned only if some `Cookie` header holds a
//!   `rampart_session=<value>` pair with that value (quotes stripped), and it
//!   is never empty, never holds `;`, never starts or ends with `"`;
//! - no `rampart_session` in any `Cookie` header means no session id;
//! - a session-authenticated unsafe request passes the CSRF check exactly
//!   when it carries one `X-CSRF-Token` equal to the session's token; safe
//!   methods and bearer callers are never asked for one.
#![no_main]

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use http::{HeaderName, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use rampart::{
    auth::{
        principal::{Authentication, CSRF_HEADER, Caller, Credential, Principal, SESSION_COOKIE},
        secret,
    },
    domain::Role,
    error::ApiError,
    layers::authenticate::session_cookie,
};
use time::OffsetDateTime;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let method = lines.next().and_then(|m| Method::from_bytes(m.trim_end_matches('\r').as_bytes()).ok());
    let Some(method) = method else { return };
    let csrf_token = lines.next().unwrap_or_default().trim_end_matches('\r').to_owned();
    let by_session = lines.next().is_none_or(|kind| kind.trim() != "bearer");
    let mut request = Request::builder().method(method.clone()).uri("/api/posts");
    for line in lines {
        let Some((name, value)) = line.trim_end_matches('\r').split_once(':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim_start()))
        else {
            continue;
        };
        request = request.header(name, value);
    }
    let Ok(request) = request.body(()) else { return };
    let (mut parts, ()) = request.into_parts();

    check_cookie(&parts.headers);
    check_csrf(&mut parts, &method, &csrf_token, by_session);
});

fn check_cookie(headers: &http::HeaderMap) {
    let found = session_cookie(headers);
    let texts: Vec<&str> = headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    if !texts.iter().any(|text| text.contains(SESSION_COOKIE)) {
        assert_eq!(found, None, "no session cookie was sent: {texts:?}");
    }
    let Some(value) = found else { return };
    assert!(!value.is_empty(), "an empty session id");
    assert!(!value.contains(';'), "a session id across pairs: {value:?}");
    assert!(!value.starts_with('"') && !value.ends_with('"'), "quotes kept: {value:?}");
    let present = texts.iter().flat_map(|text| text.split(';')).any(|pair| {
        pair.trim().strip_prefix(SESSION_COOKIE).and_then(|rest| rest.strip_prefix('=')).map(|v| v.trim_matches('"'))
            == Some(value)
    });
    assert!(present, "{value:?} is not the value of a rampart_session pair in {texts:?}");
}

fn check_csrf(parts: &mut http::request::Parts, method: &Method, csrf_token: &str, by_session: bool) {
    let credential = if by_session {
        Credential::Session { id_hash: secret::hash("session-id"), csrf_hash: secret::hash(csrf_token) }
    } else {
        Credential::Bearer { jti: Uuid::nil(), family: Uuid::nil(), expires_at: OffsetDateTime::UNIX_EPOCH }
    };
    let principal = Principal { user_id: Uuid::nil(), role: Role::User, department: None, credential };
    parts.extensions.insert(Authentication::Signed(principal));

    let outcome = {
        let future = pin!(<Caller as axum::extract::FromRequestParts<()>>::from_request_parts(parts, &()));
        match future.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => panic!("the Caller extractor never waits"),
        }
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let presented: Vec<&HeaderValue> = parts.headers.get_all(CSRF_HEADER).iter().collect();
    // The first X-CSRF-Token header is the one compared.
    let matches = presented.first().and_then(|v| v.to_str().ok()) == Some(csrf_token);
    let should_pass = safe || !by_session || matches;
    match outcome {
        Ok(Caller::User(_)) => assert!(should_pass, "{method} with {presented:?} passed the CSRF check"),
        Ok(Caller::Guest) => panic!("a signed-in caller became a guest"),
        Err(ApiError::Forbidden(_)) => assert!(!should_pass, "{method} with {presented:?} was refused"),
        Err(other) => panic!("unexpected rejection {other:?}"),
    }
}
