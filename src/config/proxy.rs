//! Protect mode's configuration (PROTECT.md "Configuration"): `[proxy]`,
//! its upstreams and routes, and `[demo]`. The route table itself is built
//! and checked by `proxy::table`; this module checks the values that need
//! no table (URLs, durations, header names, the assertion key).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use axum::http::{Uri, uri::Authority};
use serde::Deserialize;

use super::{ByteSize, Config, HumanDuration, JwtAlgorithm};

/// The name of the upstream (and of the route) that `default_upstream` makes.
pub const DEFAULT_UPSTREAM_NAME: &str = "default";

/// The built-in rate-limit group of proxied routes.
pub const PROXY_RATE_LIMIT_GROUP: &str = "proxy";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The request header carrying the signed assertion; "" turns it off.
    pub assertion_header: String,
    pub assertion_ttl: HumanDuration,
    /// An EdDSA key of the assertion's own (needed when tokens use HS256).
    pub assertion_key_file: PathBuf,
    /// Request headers never forwarded, beyond the built-in list.
    pub strip_request_headers: Vec<String>,
    /// An upstream named `default` with a route `default` at "/".
    pub default_upstream: String,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            assertion_header: "X-Rampart-Assertion".into(),
            assertion_ttl: HumanDuration::secs(60),
            assertion_key_file: PathBuf::new(),
            strip_request_headers: Vec::new(),
            default_upstream: String::new(),
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// Whether any request may be proxied at all.
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty() || !self.default_upstream.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `http://host[:port]` or `https://host[:port]`.
    pub url: String,
    /// Extra trust anchors (PEM) for an https upstream.
    pub ca_file: PathBuf,
    pub connect_timeout: HumanDuration,
    /// Until the upstream's response headers.
    pub response_timeout: HumanDuration,
    /// No byte either way (streams and websockets).
    pub idle_timeout: HumanDuration,
    /// Request body limit on routes to this upstream.
    pub max_body: ByteSize,
    /// "" = no active health check.
    pub health_path: String,
    pub health_interval: HumanDuration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: PathBuf::new(),
            connect_timeout: HumanDuration::secs(5),
            response_timeout: HumanDuration::secs(30),
            idle_timeout: HumanDuration::mins(5),
            max_body: ByteSize(10 * 1024 * 1024),
            health_path: String::new(),
            health_interval: HumanDuration::secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    #[default]
    Required,
    Optional,
    Public,
}

impl RouteAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteAuth::Required => "required",
            RouteAuth::Optional => "optional",
            RouteAuth::Public => "public",
        }
    }
}

/// What a `required` route answers a caller without valid credentials.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unauthenticated {
    /// 401 problem+json.
    #[default]
    Problem,
    /// 303 to `/login?next=…` (browser routes).
    Login,
}

impl Unauthenticated {
    pub fn as_str(self) -> &'static str {
        match self {
            Unauthenticated::Problem => "problem",
            Unauthenticated::Login => "login",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub id: String,
    /// A prefix on a segment boundary.
    pub path: String,
    /// Empty: every method.
    pub methods: Vec<String>,
    /// Empty: any host.
    pub host: String,
    pub upstream: String,
    pub strip_prefix: bool,
    pub auth: RouteAuth,
    pub unauthenticated: Unauthenticated,
    pub allow_roles: Vec<String>,
    /// A `[rate_limit.<name>]` group.
    pub rate_limit: String,
    pub websockets: bool,
    pub pass_authorization: bool,
    pub preserve_host: bool,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            path: String::new(),
            methods: Vec::new(),
            host: String::new(),
            upstream: String::new(),
            strip_prefix: false,
            auth: RouteAuth::Required,
            unauthenticated: Unauthenticated::Problem,
            allow_roles: Vec::new(),
            rate_limit: PROXY_RATE_LIMIT_GROUP.into(),
            websockets: false,
            pass_authorization: false,
            preserve_host: false,
        }
    }
}

/// Rampart's own demo (posts and the dashboard).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// `false` frees `/api/posts` and `/api/dashboard` for proxy routes.
    pub enabled: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Problems with `server.public_url` and `[proxy]` values that need no
/// route table, each as (key, message).
pub(super) fn problems(config: &Config) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut problem = |key: &str, message: String| problems.push((key.to_owned(), message));

    let public_url = &config.server.public_url;
    if !public_url.is_empty()
        && let Err(message) = origin_problem(public_url)
    {
        problem("server.public_url", message);
    }

    let proxy = &config.proxy;
    let ttl = proxy.assertion_ttl.0;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
        problem("proxy.assertion_ttl", "must be between 1s and 1h".into());
    }
    if !proxy.assertion_header.is_empty() && !is_token(&proxy.assertion_header) {
        problem(
            "proxy.assertion_header",
            format!("{:?} is not a header name (\"\" turns the assertion off)", proxy.assertion_header),
        );
    }
    for (index, name) in proxy.strip_request_headers.iter().enumerate() {
        if !is_token(name) {
            problem(&format!("proxy.strip_request_headers[{index}]"), format!("{name:?} is not a header name"));
        }
    }
    let key_file = &proxy.assertion_key_file;
    if key_file.as_os_str().is_empty() {
        if config.auth.jwt_algorithm == JwtAlgorithm::HS256 && !proxy.assertion_header.is_empty() && proxy.has_routes()
        {
            problem(
                "proxy.assertion_key_file",
                "must be set (an EdDSA key) when auth.jwt_algorithm is HS256 and the assertion is on: a shared \
                 secret would let upstreams mint access tokens"
                    .into(),
            );
        }
    } else if !key_file.is_file() {
        problem("proxy.assertion_key_file", format!("{} does not exist", key_file.display()));
    }

    if !proxy.default_upstream.is_empty()
        && let Err(message) = upstream_url_problem(&proxy.default_upstream)
    {
        problem("proxy.default_upstream", message);
    }
    for (name, upstream) in &proxy.upstreams {
        let key = |field: &str| format!("proxy.upstreams.{name}.{field}");
        if name.is_empty() || !name.bytes().all(is_id_byte) {
            problem(&format!("proxy.upstreams.{name}"), "upstream names are letters, digits, '_', '.' and '-'".into());
        }
        match upstream_url_problem(&upstream.url) {
            Err(message) => problem(&key("url"), message),
            Ok(https) => {
                let ca_file = &upstream.ca_file;
                if !ca_file.as_os_str().is_empty() {
                    if !https {
                        problem(&key("ca_file"), "only applies to an https:// upstream".into());
                    } else if !ca_file.is_file() {
                        problem(&key("ca_file"), format!("{} does not exist", ca_file.display()));
                    }
                }
            }
        }
        for (field, value) in [
            ("connect_timeout", upstream.connect_timeout),
            ("response_timeout", upstream.response_timeout),
            ("idle_timeout", upstream.idle_timeout),
            ("health_interval", upstream.health_interval),
        ] {
            if value.0.is_zero() {
                problem(&key(field), "must be longer than zero".into());
            }
        }
        if upstream.max_body.0 == 0 {
            problem(&key("max_body"), "must be greater than zero".into());
        }
        let health = &upstream.health_path;
        if !health.is_empty() && (!health.starts_with('/') || health.starts_with("//")) {
            problem(&key("health_path"), format!("{health:?} is not a path like \"/healthz\""));
        }
    }
    problems
}

/// `http(s)://host[:port]` and nothing else.
fn origin_problem(url: &str) -> Result<(), String> {
    let not_origin = || format!("{url:?} is not an origin like \"https://api.example.com\" (no path, no trailing /)");
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(not_origin)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(not_origin());
    }
    authority_problem(rest).map_err(|_| not_origin())
}

/// An upstream's URL: an origin, optionally with a lone trailing "/" (a path
/// prefix would be silently ignored, so it is refused). `Ok(true)` for https.
fn upstream_url_problem(url: &str) -> Result<bool, String> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(format!("{url:?} must start with http:// or https://")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{url:?} must be only scheme, host and port: a path or query is not added to proxied requests"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url:?} must not carry credentials"));
    }
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    authority_problem(authority).map_err(|message| format!("{url:?}: {message}"))?;
    if url.parse::<Uri>().is_err() {
        return Err(format!("{url:?} is not a valid URL"));
    }
    Ok(https)
}

/// `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in
/// brackets, and a port from 0 to 65535 when given.
pub(crate) fn authority_problem(text: &str) -> Result<(), String> {
    if text.contains('@') {
        return Err("must not carry credentials".into());
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, after) = bracketed.split_once(']').ok_or("has an unclosed '['")?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("has an invalid IPv6 address".into());
            }
            match after {
                "" => (inside, None),
                _ => (inside, Some(after.strip_prefix(':').ok_or("has an invalid port")?)),
            }
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !text.starts_with('[')
        && !host.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
    {
        return Err("has an invalid host name".into());
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err("has an invalid port".into());
    }
    text.parse::<Authority>().map(drop).map_err(|_| "is not a valid host[:port]".into())
}

/// An RFC 9110 token: what a header name may be.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// The longest route id: an API key's scope names it (`routes:<id>`).
pub const MAX_ROUTE_ID: usize = 100;

/// Route ids and upstream names: `[A-Za-z0-9_.-]`.
pub(crate) fn is_id_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_have_no_path_query_or_trailing_slash() {
        for good in ["https://api.example.com", "http://127.0.0.1:3000", "https://[::1]:8443", "http://localhost"] {
            assert_eq!(origin_problem(good), Ok(()), "{good}");
        }
        for bad in [
            "api.example.com",
            "https://",
            "https://api.example.com/",
            "https://api.example.com/x",
            "https://api.example.com?x",
            "https://api.example.com#x",
            "https://user@api.example.com",
            "ftp://api.example.com",
            "https://api.example.com:",
            "https://api.example.com:port",
            "https://exa mple.com",
        ] {
            assert!(origin_problem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_urls_are_http_or_https_with_a_host() {
        assert_eq!(upstream_url_problem("http://127.0.0.1:8081"), Ok(false));
        assert_eq!(upstream_url_problem("https://orders.internal/"), Ok(true));
        for bad in [
            "",
            "127.0.0.1:8081",
            "ws://x",
            "http://",
            "http:///x",
            "http://x/base",
            "http://x?y",
            "http://u:p@x",
            "http://x:99999",
        ] {
            assert!(upstream_url_problem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_token("X-Rampart-Assertion"));
        assert!(is_token("x_custom.header"));
        for bad in ["", "X Header", "X:Y", "é", "X\n"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
