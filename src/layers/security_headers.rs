//! The helmet-style header set of API.md on every response the router makes.
//!
//! Handlers may set their own `Content-Security-Policy` or `Cache-Control`
//! (HTML pages, static files); every other header is forced. HSTS is sent
//! only over TLS or in production, where a TLS-terminating proxy fronts us.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};

#[derive(Clone)]
pub struct SecurityHeaders {
    forced: Arc<HeaderMap>,
    defaults: Arc<HeaderMap>,
}

impl SecurityHeaders {
    pub fn new(hsts: bool) -> Self {
        let mut forced = HeaderMap::new();
        let mut put = |name: HeaderName, value: &'static str| {
            forced.insert(name, HeaderValue::from_static(value));
        };
        put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        put(header::X_FRAME_OPTIONS, "DENY");
        put(header::REFERRER_POLICY, "no-referrer");
        put(HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
        put(HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
        put(HeaderName::from_static("origin-agent-cluster"), "?1");
        put(
            HeaderName::from_static("permissions-policy"),
            "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), \
             fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
             payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), \
             sync-xhr=(), usb=(), xr-spatial-tracking=(), interest-cohort=()",
        );
        put(header::X_DNS_PREFETCH_CONTROL, "off");
        put(HeaderName::from_static("x-permitted-cross-domain-policies"), "none");
        put(header::X_XSS_PROTECTION, "0");
        if hsts {
            put(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
        }

        let mut defaults = HeaderMap::new();
        defaults.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        defaults.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Self { forced: Arc::new(forced), defaults: Arc::new(defaults) }
    }
}

pub async fn security_headers(State(set): State<SecurityHeaders>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in set.forced.iter() {
        headers.insert(name, value.clone());
    }
    for (name, value) in set.defaults.iter() {
        if !headers.contains_key(name) {
            headers.insert(name, value.clone());
        }
    }
    headers.remove(header::SERVER);
    headers.remove("x-powered-by");
    response
}
