//! The route table of protect mode (PROTECT.md "Configuration" and
//! "Matching"): `[[proxy.routes]]` and `default_upstream`, checked once
//! into `ProxyRoute`s, and the choice of the route that judges a request.
//!
//! A request is judged by the routes with the longest matching path
//! (segment boundary, ASCII case-insensitive) whose `host` fits. Among
//! them, one naming a port beats one naming only a host, which beats one
//! without `host`; then one with `methods` beats one without. If none of
//! them allows the method the answer is 405: a shorter route never judges
//! a path a longer route owns, so a route's restrictions cannot be
//! sidestepped through a broader route's methods.

use std::{collections::BTreeSet, sync::Arc};

use axum::http::Method;

use super::path;
use crate::{
    config::{
        Config, RouteAuth, RouteConfig, Unauthenticated,
        proxy::{DEFAULT_UPSTREAM_NAME, MAX_ROUTE_ID, PROXY_RATE_LIMIT_GROUP, authority_problem, is_id_byte},
    },
    domain::Role,
};

/// Paths Rampart always serves itself, on segment boundaries.
const OWNED: [&str; 15] = [
    "/auth",
    "/api/profile",
    "/api/users",
    "/api/admin",
    "/health",
    "/ready",
    "/.well-known",
    "/openapi.json",
    "/docs",
    "/login",
    "/account",
    "/admin",
    "/verify-email",
    "/reset-password",
    // The stylesheet and scripts of /login and /account.
    "/pages",
];

/// Rampart's own while `[demo] enabled`.
const DEMO_OWNED: [&str; 2] = ["/api/posts", "/api/dashboard"];

/// The methods a route may list, in the order `Allow` names them.
const KNOWN_METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

/// Rate-limit groups that belong to Rampart's own routes.
const RAMPART_GROUPS: [&str; 3] = ["global", "login", "api"];

/// One checked route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    pub id: Arc<str>,
    /// As configured, lower-cased, without a trailing "/" (unless it is "/").
    pub path: String,
    /// `None`: every method. A list with GET also holds HEAD.
    pub methods: Option<Vec<Method>>,
    /// Lower-case `host` or `host:port` (the port only if configured).
    pub host: Option<String>,
    pub upstream: Arc<str>,
    pub strip_prefix: bool,
    pub auth: RouteAuth,
    pub unauthenticated: Unauthenticated,
    pub allow_roles: Vec<Role>,
    /// The `[rate_limit.<name>]` group.
    pub rate_limit: Arc<str>,
    pub websockets: bool,
    pub pass_authorization: bool,
    pub preserve_host: bool,
}

/// What the table says about one request.
#[derive(Debug)]
pub enum Selection<'a> {
    Route(&'a Arc<ProxyRoute>),
    /// Routes own the path, but none allows the method: 405 with this
    /// `Allow` value.
    MethodNotAllowed {
        allow: String,
    },
    NoRoute,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// In configuration order; the `default_upstream` route last.
    routes: Vec<Arc<ProxyRoute>>,
    /// Indexes into `routes`, in the order `select` tries them.
    order: Vec<usize>,
}

impl RouteTable {
    /// Checks `[proxy]`'s routes against the rest of the configuration.
    /// Every problem names its key (`proxy.routes[2].upstream: …`).
    pub fn build(config: &Config) -> Result<RouteTable, Vec<String>> {
        let proxy = &config.proxy;
        let mut problems = Vec::new();
        let has_default = !proxy.default_upstream.is_empty();
        let mut upstreams: BTreeSet<&str> = proxy.upstreams.keys().map(String::as_str).collect();
        if has_default && !upstreams.insert(DEFAULT_UPSTREAM_NAME) {
            problems.push(format!(
                "proxy.default_upstream: makes an upstream named \"{DEFAULT_UPSTREAM_NAME}\", which \
                 [proxy.upstreams.{DEFAULT_UPSTREAM_NAME}] already defines"
            ));
        }

        let mut routes = Vec::new();
        let mut keys = Vec::new();
        for (index, route) in proxy.routes.iter().enumerate() {
            let key = format!("proxy.routes[{index}]");
            let earlier = proxy.routes[..index].iter().position(|other| !route.id.is_empty() && other.id == route.id);
            if let Some(earlier) = earlier {
                problems.push(format!("{key}.id: {:?} is also the id of proxy.routes[{earlier}]", route.id));
            } else if has_default && route.id == DEFAULT_UPSTREAM_NAME {
                problems.push(format!(
                    "{key}.id: \"{DEFAULT_UPSTREAM_NAME}\" is the id of the route proxy.default_upstream makes"
                ));
            }
            match build_route(config, &upstreams, route, &key) {
                Ok(route) => {
                    routes.push(Arc::new(route));
                    keys.push(key);
                }
                Err(route_problems) => problems.extend(route_problems),
            }
        }
        if has_default {
            // A route like any other, with the defaults of one.
            let default = RouteConfig {
                id: DEFAULT_UPSTREAM_NAME.into(),
                path: "/".into(),
                upstream: DEFAULT_UPSTREAM_NAME.into(),
                ..RouteConfig::default()
            };
            let key = "proxy.default_upstream".to_owned();
            match build_route(config, &upstreams, &default, &key) {
                Ok(route) => {
                    routes.push(Arc::new(route));
                    keys.push(key);
                }
                Err(route_problems) => problems.extend(route_problems),
            }
        }

        // Two routes the precedence rules cannot order.
        for (later, route) in routes.iter().enumerate() {
            let earlier = routes[..later].iter().position(|other| {
                other.path == route.path && other.host == route.host && methods_overlap(&other.methods, &route.methods)
            });
            if let Some(earlier) = earlier {
                problems.push(format!(
                    "{}: matches the same requests as {} (same path, host and methods); give one of them a host or \
                     methods of its own",
                    keys[later], keys[earlier]
                ));
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let mut order: Vec<usize> = (0..routes.len()).collect();
        // Stable: routes that never match the same request keep their order.
        order.sort_by_key(|&index| {
            let route = &routes[index];
            std::cmp::Reverse((route.path.len(), host_rank(route.host.as_deref()), route.methods.is_some()))
        });
        Ok(RouteTable { routes, order })
    }

    /// No routes: every request is Rampart's.
    pub fn empty() -> RouteTable {
        RouteTable::default()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes in configuration order (the `default_upstream` route last).
    pub fn routes(&self) -> &[Arc<ProxyRoute>] {
        &self.routes
    }

    /// The route with this id.
    pub fn route(&self, id: &str) -> Option<&Arc<ProxyRoute>> {
        self.routes.iter().find(|route| &*route.id == id)
    }

    /// Whether a route sits at "/" (for any host and method): then every
    /// path Rampart does not own may be proxied.
    pub fn has_root_route(&self) -> bool {
        self.routes.iter().any(|route| route.path == "/")
    }

    /// The route that judges `method` on `path` (as received, without
    /// query) with `host` (the `Host` header or the HTTP/2 authority). The
    /// caller has already refused bad paths (`path::check`) and left
    /// Rampart's own paths to Rampart (`rampart_owns`).
    pub fn select(&self, method: &Method, host: Option<&str>, path: &str) -> Selection<'_> {
        let mut level = None;
        let mut candidates: Vec<&ProxyRoute> = Vec::new();
        for &index in &self.order {
            let route = &self.routes[index];
            if level.is_some_and(|length| route.path.len() < length) {
                break;
            }
            if !route.matches_path(path) || !route.matches_host(host) {
                continue;
            }
            level = Some(route.path.len());
            if route.allows(method) {
                return Selection::Route(route);
            }
            candidates.push(route);
        }
        if candidates.is_empty() {
            return Selection::NoRoute;
        }
        let allow: Vec<&str> = KNOWN_METHODS
            .iter()
            .filter(|known| candidates.iter().any(|route| route.allows(known)))
            .map(Method::as_str)
            .collect();
        Selection::MethodNotAllowed { allow: allow.join(", ") }
    }
}

impl ProxyRoute {
    /// Whether `path` is this route's path or lies under it.
    pub fn matches_path(&self, path: &str) -> bool {
        under(path, &self.path)
    }

    /// Whether the request's host fits: any host when the route names none;
    /// the port compared only when the route names one.
    pub fn matches_host(&self, host: Option<&str>) -> bool {
        let Some(wanted) = &self.host else {
            return true;
        };
        let Some(host) = host else {
            return false;
        };
        if has_port(wanted) {
            host.eq_ignore_ascii_case(wanted)
        } else {
            without_port(host).eq_ignore_ascii_case(wanted)
        }
    }

    /// Whether the route takes this method (`GET` covers `HEAD`).
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|methods| methods.contains(method))
    }

    /// The path and query to send upstream: the request's bytes as
    /// received, after `strip_prefix` (`/orders/7` → `/7`, `/orders` → `/`).
    pub fn upstream_path_and_query(&self, path: &str, query: Option<&str>) -> String {
        let path = if self.strip_prefix && self.path != "/" && self.matches_path(path) {
            match path.get(self.path.len()..) {
                Some("") | None => "/",
                Some(rest) => rest,
            }
        } else {
            path
        };
        let mut target = String::with_capacity(path.len() + query.map_or(0, |query| query.len() + 1));
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

/// Whether Rampart serves `path` itself (PROTECT.md: its own paths always
/// win). Compared ASCII case-insensitively on segment boundaries.
pub fn rampart_owns(path: &str, demo_enabled: bool) -> bool {
    rampart_owner(path, demo_enabled).is_some()
}

/// Which of Rampart's own paths `path` equals or lies under.
pub fn rampart_owner(path: &str, demo_enabled: bool) -> Option<&'static str> {
    let demo: &[&'static str] = if demo_enabled { &DEMO_OWNED } else { &[] };
    OWNED.iter().chain(demo).copied().find(|owned| under(path, owned))
}

/// `path` equals `prefix` or continues it after a "/" (ASCII
/// case-insensitive); every path lies under "/". `prefix` is lower case.
fn under(path: &str, prefix: &str) -> bool {
    let (path, prefix) = (path.as_bytes(), prefix.as_bytes());
    path.len() >= prefix.len()
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
        && (path.len() == prefix.len() || prefix == b"/" || path[prefix.len()] == b'/')
}

/// `host:port` or `[v6]:port`.
fn has_port(host: &str) -> bool {
    without_port(host).len() != host.len()
}

fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A route naming a port is more specific than one naming only a host.
fn host_rank(host: Option<&str>) -> u8 {
    match host {
        None => 0,
        Some(host) if has_port(host) => 2,
        Some(_) => 1,
    }
}

fn methods_overlap(a: &Option<Vec<Method>>, b: &Option<Vec<Method>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.iter().any(|method| b.contains(method)),
        // A route with methods comes before one without: they never tie.
        _ => false,
    }
}

/// Checks one `[[proxy.routes]]` entry (except its id's uniqueness).
fn build_route(
    config: &Config,
    upstreams: &BTreeSet<&str>,
    route: &RouteConfig,
    key: &str,
) -> Result<ProxyRoute, Vec<String>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| problems.push(format!("{key}.{field}: {message}"));

    if route.id.is_empty() {
        problem("id", "must be set (it names the route in policy, logs and metrics)".into());
    } else if !route.id.bytes().all(is_id_byte) {
        problem("id", format!("{:?} may hold only letters, digits, '_', '.' and '-'", route.id));
    } else if route.id.len() > MAX_ROUTE_ID {
        // An API key's scope names it: `routes:<id>` (`domain::Scope`).
        problem("id", format!("must be at most {MAX_ROUTE_ID} characters"));
    }

    let configured = route.path.as_str();
    if let Err(message) = path_problem(configured) {
        problem("path", message);
    } else if let Some(owned) = rampart_owner(configured, config.demo.enabled) {
        let relation = if configured.len() == owned.len() { "is" } else { "lies under" };
        problem("path", format!("{configured:?} {relation} Rampart's own {owned:?}, which Rampart always serves"));
    }

    let methods = if route.methods.is_empty() {
        None
    } else {
        let mut methods = Vec::new();
        for name in &route.methods {
            let upper = name.to_ascii_uppercase();
            match KNOWN_METHODS.iter().find(|known| known.as_str() == upper) {
                Some(method) => methods.push(method.clone()),
                None => problem(
                    "methods",
                    format!("{name:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"),
                ),
            }
        }
        if methods.contains(&Method::GET) {
            methods.push(Method::HEAD);
        }
        // Canonical order, without repeats.
        Some(KNOWN_METHODS.iter().filter(|known| methods.contains(known)).cloned().collect::<Vec<_>>())
    };

    let host = if route.host.is_empty() {
        None
    } else {
        if route.host.contains('/') {
            problem(
                "host",
                format!("{:?} must be a host like \"api.example.com\", without scheme or path", route.host),
            );
        } else if let Err(message) = authority_problem(&route.host) {
            problem("host", format!("{:?} {message}", route.host));
        }
        Some(route.host.to_ascii_lowercase())
    };

    if route.upstream.is_empty() {
        problem("upstream", "must name an upstream of [proxy.upstreams]".into());
    } else if !upstreams.contains(route.upstream.as_str()) {
        problem("upstream", format!("no upstream named {:?}", route.upstream));
    }

    let mut allow_roles = Vec::new();
    for name in &route.allow_roles {
        match name.parse::<Role>() {
            Ok(role) if !allow_roles.contains(&role) => allow_roles.push(role),
            Ok(_) => {}
            Err(_) => problem("allow_roles", format!("{name:?} is not a role (admin, manager, user)")),
        }
    }
    if !route.allow_roles.is_empty() && route.auth != RouteAuth::Required {
        problem(
            "allow_roles",
            format!(
                "only a route with auth = \"required\" checks roles; this {:?} route would let in callers of any role",
                route.auth.as_str()
            ),
        );
    }

    let group = route.rate_limit.as_str();
    if group.is_empty() {
        problem("rate_limit", format!("must name a rate-limit group (default {PROXY_RATE_LIMIT_GROUP:?})"));
    } else if RAMPART_GROUPS.contains(&group) {
        problem(
            "rate_limit",
            format!("{group:?} is one of Rampart's own groups; name {PROXY_RATE_LIMIT_GROUP:?} or a group of your own"),
        );
    } else if !config.rate_limit.contains_key(group) {
        problem("rate_limit", format!("no rate-limit group named {group:?} (define [rate_limit.{group}])"));
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ProxyRoute {
        id: route.id.as_str().into(),
        path: configured.to_ascii_lowercase(),
        methods,
        host,
        upstream: route.upstream.as_str().into(),
        strip_prefix: route.strip_prefix,
        auth: route.auth,
        unauthenticated: route.unauthenticated,
        allow_roles,
        rate_limit: group.into(),
        websockets: route.websockets,
        pass_authorization: route.pass_authorization,
        preserve_host: route.preserve_host,
    })
}

/// A route's `path`: what a request path may be, without a query or a
/// trailing "/".
fn path_problem(configured: &str) -> Result<(), String> {
    if configured.is_empty() {
        return Err("must be set (\"/\" covers every path Rampart does not serve)".into());
    }
    if !configured.starts_with('/') {
        return Err(format!("{configured:?} must start with \"/\""));
    }
    if configured.contains(['?', '#']) {
        return Err(format!("{configured:?} must be a path without query or fragment"));
    }
    if configured.len() > 1 && configured.ends_with('/') {
        let trimmed = configured.trim_end_matches('/');
        return Err(format!(
            "{configured:?} must not end with \"/\" (write {:?}: it covers the paths beneath too)",
            if trimmed.is_empty() { "/" } else { trimmed }
        ));
    }
    path::check(configured).map_err(|refusal| format!("{configured:?} is refused: {refusal}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::UpstreamConfig;

    fn upstream() -> UpstreamConfig {
        UpstreamConfig { url: "http://127.0.0.1:8081".into(), ..UpstreamConfig::default() }
    }

    fn config_with(routes: Vec<RouteConfig>) -> Config {
        let mut config = Config::defaults();
        config.proxy.upstreams.insert("orders".into(), upstream());
        config.proxy.upstreams.insert("people".into(), upstream());
        config.proxy.routes = routes;
        config
    }

    fn route(id: &str, path: &str) -> RouteConfig {
        RouteConfig { id: id.into(), path: path.into(), upstream: "orders".into(), ..RouteConfig::default() }
    }

    fn with_methods(mut route: RouteConfig, methods: &[&str]) -> RouteConfig {
        route.methods = methods.iter().map(|m| (*m).to_owned()).collect();
        route
    }

    fn with_host(mut route: RouteConfig, host: &str) -> RouteConfig {
        route.host = host.into();
        route
    }

    fn built(routes: Vec<RouteConfig>) -> RouteTable {
        match RouteTable::build(&config_with(routes)) {
            Ok(table) => table,
            Err(problems) => panic!("{problems:#?}"),
        }
    }

    fn problems(config: &Config) -> Vec<String> {
        match RouteTable::build(config) {
            Ok(_) => panic!("the table was accepted"),
            Err(problems) => problems,
        }
    }

    fn problems_of(routes: Vec<RouteConfig>) -> Vec<String> {
        problems(&config_with(routes))
    }

    fn assert_problem(problems: &[String], expected: &str) {
        assert!(problems.iter().any(|problem| problem.contains(expected)), "{expected:?} not in {problems:#?}");
    }

    /// The id of the chosen route, "405 <Allow>" or "404".
    fn chosen(table: &RouteTable, method: Method, host: Option<&str>, path: &str) -> String {
        match table.select(&method, host, path) {
            Selection::Route(route) => route.id.to_string(),
            Selection::MethodNotAllowed { allow } => format!("405 {allow}"),
            Selection::NoRoute => "404".into(),
        }
    }

    #[test]
    fn no_routes_make_an_empty_table() {
        let table = RouteTable::build(&Config::defaults()).unwrap();
        assert!(table.is_empty());
        assert!(RouteTable::empty().is_empty());
        assert_eq!(chosen(&table, Method::GET, None, "/anything"), "404");
    }

    #[test]
    fn routes_are_normalised() {
        let mut orders =
            with_host(with_methods(route("orders", "/Orders"), &["get", "POST", "post"]), "API.Example.com");
        orders.allow_roles = vec!["manager".into(), "admin".into(), "manager".into()];
        let table = built(vec![orders]);
        let route = &table.routes()[0];
        assert_eq!(route.path, "/orders");
        assert_eq!(route.methods, Some(vec![Method::GET, Method::HEAD, Method::POST]));
        assert_eq!(route.host.as_deref(), Some("api.example.com"));
        assert_eq!(route.allow_roles, [Role::Manager, Role::Admin]);
        assert_eq!(&*route.rate_limit, "proxy");
        assert_eq!(route.auth, RouteAuth::Required);
        assert_eq!(route.unauthenticated, Unauthenticated::Problem);
        assert!(table.route("orders").is_some() && table.route("Orders").is_none());
        assert!(!table.has_root_route());
    }

    #[test]
    fn a_prefix_matches_on_segment_boundaries_ignoring_ascii_case() {
        let table = built(vec![route("orders", "/orders")]);
        for path in ["/orders", "/orders/", "/orders/7", "/ORDERS", "/Orders/7/items"] {
            assert_eq!(chosen(&table, Method::GET, None, path), "orders", "{path}");
        }
        for path in ["/ordersx", "/order", "/", "/x/orders"] {
            assert_eq!(chosen(&table, Method::GET, None, path), "404", "{path}");
        }
        let root = table_with_root();
        for path in ["/", "/anything", "/a/b/c"] {
            assert_eq!(chosen(&root, Method::DELETE, None, path), "root", "{path}");
        }
    }

    fn table_with_root() -> RouteTable {
        built(vec![route("root", "/")])
    }

    #[test]
    fn the_longest_path_wins_whatever_the_order() {
        let table = built(vec![route("root", "/"), route("api", "/api"), route("v2", "/api/v2")]);
        assert_eq!(chosen(&table, Method::GET, None, "/api/v2/x"), "v2");
        assert_eq!(chosen(&table, Method::GET, None, "/API/V2"), "v2");
        assert_eq!(chosen(&table, Method::GET, None, "/api/v3"), "api");
        assert_eq!(chosen(&table, Method::GET, None, "/apix"), "root");
        assert!(table.has_root_route());
    }

    #[test]
    fn a_shorter_route_never_judges_a_path_a_longer_route_owns() {
        let table = built(vec![route("root", "/"), with_methods(route("orders-read", "/orders"), &["GET"])]);
        assert_eq!(chosen(&table, Method::GET, None, "/orders/7"), "orders-read");
        assert_eq!(chosen(&table, Method::HEAD, None, "/orders/7"), "orders-read", "GET covers HEAD");
        assert_eq!(chosen(&table, Method::DELETE, None, "/orders/7"), "405 GET, HEAD");
        assert_eq!(chosen(&table, Method::DELETE, None, "/ORDERS"), "405 GET, HEAD");
        assert_eq!(chosen(&table, Method::DELETE, None, "/other"), "root");
    }

    #[test]
    fn a_route_with_methods_beats_one_without_and_the_allow_header_is_the_union() {
        let table = built(vec![
            route("orders-any", "/orders"),
            with_methods(route("orders-write", "/orders"), &["POST", "PUT"]),
        ]);
        assert_eq!(chosen(&table, Method::POST, None, "/orders"), "orders-write");
        assert_eq!(chosen(&table, Method::GET, None, "/orders"), "orders-any");

        let split = built(vec![
            with_methods(route("write", "/orders"), &["DELETE", "POST"]),
            with_methods(route("read", "/orders"), &["GET"]),
        ]);
        assert_eq!(chosen(&split, Method::HEAD, None, "/orders/1"), "read");
        assert_eq!(chosen(&split, Method::PATCH, None, "/orders/1"), "405 GET, HEAD, POST, DELETE");
    }

    #[test]
    fn a_route_with_a_host_beats_one_without_and_the_port_counts_only_when_named() {
        let table = built(vec![
            route("any", "/orders"),
            with_host(route("named", "/orders"), "api.example.com"),
            with_host(route("port", "/orders"), "api.example.com:8443"),
            with_host(route("v6", "/orders"), "[::1]"),
        ]);
        assert_eq!(chosen(&table, Method::GET, Some("API.example.com"), "/orders"), "named");
        assert_eq!(chosen(&table, Method::GET, Some("api.example.com:3000"), "/orders"), "named");
        assert_eq!(chosen(&table, Method::GET, Some("api.example.com:8443"), "/orders"), "port");
        assert_eq!(chosen(&table, Method::GET, Some("[::1]:3000"), "/orders"), "v6");
        assert_eq!(chosen(&table, Method::GET, Some("other.example.com"), "/orders"), "any");
        assert_eq!(chosen(&table, Method::GET, None, "/orders"), "any");

        // A longer route for another host does not own this host's paths.
        let hosts = built(vec![route("root", "/"), with_host(route("admin-orders", "/orders"), "admin.example.com")]);
        assert_eq!(chosen(&hosts, Method::GET, Some("api.example.com"), "/orders"), "root");
        assert_eq!(chosen(&hosts, Method::GET, Some("admin.example.com"), "/orders"), "admin-orders");
        let only_host = built(vec![with_host(route("a", "/"), "a.example.com")]);
        assert_eq!(chosen(&only_host, Method::GET, Some("b.example.com"), "/"), "404");
        assert_eq!(chosen(&only_host, Method::GET, None, "/"), "404");
    }

    #[test]
    fn methods_are_tried_across_hosts_at_the_longest_path() {
        let table = built(vec![
            with_methods(with_host(route("host-read", "/orders"), "api.example.com"), &["GET"]),
            with_methods(route("any-write", "/orders"), &["POST"]),
        ]);
        assert_eq!(chosen(&table, Method::GET, Some("api.example.com"), "/orders"), "host-read");
        assert_eq!(chosen(&table, Method::POST, Some("api.example.com"), "/orders"), "any-write");
        assert_eq!(chosen(&table, Method::PUT, Some("api.example.com"), "/orders"), "405 GET, HEAD, POST");
        assert_eq!(chosen(&table, Method::GET, Some("other.example.com"), "/orders"), "405 POST");
    }

    #[test]
    fn default_upstream_is_a_required_route_at_the_root() {
        let mut config = Config::defaults();
        config.proxy.default_upstream = "http://127.0.0.1:8080".into();
        let table = RouteTable::build(&config).unwrap();
        let only = &table.routes()[0];
        assert_eq!((&*only.id, only.path.as_str(), &*only.upstream), ("default", "/", "default"));
        assert_eq!(only.auth, RouteAuth::Required);
        assert_eq!(only.methods, None);
        assert_eq!(chosen(&table, Method::PATCH, Some("x"), "/anything"), "default");

        // Other routes sit beside it, and it comes last.
        config.proxy.upstreams.insert("orders".into(), upstream());
        config.proxy.routes = vec![route("orders", "/orders")];
        let table = RouteTable::build(&config).unwrap();
        assert_eq!(table.routes().iter().map(|r| &*r.id).collect::<Vec<_>>(), ["orders", "default"]);
        assert_eq!(chosen(&table, Method::GET, None, "/orders/1"), "orders");
        assert_eq!(chosen(&table, Method::GET, None, "/order"), "default");
    }

    #[test]
    fn default_upstream_clashes_are_named() {
        let mut config = config_with(vec![route("default", "/x"), with_methods(route("root", "/"), &[])]);
        config.proxy.default_upstream = "http://127.0.0.1:8080".into();
        config.proxy.upstreams.insert("default".into(), upstream());
        let problems = problems(&config);
        assert_problem(
            &problems,
            "proxy.routes[0].id: \"default\" is the id of the route proxy.default_upstream makes",
        );
        assert_problem(&problems, "proxy.default_upstream: makes an upstream named \"default\"");
        assert_problem(&problems, "proxy.default_upstream: matches the same requests as proxy.routes[1]");
    }

    #[test]
    fn bad_routes_are_named_by_key() {
        let mut unknown = route("b", "/b");
        unknown.upstream = "x".into();
        let problems = problems_of(vec![
            route("a", "/a"),
            route("a", "/a2"),
            unknown,
            route("c", "/auth/x"),
            route("d d", "/d"),
            route("", "/e"),
            route(&"f".repeat(101), "/f"),
        ]);
        assert_problem(&problems, "proxy.routes[1].id: \"a\" is also the id of proxy.routes[0]");
        assert_problem(&problems, "proxy.routes[2].upstream: no upstream named \"x\"");
        assert_problem(&problems, "proxy.routes[3].path: \"/auth/x\" lies under Rampart's own \"/auth\"");
        assert_problem(&problems, "proxy.routes[4].id: \"d d\" may hold only");
        assert_problem(&problems, "proxy.routes[5].id: must be set");
        assert_problem(&problems, "proxy.routes[6].id: must be at most 100 characters");
        assert_eq!(problems.len(), 6, "{problems:#?}");
    }

    #[test]
    fn bad_paths_are_refused() {
        for (path, expected) in [
            ("", "must be set"),
            ("orders", "must start with \"/\""),
            ("/orders?x=1", "without query"),
            ("/orders#x", "without query"),
            ("/orders/", "must not end with \"/\" (write \"/orders\""),
            ("//", "must not end with \"/\" (write \"/\""),
            ("/a//b", "empty segment"),
            ("/a/../b", "\".\" or \"..\" segment"),
            ("/a%2Fb", "encoded slash"),
            ("/a%41", "percent-encodes a letter"),
            ("/a;b", "\";\""),
            ("/a\\b", "backslash"),
            ("/a%zz", "invalid percent-encoding"),
        ] {
            let problems = problems_of(vec![route("r", path)]);
            assert_problem(&problems, "proxy.routes[0].path: ");
            assert_problem(&problems, expected);
        }
        // Encoded characters that need encoding are fine.
        let table = built(vec![route("space", "/a%20b")]);
        assert_eq!(chosen(&table, Method::GET, None, "/A%20B/c"), "space");
    }

    #[test]
    fn rampart_paths_cannot_be_routed_but_paths_above_them_can() {
        for (path, owned) in [
            ("/auth", "\"/auth\" is Rampart's own \"/auth\""),
            ("/AUTH/login", "\"/AUTH/login\" lies under Rampart's own \"/auth\""),
            ("/api/users/x", "Rampart's own \"/api/users\""),
            ("/api/admin", "Rampart's own \"/api/admin\""),
            ("/api/posts", "Rampart's own \"/api/posts\""),
            ("/api/dashboard/x", "Rampart's own \"/api/dashboard\""),
            ("/.well-known/x", "Rampart's own \"/.well-known\""),
            ("/openapi.json", "Rampart's own \"/openapi.json\""),
            ("/login", "Rampart's own \"/login\""),
            ("/pages/login.js", "Rampart's own \"/pages\""),
            ("/reset-password", "Rampart's own \"/reset-password\""),
        ] {
            let problems = problems_of(vec![route("r", path)]);
            assert_problem(&problems, &format!("proxy.routes[0].path: {path:?}"));
            assert_problem(&problems, owned);
        }
        built(vec![route("root", "/"), route("api", "/api"), route("authx", "/authx"), route("apiv", "/api/v1")]);

        let mut demo_off = config_with(vec![route("posts", "/api/posts"), route("dash", "/api/dashboard")]);
        demo_off.demo.enabled = false;
        assert_eq!(RouteTable::build(&demo_off).unwrap().routes().len(), 2);
    }

    #[test]
    fn rampart_owns_its_paths_case_insensitively_on_segment_boundaries() {
        for path in [
            "/auth",
            "/auth/",
            "/AUTH/login",
            "/Auth/Session",
            "/api/profile",
            "/api/users/1",
            "/api/admin/users",
            "/health",
            "/ready",
            "/.well-known/jwks.json",
            "/openapi.json",
            "/docs/",
            "/login",
            "/account",
            "/admin",
            "/admin/admin.js",
            "/verify-email",
            "/reset-password",
            "/pages/pages.css",
        ] {
            assert!(rampart_owns(path, false), "{path}");
        }
        for path in
            ["/", "/api", "/api/", "/authx", "/auth-x", "/healthz", "/api/profiles", "/openapi.jsonx", "/x/auth"]
        {
            assert!(!rampart_owns(path, true), "{path}");
        }
        for path in ["/api/posts", "/api/posts/1", "/API/Dashboard"] {
            assert!(rampart_owns(path, true), "{path}");
            assert!(!rampart_owns(path, false), "{path}");
        }
        assert_eq!(rampart_owner("/AUTH/x", true), Some("/auth"));
    }

    #[test]
    fn bad_methods_hosts_roles_and_groups_are_named() {
        let mut roles = route("roles", "/roles");
        roles.allow_roles = vec!["boss".into()];
        let mut public = route("public", "/public");
        public.auth = RouteAuth::Public;
        public.allow_roles = vec!["admin".into()];
        let mut unknown_group = route("group", "/group");
        unknown_group.rate_limit = "nope".into();
        let mut own_group = route("own", "/own");
        own_group.rate_limit = "global".into();
        let mut no_group = route("none", "/none");
        no_group.rate_limit = String::new();
        let problems = problems_of(vec![
            with_methods(route("m", "/m"), &["FETCH", "GET"]),
            with_host(route("h", "/h"), "https://api.example.com"),
            with_host(route("p", "/p"), "api.example.com:port"),
            roles,
            public,
            unknown_group,
            own_group,
            no_group,
            with_methods(route("connect", "/c"), &["CONNECT"]),
        ]);
        assert_problem(&problems, "proxy.routes[0].methods: \"FETCH\" is not one of");
        assert_problem(&problems, "proxy.routes[1].host: \"https://api.example.com\" must be a host");
        assert_problem(&problems, "proxy.routes[2].host: \"api.example.com:port\" has an invalid port");
        assert_problem(&problems, "proxy.routes[3].allow_roles: \"boss\" is not a role");
        assert_problem(&problems, "proxy.routes[4].allow_roles: only a route with auth = \"required\"");
        assert_problem(&problems, "proxy.routes[5].rate_limit: no rate-limit group named \"nope\"");
        assert_problem(&problems, "proxy.routes[6].rate_limit: \"global\" is one of Rampart's own groups");
        assert_problem(&problems, "proxy.routes[7].rate_limit: must name a rate-limit group");
        assert_problem(&problems, "proxy.routes[8].methods: \"CONNECT\" is not one of");
    }

    #[test]
    fn routes_no_rule_can_order_are_refused() {
        let problems = problems_of(vec![
            route("a", "/orders"),
            route("b", "/ORDERS"),
            with_methods(route("c", "/x"), &["GET", "POST"]),
            with_methods(route("d", "/x"), &["HEAD"]),
            with_host(route("e", "/y"), "a.example.com"),
            with_host(route("f", "/y"), "A.example.com"),
        ]);
        assert_problem(&problems, "proxy.routes[1]: matches the same requests as proxy.routes[0]");
        assert_problem(&problems, "proxy.routes[3]: matches the same requests as proxy.routes[2]");
        assert_problem(&problems, "proxy.routes[5]: matches the same requests as proxy.routes[4]");
        assert_eq!(problems.len(), 3, "{problems:#?}");

        // Different hosts, disjoint methods, or one without methods: ordered.
        built(vec![
            with_methods(route("a", "/orders"), &["GET"]),
            with_methods(route("b", "/orders"), &["POST"]),
            route("c", "/orders"),
            with_host(route("d", "/orders"), "a.example.com"),
            with_host(route("e", "/orders"), "a.example.com:8443"),
            with_host(route("f", "/orders"), "b.example.com"),
        ]);
    }

    #[test]
    fn the_upstream_target_keeps_the_bytes_and_strips_the_prefix() {
        let mut stripped = route("orders", "/orders");
        stripped.strip_prefix = true;
        let mut root = route("root", "/");
        root.strip_prefix = true;
        let table = built(vec![stripped, root, route("kept", "/kept")]);
        let [stripped, root, kept] = [&table.routes()[0], &table.routes()[1], &table.routes()[2]];
        assert_eq!(stripped.upstream_path_and_query("/orders/7", None), "/7");
        assert_eq!(stripped.upstream_path_and_query("/Orders/7/Items", None), "/7/Items");
        assert_eq!(stripped.upstream_path_and_query("/orders", None), "/");
        assert_eq!(stripped.upstream_path_and_query("/orders/", None), "/");
        assert_eq!(stripped.upstream_path_and_query("/orders", Some("a=1&b=%2F")), "/?a=1&b=%2F");
        assert_eq!(stripped.upstream_path_and_query("/orders/7", Some("")), "/7?");
        assert_eq!(root.upstream_path_and_query("/x/y", Some("q")), "/x/y?q");
        assert_eq!(kept.upstream_path_and_query("/Kept/a%20b", Some("x=%41")), "/Kept/a%20b?x=%41");
    }
}
