//! What a proxied request and its response may carry (PROTECT.md "Per
//! request", points 4 and 6): headers the client may not pass to the
//! upstream, headers Rampart sets itself, and what an upstream may not
//! send back. The client can never make the upstream believe something
//! Rampart did not decide, and the upstream cannot plant Rampart's cookies.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Request headers never forwarded, whatever the route says (lower case).
/// Hop-by-hop headers and those `Connection` names are removed separately.
const STRIPPED: [&str; 35] = [
    "x-csrf-token",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x-rewrite-url",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "remote-user",
    "remote-groups",
    "remote-email",
    "x-remote-user",
    // Client addresses and schemes some frameworks believe.
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-url-scheme",
    "front-end-https",
    // Set by Rampart below; the client's values are dropped first.
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// Prefixes of request header names never forwarded.
const STRIPPED_PREFIXES: [&str; 2] = ["x-rampart-", "x-auth-request-"];

/// Hop-by-hop headers (RFC 9110 §7.6.1), removed both ways.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
];

/// Response headers that are Rampart's, whatever the upstream says.
const RESPONSE_OWNED: [&str; 5] = ["server", "x-powered-by", "x-request-id", "ratelimit", "ratelimit-policy"];

/// Per-route settings for `request_headers`.
pub struct RequestRules<'a> {
    pub pass_authorization: bool,
    /// A permitted websocket upgrade keeps `Connection: upgrade` and `Upgrade`.
    pub websocket: bool,
    /// The configured assertion header (lower case), also stripped.
    pub assertion_header: Option<&'a HeaderName>,
    /// `proxy.strip_request_headers`.
    pub extra: &'a [HeaderName],
}

/// What Rampart tells the upstream about the request.
pub struct Forwarding<'a> {
    /// Client first, then the trusted proxies, then the peer.
    pub chain: &'a [IpAddr],
    pub proto: &'a str,
    /// The host the client asked for.
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Removes from `headers` everything PROTECT.md says a client may not pass
/// upstream, then sets the forwarding headers.
pub fn request_headers(headers: &mut HeaderMap, rules: &RequestRules<'_>, forwarding: &Forwarding<'_>) {
    remove_hop_by_hop(headers, rules.websocket);
    if !rules.pass_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            // `X_Rampart_User_Id` is `X-Rampart-User-Id` to CGI, WSGI, Rack
            // and PHP (both become HTTP_X_RAMPART_USER_ID): no name with an
            // underscore goes upstream (nginx's default too).
            name.contains('_')
                || STRIPPED.contains(&name)
                || STRIPPED_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
                || rules.assertion_header.is_some_and(|assertion| assertion.as_str() == name)
                || rules.extra.iter().any(|extra| extra.as_str() == name)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    strip_rampart_cookies(headers);

    let chain: Vec<String> = forwarding.chain.iter().map(IpAddr::to_string).collect();
    if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    if let Ok(value) = HeaderValue::from_str(forwarding.proto) {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), value);
    }
    if let Some(host) = forwarding.host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    headers.insert(HeaderName::from_static("x-request-id"), forwarding.request_id.clone());
}

/// Removes an upstream response's hop-by-hop headers, the headers that are
/// Rampart's, and any `Set-Cookie` for a name starting `rampart`.
pub fn response_headers(headers: &mut HeaderMap, websocket: bool) {
    remove_hop_by_hop(headers, websocket);
    for name in RESPONSE_OWNED {
        headers.remove(name);
    }
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    if cookies.iter().any(|cookie| sets_rampart_cookie(cookie.as_bytes())) {
        headers.remove(header::SET_COOKIE);
        for cookie in cookies.into_iter().filter(|cookie| !sets_rampart_cookie(cookie.as_bytes())) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
}

/// `Connection` and every header it names, and the fixed hop-by-hop set; a
/// websocket upgrade keeps `Upgrade` and a `Connection: upgrade`.
fn remove_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
}

/// Keeps every cookie whose name does not start with `rampart`.
fn strip_rampart_cookies(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    let kept: Vec<&[u8]> = values
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !is_rampart_name(pair))
        .collect();
    if kept.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// Whether `name=value…` names a cookie starting `rampart` (any case: a
/// browser keeps `Rampart_session` apart, but an upstream framework may not).
fn is_rampart_name(pair: &[u8]) -> bool {
    let name = pair.split(|byte| *byte == b'=').next().unwrap_or_default().trim_ascii();
    name.len() >= 7 && name[..7].eq_ignore_ascii_case(b"rampart")
}

fn sets_rampart_cookie(set_cookie: &[u8]) -> bool {
    is_rampart_name(set_cookie.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).expect("name"), value.parse().expect("value"));
        }
        headers
    }

    fn forward(headers: &mut HeaderMap, rules: &RequestRules<'_>) {
        let id = HeaderValue::from_static("req-1");
        let host = HeaderValue::from_static("api.example.com");
        let chain = ["203.0.113.7".parse().expect("ip"), "10.0.0.2".parse().expect("ip")];
        request_headers(
            headers,
            rules,
            &Forwarding { chain: &chain, proto: "https", host: Some(&host), request_id: &id },
        );
    }

    const PLAIN: RequestRules<'static> =
        RequestRules { pass_authorization: false, websocket: false, assertion_header: None, extra: &[] };

    #[test]
    fn identity_routing_and_override_headers_from_the_client_never_reach_the_upstream() {
        let assertion = HeaderName::from_static("x-my-assertion");
        let extra = [HeaderName::from_static("x-internal")];
        let rules = RequestRules { assertion_header: Some(&assertion), extra: &extra, ..PLAIN };
        let mut headers = map(&[
            ("authorization", "Bearer abc"),
            ("proxy-authorization", "Basic x"),
            ("x-csrf-token", "t"),
            ("x-rampart-user-id", "spoofed"),
            ("X-Rampart-Role", "admin"),
            ("x-my-assertion", "forged"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-uri", "/admin"),
            ("x-original-url", "/admin"),
            ("x-forwarded-user", "root"),
            ("x-auth-request-email", "root@example.com"),
            ("remote-user", "root"),
            ("x_rampart_user_id", "spoofed"),
            ("x_forwarded_user", "root"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-request-id", "client-chosen"),
            ("x-internal", "1"),
            ("accept", "application/json"),
        ]);
        forward(&mut headers, &rules);
        for gone in [
            "authorization",
            "proxy-authorization",
            "x-csrf-token",
            "x-rampart-user-id",
            "x-rampart-role",
            "x-my-assertion",
            "x-http-method-override",
            "x-forwarded-uri",
            "x-original-url",
            "x-forwarded-user",
            "x-auth-request-email",
            "remote-user",
            "forwarded",
            "x-internal",
            "x_rampart_user_id",
            "x_forwarded_user",
            "x-real-ip",
        ] {
            assert!(!headers.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 10.0.0.2");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "api.example.com");
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn authorization_passes_only_when_the_route_says_so() {
        let mut headers = map(&[("authorization", "Bearer abc")]);
        forward(&mut headers, &RequestRules { pass_authorization: true, ..PLAIN });
        assert_eq!(headers["authorization"], "Bearer abc");
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
        ]);
        forward(&mut headers, &PLAIN);
        for gone in
            ["connection", "x-secret-hop", "keep-alive", "te", "upgrade", "transfer-encoding", "proxy-connection"]
        {
            assert!(!headers.contains_key(gone), "{gone} was forwarded");
        }
        let mut upgrade = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        forward(&mut upgrade, &RequestRules { websocket: true, ..PLAIN });
        assert_eq!(upgrade["upgrade"], "websocket");
        assert_eq!(upgrade["connection"], "upgrade");
    }

    #[test]
    fn rampart_cookies_are_removed_and_the_others_stay() {
        let mut headers =
            map(&[("cookie", "rampart_session=s; app=1"), ("cookie", "Rampart_csrf=x;theme=dark; rampart=1")]);
        forward(&mut headers, &PLAIN);
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        assert_eq!(headers["cookie"], "app=1; theme=dark");
        let mut only = map(&[("cookie", "rampart_session=s")]);
        forward(&mut only, &PLAIN);
        assert!(!only.contains_key("cookie"));
    }

    #[test]
    fn an_upstream_cannot_set_rampart_cookies_or_rampart_owned_headers() {
        let mut headers = map(&[
            ("set-cookie", "rampart_session=evil; Path=/"),
            ("set-cookie", "app_session=ok; Path=/"),
            ("set-cookie", " RAMPART_x=1"),
            ("server", "upstream/1.0"),
            ("x-powered-by", "Express"),
            ("x-request-id", "upstream-id"),
            ("ratelimit", "\"x\";r=1"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-frame-options", "SAMEORIGIN"),
        ]);
        response_headers(&mut headers, false);
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["app_session=ok; Path=/"]);
        for gone in ["server", "x-powered-by", "x-request-id", "ratelimit", "connection", "x-hop"] {
            assert!(!headers.contains_key(gone), "{gone} was passed back");
        }
        assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    }
}
