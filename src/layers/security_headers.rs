//! The helmet-style header set of API.md on every response the router makes.
//!
//! Handlers may set their own `Content-Security-Policy`, `Cache-Control`
//! or `Permissions-Policy` (HTML pages, static files; the passkey pages
//! allow WebAuthn); every other header is forced. HSTS is sent
//! only over TLS or in production, where a TLS-terminating proxy fronts us.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

pub const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");

/// Every feature denied: what every response says unless a page of ours
/// needs one.
pub const DENY_ALL_FEATURES: &str = "accelerometer=(), autoplay=(), camera=(), display-capture=(), \
     encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
     payment=(), picture-in-picture=(), publickey-credentials-create=(), publickey-credentials-get=(), \
     screen-wake-lock=(), sync-xhr=(), usb=(), xr-spatial-tracking=(), interest-cohort=()";

/// The pages that run a passkey ceremony (`/login`, `/account`): WebAuthn
/// for this origin's own document, every other feature denied.
pub const PASSKEY_PAGE_FEATURES: &str = "accelerometer=(), autoplay=(), camera=(), display-capture=(), \
     encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
     payment=(), picture-in-picture=(), publickey-credentials-create=(self), publickey-credentials-get=(self), \
     screen-wake-lock=(), sync-xhr=(), usb=(), xr-spatial-tracking=(), interest-cohort=()";

#[derive(Clone)]
pub struct SecurityHeaders {
    forced: Arc<HeaderMap>,
    /// `forced` plus the defaults: each response starts from a copy.
    template: Arc<HeaderMap>,
}

impl SecurityHeaders {
    pub fn new(hsts: bool) -> Self {
        // Room for the response's own headers: a copy of a full map would
        // grow (and rehash) at the response's first header.
        let mut forced = HeaderMap::with_capacity(24);
        let mut put = |name: HeaderName, value: &'static str| {
            forced.insert(name, HeaderValue::from_static(value));
        };
        put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        put(header::X_FRAME_OPTIONS, "DENY");
        put(header::REFERRER_POLICY, "no-referrer");
        put(HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
        put(HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
        put(HeaderName::from_static("origin-agent-cluster"), "?1");
        put(header::X_DNS_PREFETCH_CONTROL, "off");
        put(HeaderName::from_static("x-permitted-cross-domain-policies"), "none");
        put(header::X_XSS_PROTECTION, "0");
        if hsts {
            put(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
        }

        let mut template = forced.clone();
        template.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        template.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        template.insert(PERMISSIONS_POLICY, HeaderValue::from_static(DENY_ALL_FEATURES));
        Self { forced: Arc::new(forced), template: Arc::new(template) }
    }

    /// Gives a response the set: a copy of the template, with the
    /// response's own headers laid over it, except the forced ones (and
    /// `Server`/`X-Powered-By`, dropped). Copying the template and adding the
    /// response's few headers is cheaper than inserting the set's fourteen.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut merged = (*self.template).clone();
        merged.reserve(headers.len());
        // `into_iter` names a header once, then gives its further values unnamed.
        let mut current: Option<HeaderName> = None;
        for (name, value) in std::mem::take(headers) {
            match name {
                Some(name) => {
                    let dropped =
                        self.forced.contains_key(&name) || name == header::SERVER || name.as_str() == "x-powered-by";
                    current = (!dropped).then(|| name.clone());
                    if !dropped {
                        merged.insert(name, value);
                    }
                }
                None => {
                    if let Some(name) = &current {
                        merged.append(name.clone(), value);
                    }
                }
            }
        }
        *headers = merged;
    }
}

impl SecurityHeaders {
    /// For an upstream's response (protect mode, whose header rules have
    /// already dropped `Server` and `X-Powered-By`): the set fills in only
    /// the headers the upstream did not send; nothing is forced.
    pub fn fill(&self, headers: &mut HeaderMap) {
        for (name, value) in self.template.iter() {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_forced_defaults_give_way_and_repeated_headers_survive() {
        let mut headers = HeaderMap::new();
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("ALLOWALL"));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'"));
        headers.insert(header::SERVER, HeaderValue::from_static("leaky/1.0"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        SecurityHeaders::new(true).apply(&mut headers);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
        assert!(!headers.contains_key(header::SERVER));
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(headers.get_all(header::X_FRAME_OPTIONS).iter().count(), 1);
    }
}
